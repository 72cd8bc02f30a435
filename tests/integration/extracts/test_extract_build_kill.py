"""A build killed with SIGKILL half-way through writing must not damage what readers see."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.extracts import storage
from gateway.extracts.pipeline import build_extract
from gateway.extracts.spec import make_spec
from gateway.extracts.synth import generate

KEY = b"K" * 32
SPEC = {
    "project_id": "killed",
    "datasets": {"patients": ["sex", "borough"], "prescriptions": ["issue_date", "drug"]},
    "date_range": {"start": "2015-01-01", "end": "2024-12-31"},
    "k": 2,
}

# The child builds the next version and, once it is deep into writing prescriptions,
# announces it and stalls so the parent can kill it at a known point.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gateway.extracts.pipeline import build_extract
    from gateway.extracts.spec import make_spec

    source, root, marker, after = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    spec = make_spec({spec!r}, {key!r})

    def progress(done, total):
        if done >= after and not marker.exists():
            marker.write_text(str(done))
            time.sleep(600)

    build_extract(spec, source, root, progress=progress, batch_size=500)
    """
).format(spec=SPEC, key=KEY)


def _wait_for(path: Path, process: subprocess.Popen, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the build exited early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the build never reached the kill point")
        time.sleep(0.05)


@pytest.mark.timeout(180)
def test_sigkill_mid_write_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    source, root = tmp_path / "source", tmp_path / "extracts"
    generate(800, 3, source)
    first = build_extract(make_spec(SPEC, KEY), source, root)
    assert first.version == 1 and storage.current_version(root, "killed") == 1
    before = {p.name: p.read_bytes() for p in storage.version_dir(root, "killed", 1).iterdir()}

    marker = tmp_path / "mid-write"
    patients_rows = pq.read_metadata(source / "patients.parquet").num_rows
    kill_after = patients_rows + 20 * 500  # twenty batches into prescriptions
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(root), str(marker), str(kill_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    )
    _wait_for(marker, child)
    staging = [p for p in (root / "killed").iterdir() if p.name.startswith(storage.STAGING_PREFIX)]
    assert len(staging) == 1
    partial = staging[0] / "prescriptions.parquet"
    assert partial.exists() and partial.stat().st_size > 0  # really killed in the middle of a file
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    # Readers see exactly what they saw before: v1, current, byte for byte.
    assert storage.list_versions(root, "killed") == [1]
    assert storage.current_version(root, "killed") == 1
    assert not storage.version_dir(root, "killed", 2).exists()
    assert storage.verify_version(root, "killed", 1) == []
    assert {p.name: p.read_bytes() for p in storage.version_dir(root, "killed", 1).iterdir()} == before
    with pytest.raises(pa.ArrowInvalid):  # the partial file has no Parquet footer
        pq.read_metadata(partial)

    # The next build clears the debris and publishes v2.
    second = build_extract(make_spec(SPEC, KEY), source, root)
    assert second.version == 2 and second.leftovers_removed == [staging[0].name]
    assert not staging[0].exists()
    assert storage.current_version(root, "killed") == 2
    assert storage.verify_version(root, "killed", 2) == []
    assert second.table("prescriptions").rows == first.table("prescriptions").rows

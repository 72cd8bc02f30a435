"""Every notebook a new workspace starts with runs top to bottom on the demo's extracts, with the workspace
environment's own Python kernel, and what it saves to outputs/ is what the gateway can recompute from the extract.

The notebooks run (jupyter-execute, nbclient) inside bubblewrap as the workspace sees things: the extract
read-only at /data, a home holding a copy of notebooks_template/, the workspace environment read-only, and nothing
else of the host's files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.extracts.models import ExtractVersion
from gateway.outputs.checks import recompute
from tests.support.factories import release_extract

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "notebooks_template"
SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser")).resolve()
HOME_INSIDE = "/home/researcher"


@pytest.fixture
def backend() -> str:
    """The notebooks do not touch the database: build the demo once, on PostgreSQL when configured."""
    from tests.support.databases import backends

    return backends()[-1]


def run_notebooks(extract: Path, home: Path, notebooks: list[str]) -> subprocess.CompletedProcess[str]:
    bwrap = ["bwrap", "--die-with-parent", "--unshare-all", "--unshare-user", "--uid", "20000", "--gid", "20000",
             "--cap-drop", "ALL", "--tmpfs", "/tmp",
             "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
             "--symlink", "usr/lib64", "/lib64", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev", "--ro-bind", str(SINGLEUSER), str(SINGLEUSER),
             "--ro-bind", str(extract), "/data", "--bind", str(home), HOME_INSIDE, "--chdir", HOME_INSIDE,
             "--setenv", "HOME", HOME_INSIDE, "--setenv", "PATH", f"{SINGLEUSER}/bin:/usr/bin:/bin",
             "--", f"{SINGLEUSER}/bin/jupyter-execute", "--inplace", "--timeout=300", *notebooks]
    return subprocess.run(bwrap, capture_output=True, text=True, timeout=600, env={"LANG": "C.UTF-8"})


def test_every_template_notebook_runs_on_the_demo_extracts(settings: Settings, session_factory: sessionmaker[Session],
                                                           tmp_path: Path) -> None:
    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
    demo.prepare_data(settings, session_factory)
    with session_factory() as s:  # the custodians release what the demo holds for their review
        held = [(v.project_id, v.version) for v in s.scalars(select(ExtractVersion)
                                                              .where(ExtractVersion.status == "held_for_custodian"))]
    for project_id, version in held:
        release_extract(settings, session_factory, project_id, version)
    extracts = sorted(pointer.resolve() for pointer in settings.extracts_root.glob("*/current"))
    assert extracts, "the demo has live extracts"
    # Python notebooks here; the R example runs in a real sandbox with the R kernel (test_sandboxed_workspace.py)
    notebooks = sorted(p.name for p in TEMPLATE.glob("*.ipynb")
                       if json.loads(p.read_text())["metadata"].get("kernelspec", {}).get("name", "python3") != "ir")
    assert "welcome.ipynb" in notebooks and len(notebooks) >= 2
    for extract in extracts:
        home = tmp_path / extract.parent.name
        shutil.copytree(TEMPLATE, home, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        home.chmod(0o777)  # the notebooks run as an unprivileged uid
        ran = run_notebooks(extract, home, notebooks)
        assert ran.returncode == 0, (extract, ran.stderr[-3000:])
        for name in notebooks:
            cells = json.loads((home / name).read_text())["cells"]
            errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
                      if o.get("output_type") == "error"]
            assert errors == [], (name, errors)
        manifest = json.loads((extract / "manifest.json").read_text())
        welcome = "".join("".join(o.get("text", "")) for c in json.loads((home / "welcome.ipynb").read_text())["cells"]
                          if c["cell_type"] == "code" for o in c.get("outputs", []))
        assert f"Project: {manifest['project_id']}" in welcome
        # every output a notebook saved, the gateway recomputes from the extract to the same verdict
        sidecars = sorted((home / "outputs").glob("*.sdc.json"))
        assert {p.name for p in sidecars} >= {"welcome_first_table.sdc.json"} and len(sidecars) >= 2
        for sidecar_path in sidecars:
            sidecar = json.loads(sidecar_path.read_text())
            assert sidecar["status"] in ("pass", "review"), sidecar_path.name
            again = recompute(sidecar["record"], extract)
            assert again.status == sidecar["status"], (extract, sidecar_path.name, again)

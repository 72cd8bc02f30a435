"""Save checked results to ~/outputs/ so they can be requested for release.

Only files in outputs/ can leave the workspace, and only after the output checkers approve them.
Each saved table goes with the disclosure-control record of the checks it passed, so the
checkers see exactly what you saw:

    from disclosure_control import crosstab
    from outputs_helper import save_output

    table = crosstab("region", "sex", data=df)
    print(table.summary)              # fix failures first, e.g. table = table.suppressed()
    save_output(table, "admissions_by_region")
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

OUTPUTS_DIR = Path.home() / "outputs"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _record_dict(output: Any) -> dict[str, Any]:
    record = output.record()
    return record if isinstance(record, dict) else record.to_dict()


def save_output(output: Any, name: str, outputs_dir: Path | None = None, allow_fail: bool = False) -> Path:
    """Write ``<name>.csv`` (the table) and ``<name>.sdc.json`` (its check record); return the CSV path.

    ``output`` is what a ``disclosure_control`` function returned. An output whose status is
    "fail" is refused unless ``allow_fail=True`` (it would be refused at release anyway).
    """
    if not NAME_RE.match(name):
        raise ValueError("name: letters, digits, '_' or '-', at most 64 characters")
    status = str(output.status)
    if status == "fail" and not allow_fail:
        raise ValueError(f"'{name}' fails disclosure checks:\n{getattr(output, 'summary', '')}")
    folder = OUTPUTS_DIR if outputs_dir is None else Path(outputs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / f"{name}.csv"
    output.table.to_csv(table_path)
    sidecar = {
        "name": name,
        "file": table_path.name,
        "sha256": hashlib.sha256(table_path.read_bytes()).hexdigest(),
        "status": status,
        "record": _record_dict(output),
    }
    (folder / f"{name}.sdc.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    return table_path


def list_outputs(outputs_dir: Path | None = None) -> list[dict[str, Any]]:
    """The outputs saved so far, with their status."""
    folder = OUTPUTS_DIR if outputs_dir is None else Path(outputs_dir)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.sdc.json"))]

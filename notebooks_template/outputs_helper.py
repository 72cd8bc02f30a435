"""Save checked results to ~/outputs/ and send them to an output request for checking.

Only files in outputs/ can leave the workspace, and only after the output checkers approve them.
Each saved table goes with the disclosure-control record of the checks it passed, so the
checkers see exactly what you saw. Start a request (and a group) on the gateway, then:

    from disclosure_control import crosstab
    from outputs_helper import list_requests, save_output, submit_output

    table = crosstab("region", "sex", data=df)
    print(table.summary)              # fix failures first, e.g. table = table.suppressed()
    save_output(table, "admissions_by_region")
    list_requests()                   # your draft requests on this project, with their groups
    submit_output("admissions_by_region.csv", request=12, group="Admissions")

The gateway never reads your folders: ``submit_output`` sends the file's bytes (and its record)
through the workspace hub, and the gateway checks them before storing anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

OUTPUTS_DIR = Path.home() / "outputs"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


MAX_SOURCE_CHARS = 20_000


def _cell_source() -> str | None:
    """The source of the notebook cell running now (None outside IPython): the checkers see the code that
    made the table beside it. Only the cell's text, never its output."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    cells = shell.user_ns.get("In") if shell is not None else None
    if not cells:
        return None
    return str(cells[-1])[:MAX_SOURCE_CHARS]


def _record_dict(output: Any) -> dict[str, Any]:
    record = output.record()
    return record if isinstance(record, dict) else record.to_dict()


def save_output(output: Any, name: str, outputs_dir: Path | None = None, allow_fail: bool = False,
                source: str | None = None) -> Path:
    """Write ``<name>.csv`` (the table) and ``<name>.sdc.json`` (its check record); return the CSV path.

    ``output`` is what a ``disclosure_control`` function returned. An output whose status is
    "fail" is refused unless ``allow_fail=True`` (it would be refused at release anyway). ``source``
    is the code of the cell that made it, for a caller that knows it (the R package, whose cells
    IPython does not see); by default, the IPython cell running now.
    """
    if not NAME_RE.match(name):
        raise ValueError("name: letters, digits, '_' or '-', at most 64 characters")
    status = str(output.status)
    if status == "fail" and not allow_fail:
        raise ValueError(f"'{name}' fails disclosure checks:\n{getattr(output, 'summary', '')}")
    folder = OUTPUTS_DIR if outputs_dir is None else Path(outputs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / f"{name}.csv"
    output.to_csv(table_path)  # whole counts as integers (253, not 253.0)
    sidecar = {
        "name": name,
        "file": table_path.name,
        "sha256": hashlib.sha256(table_path.read_bytes()).hexdigest(),
        "status": status,
        "record": _record_dict(output),
    }
    source = str(source)[:MAX_SOURCE_CHARS] if source else _cell_source()
    if source:
        sidecar["source"] = source
    (folder / f"{name}.sdc.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    return table_path


def list_outputs(outputs_dir: Path | None = None) -> list[dict[str, Any]]:
    """The outputs saved so far, with their status."""
    folder = OUTPUTS_DIR if outputs_dir is None else Path(outputs_dir)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.sdc.json"))]


def list_requests() -> list[dict[str, Any]]:
    """Your draft output requests on this project (id, title, groups and the files already in them)."""
    import londonsde_handover

    found = londonsde_handover.drafts().get("requests", [])
    for request in found:
        groups = ", ".join(f"{g['name']!r} (id {g['id']})" for g in request["groups"]) or "no group yet"
        print(f"request {request['id']}: {request['title']} [{request['state']}] - groups: {groups}")
        for item in request["files"]:
            print(f"    {item['name']} (version {item['version']}, {item['kind']})")
    return found


def submit_output(name: str, request: int, group: int | str | None = None, kind: str | None = None) -> dict[str, Any]:
    """Send ``outputs/<name>`` (with its record, for a table) to output request ``request`` for checking.

    ``group`` is the group's name or id (needed for a new file; a file already in the request keeps its
    group unless you give another). A new file is an output to release unless ``kind="supporting"`` (material
    for the checkers that is never released). Sending a name already in the request replaces it with a new
    version, keeping its kind unless you give one.
    """
    import londonsde_handover

    result = londonsde_handover.submit(name, request, group, kind)
    print(f"{result['name']}: version {result['version']} is in request {result['request_id']} "
          f"(group {result['group']!r}, SHA-256 {result['sha256'][:12]}...).")
    return result

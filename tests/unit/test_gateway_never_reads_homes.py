"""The gateway never opens a path inside a folder a researcher can write (issue 14, finding 2): outputs reach it
only as bytes handed over by the workspace. This test reads the gateway's own source: no module of the gateway,
projects or disclosure_control names the homes folder or a path inside it, except the settings that define
it and the hub's launcher that passes it on to the hub (which creates homes as root for the spawner)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOME_NAMES = {"homes_root", "workspace_home", "workspace_outputs", "outputs_folder", "list_workspace_files",
              "resolve_inside", "workspace_files"}
ALLOWED = {
    "gateway/config.py": {"homes_root"},  # the setting itself
    "gateway/workspaces/hub_process.py": {"homes_root"},  # handed to the hub's environment; created as root
    # Closes the root-owned homes folder itself to other accounts (chmod 0700); never enters it.
    "gateway/host_permissions.py": {"homes_root"},
    # `sde check` reads the mode of the homes folder itself (is it open to others?); never enters it.
    "gateway/deploy_check.py": {"homes_root"},
    "gateway/workspaces/spec.py": {"workspace_home", "homes_root"},  # the layout, used by the hub's spawner only
}


def names_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.arg):
            found.add(node.name if isinstance(node, ast.FunctionDef) else node.arg)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.rsplit(".", 1)[-1])
    return found & HOME_NAMES


def test_no_gateway_module_names_a_researchers_folder() -> None:
    offenders = {}
    for package in ("gateway", "projects", "disclosure_control"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            extra = names_in(path) - ALLOWED.get(relative, set())
            if extra:
                offenders[relative] = sorted(extra)
    assert offenders == {}


def test_the_spec_layout_is_used_by_nothing_in_the_gateway_but_the_hub_launcher() -> None:
    users = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "gateway").rglob("*.py"))
             if "workspace_home" in p.read_text(encoding="utf-8")]
    assert users == ["gateway/workspaces/spec.py"]

"""The layer order, written once: a module may import its own layer or a lower one, never a higher one.

Every import counts, at the top of a file or inside a function (a late import hides a cycle, it does not remove
it), and under ``if TYPE_CHECKING`` too. Side effects of a decision go up through domain events
(projects/events.py, wired in gateway/wiring.py), never through an import.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("disclosure_control", "gateway", "projects")

# Lowest first. A module belongs to the layer of the longest prefix that names it (a prefix is a module or a
# package); anything no prefix names is in the top layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Pure libraries: no database, no Flask, no domain.
    ("library", ("disclosure_control", "gateway.outputs", "gateway.trust")),
    # What everything stands on: settings, errors, the database and every table, the audit log, the outbox,
    # roles, accounts and sign-in, and the transition tables.
    ("foundation", ("gateway.config", "gateway.errors", "gateway.db", "gateway.models", "gateway.model_registry",
                    "gateway.audit", "gateway.outbox", "gateway.permissions", "gateway.csv_safe",
                    "gateway.host_permissions", "gateway.identity", "projects.models", "projects.workflow",
                    "gateway.charging.models", "gateway.extracts.models", "gateway.workspaces.models",
                    "gateway.outputs.models", "gateway.outputs.ledger", "gateway.outputs.workflow",
                    "gateway.trust.models")),
    # The domain: every rule and decision about people, applications and projects, and the definitions they use
    # (the data catalogue, cohort and generalisation terms, workspace tiers, the tariff, money); it emits events.
    ("domain", ("projects",)),
    # The layers that act on the domain's decisions (subscribed at the composition root). Extracts, workspaces
    # and charging stand wholly here (but for their tables): they read the domain's definitions from projects/.
    ("features", ("gateway.extracts", "gateway.workspaces", "gateway.charging", "gateway.outputs.checks",
                  "gateway.outputs.content", "gateway.outputs.files", "gateway.outputs.handover",
                  "gateway.outputs.release", "gateway.outputs.service", "gateway.outputs.statistics",
                  "gateway.trust.figures", "gateway.trust.incidents", "gateway.trust.receipts")),
    # The composition root and delivery: app, web, API, CLI, worker, wiring, the notifications; and the public
    # registers, read models over every layer (their rows show quotes, invoices, extracts and releases).
    ("root", ("gateway", "gateway.trust.register", "gateway.trust.data_use_register")),
]

# Import cycles that remain, each with why; any other cycle fails.
KNOWN_CYCLES: dict[frozenset[str], str] = {
    frozenset({"gateway.db", "gateway.model_registry", "gateway.models", "gateway.outbox", "projects.models",
               "gateway.charging.models", "gateway.extracts.models", "gateway.outputs.ledger",
               "gateway.outputs.models", "gateway.trust.models", "gateway.workspaces.models"}):
        "make_session_factory loads every table (gateway.model_registry) so mappers can be configured",
    frozenset({"gateway.outputs.handover", "gateway.workspaces.service"}):
        "a workspace starts with a hand-over credential; the credential names the workspace's hub user",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module of ours that an imported name is in (the name itself, or the nearest package above it)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(module: str) -> frozenset[str]:
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(r for alias in node.names if (r := _resolve(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from gateway import audit`` imports the module gateway.audit
                target = _resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules() else _resolve(base)
                if target:
                    found.add(target)
    found.discard(module)
    return frozenset(found)


def layer_of(module: str) -> int:
    best, best_length = len(LAYERS) - 1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def upward_imports() -> list[str]:
    out = []
    for module in sorted(modules()):
        for target in sorted(imports_of(module)):
            if layer_of(target) > layer_of(module):
                out.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")
    return out


def cycles() -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {m: sorted(imports_of(m)) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if child < len(graph[node]):
                work.append((node, child + 1))
                nxt = graph[node][child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_no_import_cycles_but_the_known_ones() -> None:
    assert {c: KNOWN_CYCLES.get(c, "NEW") for c in cycles()} == KNOWN_CYCLES


def test_the_domain_never_imports_the_layers_that_act_on_its_decisions() -> None:
    acting = {m for m in modules() if LAYERS[layer_of(m)][0] in ("features", "root")}
    domain = [m for m in modules() if m.startswith("projects.") and LAYERS[layer_of(m)][0] == "domain"]
    assert len(domain) > 10
    assert {m: sorted(imports_of(m) & acting) for m in domain if imports_of(m) & acting} == {}


def test_projects_imports_nothing_from_extracts_workspaces_or_charging() -> None:
    """Issue 18, by name and whatever layer a module is placed in: not even their tables or pure parts."""
    acting = ("gateway.extracts", "gateway.workspaces", "gateway.charging")
    domain = [m for m in modules() if m == "projects" or m.startswith("projects.")]
    assert len(domain) > 10
    found = {m: sorted(t for t in imports_of(m) if t.startswith(acting)) for m in domain}
    assert {m: targets for m, targets in found.items() if targets} == {}


def test_projects_queues_no_side_effect_itself() -> None:
    """Mail and jobs that follow a decision are queued by subscribers (gateway.notifications, gateway.wiring)."""
    assert [m for m in modules() if m.startswith("projects.") and "gateway.outbox" in imports_of(m)] == []


def test_every_projects_module_is_in_the_domain_layer() -> None:
    """No exception for a module under projects/ (the public register, which reads every layer, is in gateway/)."""
    assert [m for m in modules() if m.startswith("projects.") and m not in ("projects.models", "projects.workflow")
            and LAYERS[layer_of(m)][0] != "domain"] == []


def test_the_checker_sees_late_and_relative_imports(tmp_path: Path) -> None:
    """The scanner itself: a late import inside a function counts (that is how the old cycles were hidden)."""
    assert "gateway.wiring" in imports_of("gateway.app")
    assert "gateway.wiring" in imports_of("gateway.cli")  # imported inside the command group's function
    assert layer_of("gateway.web.register") == len(LAYERS) - 1
    assert layer_of("gateway.extracts.service") > layer_of("projects.lifecycle") > layer_of("projects.models")
    assert "gateway.outputs.handover" in imports_of("gateway.workspaces.service")  # a late import

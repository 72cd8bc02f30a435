"""Accessibility checks in the browser: axe-core (npm, installed by `make setup`) run on a Playwright page.

The issue named `@axe-core/playwright`, which is for Playwright's Node API; our browser tests drive Playwright
from Python, so the same engine (`axe-core`, pinned in package.json) is injected into the page and `axe.run`
is called directly. Only WCAG 2.x level A and AA rules are run; a violation whose impact is serious or critical
fails the check, with the rule, its impact and the elements it found in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = frozenset({"serious", "critical"})


def axe_source() -> str:
    if not AXE_SCRIPT.exists():
        raise RuntimeError(f"{AXE_SCRIPT} is missing: run `make setup`, which installs the npm packages")
    return AXE_SCRIPT.read_text(encoding="utf-8")


def run_axe(page: Any) -> list[dict[str, Any]]:
    """The violations axe finds on the page as it is now (every impact)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated, not a <script> tag: the gateway's content security policy allows only its own scripts
        page.evaluate(axe_source())
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_TAGS)
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [", ".join(" ".join(t) if isinstance(t, list) else str(t) for t in node["target"])
                   for node in v["nodes"]]
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} -> {'; '.join(targets[:8])}"
                     + (f" (+{len(targets) - 8} more)" if len(targets) > 8 else ""))
    return "\n".join(lines)


def serious_violations(page: Any) -> list[dict[str, Any]]:
    return [v for v in run_axe(page) if v.get("impact") in FAILING_IMPACTS]


def check_accessibility(page: Any, name: str) -> None:
    """Fail if axe finds any serious or critical WCAG 2.1 A/AA violation on the page."""
    found = serious_violations(page)
    assert not found, f"accessibility violations on {name} ({page.url}):\n{describe(found)}"

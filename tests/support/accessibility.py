"""Accessibility checks in the browser: axe-core (npm, installed by `make setup`) run on a Playwright page.

The issue named `@axe-core/playwright`, which is for Playwright's Node API; our browser tests drive Playwright
from Python, so the same engine (`axe-core`, pinned in package.json) is injected into the page and `axe.run`
is called directly. Only WCAG 2.x level A and AA rules are run; a violation whose impact is serious or critical
fails the check, with the rule, its impact and the elements it found in the message.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = frozenset({"serious", "critical"})


@functools.cache
def axe_source() -> str:
    """Read once per test run: every page of every browser test gets it."""
    if not AXE_SCRIPT.exists():
        raise RuntimeError(f"{AXE_SCRIPT} is missing: run `make setup`, which installs the npm packages")
    return AXE_SCRIPT.read_text(encoding="utf-8")


# Not the gateway's pages: JupyterHub and JupyterLab (their own projects' accessibility, not ours).
NOT_OURS = ("/hub/", "/user/", "/lab", "/services/")


@functools.cache
def _on_load_script() -> str:
    """Run axe once the page has loaded, in the top frame of the gateway's pages only, and hand the serious and
    critical violations to Python; Python says which addresses this test has not had checked yet."""
    return axe_source() + """
;(() => {
  if (window.top !== window || !/^https?:$/.test(location.protocol)) return;
  const notOurs = NOT_OURS, tags = TAGS, failing = FAILING;
  if (notOurs.some(p => location.pathname.startsWith(p))) return;
  window.addEventListener('load', () => {
    window.__sdeAxeDone = (async () => {
      const where = location.pathname + location.search;
      if (!(await window.__sdeAxeWanted(where))) return;
      const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
      await window.__sdeAxeReport(where, result.violations.filter(v => failing.includes(v.impact)));
    })().catch(() => {});
  });
})();
""".replace("NOT_OURS", json.dumps(NOT_OURS)).replace("TAGS", json.dumps(WCAG_TAGS)).replace(
        "FAILING", json.dumps(sorted(FAILING_IMPACTS)))


def without_upstream_radios(violation: dict[str, Any]) -> dict[str, Any]:
    """nhsuk-frontend's own conditional radios script (common/index.mjs, version 10) sets aria-expanded on a radio
    that reveals more questions, which ARIA 1.2 does not allow on a radio: that one finding is the frontend
    library's, not a page's, and is left out here (and only here: any other attribute or element still fails)."""
    if violation.get("id") != "aria-allowed-attr":
        return violation
    nodes = [n for n in violation["nodes"]
             if not ('type="radio"' in n.get("html", "") and "aria-expanded" in n.get("html", "")
                     and "nhsuk-radios__input" in n.get("html", ""))]
    return {**violation, "nodes": nodes}


class AxeOnEveryPage:
    """Checks every gateway page a browser context loads, once per address per test, at the context's width:
    the page fixture attaches one and fails the test at teardown on what it found."""

    def __init__(self, context: Any) -> None:
        self.checked: set[str] = set()
        self.found: dict[str, list[dict[str, Any]]] = {}
        context.expose_binding("__sdeAxeWanted", lambda _source, where: where not in self.checked)
        context.expose_binding("__sdeAxeReport", self._report)
        context.add_init_script(script=_on_load_script())

    def _report(self, _source: Any, where: str, violations: list[dict[str, Any]]) -> None:
        self.checked.add(where)
        violations = [v for v in (without_upstream_radios(v) for v in violations) if v["nodes"]]
        if violations:
            self.found[where] = violations

    def finish(self, page: Any) -> None:
        """Wait for the check of the page still open (if any), then fail on anything found."""
        if not page.is_closed():
            with contextlib.suppress(Exception):  # the page is gone or never loaded: nothing to wait for
                page.evaluate("() => window.__sdeAxeDone || null")
        problems = [f"{where}:\n{describe(v)}" for where, v in self.found.items()]
        assert not problems, "accessibility violations (axe, WCAG 2.1 A/AA):\n" + "\n".join(problems)


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

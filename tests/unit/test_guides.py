"""The user guides show the product as it is: every screenshot they use is taken by a browser test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"\(screenshots/([a-z0-9_-]+)\.png\)")
TAKEN = re.compile(r'screenshot\(page, "([a-z0-9_-]+)"\)')


def test_every_screenshot_in_the_guides_is_produced_by_a_browser_test_and_present() -> None:
    referenced = {name for doc in (ROOT / "docs").glob("*.md") for name in REFERENCE.findall(doc.read_text())}
    produced = {name for test in (ROOT / "tests" / "functional").glob("test_*.py")
                for name in TAKEN.findall(test.read_text())}
    # the accessibility walk takes each role's home page as role-home-<username>
    from tests.functional.test_accessibility_browser import ROLE_PAGES

    produced |= {f"role-home-{username}" for username, paths in ROLE_PAGES.items() if "/home" in paths}
    assert referenced, "the guides should show the product"
    assert referenced - produced == set(), "guides reference screenshots no test takes"
    missing = {name for name in referenced if not (ROOT / "docs" / "screenshots" / f"{name}.png").exists()}
    assert missing == set(), "run `make screenshots` to refresh docs/screenshots"


def test_every_guide_linked_from_the_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\((docs/[a-z0-9_-]+\.md)\)", readme):
        assert (ROOT / target).exists(), target

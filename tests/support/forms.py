"""What a browser tab keeps of a page: the hidden fields of one of its forms, to post later as that tab would."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormFields(HTMLParser):
    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.found, self.fields = action, False, False, {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        seen = {k: v or "" for k, v in attrs}
        if tag == "form" and seen.get("action") == self.action and not self.found:
            self.inside = self.found = True
        elif tag == "input" and self.inside and seen.get("type") == "hidden" and seen.get("name"):
            self.fields[seen["name"]] = seen.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def hidden_fields(html: str, action: str) -> dict[str, str]:
    """The hidden inputs (the CSRF token and whatever the page put there) of the first form posting to ``action``;
    the form must be on the page."""
    parser = _FormFields(action)
    parser.feed(html)
    assert parser.found, f"no form posting to {action} on the page"
    return dict(parser.fields)

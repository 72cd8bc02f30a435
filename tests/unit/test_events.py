"""The event registry: every domain event has a subscriber once wired, and an unwired one is refused loudly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway import wiring
from projects import events


def test_wiring_subscribes_a_handler_to_every_event_once() -> None:
    wiring.wire()
    wiring.wire()  # every entry point calls it; the second call changes nothing
    counts = {kind.__name__: len(events.SUBSCRIBERS.handlers(kind)) for kind in events.EVENT_TYPES}
    assert counts == {kind.__name__: 1 for kind in events.EVENT_TYPES}


def test_an_event_with_no_subscriber_is_an_error_not_a_lost_side_effect() -> None:
    empty = events.Subscribers()
    event = events.SecurityTierRaised(project=None, reason="test")  # type: ignore[arg-type]
    with pytest.raises(events.NotWired, match="SecurityTierRaised"):
        empty.emit(None, event)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a domain event"):
        empty.subscribe(dt.date, lambda session, event: None)
    calls: list[Any] = []
    empty.subscribe(events.SecurityTierRaised, lambda session, e: calls.append(("first", e.reason)))
    empty.subscribe(events.SecurityTierRaised, lambda session, e: calls.append(("second", e.reason)))
    empty.emit(None, event)  # type: ignore[arg-type]
    assert calls == [("first", "test"), ("second", "test")]

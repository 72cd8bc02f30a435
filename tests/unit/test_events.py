"""The event registry: every domain event has a subscriber once wired, and an unwired one is refused loudly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway import wiring
from projects import events


def test_wiring_subscribes_handlers_to_every_event_once() -> None:
    wiring.wire()
    handlers = {kind.__name__: events.SUBSCRIBERS.handlers(kind) for kind in events.EVENT_TYPES}
    wiring.wire()  # every entry point calls it; the second call changes nothing
    assert {kind.__name__: events.SUBSCRIBERS.handlers(kind) for kind in events.EVENT_TYPES} == handlers
    assert [name for name, subscribed in handlers.items() if not subscribed] == []
    assert all(len(set(subscribed)) == len(subscribed) for subscribed in handlers.values())  # none twice


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

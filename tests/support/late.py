"""A second tab, or a second person: a session that reads now and writes only after others have committed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def late_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The late session; whatever it did not commit is rolled back when the block ends."""
    late = factory()
    try:
        yield late
    finally:
        late.rollback()
        late.close()


def refused_on(late: Session, error: type[Exception], command: Callable[[], object], match: str | None = None) -> None:
    """``command`` (run on ``late``, with what it read before) is refused with ``error``, and nothing commits."""
    with pytest.raises(error, match=match):
        command()
        late.commit()

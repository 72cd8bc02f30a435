"""Races between two checkers acting on one output request at once (attack on issue 14's workflow).

Each web or API request loads the output request, decides on what it read, and writes. On PostgreSQL (read
committed) two checkers acting at the same moment both decide on the state they read: one approves (the release is
queued) while the other returns or rejects, and the request ends returned with a release on its way; or both submit
the round's reviews and the request stays "partially reviewed" with two reviews, which nobody can then move. Every
transition now re-reads the request's state under a row lock and refuses a move from a state that is no longer so.

The interleaving is reproduced exactly: the second checker's session has read the request before the first one's
commit, and writes after it. (On SQLite a writer holds the database from its first statement, so it cannot happen
there; these tests run on PostgreSQL.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.errors import Conflict
from gateway.outputs import service
from gateway.outputs.models import OutputRequest
from gateway.outputs.workflow import OutputState
from tests.integration.test_outputs import (
    act,
    get,
    ready_project,
    review_all,
    submitted,
    work,
)
from tests.support import factories as f
from tests.support.databases import postgres_only

pytestmark = postgres_only


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    return ready_project(session_factory, settings)


def loaded(factory: sessionmaker[Session], request_id: int, username: str) -> tuple[Session, OutputRequest]:
    """A checker's session that has read the request (its state, files, votes and reviews) and not yet written."""
    s = factory()
    request = s.get(OutputRequest, request_id)
    assert request is not None
    _ = (request.state, [(i.votes, i.version) for i in request.files], list(request.reviews), f.user(s, username))
    return s, request


def refused_after(late: Session, first: Callable[[], object], late_step: Callable[[], object],
                  match: str | None = None) -> None:
    """``first`` commits on its own session; then ``late_step``, on the session ``late`` that read the request
    before that commit, must be refused (and nothing of it kept)."""
    try:
        first()
        with pytest.raises(Conflict, match=match):
            late_step()
            late.commit()
    finally:
        late.rollback()
        late.close()


def test_an_approval_and_a_return_at_the_same_moment_do_not_both_happen(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    request_id = submitted(session_factory, settings, project_id)
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    late, request = loaded(session_factory, request_id, "checker2")
    refused_after(late, lambda: act(session_factory, request_id, "checker1", service.decide, "approve", ""),
                  lambda: service.decide(late, f.user(late, "checker2"), request, "return", "Widen the age bands."),
                  "changed")
    assert get(session_factory, request_id).state == OutputState.APPROVED
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.RELEASED


def test_two_second_reviews_at_the_same_moment_make_the_request_reviewed(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    request_id = submitted(session_factory, settings, project_id)
    late, request = loaded(session_factory, request_id, "checker2")
    try:
        review_all(session_factory, request_id, "checker1", "approve")  # commits first: partially reviewed
        checker = f.user(late, "checker2")
        for item in request.files:  # each vote locks the request and reads it afresh: the other review is seen
            service.vote(late, checker, request, item, "approve")
        service.submit_review(late, checker, request)  # had read "submitted" and no other review
        late.commit()
    finally:
        late.rollback()
        late.close()
    request = get(session_factory, request_id)
    assert request.state == OutputState.REVIEWED and len(service.round_reviews(request)) == 2


def test_a_vote_racing_the_same_checkers_review_submission_is_refused(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """Two tabs of one checker: a vote in flight while the review is submitted must not change the submitted review."""
    request_id = submitted(session_factory, settings, project_id)
    late, request = loaded(session_factory, request_id, "checker1")
    refused_after(late, lambda: review_all(session_factory, request_id, "checker1", "approve"),  # the review is in
                  lambda: service.vote(late, f.user(late, "checker1"), request, request.files[0], "changes_requested"),
                  "already submitted")
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert [v.vote for item in request.files for v in service.current_votes(item)] == ["approve"]


def _reviewed_with_an_exception_accepted_by_both(factory: sessionmaker[Session], settings: Settings,
                                                 project_id: int) -> int:
    """A failing table with an exception asked for, both reviews in, and both checkers' answers "accept"."""
    from tests.integration.test_output_checking import JUSTIFICATION, failing_request, on_file

    request_id = failing_request(factory, settings, project_id)
    on_file(factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    review_all(factory, request_id, "checker1", "approve")
    review_all(factory, request_id, "checker2", "approve")
    for checker in ("checker1", "checker2"):
        on_file(factory, request_id, checker, service.decide_exception, "accept", "Published.", settings)
    return request_id


def test_an_approval_racing_a_checker_refusing_the_exception_is_refused(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """Checker1 approves on exceptions read as accepted by both, while checker2 changes their answer to refuse: the
    approval must see the refusal (both act under the request's row lock and read it afresh), not release a failing
    file one of its two checkers refused."""
    from tests.integration.test_output_checking import on_file

    request_id = _reviewed_with_an_exception_accepted_by_both(session_factory, settings, project_id)
    late, request = loaded(session_factory, request_id, "checker1")
    _ = [(e.file_sha256, list(e.decisions)) for e in request.exceptions]  # read as accepted by both
    refused_after(late, lambda: on_file(session_factory, request_id, "checker2", service.decide_exception, "refuse",
                                        "The ONS table is not public after all.", settings),
                  lambda: service.decide(late, f.user(late, "checker1"), request, "approve", ""), "refused by")
    assert get(session_factory, request_id).state == OutputState.REVIEWED


def test_an_exception_answer_racing_the_decision_is_refused_once_decided(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The other order: checker2's refusal, read before checker1's approval committed, must not be recorded on a
    request already approved (it would say the file was refused while its release goes ahead)."""
    request_id = _reviewed_with_an_exception_accepted_by_both(session_factory, settings, project_id)
    late, request = loaded(session_factory, request_id, "checker2")
    _ = [(e.file_sha256, list(e.decisions)) for e in request.exceptions]
    refused_after(late, lambda: act(session_factory, request_id, "checker1", service.decide, "approve", ""),
                  lambda: service.decide_exception(late, f.user(late, "checker2"), request, request.files[0],
                                                   "refuse", "Not public.", settings))
    assert get(session_factory, request_id).state == OutputState.APPROVED


def test_an_exception_reworded_while_a_checker_accepts_it_is_refused(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The researcher rewords an exception they read as unanswered while a checker accepts it: the rewording must see
    the answer (under the request's row lock) and be refused, not leave an acceptance standing on a justification
    the checker never read."""
    from tests.integration.test_output_checking import JUSTIFICATION, failing_request, on_file

    request_id = failing_request(session_factory, settings, project_id)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    late, request = loaded(session_factory, request_id, "researcher")
    _ = [(e.justification, list(e.decisions)) for e in request.exceptions]  # read as not yet answered
    refused_after(late, lambda: on_file(session_factory, request_id, "checker1", service.decide_exception, "accept",
                                        "The ONS table is published.", settings),
                  lambda: service.request_exception(late, f.user(late, "researcher"), request, request.files[0],
                                                    "Anything at all: the cell of 3 is fine, trust me.", settings),
                  "already been answered")
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert [e.justification for e in request.exceptions] == [JUSTIFICATION]


def test_a_file_changed_in_a_stale_tab_after_resubmission_is_refused(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """Two tabs of the researcher on a returned request: one resubmits, the other (read while it was returned) then
    removes a file. What is under review must stay what was submitted, so the change is refused."""
    request_id = submitted(session_factory, settings, project_id)
    act(session_factory, request_id, "checker1", service.return_early, "Please add a note on the method.")
    late, request = loaded(session_factory, request_id, "researcher")
    refused_after(late, lambda: act(session_factory, request_id, "researcher", service.submit, settings),
                  lambda: service.remove_file(late, f.user(late, "researcher"), request, request.files[0]),
                  "pending or returned")
    request = get(session_factory, request_id)
    assert request.state == OutputState.SUBMITTED and len(request.files) == 1


def test_a_decision_read_in_round_1_is_refused_once_round_2_is_reviewed(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The checker's session read the request in round 1, awaiting a decision; before it writes, the request is
    returned, resubmitted and reviewed again (awaiting a decision once more). The round the decision is checked
    against is read afresh under the request's lock, not the round 1 the session still holds."""
    request_id = submitted(session_factory, settings, project_id)
    review_all(session_factory, request_id, "checker1", "changes_requested")
    review_all(session_factory, request_id, "checker2", "changes_requested")
    late, request = loaded(session_factory, request_id, "checker1")

    def round_2_reviewed() -> None:
        act(session_factory, request_id, "checker2", service.decide, "return", "Describe the population.")
        act(session_factory, request_id, "researcher", service.submit, settings)
        work(session_factory, settings)
        review_all(session_factory, request_id, "checker1", "approve")
        review_all(session_factory, request_id, "checker2", "approve")

    refused_after(late, round_2_reviewed,
                  lambda: service.decide(late, f.user(late, "checker1"), request, "reject", "Still undescribed.", 1),
                  "resubmitted since you opened it")
    request = get(session_factory, request_id)
    assert (request.round, request.state) == (2, OutputState.REVIEWED)

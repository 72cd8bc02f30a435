"""Deployments from before the id-based hub names: homes move once, shared old names are left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from gateway.identity import accounts
from gateway.workspaces.models import WorkspaceSession
from gateway.workspaces.service import (
    hub_username,
    legacy_hub_username,
    legacy_name_is_shared,
    session_hub_user,
)
from gateway.workspaces.spec import WorkspaceSpec, adopt_legacy_home, spec_from_user_options, tier_named

PASSWORD = "a long enough password 1"


def _account(session: Session, username: str):
    user = accounts.create_local_user(session, "test", username=username, display_name=username, password=PASSWORD)
    session.flush()
    return user


def test_an_old_home_moves_to_the_id_name_once(session: Session, tmp_path: Path) -> None:
    alice = _account(session, "alice")
    old = tmp_path / "p1" / "alice"
    (old / "outputs").mkdir(parents=True)
    (old / "analysis.ipynb").write_text("{}")
    assert not legacy_name_is_shared(session, alice)
    assert adopt_legacy_home(tmp_path, legacy_hub_username(alice), hub_username(alice), "p1", shared=False)
    new = tmp_path / "p1" / hub_username(alice)
    assert (new / "analysis.ipynb").read_text() == "{}" and not old.exists()
    assert not adopt_legacy_home(tmp_path, "alice", hub_username(alice), "p1", shared=False)  # nothing left to move


def test_a_home_two_accounts_shared_stays_for_the_operator(session: Session, tmp_path: Path) -> None:
    bob = _account(session, "bob_")
    squatter = _account(session, f"user-{bob.id}")
    assert legacy_hub_username(bob) == legacy_hub_username(squatter)
    assert legacy_name_is_shared(session, bob) and legacy_name_is_shared(session, squatter)
    old = tmp_path / "p1" / legacy_hub_username(bob)
    old.mkdir(parents=True)
    for account in (bob, squatter):
        assert not adopt_legacy_home(tmp_path, legacy_hub_username(account), hub_username(account), "p1",
                                     shared=legacy_name_is_shared(session, account))
    assert old.is_dir()
    assert not (tmp_path / "p1" / hub_username(bob)).exists()
    assert not (tmp_path / "p1" / hub_username(squatter)).exists()


def test_a_symlinked_old_home_is_not_followed(session: Session, tmp_path: Path) -> None:
    carol = _account(session, "carol")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "carol").symlink_to(tmp_path / "elsewhere")
    assert not adopt_legacy_home(tmp_path, "carol", hub_username(carol), "p1", shared=False)


def test_sessions_opened_under_the_old_name_are_stopped_under_it(session: Session) -> None:
    dave = _account(session, "dave")
    old = WorkspaceSession(project_id=1, user_id=dave.id, server_name="p1", tier="small", hub_user="dave")
    old.user = dave
    new = WorkspaceSession(project_id=1, user_id=dave.id, server_name="p1", tier="small", hub_user=None)
    new.user = dave
    assert session_hub_user(old) == "dave"
    assert session_hub_user(new) == f"_u{dave.id}"


def test_an_account_named_like_a_new_hub_name_keeps_its_old_home_apart(session: Session, tmp_path: Path) -> None:
    """Before 0014 an account called "u7" had hub user, uid and homes under "u7": account id 7 must not inherit
    them. New names start with '_', which no old name could."""
    squatter = _account(session, "u-placeholder")
    seven_name = f"u{squatter.id + 1}"
    victim_home = tmp_path / "p1" / seven_name
    victim_home.mkdir(parents=True)
    (victim_home / "secret.ipynb").write_text("{}")
    named = _account(session, seven_name)  # an account whose chosen name is another's id-like name
    other = _account(session, "someone")
    for account in (named, other):
        assert hub_username(account) != seven_name
        assert (tmp_path / "p1" / hub_username(account)) != victim_home


def test_the_gateway_names_the_old_home_and_the_spawner_options_carry_it() -> None:
    """The move happens in the spawner (root, on the host): the gateway only names the old hub name."""
    spec = WorkspaceSpec(project_id="p1", extract="/x", tier=tier_named("small"), legacy_home="alice")
    assert spec_from_user_options(spec.to_user_options(), "p1").legacy_home == "alice"
    for hostile in ("../alice", "_u7", "a/b", ""):
        try:
            spec_from_user_options({**spec.to_user_options(), "legacy_home": hostile}, "p1")
        except ValueError:
            continue
        raise AssertionError(f"accepted legacy_home {hostile!r}")

"""Hub names come from the gateway's user id alone, so no account can choose its way into another's workspace.

Finding 2 of issue 13: a name the hub refused (ending in '_', '.' or '-') was mapped to `user-<id>`, which another
account could hold as its own username, and both accounts then shared one hub user, server, uid and home.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.models import User
from gateway.workspaces.service import hub_username, legacy_hub_username
from gateway.workspaces.spec import LEGACY_USERNAME_RE, USERNAME_RE, workspace_home

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from sandbox_spawner import UidMap

HOSTILE = ["user-13", "bob_", "bob.", "bob-", "u13", "u1", "U13", "u013", "user-1", "user-01", "a" * 64,
           "café", "\uff5513", "u13\n", "u 13", "..", "root", "user_13", "USER-13"]


def test_an_account_named_like_another_accounts_stand_in_gets_its_own_hub_user() -> None:
    """The reproduction: id 13 named 'bob_' and an account named 'user-13' used to share 'user-13'."""
    bob = User(id=13, username="bob_")
    squatter = User(id=40, username="user-13")
    assert legacy_hub_username(bob) == legacy_hub_username(squatter) == "user-13"  # what main did
    assert hub_username(bob) != hub_username(squatter)


def test_hub_names_are_u_and_the_id() -> None:
    assert hub_username(User(id=13, username="alice")) == "_u13"
    assert hub_username(User(id=13, username="someone-else")) == "_u13"


def test_no_new_name_can_be_an_old_one() -> None:
    """Homes, uids and servers made before 0014 are keyed by old names: a new name never equals one."""
    assert legacy_hub_username(User(id=12, username="u7")) == "u7"
    assert hub_username(User(id=7, username="x7")) == "_u7" != "u7"
    for uid in (1, 7, 13, 10**9):
        assert not LEGACY_USERNAME_RE.match(hub_username(User(id=uid, username="a1")))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=70)), min_size=2, max_size=12,
                unique=True),
       st.lists(st.integers(min_value=1, max_value=10**9), min_size=12, max_size=12, unique=True))
def test_no_two_accounts_share_a_hub_user_server_uid_or_home(tmp_path_factory, names: list[str],
                                                              ids: list[int]) -> None:
    accounts = [User(id=i, username=n) for i, n in zip(ids, names, strict=False)]
    hub_names = [hub_username(a) for a in accounts]
    assert all(USERNAME_RE.match(n) for n in hub_names)
    legacy = {legacy_hub_username(a) for a in accounts}
    assert not legacy & set(hub_names)  # nobody's new name is anybody's old one
    assert len(set(hub_names)) == len(accounts)
    # The server is /user/<hub name>/<project>: distinct hub names give distinct servers.
    assert len({f"/user/{n}/p1" for n in hub_names}) == len(accounts)
    uids = UidMap(tmp_path_factory.mktemp("uids") / "uids.json", base=20000, count=100)
    assert len({uids.uid_for(n) for n in hub_names}) == len(accounts)
    assert len({workspace_home("/srv/homes", n, "p1") for n in hub_names}) == len(accounts)

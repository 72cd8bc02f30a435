"""API token scopes and read-only tokens: a token can do less than its owner, never more."""

from __future__ import annotations

import re
import tempfile

from alembic import command
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.cli import main
from gateway.db import make_engine, unit_of_work
from gateway.identity import accounts, tokens
from gateway.migrate import alembic_config, upgrade
from gateway.models import ApiToken, AuditEvent
from projects.models import Application
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support import factories as f


def _token(factory: sessionmaker[Session], username: str, scopes: list[str] | None = None,
           read_only: bool = False) -> str:
    with unit_of_work(factory) as s:
        owner = accounts.find_user(s, username)
        assert owner is not None
        _, plain = tokens.create_token(s, "test", owner, "scoped", 30, scopes, read_only)
    return plain


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    """Applications, audit events that record a change (a refused request is recorded as access.refused: not a
    change), and tokens."""
    with factory() as s:
        return (s.scalar(select(func.count()).select_from(Application)) or 0,
                s.scalar(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action != "access.refused")) or 0,
                s.scalar(select(func.count()).select_from(ApiToken)) or 0)


def test_a_token_without_scopes_given_carries_exactly_what_the_owner_holds(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    listed = client.get("/api/v1/tokens", headers=auth(_token(session_factory, "researcher"))).json
    assert listed[0]["scopes"] == sorted(["use_account", "view_projects", "record_accreditation", "apply",
                                          "request_outputs", "request_packages"])
    assert listed[0]["read_only"] is False


def test_a_scoped_token_reads_but_cannot_use_a_scope_it_lacks(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    plain = _token(session_factory, "researcher", ["view_projects"])
    assert client.get("/api/v1/applications", headers=auth(plain)).status_code == 200
    me = client.get("/api/v1/me", headers=auth(plain))
    assert me.status_code == 403 and me.json["error"] == "insufficient_scope"  # /me needs use_account
    before = _counts(session_factory)
    refused = client.post("/api/v1/applications", json={"title": "Not with this token"}, headers=auth(plain))
    assert refused.status_code == 403
    assert refused.json == {"error": "insufficient_scope", "detail": "This token does not have the 'apply' scope."}
    assert _counts(session_factory) == before
    # the same person (accredited, as applying needs) with a token that carries the scope can
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    full = _token(session_factory, "researcher", ["apply", "view_projects"])
    assert client.post("/api/v1/applications", json={"title": "With this one"}, headers=auth(full)).status_code == 201


def test_the_scopes_narrow_the_per_object_rules_too(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """/me reports the narrowed permissions; the services' own checks see the same narrowed set."""
    plain = _token(session_factory, "admin", ["use_account", "view_projects"])
    me = client.get("/api/v1/me", headers=auth(plain)).json
    assert me["permissions"] == ["use_account", "view_projects"]
    assert "admin" in me["roles"]
    assert client.get("/api/v1/users", headers=auth(plain)).status_code == 403


def test_a_read_only_token_may_only_read(client: FlaskClient, session_factory: sessionmaker[Session],
                                         demo_users: dict[str, int]) -> None:
    plain = _token(session_factory, "researcher", read_only=True)
    assert client.get("/api/v1/applications", headers=auth(plain)).status_code == 200
    before = _counts(session_factory)
    for response in (client.post("/api/v1/applications", json={"title": "No"}, headers=auth(plain)),
                     client.post("/api/v1/tokens", json={"name": "wider"}, headers=auth(plain))):
        assert response.status_code == 403
        assert response.json["error"] == "read_only_token"
    token_id = client.get("/api/v1/tokens", headers=auth(plain)).json[0]["id"]
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=auth(plain)).status_code == 403
    assert _counts(session_factory) == before


def test_nobody_grants_a_scope_they_do_not_hold(client: FlaskClient, session_factory: sessionmaker[Session],
                                                demo_users: dict[str, int]) -> None:
    plain = _token(session_factory, "researcher")
    before = _counts(session_factory)
    wider = client.post("/api/v1/tokens", json={"name": "x", "scopes": ["manage_users"]}, headers=auth(plain))
    assert wider.status_code == 422
    assert "manage_users" in wider.json["detail"]["fields"]["scopes"][0]
    unknown = client.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]}, headers=auth(plain))
    assert unknown.status_code == 422
    empty = client.post("/api/v1/tokens", json={"name": "x", "scopes": []}, headers=auth(plain))
    assert empty.status_code == 422 and empty.json["detail"]["fields"]["scopes"] == ["Choose at least one scope."]
    assert _counts(session_factory) == before


def test_a_token_cannot_mint_a_wider_token(client: FlaskClient, session_factory: sessionmaker[Session],
                                           demo_users: dict[str, int]) -> None:
    narrow = _token(session_factory, "researcher", ["use_account"])
    made = client.post("/api/v1/tokens", json={"name": "child"}, headers=auth(narrow))
    assert made.status_code == 201 and made.json["scopes"] == ["use_account"]
    wider = client.post("/api/v1/tokens", json={"name": "child", "scopes": ["use_account", "apply"]},
                        headers=auth(narrow))
    assert wider.status_code == 422
    assert client.get("/api/v1/applications", headers=auth(made.json["token"])).status_code == 403


def test_losing_a_role_takes_the_scope_away_from_existing_tokens(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    plain = _token(session_factory, "auditor", ["use_account", "view_audit_log"])
    assert client.get("/api/v1/audit/events", headers=auth(plain)).status_code == 200
    with unit_of_work(session_factory) as s:
        admin, auditor = accounts.find_user(s, "admin"), accounts.find_user(s, "auditor")
        assert admin is not None and auditor is not None
        accounts.set_roles(s, admin, auditor, ["researcher"], "Moved to research.")
    refused = client.get("/api/v1/audit/events", headers=auth(plain))
    assert refused.status_code == 403 and refused.json["error"] == "forbidden"


def test_the_account_page_creates_a_scoped_token_and_keeps_input_on_error(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "researcher")
    page = client.get("/account/").get_data(as_text=True)
    offered = set(re.findall(r'name="scopes" type="checkbox" value="([a-z_]+)" checked', page))
    assert offered == {"use_account", "view_projects", "record_accreditation", "apply", "request_outputs",
                       "request_packages"}
    before = _counts(session_factory)
    none_ticked = client.post("/account/tokens", data={"csrf_token": csrf_from(page), "name": "nightly", "days": "30"})
    assert none_ticked.status_code == 422
    html = none_ticked.get_data(as_text=True)
    assert "Choose at least one scope." in html and 'value="nightly"' in html
    assert _counts(session_factory) == before
    created = client.post("/account/tokens", data={"csrf_token": csrf_from(page), "name": "nightly", "days": "30",
                                                   "scopes": ["view_projects", "request_outputs"], "read_only": "y"})
    assert created.status_code == 200
    plain = re.search(r'data-testid="new-token">(sde_[^<]+)<', created.get_data(as_text=True))
    assert plain is not None
    listed = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {plain.group(1)}"})
    assert listed.status_code == 403  # no use_account scope
    with session_factory() as s:
        token = s.scalars(select(ApiToken).where(ApiToken.name == "nightly")).one()
        assert token.scopes == ["request_outputs", "view_projects"] and token.read_only
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "token.created")
                          .order_by(AuditEvent.seq.desc())).first()
        assert event is not None and event.details["scopes"] == ["request_outputs", "view_projects"]
    # a scope the person does not hold, forged into the form, is refused
    forged = client.post("/account/tokens", data={"csrf_token": csrf_from(page), "name": "forged", "days": "30",
                                                  "scopes": ["manage_users"]})
    assert forged.status_code == 422


def test_sde_token_create_list_and_revoke(database_url: str, demo_users: dict[str, int]) -> None:
    env = {"SDE_DATABASE_URL": database_url, "SDE_INSTANCE_DIR": tempfile.mkdtemp(prefix="sde-cli-")}
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "finance", "--name", "reports", "--scope", "manage_charges",
                                "--scope", "view_projects", "--read-only"], env=env)
    assert made.exit_code == 0, made.output
    assert made.output.startswith("sde_")
    refused = runner.invoke(main, ["token", "create", "finance", "--scope", "manage_users"], env=env)
    assert refused.exit_code != 0 and "manage_users" in refused.output
    listed = runner.invoke(main, ["token", "list", "finance"], env=env)
    assert listed.exit_code == 0
    assert "reports" in listed.output and "read only; manage_charges, view_projects" in listed.output
    token_id = listed.output.split("\t")[0]
    not_allowed = runner.invoke(main, ["token", "revoke", token_id, "--by", "researcher"], env=env)
    assert not_allowed.exit_code != 0
    revoked = runner.invoke(main, ["token", "revoke", token_id, "--by", "admin"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in runner.invoke(main, ["token", "list", "finance"], env=env).output


def test_migration_0007_keeps_existing_tokens_working(scratch_url: str) -> None:
    """Tokens made before scopes existed get every scope, so their owners' scripts keep the same access."""
    upgrade(scratch_url)
    command.downgrade(alembic_config(scratch_url), "0006")
    engine = make_engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, display_name, source, password_hash, is_active, is_demo, "
                          "failed_logins, session_version, created_at) VALUES ('old', 'Old', 'local', 'x', "
                          "true, false, 0, 1, CURRENT_TIMESTAMP)"))
        uid = conn.scalar(text("SELECT id FROM users WHERE username = 'old'"))
        conn.execute(text("INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at) "
                          "VALUES (:uid, 'old', 'sde_old', :h, CURRENT_TIMESTAMP)"), {"uid": uid, "h": "0" * 64})
    engine.dispose()
    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    with Session(engine) as s:
        token = s.scalars(select(ApiToken).where(ApiToken.prefix == "sde_old")).one()
        assert "manage_users" in token.scopes and "use_account" in token.scopes and token.read_only is False
    engine.dispose()


def test_a_refusal_by_role_is_forbidden_not_a_scope_problem(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    refused = client.get("/api/v1/users", headers=auth(_token(session_factory, "researcher")))
    assert refused.status_code == 403 and refused.json["error"] == "forbidden"


def test_sde_token_revoke_records_who_ran_it_not_only_the_name_given(database_url: str,
                                                                   session_factory: sessionmaker[Session],
                                                                   demo_users: dict[str, int]) -> None:
    """Attack: anyone who can run ``sde`` on the server wrote the revocation into the audit log as an administrator's
    own act (``--by admin``: actor id and name the admin's, no trace of the command's account). The event's actor is
    now the account that ran the command (as every other command records it); ``--by`` is kept as whose authority
    it claims."""
    from gateway.identity.operator import cli_actor

    env = {"SDE_DATABASE_URL": database_url, "SDE_INSTANCE_DIR": tempfile.mkdtemp(prefix="sde-cli-")}
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "finance", "--name", "reports"], env=env)
    assert made.exit_code == 0, made.output
    listed = runner.invoke(main, ["token", "list", "finance"], env=env)
    token_id = listed.output.split("\t")[0]
    revoked = runner.invoke(main, ["token", "revoke", token_id, "--by", "admin"], env=env)
    assert revoked.exit_code == 0, revoked.output
    with session_factory() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoked")).one()
        assert (event.actor_id, event.actor_label) == (None, cli_actor())
        assert event.details["by"] == "admin"
        assert s.get(ApiToken, int(token_id)).revoked_by_id == demo_users["admin"]

"""`sde check`: each check's bad case and good case, against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit, deploy_check
from gateway.cli import main
from gateway.config import ChargingSettings, ExtractSettings, SecuritySettings, Settings, WorkspaceSettings
from gateway.db import unit_of_work
from gateway.deploy_check import CheckContext, Severity
from gateway.host_permissions import secure_instance, sqlite_files
from gateway.models import AuditEvent
from projects import lifecycle
from projects.models import Project
from tests.support import factories as f

GOOD_KEY = secrets.token_urlsafe(48)
NOW = dt.datetime.now(dt.UTC)


def production(settings: Settings, **changes: object) -> Settings:
    """The test settings as a careful operator would set them for production, then `changes`."""
    data = settings.model_dump()
    data.update(env="production", secret_key=GOOD_KEY, database_url="postgresql+psycopg://sde@db.example/sde")
    data["security"] = {**data["security"], "https": True}
    data.update(changes)
    return Settings.model_validate(data)


def ctx(settings: Settings, factory: sessionmaker[Session] | None = None, workers: int = 1) -> CheckContext:
    return CheckContext(settings, factory, workers, NOW)


def codes(findings: list[deploy_check.Finding]) -> dict[str, Severity]:
    return {finding.code: finding.severity for finding in findings}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- settings -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["changeme", "test-secret-key", "x" * 64, "s3cr3t-but-only-26-chars!!",
                                 "abababababababababababababababababababab"])
def test_a_weak_secret_key_is_an_error_in_production(settings: Settings, key: str) -> None:
    found = deploy_check.check_secret_key(ctx(production(settings, secret_key=key)))
    assert codes(found) == {"secret-key-weak": Severity.ERROR}
    assert "SDE_SECRET_KEY" in found[0].fix


def test_a_missing_secret_key_is_an_error_in_production_and_a_long_random_one_passes(settings: Settings) -> None:
    assert codes(deploy_check.check_secret_key(ctx(production(settings, secret_key=None)))) == {
        "secret-key-missing": Severity.ERROR}
    assert deploy_check.check_secret_key(ctx(production(settings))) == []


def test_outside_production_a_weak_key_is_only_a_warning(settings: Settings) -> None:
    assert codes(deploy_check.check_secret_key(ctx(settings))) == {"secret-key-weak": Severity.WARNING}


def test_https_off_is_an_error_in_production(settings: Settings) -> None:
    off = production(settings, security=SecuritySettings(https=False))
    assert codes(deploy_check.check_https(ctx(off))) == {"https-off": Severity.ERROR}
    assert deploy_check.check_https(ctx(production(settings))) == []


def test_production_without_a_public_address_is_a_warning(settings: Settings) -> None:
    from gateway.config import PublicSettings

    found = deploy_check.check_public_address(ctx(production(settings)))
    assert codes(found) == {"base-url-unset": Severity.WARNING} and "only a code" in found[0].message
    addressed = production(settings).model_copy(update={"public": PublicSettings(base_url="https://sde.example.org")})
    assert deploy_check.check_public_address(ctx(addressed)) == []
    assert deploy_check.check_public_address(ctx(settings)) == []  # the demo and tests: links from the request


def test_production_without_a_mail_relay_is_a_warning(settings: Settings) -> None:
    from gateway.config import MailSettings

    found = deploy_check.check_mail(ctx(production(settings)))
    assert codes(found) == {"mail-not-sent": Severity.WARNING} and "nobody receives them" in found[0].message
    relayed = production(settings).model_copy(update={"mail": MailSettings(smtp_host="smtp.nhs.example")})
    assert deploy_check.check_mail(ctx(relayed)) == []
    assert deploy_check.check_mail(ctx(settings)) == []  # the demo and tests read the files

def test_sqlite_is_an_error_in_production(settings: Settings) -> None:
    on_sqlite = production(settings, database_url=f"sqlite:///{settings.instance_dir / 'x.sqlite3'}")
    found = deploy_check.check_database_backend(ctx(on_sqlite))
    assert codes(found) == {"database-sqlite": Severity.ERROR} and "sde db copy" in found[0].fix
    assert deploy_check.check_database_backend(ctx(production(settings))) == []


def test_rate_limits_in_memory_matter_only_with_several_workers(settings: Settings) -> None:
    found = deploy_check.check_rate_limits(ctx(production(settings), workers=4))
    assert codes(found) == {"rate-limits-in-memory": Severity.WARNING} and "4 times" in found[0].message
    assert deploy_check.check_rate_limits(ctx(production(settings), workers=1)) == []
    shared = production(settings, security=SecuritySettings(https=True, rate_limit_storage_uri="redis://cache:6379"))
    assert deploy_check.check_rate_limits(ctx(shared, workers=4)) == []


def test_a_missing_or_broken_tariff_is_an_error(settings: Settings, tmp_path: Path) -> None:
    missing = production(settings, charging=ChargingSettings(tariff_path=tmp_path / "nowhere.yaml"))
    assert codes(deploy_check.check_tariff(ctx(missing))) == {"tariff-missing": Severity.ERROR}
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    broken = production(settings, charging=ChargingSettings(tariff_path=tmp_path / "broken.yaml"))
    assert codes(deploy_check.check_tariff(ctx(broken))) == {"tariff-missing": Severity.ERROR}
    assert deploy_check.check_tariff(ctx(production(settings))) == []


# --- second factor --------------------------------------------------------------------------------------------

def test_second_factor_off_is_an_error_and_a_relaxed_role_a_warning(
        settings: Settings, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    from gateway.identity.accounts import set_totp_required
    from gateway.permissions import Role

    off = production(settings, security=SecuritySettings(https=True, second_factor_by_default=False))
    assert codes(deploy_check.check_second_factor(ctx(off, session_factory))) == {"second-factor-off": Severity.ERROR}
    assert deploy_check.check_second_factor(ctx(production(settings), session_factory)) == []

    with unit_of_work(session_factory) as s:
        everyone_but_finance = {r.value for r in Role} - {"finance"}
        set_totp_required(s, f.user(s, "admin"), everyone_but_finance, default=True,
                          reason="finance staff sign in from a locked room")
    found = deploy_check.check_second_factor(ctx(production(settings), session_factory))
    assert codes(found) == {"second-factor-relaxed-finance": Severity.WARNING}
    assert "locked room" in found[0].message and "admin" in found[0].message


# --- files ----------------------------------------------------------------------------------------------------

def test_instance_files_other_accounts_can_read_are_an_error_until_secured(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"extracts": ExtractSettings()})  # source data in the instance folder
    instance = settings.instance_dir
    (instance / "source").mkdir(parents=True)
    (instance / "source" / "patients.parquet").write_bytes(b"PAR1")
    os.chmod(instance / "source" / "patients.parquet", 0o604)
    (instance / "keys").mkdir(parents=True)
    os.chmod(instance, 0o755)  # noqa: S103 - the unsafe mode under test
    (instance / "keys" / "P-1.key").write_bytes(b"k" * 32)
    os.chmod(instance / "keys" / "P-1.key", 0o644)
    (instance / "secret_key").write_text("x")
    os.chmod(instance / "secret_key", 0o640)  # group is enough to be a problem

    found = deploy_check.check_instance_permissions(ctx(settings))
    assert codes(found) == {"instance-files-open": Severity.ERROR}
    # the instance, keys/ and source/ folders, the key, the secret key, the source file, and a SQLite database
    assert found[0].message.startswith(f"{6 + len([p for p in sqlite_files(settings) if p.exists()])} instance")
    for path in (instance, instance / "keys" / "P-1.key", instance / "secret_key",
                 instance / "source" / "patients.parquet"):
        assert str(path) in found[0].message

    secure_instance(settings)  # what `sde init` and `sde serve` do
    assert deploy_check.check_instance_permissions(ctx(settings)) == []


def test_a_config_file_others_can_read_is_an_error_when_it_holds_a_secret(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "sde.yaml"
    config.write_text("security:\n  https: true\n")
    os.chmod(config, 0o644)
    monkeypatch.setenv("SDE_CONFIG", str(config))
    monkeypatch.setenv("SDE_SECRET_KEY", GOOD_KEY)
    assert codes(deploy_check.check_config_file(ctx(production(settings)))) == {"config-file-open": Severity.WARNING}
    monkeypatch.delenv("SDE_SECRET_KEY")  # now the key in the settings came from the file
    found = deploy_check.check_config_file(ctx(production(settings)))
    assert codes(found) == {"config-file-open": Severity.ERROR} and "secret_key" in found[0].message
    os.chmod(config, 0o600)
    assert deploy_check.check_config_file(ctx(production(settings))) == []


def test_a_symlink_in_the_keys_folder_is_not_followed(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.chmod(outside, 0o755)  # noqa: S103 - a folder outside, open on purpose
    (settings.instance_dir / "keys").mkdir(parents=True)
    (settings.instance_dir / "keys" / "link").symlink_to(outside)
    secure_instance(settings)
    assert deploy_check.check_instance_permissions(ctx(settings)) == []


# --- the database ---------------------------------------------------------------------------------------------

def test_an_empty_or_unreachable_database_is_an_error(settings: Settings, tmp_path: Path) -> None:
    empty = production(settings, database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    found = deploy_check.run_checks(empty, 1, http=_no_hub)
    assert found[0].severity == Severity.ERROR  # errors come first
    assert codes(found)["database-schema"] == Severity.ERROR
    assert "run `sde init`" in next(x for x in found if x.code == "database-schema").fix
    nowhere = production(settings, database_url=f"postgresql+psycopg://sde@127.0.0.1:{free_port()}/sde")
    assert codes(deploy_check.run_checks(nowhere, 1, http=_no_hub))["database-unreachable"] == Severity.ERROR


def test_a_broken_audit_chain_is_an_error(settings: Settings, session_factory: sessionmaker[Session],
                                          database_url: str) -> None:
    with unit_of_work(session_factory) as s:
        for n in range(3):
            audit.record(s, "test", "thing.done", "thing", n)
    assert deploy_check.check_audit_chain(ctx(settings, session_factory)) == []
    engine = create_engine(database_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET actor_label = 'someone else' WHERE seq = 2"))
    engine.dispose()
    found = deploy_check.check_audit_chain(ctx(settings, session_factory))
    assert codes(found) == {"audit-chain-broken": Severity.ERROR} and "event 2" in found[0].message


def test_no_backup_in_the_last_day_is_a_warning_until_sde_backup_runs(
        settings: Settings, session_factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> None:
    found = deploy_check.check_backups(ctx(settings, session_factory))
    assert codes(found) == {"no-recent-backup": Severity.WARNING} and "no backup has been recorded" in found[0].message

    result = CliRunner().invoke(main, ["backup", str(tmp_path / "backup")], env={
        "SDE_DATABASE_URL": database_url, "SDE_INSTANCE_DIR": str(settings.instance_dir)})
    assert result.exit_code == 0, result.output
    assert deploy_check.check_backups(ctx(settings, session_factory)) == []
    later = CheckContext(settings, session_factory, 1, dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=5))
    stale = deploy_check.check_backups(later)
    assert codes(stale) == {"no-recent-backup": Severity.WARNING} and "the last backup was made" in stale[0].message
    with session_factory() as s:  # the backup is in the audit log, by whom and where to
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == deploy_check.BACKUP_ACTION)).one()
        assert event.actor_label.startswith("cli") and event.details["destination"] == str(tmp_path / "backup")


def test_extracts_of_closed_projects_left_on_disk_are_a_warning(
        settings: Settings, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    with session_factory() as s:
        reference = s.get(Project, project_id).reference  # type: ignore[union-attr]
    folder = settings.extracts_root / reference.lower()
    (folder / "v1").mkdir(parents=True)
    assert deploy_check.check_closed_project_extracts(ctx(settings, session_factory)) == []  # active: needed

    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.close(s, f.user(s, "admin"), project, "study finished")
    found = deploy_check.check_closed_project_extracts(ctx(settings, session_factory))
    assert codes(found) == {"closed-project-extracts": Severity.WARNING}
    assert reference in found[0].message and str(folder) in found[0].message

    (folder / "v1").rmdir()
    folder.rmdir()
    assert deploy_check.check_closed_project_extracts(ctx(settings, session_factory)) == []


# --- the hub --------------------------------------------------------------------------------------------------

def _no_hub(*args: object, **kwargs: object) -> object:
    import requests

    raise requests.ConnectionError("no hub in this test")


def _hub_settings(settings: Settings, url: str) -> Settings:
    return production(settings, workspaces=WorkspaceSettings(hub_url=url))


def test_hub_token_missing_weak_or_hub_unreachable(settings: Settings) -> None:
    unreachable = _hub_settings(settings, f"http://127.0.0.1:{free_port()}")
    assert codes(deploy_check.check_hub(ctx(unreachable))) == {"hub-token-missing": Severity.WARNING}
    token_file = unreachable.hub_state_dir / "gateway-token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("changeme\n")
    assert codes(deploy_check.check_hub(ctx(unreachable))) == {"hub-token-weak": Severity.ERROR,
                                                               "hub-unreachable": Severity.WARNING}
    token_file.write_text(secrets.token_hex(32) + "\n")
    assert codes(deploy_check.check_hub(ctx(unreachable))) == {"hub-unreachable": Severity.WARNING}

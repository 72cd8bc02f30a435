"""`sde check`: what is unsafe or broken about this installation, each finding with a severity and the fix.

In the spirit of Django's ``check --deploy``. Every check is a plain function returning a list of findings
(empty when all is well); `run_checks` runs them all against the settings, the database and the hub.
Checks about how the site is deployed (secret key, https, second factor, SQLite, rate limits) are errors
with ``SDE_ENV=production`` and warnings otherwise; a broken audit chain or an unreadable tariff is an
error anywhere. `sde serve` refuses to start in production while there is an error (docs/operators.md).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.host_permissions import sqlite_files

MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 12
# Keys seen in docs, examples, tests and tutorials: whoever has read them could sign sessions.
KNOWN_SECRETS = frozenset({
    "secret", "secret-key", "secret_key", "changeme", "change-me", "change_me", "changethis", "dev", "development",
    "test", "test-secret-key", "browser-test-key", "default", "password", "londonsde", "sde", "notasecret",
    "please-change-me", "your-secret-key", "replace-me", "replace-with-a-long-random-string",
})
BACKUP_MAX_AGE = dt.timedelta(days=1)
BACKUP_ACTION = "instance.backed_up"
HUB_TIMEOUT = 3.0


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


SEVERITY_LABELS = {Severity.ERROR: "ERROR", Severity.WARNING: "WARNING"}


@dataclass(frozen=True)
class Finding:
    code: str  # stable name, e.g. "secret-key-short"
    severity: Severity
    message: str  # what is wrong
    fix: str  # what to do about it

    def describe(self) -> str:
        return f"{SEVERITY_LABELS[self.severity]:<8}{self.code}: {self.message}\n        Fix: {self.fix}"


@dataclass
class CheckContext:
    """What the checks read: the settings, the database (None when unreachable), the worker count of the server
    about to start (or that would start), and the clock."""

    settings: Settings
    factory: sessionmaker[Session] | None
    workers: int
    now: dt.datetime
    http: Callable[..., Any] = requests.get

    @property
    def production(self) -> bool:
        return self.settings.env == "production"

    @property
    def deploy_severity(self) -> Severity:
        return Severity.ERROR if self.production else Severity.WARNING


# --- settings ------------------------------------------------------------------------------------------------

def check_secret_key(ctx: CheckContext) -> list[Finding]:
    key = ctx.settings.secret_key
    if not key:
        if ctx.production:
            return [Finding("secret-key-missing", Severity.ERROR, "no secret key is set (SDE_SECRET_KEY)",
                            "set SDE_SECRET_KEY to a long random string, e.g. the output of "
                            "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`")]
        return []  # outside production one is generated into the instance folder
    problems = []
    if key.strip().lower() in KNOWN_SECRETS:
        problems.append("is a well-known example value")
    if len(key) < MIN_SECRET_LENGTH:
        problems.append(f"is {len(key)} characters long (at least {MIN_SECRET_LENGTH} needed)")
    if len(set(key)) < MIN_SECRET_DISTINCT:
        problems.append(f"uses only {len(set(key))} different characters")
    if not problems:
        return []
    return [Finding("secret-key-weak", ctx.deploy_severity, "the secret key " + " and ".join(problems)
                    + ": whoever guesses it can forge sessions",
                    "set SDE_SECRET_KEY to a long random string (`python3 -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`); everyone will have to sign in again")]


def check_https(ctx: CheckContext) -> list[Finding]:
    if ctx.settings.security.https:
        return []
    return [Finding("https-off", ctx.deploy_severity,
                    "security.https is off: session cookies are not marked Secure and no HSTS header is sent",
                    "serve behind a TLS-terminating reverse proxy and set `security: {https: true}` in the "
                    "SDE_CONFIG file (and security.trusted_proxies to the number of proxies)")]


def check_second_factor(ctx: CheckContext) -> list[Finding]:
    findings = []
    if not ctx.settings.second_factor_by_default:
        findings.append(Finding(
            "second-factor-off", ctx.deploy_severity,
            "a second factor is not required by default (security.second_factor_by_default is false)",
            "remove security.second_factor_by_default from the configuration (it is on in production) or set it "
            "to true"))
    elif ctx.factory is not None:
        from gateway.identity.accounts import relaxations

        with ctx.factory() as session:
            relaxed = relaxations(session, True)
            for policy in relaxed:
                findings.append(Finding(
                    f"second-factor-relaxed-{policy.role}", Severity.WARNING,
                    f"the role {policy.role!r} may sign in without a second factor (relaxed by "
                    f"{policy.changed_by.username if policy.changed_by else 'an administrator'}: {policy.reason})",
                    "if that reason no longer holds, tick the role again on the administrator's Security policy "
                    "page"))
    return findings


def check_public_address(ctx: CheckContext) -> list[Finding]:
    """Production emails and receipts name the service by ``public.base_url`` only (never a request's Host header)."""
    if not ctx.production or ctx.settings.public.base_url:
        return []
    return [Finding("base-url-unset", Severity.WARNING,
                    "public.base_url is not set: the emails sent before someone sets up an authenticator carry only "
                    "a code to type (no link), and receipts and /register.json name whatever address a request "
                    "came to",
                    "set `public: {base_url: https://your.service.address}` in the SDE_CONFIG file")]


def check_mail(ctx: CheckContext) -> list[Finding]:
    """Production needs its emails to arrive: setting up an authenticator waits for one, and decisions are mailed."""
    if not ctx.production or ctx.settings.mail.smtp_host:
        return []
    return [Finding("mail-not-sent", Severity.WARNING,
                    "mail.smtp_host is not set: emails (the link before someone sets up an authenticator, decisions, "
                    "reminders) are only written as files under instance/mail/, and nobody receives them",
                    "set `mail: {smtp_host: ..., smtp_port: 587, smtp_username: ..., smtp_password_file: ...}` in the "
                    "SDE_CONFIG file")]


def check_database_backend(ctx: CheckContext) -> list[Finding]:
    if not ctx.settings.resolved_database_url.startswith("sqlite"):
        return []
    return [Finding("database-sqlite", ctx.deploy_severity,
                    "the database is SQLite (one file, one writer at a time, no point-in-time recovery)",
                    "create a PostgreSQL database, copy the data with `sde db copy --to URL` and set "
                    "SDE_DATABASE_URL (docs/operators.md, 'Use PostgreSQL')")]


def check_rate_limits(ctx: CheckContext) -> list[Finding]:
    storage = ctx.settings.security.rate_limit_storage_uri
    if not storage.startswith("memory://") or ctx.workers <= 1:
        return []
    return [Finding("rate-limits-in-memory", Severity.WARNING,
                    f"rate limits are counted in each process's memory and {ctx.workers} workers will run: "
                    f"a client may get up to {ctx.workers} times each limit (the lock-out after "
                    f"{ctx.settings.security.max_failed_logins} failed passwords is kept in the database and holds)",
                    "set security.rate_limit_storage_uri to a shared store such as redis://HOST:6379, or run "
                    "`sde serve --workers 1`")]


def check_tariff(ctx: CheckContext) -> list[Finding]:
    import yaml
    from pydantic import ValidationError

    from projects.tariff import TariffError, load_tariff

    try:
        load_tariff(ctx.settings.charging.tariff_path)
    except (TariffError, yaml.YAMLError, ValidationError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Finding("tariff-missing", Severity.ERROR, f"the tariff cannot be read: {first_line}",
                        "point charging.tariff_path at a valid tariff file (docs/charging.md), then run "
                        "`sde tariff show`")]
    return []


# --- files ---------------------------------------------------------------------------------------------------

def _open_to_others(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return not stat.S_ISLNK(info.st_mode) and bool(stat.S_IMODE(info.st_mode) & 0o077)


def _walk(folder: Path) -> Iterable[Path]:
    if not folder.is_dir() or folder.is_symlink():
        return
    yield folder
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in (*dirnames, *filenames):
            yield Path(dirpath) / name


def exposed_instance_files(settings: Settings) -> list[Path]:
    """Instance folders and secret files that group or others may open, as `host_permissions.secure_instance`
    leaves none: the folders themselves, the SQLite files, the secret key, the keys and the source data."""
    found: list[Path] = []
    folders = (settings.instance_dir, settings.hub_state_dir, settings.keys_dir, settings.extracts_root,
               settings.homes_root, settings.outputs_dir, settings.certificates_dir)
    found += [f for f in folders if f.is_dir() and _open_to_others(f)]
    found += [p for p in (*sqlite_files(settings), settings.instance_dir / "secret_key") if _open_to_others(p)]
    for tree in (settings.keys_dir, settings.source_dir):
        found += [p for p in _walk(tree) if p not in found and _open_to_others(p)]
    return found


def _config_secrets(settings: Settings) -> list[str]:
    """The settings in the SDE_CONFIG file that are secrets."""
    named = []
    if settings.secret_key and not os.environ.get("SDE_SECRET_KEY"):
        named.append("secret_key")
    if settings.ldap is not None and settings.ldap.bind_password:
        named.append("ldap.bind_password")
    from sqlalchemy.engine import make_url

    if settings.database_url and not os.environ.get("SDE_DATABASE_URL") and make_url(settings.database_url).password:
        named.append("the password in database_url")
    return named


def check_config_file(ctx: CheckContext) -> list[Finding]:
    config = os.environ.get("SDE_CONFIG")
    if not config or not _open_to_others(Path(config)):
        return []
    held = _config_secrets(ctx.settings)
    return [Finding("config-file-open", Severity.ERROR if held else Severity.WARNING,
                    f"the configuration file {config} can be read by other accounts"
                    + (f" and holds secrets ({', '.join(held)})" if held else ""),
                    f"`chmod 600 {config}` (and make the gateway's account its owner)")]


def check_instance_permissions(ctx: CheckContext) -> list[Finding]:
    exposed = exposed_instance_files(ctx.settings)
    if not exposed:
        return []
    shown = ", ".join(str(p) for p in exposed[:10]) + (f" and {len(exposed) - 10} more" if len(exposed) > 10 else "")
    return [Finding("instance-files-open", Severity.ERROR,
                    f"{len(exposed)} instance folders or secret files can be read by other accounts: {shown}",
                    "run `sde init` (it closes the instance folders, keys and source data to other accounts)")]


# --- the database --------------------------------------------------------------------------------------------

def check_schema(ctx: CheckContext) -> list[Finding]:
    from gateway.migrate import current_revision, head_revision

    if ctx.factory is None:
        return [Finding("database-unreachable", Severity.ERROR, "the database cannot be reached",
                        "check SDE_DATABASE_URL and that the database server is running")]
    engine = ctx.factory.kw["bind"]
    current = current_revision(engine)
    head = head_revision(ctx.settings.resolved_database_url)
    if current != head:
        return [Finding("database-schema", Severity.ERROR,
                        "the database has no tables yet" if current is None else
                        f"the database schema is at revision {current}, this release needs {head}",
                        "run `sde init`")]
    return []


def check_audit_chain(ctx: CheckContext) -> list[Finding]:
    from gateway import audit

    with ctx.factory() as session:  # type: ignore[union-attr]
        result = audit.verify(session)
    if result.ok:
        return []
    return [Finding("audit-chain-broken", Severity.ERROR, result.describe(),
                    "stop the gateway and find out who changed the database; restore the last good backup "
                    "(`sde restore`) and keep the damaged copy as evidence (docs/auditors.md)")]


def last_backup(session: Session) -> dt.datetime | None:
    from gateway.models import AuditEvent

    return session.scalar(select(func.max(AuditEvent.occurred_at)).where(AuditEvent.action == BACKUP_ACTION))


def check_backups(ctx: CheckContext) -> list[Finding]:
    with ctx.factory() as session:  # type: ignore[union-attr]
        when = last_backup(session)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when is not None and ctx.now - when <= BACKUP_MAX_AGE:
        return []
    told = "no backup has been recorded" if when is None else f"the last backup was made {when:%Y-%m-%d %H:%M} UTC"
    return [Finding("no-recent-backup", Severity.WARNING, f"{told} (none in the last 24 hours)",
                    "schedule `sde backup DEST` daily (e.g. a systemd timer or cron) and test a restore "
                    "(docs/operators.md, 'Back up and restore')")]


def check_closed_project_extracts(ctx: CheckContext) -> list[Finding]:
    from gateway.workspaces.entitlement import workspace_id
    from projects.models import Project
    from projects.workflow import ProjectState

    with ctx.factory() as session:  # type: ignore[union-attr]
        ended = session.scalars(select(Project).where(
            Project.state.in_([ProjectState.CLOSED, ProjectState.REVOKED])).order_by(Project.reference))
        left = [(p.reference, ctx.settings.extracts_root / workspace_id(p)) for p in ended]
    left = [(ref, folder) for ref, folder in left if folder.exists()]
    if not left:
        return []
    return [Finding("closed-project-extracts", Severity.WARNING,
                    f"extracts of {len(left)} closed or revoked projects are still on disk: "
                    + ", ".join(f"{ref} ({folder})" for ref, folder in left),
                    "once the retention period agreed with the data controller has passed, delete those folders "
                    "(their pseudonym keys were destroyed when the projects closed)")]


# --- the hub -------------------------------------------------------------------------------------------------

def check_hub(ctx: CheckContext) -> list[Finding]:
    settings = ctx.settings
    token_file = settings.hub_state_dir / "gateway-token"
    try:
        token = token_file.read_text().strip()
    except OSError:
        return [Finding("hub-token-missing", Severity.WARNING,
                        f"there is no hub API token at {token_file}: workspaces cannot be opened",
                        "start the hub once with `sde hub` (it creates the token), or turn workspaces off by "
                        "not offering them")]
    findings = []
    if token.lower() in KNOWN_SECRETS or len(token) < MIN_SECRET_LENGTH or len(set(token)) < MIN_SECRET_DISTINCT:
        findings.append(Finding("hub-token-weak", Severity.ERROR,
                                f"the hub API token in {token_file} is short or a well-known value",
                                f"stop the hub, delete {token_file} and start the hub again: it makes a random "
                                "one"))
    url = settings.workspaces.hub_url.rstrip("/") + "/hub/api/user"
    try:
        answer = ctx.http(url, headers={"Authorization": f"token {token}"}, timeout=HUB_TIMEOUT)
    except requests.RequestException as exc:
        findings.append(Finding("hub-unreachable", Severity.WARNING,
                                f"the workspace hub at {settings.workspaces.hub_url} does not answer "
                                f"({type(exc).__name__})", "start it with `sde hub` (as root), or check "
                                "workspaces.hub_url"))
        return findings
    if answer.status_code in (401, 403):
        findings.append(Finding("hub-token-refused", Severity.ERROR,
                                f"the hub at {settings.workspaces.hub_url} refuses the gateway's API token",
                                "the hub and the gateway must share hub_state_dir (workspaces.hub_state_dir); "
                                "restart `sde hub` with the gateway's settings"))
    elif answer.status_code != 200:
        findings.append(Finding("hub-unhealthy", Severity.WARNING,
                                f"the hub at {settings.workspaces.hub_url} answered {answer.status_code}",
                                "read the hub's log (hub.log in the hub state folder)"))
    return findings


def check_demo_accounts(ctx: CheckContext) -> list[Finding]:
    """Demonstration accounts share a published password (and set up a second factor on first use): in a live service
    anyone could sign in as one of them, an administrator or an auditor included. Seeding refuses production, but a
    demonstration database brought into production keeps them."""
    if not ctx.production:
        return []
    from gateway.models import User

    with ctx.factory() as session:  # type: ignore[union-attr]
        names = list(session.scalars(select(User.username).where(User.is_demo.is_(True), User.is_active.is_(True))
                                     .order_by(User.username)))
    if not names:
        return []
    return [Finding("demo-accounts", Severity.ERROR,
                    f"{len(names)} demonstration account{'s' if len(names) != 1 else ''} with the published demo "
                    f"password can sign in: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}",
                    "a live service starts from an empty database (`sde init`), never from the demonstration's; "
                    "otherwise deactivate every demonstration account (Users page)")]


CHECKS: tuple[Callable[[CheckContext], list[Finding]], ...] = (
    check_secret_key, check_https, check_second_factor, check_public_address, check_mail, check_database_backend,
    check_rate_limits, check_tariff, check_instance_permissions, check_config_file, check_hub,
)
DATABASE_CHECKS: tuple[Callable[[CheckContext], list[Finding]], ...] = (
    check_audit_chain, check_backups, check_closed_project_extracts, check_demo_accounts,
)


def run_checks(settings: Settings, workers: int, factory: sessionmaker[Session] | None = None,
               now: dt.datetime | None = None, http: Callable[..., Any] = requests.get) -> list[Finding]:
    """Every check, errors first. Without a factory one is made from the settings (and disposed)."""
    from gateway.db import make_engine, make_session_factory

    engine = None
    if factory is None:
        try:
            engine = make_engine(settings.resolved_database_url)
            with engine.connect():
                pass
            factory = make_session_factory(engine)
        except Exception:  # any failure to connect is the finding
            factory = None
    try:
        ctx = CheckContext(settings, factory, workers, now or dt.datetime.now(dt.UTC), http)
        schema = check_schema(ctx)
        findings = [f for check in CHECKS for f in check(ctx if not schema else _without_db(ctx))]
        findings += schema
        if not schema:
            findings += [f for check in DATABASE_CHECKS for f in check(ctx)]
    finally:
        if engine is not None:
            engine.dispose()
    return sorted(findings, key=lambda f: f.severity != Severity.ERROR)


def _without_db(ctx: CheckContext) -> CheckContext:
    return CheckContext(ctx.settings, None, ctx.workers, ctx.now, ctx.http)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == Severity.ERROR]


def summary(findings: list[Finding]) -> str:
    n_errors = len(errors(findings))
    n_warnings = len(findings) - n_errors
    if not findings:
        return "No problems found."
    return f"{n_errors} error{'s' if n_errors != 1 else ''}, {n_warnings} warning{'s' if n_warnings != 1 else ''}."

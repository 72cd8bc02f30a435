"""The ``sde`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from gateway import audit
from gateway.charging import cli as charging_cli
from gateway.cli_people import accreditation
from gateway.config import REPO_ROOT, Settings, load_settings
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.errors import DomainError
from gateway.host_permissions import private_umask, secure_instance
from gateway.identity.operator import cli_actor as _cli_actor


def _factory():
    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    return settings, make_session_factory(engine)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.group()
def main() -> None:
    """londonsde gateway: administration commands."""
    from gateway import wiring

    wiring.wire()  # a command that decides (demo seeding, say) has the decision's side effects subscribed
    private_umask()  # what any command writes (database, keys, extracts, backups) is the service's alone


@main.command()
def init() -> None:
    """Create the database, or upgrade it to the newest schema."""
    from gateway.migrate import upgrade

    settings = load_settings()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    secure_instance(settings)
    click.echo(f"Database ready at {_display_url(settings.resolved_database_url)}")


def _display_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@main.command()
@click.option("--seed-only", is_flag=True, help="Seed the demo data and exit instead of serving.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo(seed_only: bool, host: str, port: int) -> None:
    """Create the database, seed demo users and data, and serve the gateway."""
    from gateway import demo as demo_data
    from gateway.migrate import upgrade

    settings = load_settings()
    if settings.env == "production":
        _fail("refusing to run the demo: SDE_ENV is 'production'")
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    _, factory = _factory()
    try:
        created, prepared = demo_data.seed_with_history(settings, factory)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(f"Demo data created: {', '.join(created) if created else 'none (already there)'}")
    secure_instance(settings)
    if prepared:
        click.echo("Prepared: " + "; ".join(prepared))
    click.echo(f"Every demo account's password is '{demo_data.DEMO_PASSWORD}'.")
    if seed_only:
        return
    from gateway.workspaces import hub_process

    hub, worker = _start_demo_services(settings)
    click.echo(f"Serving on http://{host}:{port}")
    demo_pid = os.getpid()
    try:
        _serve(host, port)
    finally:  # Ctrl+C, SIGTERM or an error: leave no process, sandbox, firewall table or bridge behind
        if os.getpid() == demo_pid:  # not in a gunicorn worker (a fork of this process) unwinding
            _stop_child(worker)
            if hub is not None:
                click.echo("Stopping the workspace hub and its workspaces...")
                hub_process.stop(settings, hub)


def _start_demo_services(settings: Settings) -> tuple[subprocess.Popen[bytes] | None, subprocess.Popen[bytes]]:
    """The hub (when this machine can run workspaces) and the worker, as children of the demo."""
    from gateway.workspaces import hub_process

    hub = None
    problems = hub_process.missing(settings)
    if problems:
        click.echo("Workspaces are off in this demo: " + "; ".join(problems) + ".", err=True)
    else:
        hub = hub_process.start(settings)
        click.echo(f"Workspace hub starting at {settings.workspaces.hub_url} "
                   f"(log: {settings.hub_state_dir / 'hub.log'})")
    log = (settings.instance_dir / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--interval", "10"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    click.echo(f"Worker running (log: {settings.instance_dir / 'worker.log'})")
    return hub, worker


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


@main.command("hub")
def hub_command() -> None:
    """Run the workspace JupyterHub in the foreground, configured from the gateway's settings."""
    from gateway.workspaces import hub_process

    settings = load_settings()
    problems = hub_process.missing(settings)
    if problems:
        _fail("the hub cannot run here: " + "; ".join(problems))
    hub_process.prepare_folders(settings)
    os.chdir(settings.hub_state_dir)
    os.execvpe(hub_process.hub_command()[0], hub_process.hub_command(), hub_process.hub_environment(settings))  # noqa: S606 - fixed argv, no shell


def _serve(host: str, port: int, workers: int | None = None, threads: int | None = None) -> None:
    from gateway.app import create_app
    from gateway.serve import PortInUse, default_threads, default_workers, serve

    try:
        serve(create_app, host, port, workers=workers or default_workers(), threads=threads or default_threads())
    except PortInUse as exc:
        _fail(str(exc))


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="gunicorn worker processes [default: SDE_WORKERS, else one per CPU, at least 2]")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="threads per worker [default: SDE_THREADS, else 4]")
@click.option("--override-check-errors", "override_reason", default=None, metavar="REASON",
              help="Start in production although `sde check` reports errors (the reason and the errors are "
                   "recorded in the audit log)")
def serve_command(host: str, port: int, workers: int | None, threads: int | None,
                  override_reason: str | None) -> None:
    """Serve the gateway with gunicorn (run `sde init` first; in production, `sde check` must find no errors)."""
    from sqlalchemy.exc import OperationalError

    from gateway import deploy_check
    from gateway.serve import default_workers

    settings, factory = _factory()
    engine = factory.kw["bind"]
    try:
        ready = inspect(engine).has_table("audit_events")
    except OperationalError as exc:
        _fail(f"cannot reach the database {_display_url(settings.resolved_database_url)}: "
              f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}")
        return
    if not ready:
        _fail("the database has no tables yet: run `sde init` first")
    secure_instance(settings)
    findings = deploy_check.run_checks(settings, workers or default_workers(), factory)
    blocking = deploy_check.errors(findings)
    for finding in findings:
        click.echo(finding.describe(), err=True)
    if findings:
        click.echo(f"sde check: {deploy_check.summary(findings)}", err=True)
    if blocking and settings.env == "production":
        reason = (override_reason or "").strip()
        if not reason:
            _fail("refusing to serve in production while `sde check` reports errors (above): fix them, or start "
                  "with --override-check-errors REASON (recorded in the audit log)")
        with unit_of_work(factory) as session:
            audit.record(session, _cli_actor(), "serve.check_errors_overridden", "instance", None,
                         {"reason": reason[:500], "errors": [f.code for f in blocking], "host": host, "port": port})
        click.echo(f"Serving despite {len(blocking)} errors: {reason} (recorded in the audit log)", err=True)
    engine.dispose()
    _serve(host, port, workers, threads)


@main.command("check")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="the gunicorn workers `sde serve` will run [default: as `sde serve`]")
def check_command(workers: int | None) -> None:
    """List what is unsafe or broken for production, each with its fix; exit 1 if there is an error."""
    from gateway import deploy_check
    from gateway.serve import default_workers

    settings = load_settings()
    findings = deploy_check.run_checks(settings, workers or default_workers())
    click.echo(f"Checked the {settings.env} settings, the database at {_display_url(settings.resolved_database_url)}"
               f" and the hub at {settings.workspaces.hub_url}.")
    for finding in findings:
        click.echo(finding.describe())
    click.echo(deploy_check.summary(findings))
    if deploy_check.errors(findings):
        sys.exit(1)


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command("create")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="Full name")
@click.option("--email", default=None)
@click.option("--role", "roles", multiple=True, help="A role to grant (repeat for several)")
@click.option("--password-stdin", is_flag=True,
              help="Read the initial password from the first line of standard input (for scripts)")
@click.option("--password", default=None,
              help="Initial password (visible to other accounts in the process list: prefer the prompt or "
                   "--password-stdin)")
def user_create(username: str, display_name: str, email: str | None, roles: tuple[str, ...],
                password_stdin: bool, password: str | None) -> None:
    """Create a local account. The initial password is asked for twice (or read from standard input with
    --password-stdin); the person must replace it at first sign-in."""
    from gateway.identity.accounts import create_local_user

    if password_stdin and password is not None:
        _fail("give the password either with --password or with --password-stdin, not both")
    if password is None:
        password = _password_typed("Initial password", password_stdin)
    _, factory = _factory()
    try:
        with unit_of_work(factory) as session:
            created = create_local_user(session, _cli_actor(), username=username, display_name=display_name,
                                        password=password, email=email, roles=list(roles))
            click.echo(f"Created {created.username} with roles: {', '.join(sorted(created.roles)) or 'none'}")
            click.echo("They will be asked to choose their own password when they first sign in.")
    except DomainError as exc:
        _fail_with(exc)


def _password_typed(prompt: str, from_stdin: bool) -> str:
    """A password from the first line of standard input (scripts), or typed at the prompt twice, not echoed."""
    if not from_stdin:
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=True))
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        _fail("--password-stdin: standard input held no password")
    return password


def _fail_with(exc: DomainError) -> None:
    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.field_errors.items())
    _fail(f"{exc.message} {details}".strip())


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the temporary password from the first line of standard input (for scripts)")
def user_set_password(username: str, password_stdin: bool) -> None:
    """Set a temporary password on a local account (for someone who forgot theirs, an administrator included). The
    password is asked for twice; the person must replace it at their next sign-in, and their sessions end."""
    from gateway.identity.accounts import find_user, set_temporary_password

    password = _password_typed("Temporary password", password_stdin)
    _, factory = _factory()
    try:
        with unit_of_work(factory) as session:
            target = find_user(session, username)
            if target is None:
                _fail(f"no account is called {username!r}")
            ended = set_temporary_password(session, _cli_actor(), target, password)
            click.echo(f"Temporary password set for {target.username}; sessions ended: {ended}.")
            click.echo("They will be asked to choose their own password when they next sign in.")
    except DomainError as exc:
        _fail_with(exc)


@user.command("enrolment-code")
@click.argument("username")
def user_enrolment_code(username: str) -> None:
    """Issue a one-time code that lets the person set up an authenticator app at their next sign-in: for an account
    with no email address (or whose mail does not arrive). Hand it over by another route (in person, by phone), never
    by email; it works once, for the configured minutes, and older codes and links stop working. Recorded in the
    audit log."""
    from gateway.identity.accounts import find_user
    from gateway.identity.enrolment import issue_operator_code

    settings, factory = _factory()
    try:
        with unit_of_work(factory) as session:
            target = find_user(session, username)
            if target is None:
                _fail(f"no account is called {username!r}")
            code, expires = issue_operator_code(session, _cli_actor(), target, settings.security)
            name = target.username
    except DomainError as exc:
        _fail_with(exc)
    click.echo(f"Set-up code for {name}: {code}")
    click.echo(f"It works once, until {expires:%Y-%m-%d %H:%M} UTC, after the person's password at sign-in (or on "
               "Your account, set up an authenticator app). Give it to them by another route than email.")


@main.group()
def token() -> None:
    """Manage personal API tokens."""


@token.command("create")
@click.argument("username")
@click.option("--name", default="command line", show_default=True)
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 366),
              help="Days until it expires (1-366: every token expires)")
@click.option("--scope", "scopes", multiple=True,
              help="A permission the token may use (repeat for several; default: every one the user holds)")
@click.option("--read-only", is_flag=True, help="The token may only read (GET)")
def token_create(username: str, name: str, days: int, scopes: tuple[str, ...], read_only: bool) -> None:
    """Create a token for USERNAME and print it (it is shown only once)."""
    from gateway.identity.accounts import find_user
    from gateway.identity.tokens import create_token

    _, factory = _factory()
    try:
        with unit_of_work(factory) as session:
            owner = find_user(session, username)
            if owner is None or not owner.is_active:
                _fail(f"no active user {username!r}")
                return
            _, plain = create_token(session, _cli_actor(), owner, name, days, list(scopes) or None, read_only)
    except DomainError as exc:
        _fail_with(exc)
        return
    click.echo(plain)


@token.command("list")
@click.argument("username")
def token_list(username: str) -> None:
    """List USERNAME's tokens (never their secrets)."""
    from gateway.identity.accounts import find_user
    from gateway.identity.tokens import list_tokens

    _, factory = _factory()
    with unit_of_work(factory) as session:
        owner = find_user(session, username)
        if owner is None:
            _fail(f"no user {username!r}")
            return
        for t in list_tokens(session, owner):
            status = "revoked" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d}"
            access = "read only; " if t.read_only else ""
            click.echo(f"{t.id}\t{t.prefix}…\t{t.name}\t{status}\t{access}{', '.join(t.scopes)}")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.option("--by", "by_username", required=True,
              help="Whose authority: the token's owner or an administrator (recorded as the revoker; the audit "
                   "event names the account that ran the command)")
def token_revoke(token_id: int, by_username: str) -> None:
    """Revoke token TOKEN_ID at once (for a leaked token; the owner can also revoke it on their account page)."""
    from gateway.identity.accounts import find_user
    from gateway.identity.tokens import get_token, revoke_token

    _, factory = _factory()
    try:
        with unit_of_work(factory) as session:
            actor = find_user(session, by_username)
            if actor is None or not actor.is_active:
                _fail(f"no active user {by_username!r}")
                return
            token = get_token(session, actor, token_id)
            revoke_token(session, actor, token, operator=_cli_actor())
            click.echo(f"Revoked token {token.id} ({token.prefix}…, {token.name}) of user {token.user.username}")
    except DomainError as exc:
        _fail(exc.message)


@main.command()
@click.option("--once", is_flag=True, help="One pass (deliver due messages, run the daily jobs) and exit.")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between passes.")
def worker(once: bool, interval: float) -> None:
    """Deliver queued side effects (email, workspace stops) and run the daily jobs."""
    from gateway.worker import run_forever, run_once

    settings, factory = _factory()
    if once:
        delivered, failed = run_once(settings, factory)
        click.echo(f"Delivered {delivered} queued messages; daily jobs failed: {', '.join(failed) or 'none'}")
        if failed:
            sys.exit(1)
        return
    run_forever(settings, factory, interval)


@main.command("synth")
@click.option("--patients", default=None, type=int, help="How many synthetic patients (default from settings).")
@click.option("--seed", default=None, type=int, help="Random seed (same seed, same files).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the Parquet tables and catalogue (default: the configured source folder).")
def synth(patients: int | None, seed: int | None, out_dir: Path | None) -> None:
    """Generate the deterministic synthetic London population used as source data."""
    from gateway.extracts.synth import generate

    settings = load_settings()
    target = out_dir or settings.source_dir
    with click.progressbar(length=100, label="Generating") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(int(100 * done / max(total, 1)) - bar.pos)
        result = generate(patients or settings.extracts.demo_patients, seed if seed is not None
                          else settings.extracts.demo_seed, target, progress=progress)
    click.echo(f"Wrote {result.patients} patients and {result.event_rows} event rows to {target}")


@main.group("extract")
def extract_group() -> None:
    """Project extracts."""


@extract_group.command("build")
@click.argument("reference")
def extract_build(reference: str) -> None:
    """Build (or refresh) the extract of the project REFERENCE now, with a progress bar."""
    from sqlalchemy import select

    from gateway.extracts import service
    from projects.models import Project

    settings, factory = _factory()
    with unit_of_work(factory) as session:
        project = session.scalar(select(Project).where(Project.reference == reference.upper()))
        if project is None:
            _fail(f"no project {reference}")
            return
        build_id = service.request_build(session, project, "built from the command line", _cli_actor()).id
    with click.progressbar(length=100, label=f"Building {reference}") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(int(100 * done / max(total, 1)) - bar.pos)
        version = service.run_build(settings, factory, build_id, progress=progress)
    if version is None:
        with factory() as session:
            from gateway.extracts.models import ExtractBuild
            build = session.get(ExtractBuild, build_id)
            _fail(f"the build failed: {build.error if build else 'unknown'}")
        return
    click.echo(f"Version {version.version}: {version.rows} rows, {version.columns} columns, "
               f"{version.opt_outs_removed} opted-out patients removed, status {version.status}")


@main.group("docs")
def docs_group() -> None:
    """Generated parts of the documentation."""


@docs_group.command("diagrams")
@click.option("--check", is_flag=True, help="Exit 1 if docs/workflows.md is out of date instead of writing it.")
def docs_diagrams(check: bool) -> None:
    """Write the state diagrams of docs/workflows.md from the transition tables."""
    from gateway.workflow_docs import workflows_markdown

    path = REPO_ROOT / "docs" / "workflows.md"
    text = workflows_markdown()
    if check:
        if not path.exists() or path.read_text() != text:
            _fail("docs/workflows.md is out of date: run `sde docs diagrams`")
        return
    path.write_text(text)
    click.echo(f"Wrote {path}")


@main.group("audit")
def audit_group() -> None:
    """Inspect the audit log."""


@audit_group.command("verify")
@click.option("--anchors", "anchors_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of anchors, one `SEQ HASH` per line as `sde audit head` printed them (# starts a comment)")
def audit_verify(anchors_file: Path | None) -> None:
    """Check the hash chain, and each anchor given; exit 0 if intact, 1 naming the first bad event."""
    anchors: list[audit.Anchor] = []
    if anchors_file is not None:
        try:
            anchors = audit.parse_anchors(anchors_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            _fail(f"{anchors_file}: {exc}")
    session = _audit_session()
    try:
        result = audit.verify(session, anchors=anchors)
    finally:
        session.close()
    click.echo(result.describe() + (f" against {len(anchors)} anchors" if anchors and result.ok else ""))
    if not result.ok:
        sys.exit(1)


@audit_group.command("head")
def audit_head() -> None:
    """Print the last event's number and hash (`SEQ HASH`): append it to a file kept outside the database (write-once
    storage, another host) on a schedule, and give that file to `sde audit verify --anchors`."""
    session = _audit_session()
    try:
        click.echo(str(audit.current_head(session)))
    except LookupError as exc:
        _fail(str(exc))
    finally:
        session.close()


def _audit_session() -> Session:
    _, factory = _factory()
    if not inspect(factory.kw["bind"]).has_table("audit_events"):
        _fail("the database has no tables yet: run `sde init` first")
    return factory()


@main.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
def backup_command(dest: Path) -> None:
    """Back up the database and instance folders to DEST (a new folder, or a file ending .tar.gz)."""
    from gateway import backup

    try:
        manifest = backup.backup(load_settings(), dest)
    except backup.BackupError as exc:
        _fail(str(exc))
        return
    from gateway import deploy_check

    settings = load_settings()
    _, factory = _factory()
    with unit_of_work(factory) as session:  # `sde check` warns when none is recorded in the last day
        audit.record(session, _cli_actor(), deploy_check.BACKUP_ACTION, "instance", None,
                     {"destination": str(dest.resolve()), "files": len(manifest["files"]),
                      "revision": manifest["alembic_revision"],
                      "database": _display_url(settings.resolved_database_url)})
    factory.kw["bind"].dispose()
    click.echo(f"Backed up {len(manifest['files'])} files (revision {manifest['alembic_revision']}) to {dest}")


@main.command("restore")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a database and folders that already hold data.")
def restore_command(src: Path, force: bool) -> None:
    """Check the backup SRC against its manifest, restore it, then verify the audit chain."""
    from gateway import backup

    settings = load_settings()
    try:
        result = backup.restore(settings, src, force=force)
    except backup.BackupError as exc:
        _fail(str(exc))
        return
    secure_instance(settings)  # a backup made by an older release may carry open modes
    click.echo(f"Restored {result.files} files and the database (revision {result.revision}).")
    if result.revision != result.head:
        click.echo(f"The schema is at {result.revision}, this release expects {result.head}: run `sde init`.")
    click.echo(result.audit.describe())
    if not result.audit.ok:
        sys.exit(1)


@main.group("db")
def db_group() -> None:
    """Move the gateway's data to another database."""


@db_group.command("copy")
@click.option("--to", "target_url", required=True, metavar="TARGET_URL",
              help="The empty database to fill, e.g. postgresql+psycopg://sde:PASSWORD@HOST:5432/londonsde")
def db_copy_command(target_url: str) -> None:
    """Copy every table of the configured database into the empty database TARGET_URL, then verify the copy.

    Stop the gateway, worker and hub first. The target's tables are created if it has none; a target that
    holds data is refused. A failed copy leaves the target with no data; the configured database is only read.
    """
    from gateway import db_copy

    settings = load_settings()
    try:
        result = db_copy.copy_database(settings.resolved_database_url, target_url, _cli_actor())
    except db_copy.CopyError as exc:
        _fail(str(exc))
        return
    click.echo(f"Copied {result.source} to {result.target} (schema revision {result.revision}"
               f"{'; tables created first' if result.target_was_migrated else ''}).\n")
    width = max(len(name) for name in result.rows)
    click.echo(f"  {'table'.ljust(width)}  {'rows':>9}")
    for name, count in sorted(result.rows.items()):
        click.echo(f"  {name.ljust(width)}  {count:>9,}")
    click.echo(f"  {'total'.ljust(width)}  {sum(result.rows.values()):>9,}\n")
    click.echo(f"Verified on the target: every table holds the source's number of rows; audit chain intact: "
               f"{result.events} events, ending with the source's last event (#{result.head_seq}, "
               f"{result.head_hash[:16]}…).")
    if result.sequences_reset:
        click.echo(f"Reset {result.sequences_reset} id sequences past the copied rows.")
    click.echo(f"Recorded the copy on the target as audit event #{result.copied_event_seq} (database.copied). "
               "The configured database was only read.")
    click.echo(f"Files (extracts, keys, certificates, outputs) stay in the instance folder {settings.instance_dir}: "
               "they do not depend on the database and need no copying.\n")
    click.echo("Next steps:\n"
               "  1. Keep the gateway, worker and hub stopped: what the old database gets now is not copied.\n"
               f"  2. Set database_url to the target for every process: SDE_DATABASE_URL={result.target}\n"
               f"     {'(the password in place of ***) ' if '***' in result.target else ''}"
               "or database_url in the SDE_CONFIG file.\n"
               "  3. Start the gateway, the worker and the hub again.\n"
               f"  4. Run `sde audit verify`: it should report {result.copied_event_seq} events or more.\n"
               "Keep the old database and your backup until you have checked the new one.")


main.add_command(accreditation)


@main.group("receipt")
def receipt_group() -> None:
    """Release receipts: check that a package came from a release this service approved."""


@receipt_group.command("verify")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--package", "package_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The released package (zip) the receipt is for")
@click.option("--public-key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The service's published key (/register/receipt-key); without it the key the receipt carries is "
                   "used and its id printed for you to compare")
def receipt_verify(receipt_file: Path, package_file: Path | None, key_file: Path | None) -> None:
    """Verify a release receipt offline (and the package, with --package). Exit 0 only when everything matches."""
    import json

    from gateway.trust import receipts

    try:
        document = json.loads(receipt_file.read_bytes())
    except ValueError:
        raise click.ClickException("the receipt is not JSON") from None
    trusted = None
    if key_file is not None:
        try:
            trusted = receipts.load_public_key(key_file.read_bytes())
        except ValueError:
            raise click.ClickException("the public key file is not an Ed25519 public key") from None
    problems, body = receipts.verify(document, package_file.read_bytes() if package_file else None, trusted)
    if problems:
        for problem in problems:
            click.echo(f"REFUSED: {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"OK: output {body['outputRequest']} of {body['project']}, released {body['releasedAt']}")
    click.echo(f"package {body['package']} SHA-256 {body['packageSha256']}"
               + (" (the package matches)" if package_file else ""))
    click.echo(f"audit chain at release: event {body['auditChainHead']['seq']}, {body['auditChainHead']['hash']}")
    if trusted is None:
        click.echo(f"signed by key {body['keyId']}: compare it with the key id the London SDE publishes at "
                   "/register/receipt-key on its own site (or pass --public-key)")
main.add_command(charging_cli.tariff_group)
main.add_command(charging_cli.invoices_group)


if __name__ == "__main__":
    main()

"""Fixtures: databases on SQLite and PostgreSQL, the app, demo users, a real slapd, a live browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import ExtractSettings, LdapSettings, SecuritySettings, Settings
from gateway.db import unit_of_work, utcnow
from gateway.models import User
from tests.support import databases
from tests.support.ldap_server import GROUP_ROLES, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PW, LdapServer, start_slapd

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session", autouse=True)
def _wired() -> None:
    """The composition root's subscribers, as create_app, the CLI and the worker set them up: a test that calls the
    services directly, before any app exists in its process (an xdist worker), needs them too."""
    from gateway.wiring import wire

    wire()


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    """`sde` commands set umask 077 for their process; one run in-process (CliRunner) must not leak it on."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> databases.SqliteTemplate:
    return databases.SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[databases.PostgresDatabase | None]:
    server = databases.postgres_server_url()
    if server is None:
        yield None
        return
    with databases.postgres_database(server) as database:
        yield database


@pytest.fixture(params=databases.backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _database_url(backend: str, sqlite_template: databases.SqliteTemplate,
                  postgres_db: databases.PostgresDatabase | None, tmp_path: Path) -> str:
    if backend == "postgresql":
        assert postgres_db is not None
        return postgres_db.reset()
    return sqlite_template.fresh(tmp_path)


@pytest.fixture
def scratch_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own (not migrated), for migration tests."""
    with databases.scratch_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def database_url(backend: str, sqlite_template: databases.SqliteTemplate,
                 postgres_db: databases.PostgresDatabase | None, tmp_path: Path) -> str:
    return _database_url(backend, sqlite_template, postgres_db, tmp_path)


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic population, made once: real extract builds in tests take a fraction of a second."""
    from gateway.extracts.synth import generate

    target = tmp_path_factory.mktemp("source")
    generate(400, 7, target)
    return target


@pytest.fixture
def settings(database_url: str, tmp_path: Path, synthetic_source: Path) -> Settings:
    return Settings(env="test", instance_dir=tmp_path / "instance", database_url=database_url,
                    secret_key="test-secret-key", security=SecuritySettings(max_failed_logins=3),
                    extracts=ExtractSettings(source_dir=synthetic_source))


def _create_app(settings: Settings) -> Flask:
    """CPython 3.11 can raise "AST constructor recursion depth mismatch" when a finalizer lets another thread
    compile while this one builds an AST (python/cpython gh-106905, fixed in later versions); Werkzeug compiles
    every route at app creation. The error is in the interpreter, not in the app: build it once more."""
    try:
        return create_app(settings)
    except SystemError as error:
        if "AST constructor recursion depth mismatch" not in str(error):
            raise
        return create_app(settings)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = _create_app(settings)
    yield application
    application.extensions["sde_engine"].dispose()


@pytest.fixture
def session_factory(app: Flask) -> sessionmaker[Session]:
    return app.extensions["sde_sessionmaker"]


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    s = session_factory()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def demo_users(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """The thirteen demo accounts, created through the real seeding service."""
    from gateway import demo

    with unit_of_work(session_factory) as s:
        demo.seed_users(s, "test")
    s = session_factory()
    try:
        return {u.username: u.id for u in s.query(User).all()}
    finally:
        s.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sign_in_session(client: FlaskClient, session_factory: sessionmaker[Session], username: str,
                    state: str = "signed_in") -> None:
    """Open a server-side session (signed in, or at one sign-in step) and put its key in the client's cookie,
    without the cost of a password hash. The sign-in pages themselves are tested in test_security_signin."""
    from gateway.identity.sessions import SignInState, move, open_session

    with unit_of_work(session_factory) as s:
        user = s.query(User).filter_by(username=username).one()
        enrol = state == SignInState.ENROL  # reached only through the emailed link: the link step, then the move
        ws, key = open_session(s, user, SignInState.VERIFY if enrol else SignInState(state), SecuritySettings(),
                               method="test")
        if enrol:
            key = move(s, ws, SignInState.ENROL, SecuritySettings())
            ws.enrolment_verified_at = utcnow()
        uid = user.id
    with client.session_transaction() as sess:
        sess.clear()
        sess["sid"], sess["uid"] = key, uid


# --- LDAP ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture
def ldap_settings(slapd: LdapServer) -> LdapSettings:
    return LdapSettings(url=slapd.url, bind_dn=SERVICE_DN, bind_password=SERVICE_PW, user_base=PEOPLE,
                        group_base=GROUPS, group_roles=GROUP_ROLES)


# --- browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A desktop-width page; axe checks every gateway page it loads, and the test fails at teardown on a serious
    or critical violation (tests/support/accessibility.py)."""
    from tests.support.accessibility import AxeOnEveryPage

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    axe = AxeOnEveryPage(context)
    pg = context.new_page()
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    try:
        if failed is None or not failed.failed:
            axe.finish(pg)
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_report_header(config: pytest.Config) -> str:
    server = databases.postgres_server_url()
    return f"londonsde databases: sqlite{' + postgresql at ' + server.split('@')[-1] if server else ' only'}"


os.environ.setdefault("SDE_ENV", "test")

PACKAGES_SCANNED: list[str] = []


@pytest.fixture(autouse=True)
def _scan_every_release_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every release package any test publishes is decoded and searched for suppressed or per-cell values."""
    from gateway.outputs import release
    from tests.support.package_scan import scan_package

    original = release.publish

    def publish_and_scan(request: Any, storage_dir: Path, *args: Any, **kwargs: Any) -> Any:
        final, digest = original(request, storage_dir, *args, **kwargs)
        problems = scan_package(final, request)
        PACKAGES_SCANNED.append(final.name)
        assert not problems, f"release package {final.name} leaks: {problems}"
        return final, digest

    monkeypatch.setattr(release, "publish", publish_and_scan)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under `make test` (SDE_STRICT_TESTS=1) a skipped test is a failure: every real component must run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and PACKAGES_SCANNED:
        reporter.write_line(f"release packages decoded and scanned for suppressed values: {len(PACKAGES_SCANNED)}")
    if not os.environ.get("SDE_STRICT_TESTS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reasons = sorted({str(getattr(r, "longrepr", ""))[-200:] for r in skipped})
        if reporter:
            reporter.write_line(f"STRICT: {len(skipped)} tests were skipped; a missing install step? "
                                + " | ".join(reasons), red=True)
        session.exitstatus = 1


POSTGRES_NOT_RUN = ("PostgreSQL: NOT RUN - these tests ran on SQLite only. To run the PostgreSQL half too, set "
                    "SDE_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (a server where "
                    "throwaway databases may be created), or run `make test`.")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say plainly when the PostgreSQL half of the suite was not run (no SDE_TEST_DATABASE_URL)."""
    if databases.postgres_server_url() is None:
        terminalreporter.write_line(POSTGRES_NOT_RUN, yellow=True, bold=True)


# Tests that use the host itself (JupyterHub, sandboxes with their bridges, cgroups and uids, kernels, KubeSpawner's
# event loop, a browser) run one after another in one worker under `make test` (pytest-xdist --dist loadgroup); the
# database tests, each on its own databases, share out over the other workers.
HOST_BOUND_PATHS = ("tests/functional/", "tests/integration/workspaces/", "tests/unit/workspaces/")
HOST_BOUND_FIXTURES = {"browser", "page"}
# Modules whose last test checks what the others did in the same process (a module-level record).
ONE_WORKER_MODULES = ("test_documented_commands.py",)


def is_host_bound(item: pytest.Item) -> bool:
    path = str(item.path).replace("\\", "/")
    return any(part in path for part in HOST_BOUND_PATHS) or bool(
        HOST_BOUND_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop on the main thread while the browser is
    open, which would break later tests that run their own (kernel clients, KubeSpawner). Host-bound tests form
    one xdist group, so they keep that order in one worker and never meet another worker's hubs."""
    items.sort(key=lambda item: "tests/functional/" in str(item.path).replace("\\", "/"))
    for item in items:
        if is_host_bound(item):
            item.add_marker(pytest.mark.xdist_group("host"))
        elif any(name in str(item.path) for name in ONE_WORKER_MODULES):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))

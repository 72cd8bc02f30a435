"""A live gateway (with the test slapd configured) for the browser to talk to."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import ExtractSettings, LdapSettings, SecuritySettings, Settings
from tests.support.browser import LiveServer

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the pictures in the user guides; ordinary runs keep them as artifacts.
SCREENSHOTS = ROOT / ("docs/screenshots" if os.environ.get("SDE_UPDATE_SCREENSHOTS") else "test-artifacts/screenshots")


@pytest.fixture(params=["browser"])
def backend(request: pytest.FixtureRequest) -> str:
    """Browser tests run once, on PostgreSQL when it is configured (as in CI), else SQLite."""
    from tests.support.databases import backends

    return backends()[-1]


@pytest.fixture
def live_settings(database_url: str, tmp_path: Path, ldap_settings: LdapSettings, synthetic_source: Path) -> Settings:
    return Settings(env="test", instance_dir=tmp_path / "instance", database_url=database_url,
                    secret_key="browser-test-key", ldap=ldap_settings,
                    security=SecuritySettings(max_failed_logins=3),
                    extracts=ExtractSettings(source_dir=synthetic_source))


@pytest.fixture
def live_server(live_settings: Settings) -> Iterator[LiveServer]:
    app = create_app(live_settings)
    server = LiveServer(app).start()
    yield server
    server.stop()
    app.extensions["sde_engine"].dispose()


@pytest.fixture
def seeded(live_settings: Settings) -> sessionmaker[Session]:
    """The demo accounts and the default data access agreement, made through the real services."""
    from gateway import demo
    from gateway.db import unit_of_work
    from projects import agreements

    factory = create_app(live_settings).extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        agreements.ensure_default(s, "test")
    return factory


def fill_date(page, legend: str, day: dt.date, parts: tuple[str, ...] = ("day", "month", "year")) -> None:
    """Type a date as a person does: in the Day, Month and Year boxes of the fieldset with this legend."""
    group = page.get_by_role("group", name=legend, exact=True)
    for part in parts:
        group.get_by_label(part.capitalize(), exact=True).fill(str(getattr(day, part)))


def screenshot(page, name: str) -> None:
    """Keep a current picture of the page for the user guides in docs/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def hub() -> Iterator[Any]:
    """A JupyterHub with the sandboxing spawner that forwards hand-overs to the gateway on a port chosen here."""
    from tests.support.browser import free_port

    hub_code = str(ROOT / "infra" / "jupyterhub")
    if hub_code not in sys.path:
        sys.path.insert(0, hub_code)
    from devhub import DevHub

    port = free_port()
    with DevHub(spawner="sandbox", extra_env={"LONDONSDE_HUB_GATEWAY_URL": f"http://127.0.0.1:{port}"}) as running:
        running.gateway_port = port
        yield running


@pytest.fixture
def workspace_settings(live_settings: Settings, hub: Any) -> Settings:
    from gateway.config import WorkspaceSettings

    return live_settings.model_copy(update={"workspaces": WorkspaceSettings(
        hub_url=hub.url, hub_state_dir=hub.state_dir, extracts_root=hub.extracts_root, homes_root=hub.homes_root)})


@pytest.fixture
def gateway(workspace_settings: Settings, hub: Any) -> Iterator[LiveServer]:
    """The live gateway on the port the hub forwards to."""
    app = create_app(workspace_settings)
    server = LiveServer(app, port=hub.gateway_port).start()
    yield server
    server.stop()
    app.extensions["sde_engine"].dispose()

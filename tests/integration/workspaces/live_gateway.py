"""A gateway served on a real port beside a real sandboxing hub, with a ready project: the set-up the workspace tests
that need both (hand-overs, agreement versions) share."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import Settings, WorkspaceSettings
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import workspace_id
from projects.models import Project
from tests.integration.test_outputs import ready_project
from tests.support import factories as f
from tests.support.browser import LiveServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))

from devhub import DevHub


@contextmanager
def gateway_beside_a_sandbox_hub(settings: Settings) -> Iterator[dict[str, Any]]:
    """The hub forwards hand-overs to the gateway's port; the researcher's project is ready (extract built,
    readable by the sandbox). Yields the hub, the gateway's settings and session factory, the project and the
    researcher's ids and hub names."""
    port = free_port()
    with DevHub(spawner="sandbox", extra_env={"LONDONSDE_HUB_GATEWAY_URL": f"http://127.0.0.1:{port}"}) as hub:
        live = settings.model_copy(update={"workspaces": WorkspaceSettings(
            hub_url=hub.url, hub_state_dir=hub.state_dir, extracts_root=hub.extracts_root,
            homes_root=hub.homes_root)})
        app = create_app(live)
        server = LiveServer(app, port=port).start()
        factory: sessionmaker[Session] = app.extensions["sde_sessionmaker"]
        try:
            project_id = ready_project(factory, live)
            for path in (hub.extracts_root, *hub.extracts_root.rglob("*")):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            with factory() as s:
                uid, server_name = f.user(s, "researcher").id, workspace_id(s.get(Project, project_id))
                hub_user = workspaces.hub_username(f.user(s, "researcher"))
            yield {"hub": hub, "settings": live, "factory": factory, "project_id": project_id, "uid": uid,
                   "server_name": server_name, "hub_user": hub_user}
        finally:
            server.stop()
            app.extensions["sde_engine"].dispose()

"""The workspace's side of the output hand-over, for tests that have no real workspace running.

Reads the file with the workspace extension's own safe reader (infra/jupyterhub/singleuser/londonsde_handover.py,
the code a real workspace runs) and gives its bytes to the gateway's one intake primitive,
``service.add_file_bytes``, exactly as the hand-over endpoint does after the hub forwards them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.outputs import service
from gateway.outputs.models import OutputFile, OutputRequest
from tests.support import factories as f

SINGLEUSER = Path(__file__).resolve().parents[2] / "infra" / "jupyterhub" / "singleuser"
if str(SINGLEUSER) not in sys.path:
    sys.path.insert(0, str(SINGLEUSER))

import londonsde_handover  # noqa: E402


def hand_over(factory: sessionmaker[Session], settings: Settings, request_id: int, folder: Path, name: str,
              group_id: int | None = None, kind: str | None = None, author: str = "researcher") -> int:
    """Read ``folder/<name>`` as the workspace would and add it to the request; returns the file's id."""
    clean, data, sidecar = londonsde_handover.read_output(name, folder)
    with unit_of_work(factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        item: OutputFile = service.add_file_bytes(s, f.user(s, author), request, settings, clean, data, sidecar,
                                                  group_id, kind)
        return item.id

"""Imports every model module so the metadata Alembic compares against is complete."""

from __future__ import annotations

import gateway.charging.models
import gateway.extracts.models
import gateway.models
import gateway.outbox
import gateway.outputs.ledger
import gateway.outputs.models
import gateway.trust.models
import gateway.workspaces.models  # noqa: F401
import projects.models  # noqa: F401
from gateway.db import Base

metadata = Base.metadata

"""Imports every model module so the metadata Alembic compares against is complete."""

from __future__ import annotations

import gateway.models
import gateway.outbox
import gateway.workspaces.models  # noqa: F401
import projects.models  # noqa: F401
from gateway.db import Base

metadata = Base.metadata

"""The tariff in force and its stored versions (the tariff's model and file reading are in projects.tariff).

Each version used for a quote is stored (``tariff_versions``) so a frozen quote can always be priced and
explained again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.charging.models import TariffVersion
from gateway.db import utcnow
from projects.tariff import Tariff, TariffError, load_tariff


def tariff_in_force() -> Tariff:
    """The tariff named by the settings: the app's settings inside a request, else the environment's."""
    from flask import current_app, has_app_context

    if has_app_context() and "sde_settings" in current_app.extensions:
        return load_tariff(current_app.extensions["sde_settings"].charging.tariff_path)
    from gateway.config import load_settings

    return load_tariff(load_settings().charging.tariff_path)


def record_version(session: Session, tariff: Tariff) -> TariffVersion:
    """Store this version (once); quotes and invoices refer to it by id."""
    stored = session.get(TariffVersion, tariff.version_id)
    if stored is None:
        stored = TariffVersion(id=tariff.version_id, label=tariff.label, sha256=tariff.sha256,
                               content=tariff.canonical(), first_used_at=utcnow())
        session.add(stored)
        session.flush()
    return stored


# Stored versions already read by this process. A version's id ends with the hash of its content and a stored
# version is never changed, so the same id always means the same tariff: the same for everyone, nothing personal.
_STORED: dict[str, Tariff] = {}


def stored_tariff(session: Session, version_id: str) -> Tariff:
    if (known := _STORED.get(version_id)) is not None:
        return known
    stored = session.get(TariffVersion, version_id)
    if stored is None:
        raise TariffError(f"tariff version {version_id} is not stored")
    tariff = Tariff.model_validate(stored.content)
    if tariff.version_id == version_id and len(_STORED) < 64:  # remembered only when its content matches its id
        _STORED[version_id] = tariff
    return tariff

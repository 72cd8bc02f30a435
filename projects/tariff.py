"""The published tariff: one validated YAML file, versioned by content (the file stays in gateway/charging/).

A tariff's version id is its ``label`` plus the first 12 hex digits of the SHA-256 of its canonical
content, so any change to a price or rule makes a new version by construction. Each version used for
a quote is stored (``tariff_versions``) so a frozen quote can always be priced and explained again.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config import REPO_ROOT

ORG_TYPES = ("nhs", "academic", "charity", "public_sector", "commercial")
DEFAULT_TARIFF = REPO_ROOT / "gateway" / "charging" / "default_tariff.yaml"


class TariffError(ValueError):
    """The tariff file is missing or invalid; the message names the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    new_application: int = Field(ge=0)
    amendment: int = Field(ge=0)
    annual_review: int = Field(ge=0)
    data_provision_per_dataset: int = Field(ge=0)
    project_setup: int = Field(ge=0)
    workspace_seat_per_user_month: int = Field(ge=0)
    output_checks_included_per_seat: int = Field(ge=0, le=10_000)
    output_check: int = Field(ge=0)
    compute_hour: int = Field(ge=0)


class QuoteRules(_Strict):
    default_duration_months: int = Field(ge=1, le=120)
    # The furthest a project's access may end from the day it is approved or extended (older stored versions,
    # which lack it, read as five years).
    max_duration_months: int = Field(default=60, ge=1, le=240)
    no_organisation_type: str

    @model_validator(mode="after")
    def _known(self) -> QuoteRules:
        if self.no_organisation_type not in ORG_TYPES:
            raise ValueError(f"no_organisation_type must be one of {', '.join(ORG_TYPES)}")
        if self.default_duration_months > self.max_duration_months:
            raise ValueError("default_duration_months must not exceed max_duration_months")
        return self


class OrganisationRule(_Strict):
    label: str
    multiplier_basis_points: int = Field(ge=0, le=100_000)
    vat: bool


class Tariff(_Strict):
    label: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    name: str
    effective_from: dt.date
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    vat_basis_points: int = Field(ge=0, le=10_000)
    prices: Prices
    quote_rules: QuoteRules
    organisation_rules: dict[str, OrganisationRule]

    @model_validator(mode="after")
    def _every_type_has_a_rule(self) -> Tariff:
        missing = [t for t in ORG_TYPES if t not in self.organisation_rules]
        unknown = [t for t in self.organisation_rules if t not in ORG_TYPES]
        if missing or unknown:
            raise ValueError(f"organisation_rules must cover exactly {', '.join(ORG_TYPES)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        return self

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def sha256(self) -> str:
        body = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def version_id(self) -> str:
        return f"{self.label}+{self.sha256[:12]}"

    def rule_for(self, org_type: str) -> OrganisationRule:
        return self.organisation_rules[org_type]


def parse_tariff(data: object) -> Tariff:
    if not isinstance(data, dict):
        raise TariffError("the tariff file must be a YAML mapping")
    try:
        return Tariff.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'tariff'}: {e['msg']}" for e in exc.errors())
        raise TariffError(f"invalid tariff: {problems}") from None


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Tariff:
    del mtime  # part of the cache key: an edited file is read again
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TariffError(f"cannot read the tariff file {path}: {exc.strerror}") from None
    return parse_tariff(yaml.safe_load(text))


def load_tariff(path: Path | str = DEFAULT_TARIFF) -> Tariff:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise TariffError(f"the tariff file {p} does not exist") from None
    return _load(str(p), mtime)


# Which tariff is in force is the delivery's business (inside a request, the one its app's settings name): the
# composition root says how to find it (gateway.wiring.wire); until it does, the environment's settings name it.
def _named_by_the_environment() -> Tariff:
    from gateway.config import load_settings

    return load_tariff(load_settings().charging.tariff_path)


_in_force: list[Callable[[], Tariff]] = [_named_by_the_environment]


def find_tariff_in_force_with(source: Callable[[], Tariff]) -> None:
    """Called once by the composition root: ``source()`` returns the tariff in force."""
    _in_force[0] = source


def max_term_months() -> int:
    """The tariff's maximum term: no approval or extension gives access further ahead than this."""
    return _in_force[0]().quote_rules.max_duration_months

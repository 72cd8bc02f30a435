"""What a project is approved to receive: the extract specification.

The application (or for now a YAML/JSON file) states the approved datasets and variables,
the cohort, the date range, whether the national data opt-out applies and how
quasi-identifiers are generalised. Everything not named here stays in the source.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.extracts.pseudonym import MIN_KEY_BYTES
from projects.catalogue import Catalogue, Role, Sensitivity
from projects.extract_terms import (  # noqa: F401 - the application's terms, part of every spec
    LEVELS,
    AreaCodeTreatment,
    Cohort,
    DateOfBirthTreatment,
    EventDateTreatment,
    Generalisation,
    ImdTreatment,
    LsoaTreatment,
    level_of,
)

PROJECT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class SpecError(ValueError):
    """The specification is malformed or asks for something the catalogue does not allow."""


class DateRange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.start > self.end:
            raise ValueError("date_range start is after its end")
        return self


class ExtractSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str = Field(pattern=PROJECT_ID_PATTERN)
    key: SecretBytes
    datasets: dict[str, list[str]] = Field(min_length=1)
    cohort: Cohort = Field(default_factory=Cohort)
    date_range: DateRange
    apply_opt_out: bool = True
    generalisation: Generalisation = Field(default_factory=Generalisation)
    k: int = Field(default=5, ge=2, le=1000)

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretBytes) -> SecretBytes:
        if len(value.get_secret_value()) < MIN_KEY_BYTES:
            raise ValueError(f"the project key must be at least {MIN_KEY_BYTES} bytes")
        return value

    @field_validator("datasets")
    @classmethod
    def _no_repeats(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, variables in value.items():
            if len(set(variables)) != len(variables):
                raise ValueError(f"dataset {name} lists a variable twice")
        return value

    @property
    def secret(self) -> bytes:
        return self.key.get_secret_value()

    def parameters(self) -> dict[str, Any]:
        """The specification as plain JSON data, without the key (safe for manifests and logs)."""
        return self.model_dump(mode="json", exclude={"key"})

    def check_against(self, catalogue: Catalogue) -> None:
        """Raise SpecError listing every way the spec exceeds what the catalogue allows."""
        problems: list[str] = []
        for name, variables in self.datasets.items():
            try:
                dataset = catalogue.dataset(name)
            except KeyError:
                problems.append(f"unknown dataset {name!r}")
                continue
            for var_name in variables:
                if not dataset.has_variable(var_name):
                    problems.append(f"unknown variable {name}.{var_name}")
                    continue
                var = dataset.variable(var_name)
                if var.sensitivity is Sensitivity.DIRECT_IDENTIFIER:
                    problems.append(f"{name}.{var_name} is a direct identifier and is never released")
                elif not var.releasable:
                    problems.append(f"{name}.{var_name} is not releasable")
        population = catalogue.population
        borough = population.by_role(Role.BOROUGH)
        if self.cohort.boroughs is not None:
            if borough is None:
                problems.append("the catalogue has no borough variable to select a cohort by")
            elif borough.values is not None:
                unknown = sorted(set(self.cohort.boroughs) - set(borough.values))
                if unknown:
                    problems.append(f"unknown boroughs {unknown}")
        if self.cohort.conditions and not any(v.role is Role.CONDITION for _, v in catalogue.variables()):
            problems.append("the catalogue has no condition variable to select a cohort by")
        lsoa = population.by_role(Role.LSOA)
        wants_lsoa = lsoa is not None and lsoa.name in self.datasets.get(population.name, [])
        if wants_lsoa and self.generalisation.lsoa is LsoaTreatment.BOROUGH and borough is None:
            problems.append("LSOA cannot be generalised to borough: the catalogue has no borough variable")
        if problems:
            raise SpecError("; ".join(problems))


def _readable(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(spec)'}: {e['msg']}" for e in exc.errors())


def make_spec(data: dict[str, Any], key: bytes) -> ExtractSpec:
    """Validate spec data (as parsed from YAML/JSON or built by the app) together with the key."""
    if "key" in data:
        raise SpecError("the project key is never stored in a spec; pass it separately")
    try:
        return ExtractSpec.model_validate({**data, "key": key})
    except ValidationError as exc:
        raise SpecError(f"invalid extract spec: {_readable(exc)}") from exc


def load_spec(path: Path | str, key: bytes) -> ExtractSpec:
    """Read a spec from a .yaml/.yml or .json file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path} does not hold a mapping")
    return make_spec(data, key)

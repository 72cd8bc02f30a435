"""The data catalogue: which datasets exist, their variables and how sensitive each one is.

The catalogue is the contract between the data custodian and the researcher: a project
application names datasets and variables from it, and the extract pipeline uses the
sensitivity class and role of each variable to decide what may leave the source and how.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class CatalogueError(ValueError):
    """The catalogue file is missing, malformed or inconsistent."""


class Sensitivity(StrEnum):
    DIRECT_IDENTIFIER = "direct_identifier"  # identifies a person on its own; never released
    QUASI_IDENTIFIER = "quasi_identifier"  # identifies in combination; generalised and risk-assessed
    CLINICAL = "clinical"
    DERIVED = "derived"


class VariableType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DATE = "date"
    BOOLEAN = "boolean"


class Role(StrEnum):
    """What the pipeline needs to know about a variable beyond its type (cohort, generalisation)."""

    DATE_OF_BIRTH = "date_of_birth"
    OPT_OUT = "opt_out"
    BOROUGH = "borough"
    LSOA = "lsoa"
    AREA_CODE = "area_code"
    IMD_DECILE = "imd_decile"
    CONDITION = "condition"


_POPULATION_ROLES = {
    Role.DATE_OF_BIRTH,
    Role.OPT_OUT,
    Role.BOROUGH,
    Role.LSOA,
    Role.AREA_CODE,
    Role.IMD_DECILE,
}


class Variable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    type: VariableType
    sensitivity: Sensitivity
    releasable: bool = True
    role: Role | None = None
    values: list[str] | None = None  # the allowed values of a categorical variable

    @model_validator(mode="after")
    def _direct_identifiers_never_released(self) -> Variable:
        if self.sensitivity is Sensitivity.DIRECT_IDENTIFIER:
            if "releasable" in self.model_fields_set and self.releasable:
                raise ValueError(f"{self.name}: a direct identifier can never be releasable")
            object.__setattr__(self, "releasable", False)
        return self


class Dataset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.parquet$")
    patient_key: str
    index_date: str | None = None  # the date the approved date range filters on
    population: bool = False  # the one dataset with a row per patient
    variables: list[Variable] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        names = [v.name for v in self.variables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"dataset {self.name}: duplicate variables {duplicates}")
        by_name = {v.name: v for v in self.variables}
        key = by_name.get(self.patient_key)
        if key is None or key.sensitivity is not Sensitivity.DIRECT_IDENTIFIER:
            raise ValueError(
                f"dataset {self.name}: patient_key {self.patient_key!r} must be a direct_identifier variable"
            )
        if self.index_date is not None:
            index = by_name.get(self.index_date)
            if index is None or index.type is not VariableType.DATE:
                raise ValueError(f"dataset {self.name}: index_date {self.index_date!r} must be a date variable")
        if self.population and self.index_date is not None:
            raise ValueError(f"dataset {self.name}: the population dataset has no index date")
        return self

    def variable(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"dataset {self.name} has no variable {name!r}")

    def has_variable(self, name: str) -> bool:
        return any(v.name == name for v in self.variables)

    def by_role(self, role: Role) -> Variable | None:
        return next((v for v in self.variables if v.role is role), None)


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = 1
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    datasets: list[Dataset] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        names = [d.name for d in self.datasets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate datasets {duplicates}")
        populations = [d.name for d in self.datasets if d.population]
        if len(populations) != 1:
            raise ValueError(f"exactly one dataset must be the population, found {populations}")
        for dataset in self.datasets:
            for var in dataset.variables:
                if var.role in _POPULATION_ROLES and not dataset.population:
                    raise ValueError(f"{dataset.name}.{var.name}: role {var.role} belongs in the population")
        population = self.population
        for role in _POPULATION_ROLES:
            if sum(v.role is role for v in population.variables) > 1:
                raise ValueError(f"role {role} appears more than once in {population.name}")
        for required in (Role.DATE_OF_BIRTH, Role.OPT_OUT):
            if population.by_role(required) is None:
                raise ValueError(f"the population dataset needs a variable with role {required}")
        return self

    @property
    def population(self) -> Dataset:
        return next(d for d in self.datasets if d.population)

    def dataset(self, name: str) -> Dataset:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"the catalogue has no dataset {name!r}")

    def variables(self) -> Iterator[tuple[Dataset, Variable]]:
        for d in self.datasets:
            for v in d.variables:
                yield d, v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False, width=100)


def parse_catalogue(data: object) -> Catalogue:
    """Validate already-parsed YAML/JSON data, turning pydantic's errors into one readable message."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(catalogue)'}: {err['msg']}" for err in exc.errors()
        )
        raise CatalogueError(f"invalid catalogue: {problems}") from exc


def load_catalogue(path: Path | str) -> Catalogue:
    """Load and validate a catalogue YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"cannot read catalogue {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"catalogue {path} is not valid YAML: {exc}") from exc
    return parse_catalogue(data)


# --- the catalogue as the application sees it: loaded once per file version ------------------------------

@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Catalogue:
    del mtime  # part of the cache key: an edited file is read again
    return load_catalogue(path)


def catalogue_at(path: Path) -> Catalogue:
    return _load(str(path), path.stat().st_mtime)


def lookup(catalogue: Catalogue, dataset: str, variable: str) -> tuple[Dataset, Variable] | None:
    for ds in catalogue.datasets:
        if ds.name == dataset:
            for var in ds.variables:
                if var.name == variable:
                    return ds, var
    return None


def needs_justification(variable: Variable) -> bool:
    return variable.sensitivity is Sensitivity.QUASI_IDENTIFIER


def requestable(variable: Variable) -> bool:
    """Direct identifiers are never released; everything else may be asked for."""
    return variable.sensitivity is not Sensitivity.DIRECT_IDENTIFIER and variable.releasable

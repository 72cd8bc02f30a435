"""The data catalogue as the projects part sees it: loaded once from the validated YAML file."""

from __future__ import annotations

import functools
from pathlib import Path

from gateway.extracts.catalogue import Catalogue, Dataset, Sensitivity, Variable, load_catalogue


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

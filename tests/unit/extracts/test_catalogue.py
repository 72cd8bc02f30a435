from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from gateway.extracts import reference
from gateway.extracts.synth import DEFAULT_CATALOGUE
from projects.catalogue import (
    CatalogueError,
    Role,
    Sensitivity,
    VariableType,
    load_catalogue,
    parse_catalogue,
)

ARROW_KINDS = {
    VariableType.STRING: pa.types.is_string,
    VariableType.INTEGER: pa.types.is_integer,
    VariableType.FLOAT: pa.types.is_floating,
    VariableType.DATE: pa.types.is_date,
    VariableType.BOOLEAN: pa.types.is_boolean,
}


def _minimal() -> dict:
    return {
        "name": "test",
        "description": "test catalogue",
        "datasets": [
            {
                "name": "people",
                "title": "People",
                "description": "one row per person",
                "file": "people.parquet",
                "patient_key": "nhs_number",
                "population": True,
                "variables": [
                    {"name": "nhs_number", "description": "id", "type": "string", "sensitivity": "direct_identifier"},
                    {
                        "name": "dob",
                        "description": "born",
                        "type": "date",
                        "sensitivity": "quasi_identifier",
                        "role": "date_of_birth",
                    },
                    {
                        "name": "opt_out",
                        "description": "opted out",
                        "type": "boolean",
                        "sensitivity": "derived",
                        "releasable": False,
                        "role": "opt_out",
                    },
                ],
            }
        ],
    }


def test_the_default_catalogue_loads_and_protects_direct_identifiers() -> None:
    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    assert catalogue.population.name == "patients"
    direct = [(d.name, v.name) for d, v in catalogue.variables() if v.sensitivity is Sensitivity.DIRECT_IDENTIFIER]
    assert direct and all(name == "nhs_number" for _, name in direct)
    assert all(not v.releasable for _, v in catalogue.variables() if v.sensitivity is Sensitivity.DIRECT_IDENTIFIER)
    assert catalogue.population.by_role(Role.OPT_OUT).releasable is False
    borough = catalogue.population.by_role(Role.BOROUGH)
    assert borough.values == list(reference.BOROUGH_NAMES) and len(borough.values) == 33
    assert catalogue.population.variable("ethnicity").values == list(reference.ETHNICITY_NAMES)


def test_the_catalogue_round_trips_through_yaml() -> None:
    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    assert parse_catalogue(yaml.safe_load(catalogue.to_yaml())) == catalogue


def test_generated_data_matches_its_catalogue(small_source: Path) -> None:
    catalogue = load_catalogue(small_source / "catalogue.yaml")
    on_disk = {p.name for p in small_source.glob("*.parquet")}
    assert on_disk == {d.file for d in catalogue.datasets}
    for dataset in catalogue.datasets:
        table = pq.read_table(small_source / dataset.file)
        assert table.column_names == [v.name for v in dataset.variables], dataset.name
        for var in dataset.variables:
            column = table.column(var.name)
            assert ARROW_KINDS[var.type](column.type), f"{dataset.name}.{var.name} is {column.type}"
            if var.values is not None:
                observed = set(pc.unique(column).drop_null().to_pylist())
                assert observed <= set(var.values), f"{dataset.name}.{var.name}: {observed - set(var.values)}"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["datasets"][0]["variables"].append(dict(c["datasets"][0]["variables"][1])), "duplicate"),
        (lambda c: c["datasets"][0]["variables"][0].update(releasable=True), "never be releasable"),
        (lambda c: c["datasets"][0].update(patient_key="dob"), "patient_key"),
        (lambda c: c["datasets"][0].update(population=False), "exactly one dataset"),
        (lambda c: c["datasets"][0]["variables"].pop(2), "role opt_out"),
        (lambda c: c["datasets"][0]["variables"][1].update(sensitivity="secret"), "sensitivity"),
        (lambda c: c["datasets"][0].update(index_date="nhs_number", population=False), "index_date"),
        (lambda c: c["datasets"].append(dict(c["datasets"][0])), "duplicate datasets"),
        (lambda c: c.update(unexpected=1), "unexpected"),
    ],
)
def test_inconsistent_catalogues_are_rejected(mutate, message: str) -> None:
    data = _minimal()
    parse_catalogue(data)  # the unmodified one is valid
    mutate(data)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(data)


def test_unreadable_catalogue_files_raise_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(bad)

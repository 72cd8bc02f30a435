"""Safe data: the synthetic source population, the catalogue and de-identified project extracts.

A pure library (no Flask, no database): the gateway wires it into ``sde`` commands, project
pages and the job queue.
"""

from gateway.extracts.pipeline import Manifest, ReleaseStatus, SourceError, build_extract, count_source_rows
from gateway.extracts.pseudonym import key_fingerprint, new_project_key, pseudonymise
from gateway.extracts.risk import RiskReport, assess
from gateway.extracts.spec import ExtractSpec, SpecError, load_spec, make_spec
from gateway.extracts.storage import (
    BuildInProgress,
    ExtractNotFound,
    current_version,
    list_versions,
    read_manifest,
    set_current,
    verify_version,
)
from gateway.extracts.synth import SynthResult, generate
from projects.catalogue import (
    Catalogue,
    CatalogueError,
    Dataset,
    Sensitivity,
    Variable,
    load_catalogue,
)

__all__ = [
    "BuildInProgress",
    "Catalogue",
    "CatalogueError",
    "Dataset",
    "ExtractNotFound",
    "ExtractSpec",
    "Manifest",
    "ReleaseStatus",
    "RiskReport",
    "Sensitivity",
    "SourceError",
    "SpecError",
    "SynthResult",
    "Variable",
    "assess",
    "build_extract",
    "count_source_rows",
    "current_version",
    "generate",
    "key_fingerprint",
    "list_versions",
    "load_catalogue",
    "load_spec",
    "make_spec",
    "new_project_key",
    "pseudonymise",
    "read_manifest",
    "set_current",
    "verify_version",
]

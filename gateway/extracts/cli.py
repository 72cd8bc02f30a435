"""Click commands for the data core; registered under ``sde`` by the gateway CLI.

They also run stand-alone: ``python -m gateway.extracts.cli synth --out data``.
"""

from __future__ import annotations

import binascii
import string
from pathlib import Path
from typing import Any

import click

from gateway.extracts.pipeline import SourceError, build_extract, count_source_rows
from gateway.extracts.pseudonym import MIN_KEY_BYTES
from gateway.extracts.spec import SpecError, load_spec
from gateway.extracts.storage import BuildInProgress
from gateway.extracts.synth import generate
from projects.catalogue import CatalogueError, load_catalogue


class _Bar:
    """Adapts a (done, total) progress callback to click's incremental progress bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.shown)
        self.shown = done


@click.command("synth")
@click.option("--patients", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same bytes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def synth_command(patients: int, seed: int, out_dir: Path) -> None:
    """Generate the synthetic London population (Parquet tables and catalogue.yaml)."""
    with click.progressbar(length=patients, label="Generating patients") as bar:
        result = generate(patients, seed, out_dir, progress=_Bar(bar))
    for table, rows in result.rows.items():
        click.echo(f"{table:18} {rows:>12,} rows")
    click.echo(f"Written to {result.out_dir}")


def read_key_file(path: Path) -> bytes:
    """A project key from a file holding hex text or raw bytes."""
    raw = path.read_bytes()
    text = raw.strip()
    if text and all(chr(c) in string.hexdigits for c in text):
        try:
            key = binascii.unhexlify(text)
        except binascii.Error as exc:
            raise click.ClickException(f"{path}: odd number of hex digits") from exc
    else:
        key = raw
    if len(key) < MIN_KEY_BYTES:
        raise click.ClickException(f"{path}: a project key has at least {MIN_KEY_BYTES} bytes")
    return key


@click.command("extract-build")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "source_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Directory with the source Parquet tables and catalogue.yaml.",
)
@click.option(
    "--extracts-root",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where versioned extracts are kept (<root>/<project>/v<N>).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help=f"The project key: hex text or at least {MIN_KEY_BYTES} raw bytes.",
)
def extract_build_command(spec_file: Path, source_dir: Path, extracts_root: Path, key_file: Path) -> None:
    """Build the next extract version for the project named in SPEC_FILE (YAML or JSON)."""
    try:
        spec = load_spec(spec_file, read_key_file(key_file))
        catalogue = load_catalogue(source_dir / "catalogue.yaml")
        total = count_source_rows(spec, source_dir, catalogue)
        with click.progressbar(length=total, label=f"Building extract for {spec.project_id}") as bar:
            manifest = build_extract(spec, source_dir, extracts_root, catalogue=catalogue, progress=_Bar(bar))
    except (SpecError, CatalogueError, SourceError, BuildInProgress) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Version v{manifest.version}: {manifest.rows:,} rows in {len(manifest.tables)} tables")
    click.echo(
        f"Cohort: {manifest.cohort.patients_released:,} patients released, "
        f"{manifest.cohort.opt_outs_removed:,} national data opt-outs removed"
    )
    risk = manifest.risk
    click.echo(
        f"Risk: k={risk['k']}, {risk['records_below_k']:,} of {risk['records']:,} records "
        f"({risk['share_below_k']:.1%}) in classes smaller than k"
    )
    if risk["flagged"]:
        drivers = ", ".join(risk["main_drivers"]) or "no single column; coarsen several or widen the cohort"
        click.echo(f"HELD for the data custodian (main drivers: {drivers}); current version unchanged.")
    else:
        click.echo(f"Released: current -> v{manifest.version}")


@click.group("extracts")
def extracts_cli() -> None:
    """Synthetic data and extract builds."""


extracts_cli.add_command(synth_command)
extracts_cli.add_command(extract_build_command)

if __name__ == "__main__":
    extracts_cli()

"""Build a project's de-identified extract from the source tables.

The build is a pure function of the spec, the source directory and the extracts root:

1. select the cohort (boroughs, age, conditions) and remove national data opt-outs;
2. stream every approved dataset in record batches, keeping only cohort patients, the
   approved date range and the approved variables; replace the NHS number by the project
   pseudonym and generalise quasi-identifiers as approved;
3. assess re-identification risk over the released quasi-identifiers;
4. write everything to a hidden staging directory, verify the hashes, make it read-only and
   rename it into place as the next version. ``current`` moves to it unless the risk
   report flags it, in which case it waits for the data custodian.

Memory grows with the batch size and the number of cohort patients, never with the number of
event rows.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from gateway.extracts import storage
from gateway.extracts.pseudonym import MAX_SHIFT_DAYS, PatientLookup, key_fingerprint
from gateway.extracts.risk import RiskReport, assess
from gateway.extracts.spec import (
    AreaCodeTreatment,
    DateOfBirthTreatment,
    EventDateTreatment,
    ExtractSpec,
    ImdTreatment,
    LsoaTreatment,
)
from projects.catalogue import (
    Catalogue,
    Dataset,
    Role,
    Sensitivity,
    Variable,
    VariableType,
    load_catalogue,
)

MANIFEST_FORMAT = 1
PSEUDONYM_COLUMN = "pseudo_id"
RISK_REPORT = "risk_report.json"
DEFAULT_BATCH_ROWS = 131_072
OUTPUT_COMPRESSION = "zstd"
AGE_TOP_CODE = 90

ProgressCallback = Callable[[int, int], None]


class SourceError(RuntimeError):
    """The source data does not match its catalogue."""


class ReleaseStatus(StrEnum):
    RELEASED = "released"  # passed the risk check; ``current`` points at it
    HELD = "held_for_custodian"  # classes below k; published but not current until released


class ColumnEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    source: str | None  # the catalogue variable it comes from
    sensitivity: str
    treatment: str


class TableEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    dataset: str
    file: str
    rows: int
    source_rows: int
    column_count: int
    columns: list[ColumnEntry]
    bytes: int
    sha256: str


class CohortCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    patients_matching: int  # met the cohort criteria, before the opt-out
    opt_outs_removed: int
    patients_released: int


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format_version: int = MANIFEST_FORMAT
    project_id: str
    version: int
    created_at: str
    status: ReleaseStatus
    key_fingerprint: str
    catalogue: str
    parameters: dict[str, Any]
    cohort: CohortCounts
    tables: list[TableEntry]
    rows: int
    columns: int
    risk: dict[str, Any]
    files: dict[str, str]  # file name -> SHA-256, every file of the version except this manifest
    leftovers_removed: list[str] = []

    def table(self, dataset: str) -> TableEntry:
        return next(t for t in self.tables if t.dataset == dataset)


# --------------------------------------------------------------------------------------------
# planning: which source columns are read, which output columns are produced and how


Maker = Callable[[pa.RecordBatch, np.ndarray], pa.Array]


@dataclass(frozen=True)
class _Output:
    name: str
    type: pa.DataType
    source: str | None
    sensitivity: Sensitivity
    treatment: str
    make: Maker


@dataclass(frozen=True)
class _Plan:
    dataset: Dataset
    path: Path
    read: list[str]
    outputs: list[_Output]  # the pseudonym first; it is added when a row group is written
    dictionary_columns: list[str]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(o.name, o.type) for o in self.outputs])

    @property
    def quasi_identifiers(self) -> list[str]:
        return [o.name for o in self.outputs if o.sensitivity is Sensitivity.QUASI_IDENTIFIER]


def _age_on(dob: pa.Array, on: date) -> np.ndarray:
    """Completed years of age on ``on`` (calendar-exact, so birthdays count on the day)."""
    filled = pc.fill_null(dob, pa.scalar(on, pa.date32()))
    y = pc.year(filled).to_numpy()
    m = pc.month(filled).to_numpy()
    d = pc.day(filled).to_numpy()
    before_birthday = (m > on.month) | ((m == on.month) & (d > on.day))
    return on.year - y - before_birthday.astype(np.int64)


_DICTIONARY_STRING = pa.dictionary(pa.int32(), pa.string())


def _postcode_area(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, r"[0-9].*$", "")


def _map_strings(values: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply a string function to plain or dictionary-encoded values (to the dictionary only)."""
    if isinstance(values, pa.DictionaryArray):
        return pa.DictionaryArray.from_arrays(values.indices, fn(values.dictionary))
    return fn(values)


def _logical(typ: pa.DataType) -> pa.DataType:
    """The type a reader sees: dictionary encoding is a storage detail of the Parquet file."""
    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _age_band_labels(width: int) -> list[str]:
    labels = [f"{lo}-{lo + width - 1}" for lo in range(0, AGE_TOP_CODE, width)]
    return [*labels, f"{AGE_TOP_CODE}+"]


def _plan_outputs(
    spec: ExtractSpec, dataset: Dataset, source_schema: pa.Schema, lookup: PatientLookup
) -> tuple[list[str], list[_Output]]:
    """Source columns to read and output columns to produce for one approved dataset."""
    missing = {v.name for v in dataset.variables} - set(source_schema.names)
    if missing:
        raise SourceError(f"{dataset.file} lacks catalogued variables {sorted(missing)}")
    g = spec.generalisation
    approved = set(spec.datasets[dataset.name])
    read = [dataset.patient_key]
    if dataset.index_date:
        read.append(dataset.index_date)
    outputs = [
        _Output(
            PSEUDONYM_COLUMN,
            pa.string() if dataset.population else _DICTIONARY_STRING,  # one row per patient: nothing repeats
            dataset.patient_key,
            Sensitivity.DERIVED,
            "project pseudonym: HMAC-SHA-256 of the NHS number with the project key",
            lambda b, idx: pa.nulls(0),  # never called: built per row group, see _with_pseudonyms
        )
    ]
    emitted = {PSEUDONYM_COLUMN}
    borough_var = dataset.by_role(Role.BOROUGH) if dataset.population else None

    def add(name: str, typ: pa.DataType, var: Variable, treatment: str, make: Maker, *extra: str) -> None:
        if name in emitted:  # e.g. LSOA generalised to borough while borough is also approved
            return
        emitted.add(name)
        for col in (var.name, *extra):
            if col not in read:
                read.append(col)
        outputs.append(_Output(name, typ, var.name, var.sensitivity, treatment, make))

    for var in dataset.variables:
        if var.name not in approved:
            continue
        src = var.name
        if var.role is Role.DATE_OF_BIRTH:
            if g.date_of_birth is DateOfBirthTreatment.YEAR:
                add(
                    "year_of_birth",
                    pa.int16(),
                    var,
                    "year of birth",
                    lambda b, idx, s=src: pc.cast(pc.year(b.column(s)), pa.int16()),
                )
            elif g.date_of_birth is DateOfBirthTreatment.MONTH:
                add(
                    "month_of_birth",
                    pa.date32(),
                    var,
                    "month of birth (first day of the month)",
                    lambda b, idx, s=src: pc.floor_temporal(b.column(s), unit="month"),
                )
            else:
                width = g.age_band_years
                labels = pa.array(_age_band_labels(width))
                ref = spec.date_range.end

                def band(
                    b: pa.RecordBatch,
                    idx: np.ndarray,
                    s: str = src,
                    w: int = width,
                    ref: date = ref,
                    labels: pa.Array = labels,
                ) -> pa.Array:
                    col = b.column(s)
                    lows = np.minimum(np.clip(_age_on(col, ref), 0, AGE_TOP_CODE) // w, len(labels) - 1)
                    indices = pa.array(lows.astype(np.int32), mask=col.is_null().to_numpy(zero_copy_only=False))
                    return pa.DictionaryArray.from_arrays(indices, labels)

                add(
                    "age_band",
                    _DICTIONARY_STRING,
                    var,
                    f"{width}-year age band on {ref.isoformat()}, top-coded at 90",
                    band,
                )
        elif var.role is Role.LSOA and g.lsoa is LsoaTreatment.BOROUGH:
            assert borough_var is not None  # checked by ExtractSpec.check_against
            add(
                "borough",
                source_schema.field(borough_var.name).type,
                borough_var,
                "borough of the LSOA",
                lambda b, idx, s=borough_var.name: b.column(s),
            )
        elif var.role is Role.AREA_CODE and g.area_code is AreaCodeTreatment.POSTCODE_AREA:
            add(
                "postcode_area",
                source_schema.field(src).type,
                var,
                "postcode area (letters of the district)",
                lambda b, idx, s=src: _map_strings(b.column(s), _postcode_area),
            )
        elif var.role is Role.IMD_DECILE and g.imd_decile is ImdTreatment.QUINTILE:
            add(
                "imd_quintile",
                pa.int8(),
                var,
                "IMD quintile (deciles paired)",
                lambda b, idx, s=src: pc.cast(pc.divide(pc.add(pc.cast(b.column(s), pa.int16()), 1), 2), pa.int8()),
            )
        elif var.type is VariableType.DATE:
            if g.event_dates is EventDateTreatment.SHIFT:

                def shifted(b: pa.RecordBatch, idx: np.ndarray, s: str = src) -> pa.Array:
                    days = pc.cast(b.column(s), pa.int32())
                    return pc.cast(pc.add(days, pa.array(lookup.shifts[idx])), pa.date32())

                add(
                    src,
                    pa.date32(),
                    var,
                    f"shifted by a per-patient offset of 1-{MAX_SHIFT_DAYS} days",
                    shifted,
                )
            else:
                add(
                    src,
                    pa.date32(),
                    var,
                    "month (first day of the month)",
                    lambda b, idx, s=src: pc.floor_temporal(b.column(s), unit="month"),
                )
        else:
            source_type = source_schema.field(src).type
            add(
                src,
                source_type,
                var,
                "as recorded",
                lambda b, idx, s=src, t=source_type: pc.cast(b.column(s), t),
            )
    return read, outputs


# --------------------------------------------------------------------------------------------
# cohort selection


def _open_source(source_dir: Path, dataset: Dataset) -> pq.ParquetFile:
    path = source_dir / dataset.file
    if not path.is_file():
        raise SourceError(f"source file {path} for dataset {dataset.name} is missing")
    return pq.ParquetFile(path)


def _string_columns(source: pq.ParquetFile) -> list[str]:
    """Columns to read dictionary-encoded: filtering and writing then move small integers,
    not strings, and the key is looked up once per distinct value."""
    return [f.name for f in source.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def count_source_rows(spec: ExtractSpec, source_dir: Path | str, catalogue: Catalogue | None = None) -> int:
    """Rows the build will read from the approved datasets: the ``total`` its progress reports."""
    source_dir = Path(source_dir)
    catalogue = catalogue or load_catalogue(source_dir / "catalogue.yaml")
    return sum(_open_source(source_dir, d).metadata.num_rows for d in catalogue.datasets if d.name in spec.datasets)


def _batches(
    path: Path, columns: list[str], batch_size: int, dictionary_columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    source = pq.ParquetFile(path, read_dictionary=dictionary_columns)
    return source.iter_batches(batch_size=batch_size, columns=columns)


def _patients_with_conditions(spec: ExtractSpec, catalogue: Catalogue, source_dir: Path, batch_size: int) -> pa.Array:
    wanted = pa.array(spec.cohort.conditions, pa.string())
    end = pa.scalar(spec.date_range.end, pa.date32())
    found: set[str] = set()
    for dataset in catalogue.datasets:
        condition_vars = [v.name for v in dataset.variables if v.role is Role.CONDITION]
        if not condition_vars:
            continue
        columns = [dataset.patient_key, *condition_vars] + ([dataset.index_date] if dataset.index_date else [])
        for batch in _batches(source_dir / dataset.file, columns, batch_size):
            hit = pc.is_in(pc.cast(batch.column(condition_vars[0]), pa.string()), value_set=wanted)
            for name in condition_vars[1:]:
                hit = pc.or_(hit, pc.is_in(pc.cast(batch.column(name), pa.string()), value_set=wanted))
            if dataset.index_date:  # diagnosed by the end of the approved period
                hit = pc.and_(hit, pc.fill_null(pc.less_equal(batch.column(dataset.index_date), end), True))
            found.update(batch.filter(pc.fill_null(hit, False)).column(dataset.patient_key).to_pylist())
    return pa.array(sorted(k for k in found if k is not None), pa.string())


def _require_true_or_false(path: Path, column: str) -> None:
    """Opt-out flags are read only as true or false (or empty, which counts as opted out): a source sending "Y"/"N"
    or 1/0 is refused with its reason, not guessed at."""
    found = pq.read_schema(path).field(column).type
    if not pa.types.is_boolean(found):
        raise SourceError(f"{path.name}: the opt-out column {column} must hold true or false (or be empty), "
                          f"but holds {found}; convert it in the source before building")


def _select_cohort(
    spec: ExtractSpec, catalogue: Catalogue, source_dir: Path, batch_size: int
) -> tuple[pa.Array, CohortCounts]:
    """NHS numbers of the patients to release, and the counts the manifest reports."""
    population = catalogue.population
    dob = population.by_role(Role.DATE_OF_BIRTH)
    opt_out = population.by_role(Role.OPT_OUT)
    borough = population.by_role(Role.BOROUGH)
    assert dob is not None and opt_out is not None  # required by the catalogue
    cohort = spec.cohort
    columns = [population.patient_key, dob.name, opt_out.name]
    if cohort.boroughs is not None and borough is not None:
        columns.append(borough.name)
    if spec.apply_opt_out:
        _require_true_or_false(source_dir / population.file, opt_out.name)
    with_condition = _patients_with_conditions(spec, catalogue, source_dir, batch_size) if cohort.conditions else None
    boroughs = pa.array(cohort.boroughs or [], pa.string())
    kept: list[pa.Array] = []
    opted_keys: list[pa.Array] = []  # patients with a row that opts out (or does not know), in the cohort or not
    matching = removed = 0
    for batch in _batches(source_dir / population.file, columns, batch_size):
        key = batch.column(population.patient_key)
        keep = pc.is_valid(key).to_numpy(zero_copy_only=False)
        if cohort.boroughs is not None and borough is not None:
            in_boroughs = pc.fill_null(pc.is_in(batch.column(borough.name), value_set=boroughs), False)
            keep &= in_boroughs.to_numpy(zero_copy_only=False)
        if cohort.age_min is not None or cohort.age_max is not None:
            dob_col = batch.column(dob.name)
            age = _age_on(dob_col, spec.date_range.end)
            keep &= ~dob_col.is_null().to_numpy(zero_copy_only=False)
            if cohort.age_min is not None:
                keep &= age >= cohort.age_min
            if cohort.age_max is not None:
                keep &= age <= cohort.age_max
        if with_condition is not None:
            keep &= pc.is_in(key, value_set=with_condition).to_numpy(zero_copy_only=False)
        matching += int(keep.sum())
        if spec.apply_opt_out:
            # fail safe: a patient whose opt-out the source does not know (an empty flag) is removed as one
            opted = pc.fill_null(batch.column(opt_out.name), True).to_numpy(zero_copy_only=False)
            removed += int((keep & opted).sum())
            keep &= ~opted
            opted_keys.append(key.filter(pa.array(opted)).cast(pa.string()))
        kept.append(key.filter(pa.array(keep)).cast(pa.string()))
    released = pa.concat_arrays(kept) if kept else pa.array([], pa.string())
    if opted_keys:
        # The opt-out belongs to the patient, not to a row: a patient listed again with an empty or false flag is
        # still removed (a source that lists a patient twice must not release them on the row that forgot).
        also_opted = pc.is_in(released, value_set=pa.concat_arrays(opted_keys)).to_numpy(zero_copy_only=False)
        removed += int(also_opted.sum())
        released = released.filter(pa.array(~also_opted))
    counts = CohortCounts(patients_matching=matching, opt_outs_removed=removed, patients_released=len(released))
    return released, counts


# --------------------------------------------------------------------------------------------
# the build


class _Background:
    """Runs one function in a thread and hands back its result (or its exception) on join."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = fn()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="extract-risk", daemon=True)
        self._thread.start()

    def join(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and each value's position among them, using runs of equal values.

    Event tables are usually grouped by patient, so there are far fewer runs than rows; the
    result is right for any order, only faster for grouped data.
    """
    if len(values) == 0:
        return values, np.empty(0, dtype=np.int32)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    distinct, run_codes = np.unique(values[starts], return_inverse=True)
    lengths = np.diff(np.append(starts, len(values)))
    return distinct, np.repeat(run_codes.astype(np.int32), lengths)


def _with_pseudonyms(
    batches: list[pa.RecordBatch],
    rows: list[np.ndarray],
    schema: pa.Schema,
    lookup: PatientLookup,
    pseudonym_type: pa.DataType,
) -> pa.Table:
    """One row group: the transformed batches with the pseudonym column in front.

    The pseudonyms of a row group are written as one dictionary of the patients it contains,
    which is what the Parquet writer stores anyway, so no string is hashed or copied per row.
    """
    if pa.types.is_dictionary(pseudonym_type):
        patients, codes = _factorize(np.concatenate(rows))
        pseudonyms = pa.DictionaryArray.from_arrays(pa.array(codes), lookup.pseudonyms.take(pa.array(patients)))
    else:
        pseudonyms = lookup.pseudonyms.take(pa.array(np.concatenate(rows)))
    if not len(schema):  # only the pseudonym was approved
        return pa.table({PSEUDONYM_COLUMN: pseudonyms})
    return pa.Table.from_batches(batches, schema=schema).add_column(0, PSEUDONYM_COLUMN, pseudonyms)


class _BackgroundWriter:
    """Writes Parquet row groups in a second thread while the caller reads and transforms.

    pyarrow releases the GIL while it encodes and compresses, so on two cores the writing
    overlaps the reading instead of following it. The queue is short, which keeps at most a
    few row groups in memory.
    """

    def __init__(self, sink: storage.HashingWriter, schema: pa.Schema, unique: set[str]) -> None:
        # store_schema=False: dictionary-encoded columns read back as plain strings.
        # Columns whose values never repeat gain nothing from Parquet dictionary pages.
        self._writer = pq.ParquetWriter(
            sink,
            schema,
            compression=OUTPUT_COMPRESSION,
            store_schema=False,
            use_dictionary=[name for name in schema.names if name not in unique],
        )
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="extract-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:  # after a failure keep draining so the producer never blocks
                try:
                    self._writer.write_table(table, row_group_size=table.num_rows)
                except BaseException as exc:
                    self._error = exc

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def __enter__(self) -> _BackgroundWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if exc is None and self._error is not None:
            raise self._error


def build_extract(
    spec: ExtractSpec,
    source_dir: Path | str,
    extracts_root: Path | str,
    *,
    catalogue: Catalogue | None = None,
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    created_at: datetime | None = None,
) -> Manifest:
    """Build, verify and publish the next extract version of ``spec.project_id``.

    ``created_at`` is the moment the manifest records (the caller's clock: the gateway passes its own, which
    the demo runs behind to build a history); the real time when not given.

    Raises SpecError when the spec asks for more than the catalogue allows and
    storage.BuildInProgress when another build of the same project is running.
    """
    source_dir = Path(source_dir)
    catalogue = catalogue or load_catalogue(source_dir / "catalogue.yaml")
    spec.check_against(catalogue)
    with storage.project_lock(extracts_root, spec.project_id) as pdir:
        leftovers = storage.clean_leftovers(pdir)
        version = max(storage.list_versions(extracts_root, spec.project_id), default=0) + 1
        staging = storage.new_staging_dir(pdir, version)
        try:
            manifest = _build_into(spec, catalogue, source_dir, staging, version, progress, batch_size, leftovers,
                                   created_at or datetime.now(UTC))
            storage.publish(staging, pdir, version)
        except BaseException:
            if staging.exists():
                storage.remove_tree(staging)
            raise
        if manifest.status is ReleaseStatus.RELEASED:
            storage.point_current(pdir, version)
    return manifest


def _build_into(
    spec: ExtractSpec,
    catalogue: Catalogue,
    source_dir: Path,
    staging: Path,
    version: int,
    progress: ProgressCallback | None,
    batch_size: int,
    leftovers: list[str],
    created_at: datetime,
) -> Manifest:
    key = spec.secret
    patients, counts = _select_cohort(spec, catalogue, source_dir, batch_size)
    lookup = PatientLookup(key, patients)
    del patients
    datasets = [d for d in catalogue.datasets if d.name in spec.datasets]
    plans = []
    for dataset in datasets:
        path = _open_source(source_dir, dataset)
        dictionary_columns = _string_columns(path)
        schema = pq.ParquetFile(source_dir / dataset.file, read_dictionary=dictionary_columns).schema_arrow
        read, outputs = _plan_outputs(spec, dataset, schema, lookup)
        plans.append(_Plan(dataset, source_dir / dataset.file, read, outputs, dictionary_columns))
    source_rows = {p.dataset.name: pq.ParquetFile(p.path).metadata.num_rows for p in plans}
    total = sum(source_rows.values())
    done = 0
    start, end = (pa.scalar(spec.date_range.start, pa.date32()), pa.scalar(spec.date_range.end, pa.date32()))
    tables: list[TableEntry] = []
    files: dict[str, str] = {}
    population_qi: list[pa.RecordBatch] = []
    risk_columns: list[str] = []
    risk: _Background | None = None
    for plan in plans:
        out_file = f"{plan.dataset.name}.parquet"
        sink = storage.HashingWriter(staging / out_file)
        rows = 0
        if plan.dataset.population:
            risk_columns = plan.quasi_identifiers
        body_schema = pa.schema(list(plan.schema)[1:])
        pending: list[pa.RecordBatch] = []
        pending_idx: list[np.ndarray] = []
        pending_rows = 0
        unique = {PSEUDONYM_COLUMN} if plan.dataset.population else set()
        with _BackgroundWriter(sink, plan.schema, unique) as writer:
            for batch in _batches(plan.path, plan.read, batch_size, plan.dictionary_columns):
                done += batch.num_rows
                idx = lookup.find(batch.column(plan.dataset.patient_key))
                keep = idx >= 0
                if plan.dataset.index_date:
                    when = batch.column(plan.dataset.index_date)
                    in_range = pc.and_(pc.greater_equal(when, start), pc.less_equal(when, end))
                    keep &= pc.fill_null(in_range, False).to_numpy(zero_copy_only=False)
                if not keep.all():
                    batch = batch.filter(pa.array(keep))
                    idx = idx[keep]
                if batch.num_rows:
                    out = pa.record_batch([o.make(batch, idx) for o in plan.outputs[1:]], schema=body_schema)
                    pending.append(out)
                    pending_idx.append(idx)
                    pending_rows += batch.num_rows  # out has no rows when it has no columns
                    rows += batch.num_rows
                    if plan.dataset.population:
                        population_qi.append(out.select(risk_columns))
                    if pending_rows >= batch_size:
                        writer.write(_with_pseudonyms(pending, pending_idx, body_schema, lookup, plan.schema[0].type))
                        pending, pending_idx, pending_rows = [], [], 0
                if progress is not None:
                    progress(done, total)
            if pending:
                writer.write(_with_pseudonyms(pending, pending_idx, body_schema, lookup, plan.schema[0].type))
        sink.close()
        if storage.sha256_file(sink.path) != sink.sha256:
            raise OSError(f"{out_file} changed on disk while being written")
        files[out_file] = sink.sha256
        tables.append(
            TableEntry(
                dataset=plan.dataset.name,
                file=out_file,
                rows=rows,
                source_rows=source_rows[plan.dataset.name],
                column_count=len(plan.outputs),
                columns=[
                    ColumnEntry(
                        name=o.name,
                        type=str(_logical(o.type)),
                        source=o.source,
                        sensitivity=o.sensitivity.value,
                        treatment=o.treatment,
                    )
                    for o in plan.outputs
                ],
                bytes=sink.size,
                sha256=sink.sha256,
            )
        )
        if plan.dataset.population:  # assess risk while the event tables stream
            qi_schema = pa.schema([plan.schema.field(c) for c in risk_columns])
            qi_table = pa.Table.from_batches(population_qi, schema=qi_schema)
            qi_table = pa.table(
                {c: pc.cast(qi_table.column(c), _logical(qi_schema.field(c).type)) for c in risk_columns}
            )
            risk = _Background(lambda t=qi_table, c=list(risk_columns): assess(t, c, spec.k))
            population_qi = []
    if progress is not None:
        progress(total, total)

    if risk is not None:
        report: RiskReport = risk.join()
    else:  # no population table released: assess the released patients with no quasi-identifiers
        report = assess(pa.table({"_": pa.array(np.zeros(lookup.size, dtype=np.int8))}), [], spec.k)
    files[RISK_REPORT] = storage.write_file(
        staging / RISK_REPORT, (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8")
    )
    manifest = Manifest(
        project_id=spec.project_id,
        version=version,
        created_at=created_at.isoformat(timespec="seconds"),
        status=ReleaseStatus.HELD if report.flagged else ReleaseStatus.RELEASED,
        key_fingerprint=key_fingerprint(key),
        catalogue=catalogue.name,
        parameters=spec.parameters(),
        cohort=counts,
        tables=tables,
        rows=sum(t.rows for t in tables),
        columns=sum(t.column_count for t in tables),
        risk=report.summary(),
        files=files,
        leftovers_removed=leftovers,
    )
    storage.write_file(staging / storage.MANIFEST, (manifest.model_dump_json(indent=2) + "\n").encode("utf-8"))
    for name, digest in files.items():  # verify before anything becomes visible
        if storage.sha256_file(staging / name) != digest:
            raise OSError(f"{name} does not match the hash recorded while writing")
    return manifest


# --------------------------------------------------------------------------------------------
# the dry run: the build's cohort and risk, nothing written


@dataclass(frozen=True)
class QuasiIdentifiers:
    """The released quasi-identifier columns of the population table under one generalisation."""

    table: pa.Table
    sources: dict[str, str]  # output column -> the catalogue variable it comes from


def dry_run(
    spec: ExtractSpec,
    source_dir: Path | str,
    generalisations: list[Any],
    *,
    catalogue: Catalogue | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> tuple[CohortCounts, list[QuasiIdentifiers]]:
    """What a build of ``spec`` would select and assess, under each of ``generalisations`` (spec.Generalisation),
    without writing anything: the cohort counts, and per generalisation the quasi-identifier columns the risk
    report would be computed over (``assess(q.table, list(q.table.column_names), spec.k)`` is that report).

    Reads the population table once, whatever the number of generalisations. The key only selects rows (a
    random one will do): no pseudonym leaves this function.
    """
    source_dir = Path(source_dir)
    catalogue = catalogue or load_catalogue(source_dir / "catalogue.yaml")
    spec.check_against(catalogue)
    patients, counts = _select_cohort(spec, catalogue, source_dir, batch_size)
    lookup = PatientLookup(spec.secret, patients)
    population = catalogue.population
    if population.name not in spec.datasets:
        empty = QuasiIdentifiers(pa.table({"_": pa.array(np.zeros(lookup.size, dtype=np.int8))}).select([]), {})
        return counts, [empty for _ in generalisations]
    source = _open_source(source_dir, population)
    dictionary_columns = _string_columns(source)
    schema = pq.ParquetFile(source_dir / population.file, read_dictionary=dictionary_columns).schema_arrow
    plans = []
    read: list[str] = []
    for generalisation in generalisations:
        columns, outputs = _plan_outputs(spec.model_copy(update={"generalisation": generalisation}), population,
                                         schema, lookup)
        plans.append([o for o in outputs[1:] if o.sensitivity is Sensitivity.QUASI_IDENTIFIER])
        read.extend(c for c in columns if c not in read)
    kept: list[tuple[pa.RecordBatch, np.ndarray]] = []
    for batch in _batches(source_dir / population.file, read, batch_size, dictionary_columns):
        idx = lookup.find(batch.column(population.patient_key))
        keep = idx >= 0
        if keep.any():
            kept.append((batch.filter(pa.array(keep)), idx[keep]))
    found = []
    for outputs in plans:
        columns_out = {}
        for o in outputs:
            parts = [pc.cast(o.make(b, i), _logical(o.type)) for b, i in kept]
            columns_out[o.name] = pa.chunked_array(parts, type=_logical(o.type))
        found.append(QuasiIdentifiers(pa.table(columns_out) if columns_out else
                                      pa.table({"_": pa.array(np.zeros(lookup.size, dtype=np.int8))}).select([]),
                                      {o.name: o.source or o.name for o in outputs}))
    return counts, found

"""Automatic checks, run by the worker after each submission (outbox kind ``outputs.check``).

A table saved with a disclosure-control record is recomputed: the recorded query is run again on the
project's extract with the gateway's rules and the recorded mitigation, the result is compared cell by cell
with the submitted CSV (a difference means the file was edited by hand or made elsewhere: it fails), the
rules are applied to every cell, and the differencing check compares it with everything already
released for the project and, through the differencing ledger (``ledger.py``), with every table released from the
same population in any other project. Any other file gets heuristic checks (small counts, unrounded counts,
minima and maxima) and is marked for manual review. Every verdict is kept per cell, in CSV coordinates, for the
checker's view.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

import disclosure_control as dc
from disclosure_control import (
    DEFAULT_CONFIG,
    Output,
    Record,
    SDCConfig,
    check_differencing,
    crosstab,
    pivot_table,
    read_acro_document,
)
from disclosure_control import filters as sdc_filters
from disclosure_control.models import check_formula
from gateway import audit, outbox
from gateway.db import unit_of_work, utcnow
from gateway.outputs import content, ledger
from gateway.outputs import files as intake
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.outputs.statistics import rules_fired
from gateway.outputs.workflow import REVIEWABLE_STATES, OutputState

log = logging.getLogger(__name__)

ORDER = {"pass": 0, "review": 1, "fail": 2}
MODELS = {"ols", "logit", "probit"}
RECOMPUTABLE = {"crosstab", "pivot_table", "survival", *MODELS}
# the only fit options a record may ask the gateway to use, and their allowed values
FIT_OPTIONS: dict[str, Any] = {
    "cov_type": {"nonrobust", "HC0", "HC1", "HC2", "HC3"},
    "method": {"newton", "bfgs", "lbfgs", "nm", "powell", "cg", "ncg", "pinv", "qr"},
    "maxiter": range(1, 1001),
}
MODEL_REL_TOL = 1e-6  # a refitted coefficient may differ in the last digits (summation order); not a disclosure
EXTREME_LABEL = re.compile(r"^(min|max|minimum|maximum)$", re.IGNORECASE)


class CannotRecompute(Exception):
    """The record cannot be re-run here (the file then goes to manual review).

    ``reason`` names the part of the record at fault, never its value: it goes into the notes, which the author reads
    outside the workspace, and the sidecar is text the researcher wrote. ``detail`` (the value, or the error's own
    message quoting it) is for the checkers only.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason, self.detail = reason, detail


def worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: ORDER[s], default="pass")


def csv_grid(data: bytes | str) -> list[list[str]]:
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    return list(csv.reader(io.StringIO(text)))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _canonical_number(text: str) -> bool:
    """Whether ``text`` is a number written as pandas writes one (``repr`` of a float, or a plain integer).

    A model's refitted coefficients may differ from the notebook's in the last digits, so they are compared as
    numbers; but only numbers written the usual way, so that padding, signs, exponents or extra digits cannot ride
    along under a pass.
    """
    value = _number(text)
    if value is None or not math.isfinite(value):
        return text in {"inf", "-inf"}
    return text == repr(value) or (value.is_integer() and text == str(int(value)))


def serialised(grid: list[list[str]]) -> str:
    """A grid written as ``DataFrame.to_csv`` writes it (minimal quoting, ``\n`` line endings, no BOM)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(grid)
    return buffer.getvalue()


def _same(a: str, b: str, rel_tol: float = 1e-9) -> bool:
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is None or y is None:
        empty = {"", "nan", "NaN"}
        return a.strip() in empty and b.strip() in empty
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9)


# --- recomputation ------------------------------------------------------------------------------------------

def load_dataset(extract: Path | None, dataset: str | None) -> pd.DataFrame:
    if extract is None:
        raise CannotRecompute("the project has no current extract to recompute from")
    if not dataset:
        raise CannotRecompute("the record does not name the dataset it was computed from (pass dataset=...)")
    manifest = json.loads((extract / "manifest.json").read_text(encoding="utf-8"))
    table = next((t for t in manifest.get("tables", []) if t.get("dataset") == dataset), None)
    if table is None:
        raise CannotRecompute("the extract has no dataset of the name recorded", repr(dataset))
    return pd.read_parquet(extract / table["file"])


def recompute(record: dict[str, Any], extract: Path | None, config: SDCConfig = DEFAULT_CONFIG) -> Output:
    """Run the recorded query again with the gateway's rules and the recorded mitigation.

    Tables, survival curves (grouped or not) and models: a model is refitted, so the model rules (the tables
    it implies, separation) are the gateway's whatever the notebook ran.
    """
    kind = record.get("kind")
    if kind not in RECOMPUTABLE:
        raise CannotRecompute("an output of the kind recorded is not recomputed automatically", repr(kind))
    query = record.get("query") or {}
    data = load_dataset(extract, query.get("dataset"))
    common: dict[str, Any] = {"margins": bool(query.get("margins")), "margins_name": query.get("margins_name", "All"),
                              "dataset": query.get("dataset"), "filters": query.get("filters") or None,
                              "config": config}
    if kind in MODELS:
        return _refit(kind, query, data, config)
    try:
        if kind == "survival":
            time, event = query["columns"]
            output = dc.survival(data, time, event, group=query.get("group") or None, dataset=query.get("dataset"),
                                 filters=query.get("filters") or None, config=config)
        elif kind == "crosstab":
            values = query.get("values")
            output = crosstab(query["index"], query["columns"], values=values,
                              aggfunc=query["aggfunc"][0] if values else None, data=data,
                              normalize=query.get("normalize", False), **common)
        else:
            output = pivot_table(data, query["values"], query["index"], query.get("columns") or None,
                                 aggfunc=query["aggfunc"], **common)
    except (KeyError, ValueError, TypeError) as exc:
        raise CannotRecompute("the recorded query cannot be run on the extract", str(exc)) from exc
    mitigation = record.get("mitigation") or {}
    if mitigation.get("method") in {"suppression", "merged_steps"}:
        output = output.suppressed()
    elif mitigation.get("method") == "rounding":
        output = output.rounded(int(mitigation.get("base") or config.round_base))
    return output


def _refit(kind: str, query: dict[str, Any], data: pd.DataFrame, config: SDCConfig) -> Output:
    """Fit the recorded model again, after checking that its formula only names columns (patsy runs it as code)."""
    formula = query.get("formula")
    recorded = query.get("fit") or {}
    if not isinstance(recorded, dict):
        raise CannotRecompute("the recorded fit options are not a mapping")
    options = {}
    for key, value in recorded.items():
        if key == "disp" and isinstance(value, bool):
            continue  # whether statsmodels prints its progress: the gateway fits quietly either way
        if key not in FIT_OPTIONS or isinstance(value, bool) or not isinstance(value, str | int) \
                or value not in FIT_OPTIONS[key]:
            raise CannotRecompute("a recorded fit option is not refitted at the gateway", f"{key}={value!r}")
        options[key] = value
    try:
        check_formula(formula, data)
        return getattr(dc, kind)(formula, data, dataset=query.get("dataset"), filters=query.get("filters") or None,
                                 config=config, **options)
    except Exception as exc:  # the record is researcher-written: any failure to refit means manual review
        raise CannotRecompute("the recorded model cannot be fitted on the extract", str(exc)) from exc


def _layout(table: pd.DataFrame) -> tuple[int, int]:
    """Header rows and index columns of ``table.to_csv()``, so cell (i, j) is at CSV (i + rows, j + cols)."""
    header_rows = table.columns.nlevels
    if table.columns.nlevels > 1 and any(n is not None for n in table.index.names):
        header_rows += 1
    return header_rows, table.index.nlevels


def check_recorded(data: bytes, sidecar: dict[str, Any], extract: Path | None, earlier: list[Record],
                   config: SDCConfig = DEFAULT_CONFIG,
                   elsewhere: dict[str, ledger.Released] | None = None,
                   siblings: dict[str, str] | None = None) -> dict[str, Any]:
    """Recompute, compare, apply the rules and the differencing check; the result as JSON.

    ``siblings`` maps the uid of each earlier record that is another output of the same request to its path: the
    request's files leave together, so they are compared with each other as with a release.

    ``elsewhere`` maps the uid of each earlier record released by another project to where it came from: a
    conflict with one of those is told to the researcher without the other table (``notes``), and to the checkers
    with it (``checker_notes`` and ``differencing``).
    """
    elsewhere, siblings = elsewhere or {}, siblings or {}
    record = sidecar["record"]
    notes: list[str] = []
    if not sidecar.get("sidecar_sha256_matches", False):
        notes.append("The CSV does not match the hash saved with its disclosure-control record: it was changed "
                     "after it was saved.")
    recorded_rules = record.get("rules") or {}
    if recorded_rules and recorded_rules != config.to_dict():
        notes.append("The notebook used rule parameters different from the gateway's; the gateway's were applied.")
    output = recompute(record, extract, config)
    fresh = output.record()
    if fresh.kind in {"crosstab", "pivot_table"}:  # what the differencing check compares: the rows, not the words
        query = record.get("query") or {}
        fresh.population = sdc_filters.effective(load_dataset(extract, query.get("dataset")), query.get("filters"))
    expected = csv_grid(output.to_csv() or "")
    submitted = csv_grid(data)
    header_rows, index_cols = _layout(output.table)
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    by_key: dict[tuple[str, str], tuple[int, int]] = {}
    n_cols = output.table.shape[1]
    for position, cell in enumerate(fresh.cells):
        i, j = divmod(position, n_cols)
        where = (i + header_rows, j + index_cols)
        cells[where] = {"status": cell.status if cell.status != "suppressed" else "pass", "rules": list(cell.rules),
                        "count": cell.count, "suppressed": cell.status == "suppressed"}
        by_key[cell.key()] = where
    mismatches: list[list[int]] = []
    model = output.kind in MODELS
    near: list[list[int]] = []  # a model's cells within the refit's tolerance but not the recomputed text

    def same(want: str, got: str) -> bool:
        # what is released is the submitted text, so it must be the recomputed text: a table's cells exactly (a
        # suppressed cell empty, not blank, a count without padding, zeros or exponent, each of which could carry
        # what the check hid); a model's coefficients as numbers within the refit's tolerance, written plainly
        if want == got:
            return True
        return bool(model and _canonical_number(got) and _same(want, got, MODEL_REL_TOL))

    if len(expected) != len(submitted) or any(len(a) != len(b) for a, b in zip(expected, submitted, strict=False)):
        notes.append(f"The submitted table has a different shape from the recomputed one "
                     f"({len(submitted)} rows against {len(expected)}): it was not made by the recorded query.")
        mismatches.append([-1, -1])
    else:
        for r, (want_row, got_row) in enumerate(zip(expected, submitted, strict=True)):
            for c, (want, got) in enumerate(zip(want_row, got_row, strict=True)):
                if want != got and same(want, got):
                    near.append([r, c])
                if not same(want, got):
                    mismatches.append([r, c])
                    entry = cells.setdefault((r, c), {"status": "pass", "rules": [], "count": None})
                    entry["status"] = "fail"
                    entry["rules"] = sorted({*entry["rules"], "mismatch"})
                    entry["expected"] = want
        if mismatches:
            notes.append(f"{len(mismatches)} cell(s) differ from the recomputed table: the file was edited by hand "
                         "or made from other data.")
        elif not isinstance(data, bytes) or data.decode("utf-8", errors="replace") != serialised(submitted):
            # the same cells, written otherwise (quotes, line endings, a byte order mark): bits the check never read
            notes.append("The file is not written as save_output writes the recomputed table (its quoting, line "
                         "endings or encoding differ): it was edited after it was saved.")
            mismatches.append([-1, -1])
    differencing = check_differencing(fresh, earlier, config)
    checker_notes: list[str] = []
    if near:  # the last digits the refit does not decide could carry a few bits each: the checkers see how many
        checker_notes.append(f"{len(near)} cell(s) of the model differ from the refitted values in their last digits "
                             f"(within one part in a million), e.g. row {near[0][0] + 1}, column {near[0][1] + 1}.")
    described: list[str] = []
    for flag in differencing.flags:
        where = by_key.get((json.dumps(list(flag.new.cell[0])), json.dumps(list(flag.new.cell[1]))))
        if where is not None:
            cells[where]["status"] = "fail"
            cells[where]["rules"] = sorted({*cells[where]["rules"], "differencing"})
        # the researcher's cell by its place in the file, never its labels: a margin's label is the recorded
        # margins_name (sidecar text) and the notes are read outside the workspace; the labels are the checkers'
        cell = f"The cell at row {where[0] + 1}, column {where[1] + 1}" if where else "A cell"
        source = elsewhere.get(flag.earlier.record_uid)
        sibling = siblings.get(flag.earlier.record_uid)
        if sibling is not None:  # the researcher's own file: its name is theirs, shown on their page already
            notes.append(f"{cell} and a cell of '{sibling}' in this request describe nested populations that differ "
                         f"by fewer than {config.threshold} people: released together, subtracting one from the "
                         "other would reveal a small group. Widen or merge categories, or send only one of them.")
            described.append(f"{flag.describe().replace(flag.earlier.record_uid, repr(sibling))} (this request)")
            checker_notes.append(f"Differencing within this request: "
                                 f"{flag.describe().replace(flag.earlier.record_uid, repr(sibling))}.")
            continue
        if source is None:
            notes.append(f"{cell} and a cell of a table already released from this project describe nested "
                         f"populations that differ by fewer than {config.threshold} people: subtracting one from "
                         "the other would reveal a small group.")
            described.append(flag.describe())
            checker_notes.append(f"Differencing: {flag.describe()}.")
            continue
        notes.append(f"{cell} describes a population nested with a cell of a table already released elsewhere "
                     f"from the same data, and the two differ by fewer than {config.threshold} people: subtracting "
                     "one from the other would reveal a small group. Widen or merge categories, or ask the output "
                     "checkers.")
        released = (f"{source.path} in released output request {source.request_id} of project "
                    f"{source.project_reference}")
        described.append(f"{flag.describe()} (released elsewhere: {released})")
        checker_notes.append(f"Differencing ledger: {flag.describe().replace(flag.earlier.record_uid, released)}.")
    status = worst(output.status, "fail" if mismatches else "pass", differencing.status)
    return {
        "method": "recomputed",
        "status": status,
        "summary": output.summary,
        "notes": notes,
        "cells": [{"row": r, "col": c, **v} for (r, c), v in sorted(cells.items())],
        "mismatches": mismatches,
        "differencing": described,
        "checker_notes": checker_notes,
        "record": fresh.to_dict(),
    }


# --- heuristics ---------------------------------------------------------------------------------------------

def _table_cells(table: content.Table, config: SDCConfig) -> list[dict[str, Any]]:
    """Small counts, unrounded counts and single-person extremes in one table (row 0 is its header)."""
    header = table.header
    cells: list[dict[str, Any]] = []
    for r, row in enumerate(table.rows, start=1):
        label_extreme = bool(row) and bool(EXTREME_LABEL.match(row[0].strip()))
        for c, text in enumerate(row):
            if c == 0:
                continue  # row labels
            value = _number(text.strip())
            if value is None:
                continue
            rules: list[str] = []
            status = "pass"
            if value.is_integer():
                if 0 < abs(value) < config.threshold:
                    rules.append("small_count")
                    status = "fail"
                elif value and value % config.round_base:
                    rules.append("unrounded")
                    status = worst(status, "review")
            column_extreme = c < len(header) and bool(EXTREME_LABEL.match(header[c].strip()))
            if label_extreme or column_extreme:
                rules.append("single_person")
                status = worst(status, "review")
            if rules:
                cells.append({"row": r, "col": c, "status": status, "rules": rules, "count": None})
    return cells


def check_heuristic(data: bytes, extension: str, config: SDCConfig = DEFAULT_CONFIG, reason: str | None = None,
                    pseudonyms: content.PseudonymMatcher | None = None, max_rows: int | None = None) -> dict[str, Any]:
    """Checks for a file without a usable record, of any type: the checkers must look at it themselves.

    Never "pass": a file the gateway cannot recompute is at best "review", and record-level data is "fail".
    """
    notes = [reason] if reason else []
    found = content.read_contents(data, extension)
    status = "review"
    record_level: list[str] = []
    if pseudonyms and pseudonyms.count(content.search_texts(data, extension)):
        record_level.append("It holds one of this project's patient pseudonyms (or a part of one).")
    if found.kind == "image" and found.tables:
        notes.append("An image: a person must look at every part of it. The text it draws was read for tables too "
                     "(styling can hide text from view), and what they hold is checked below.")
    elif found.kind != "text":
        notes.append("An image or other non-text file: no automatic check can read it, so a person must look at "
                     "every part of it." if found.kind == "image" else
                     f"A .{extension} file is not read by any automatic check: a person must review all of it.")
        notes += record_level
        return {"method": "manual", "status": "fail" if record_level else "review",
                "summary": "Record-level data found." if record_level else "Review: a person must look.",
                "notes": notes, "cells": [], "mismatches": [], "differencing": [], "tables": 0}
    cells: list[dict[str, Any]] = []
    lines: list[str] = []
    for number, table in enumerate(found.tables, start=1):
        flagged = _table_cells(table, config)
        if extension == "csv" and number == 1:
            cells = flagged  # CSV coordinates, for the checker's preview
        for column, why in content.identifier_columns(table):
            record_level.append(f"In {table.where}, column {column} looks like an identifier: {why}.")
        if max_rows is not None and len(table.rows) > max_rows:
            record_level.append(f"{table.where.capitalize()} has more rows than an output may have.")
        counts = {rule: sum(rule in cell["rules"] for cell in flagged)
                  for rule in ("small_count", "unrounded", "single_person")}
        found_rules = [f"{n} {'cell' if n == 1 else 'cells'} {rule.replace('_', ' ')}" for rule, n in counts.items()
                       if n]
        if found_rules:
            at = f" ({table.path})" if table.path else ""  # the summary is the checkers' only
            lines.append(f"{table.where.capitalize()}{at}: " + ", ".join(found_rules) + ".")
        status = worst(status, *(cell["status"] for cell in flagged))
    if not found.tables:
        notes.append("No table was found in it: a person must read all of it (the automatic checks cannot tell "
                     "what it discloses).")
    else:
        notes.append(f"No disclosure-control record: heuristic checks of {len(found.tables)} "
                     f"{'table' if len(found.tables) == 1 else 'tables'} only, so a checker must review every "
                     "cell.")
    if record_level:
        status = "fail"
        notes += record_level
    summary = " ".join(lines) or ("No small or unrounded counts found." if found.tables else
                                  "Review: no table found.")
    return {"method": "heuristic", "status": status, "summary": summary, "notes": notes, "cells": cells,
            "mismatches": [], "differencing": [], "tables": len(found.tables)}


# --- the worker's job ---------------------------------------------------------------------------------------

def released_records(session: Session, request: OutputRequest) -> list[Record]:
    """The checked records of every output already released for the request's project."""
    from sqlalchemy import select

    rows = session.scalars(select(OutputFile).join(OutputRequest, OutputFile.request_id == OutputRequest.id).where(
        OutputRequest.project_id == request.project_id, OutputRequest.state == OutputState.RELEASED,
        OutputFile.kind == "output"))
    return [Record.from_dict(f.check_result["record"]) for f in rows if f.check_result and
            f.check_result.get("record")]


def check_file(item: OutputFile, data: bytes, extract: Path | None, earlier: list[Record],
               pseudonyms: content.PseudonymMatcher | None = None, max_rows: int | None = None,
               elsewhere: dict[str, ledger.Released] | None = None,
               siblings: dict[str, str] | None = None) -> dict[str, Any]:
    if item.sdc_record is not None:
        try:
            result = check_recorded(data, item.sdc_record, extract, earlier, elsewhere=elsewhere, siblings=siblings)
        except CannotRecompute as exc:
            fallback = check_heuristic(data, item.extension, reason=f"Not recomputed: {exc.reason}.",
                                       pseudonyms=pseudonyms, max_rows=max_rows)
            fallback["checker_notes"] = [f"Not recomputed: {exc}."] if exc.detail else []
            return fallback
        if pseudonyms and pseudonyms.count(content.search_texts(data, item.extension)):
            result["status"] = "fail"
            result["notes"].append("It holds one of this project's patient pseudonyms (or a part of one).")
        return result
    return check_heuristic(data, item.extension, pseudonyms=pseudonyms, max_rows=max_rows)


ACRO_RESULTS = "results.json"


def acro_verdicts(request: OutputRequest, storage_dir: Path) -> dict[str, dict[str, Any]]:
    """ACRO's own verdicts, from any ACRO results.json handed over in the request, by the path of the file judged.

    A researcher who worked with ACRO sends its results.json (as supporting material) beside the files ACRO wrote;
    the checkers then see ACRO's status, exception request and comments beside the gateway's recomputed verdict.
    """
    found: dict[str, dict[str, Any]] = {}
    for item in request.files:
        if item.name != ACRO_RESULTS:
            continue
        try:
            results = read_acro_document(json.loads(intake.read_stored(storage_dir, item.stored_name, item.sha256)))
        except (OSError, ValueError):
            continue
        folder = item.path.rsplit("/", 1)[0] + "/" if "/" in item.path else ""
        for result in results:
            for name in result.files:
                found[folder + name] = {**result.to_dict(), "from": item.path}
    return found


def _recorded_dataset(item: OutputFile) -> str:
    record = (item.sdc_record or {}).get("record")
    query = record.get("query") if isinstance(record, dict) else None
    return str(query.get("dataset")) if isinstance(query, dict) else ""


def run_checks(session: Session, settings: Any, request: OutputRequest) -> int:
    """Check every file of the request not yet checked; returns how many were checked."""
    from gateway.outputs.service import extract_dir, project_pseudonyms

    extract = extract_dir(settings, request.project)
    pseudonyms = project_pseudonyms(settings, request.project)
    earlier = released_records(session, request)
    key = ledger.population_key(extract)
    datasets = {_recorded_dataset(item) for item in request.files if item.check_status == "pending"}
    elsewhere = {found.record.uid: found for found in ledger.released_from(session, key, datasets)
                 if found.project_id != request.project_id}
    earlier = earlier + [found.record for found in elsewhere.values()]
    # the request's own outputs leave together: each is compared with the others checked before it (a file checked
    # in an earlier run, or earlier in this one), so every pair is compared once, when the later of the two is checked
    siblings: dict[str, str] = {}

    def add_sibling(item: OutputFile) -> None:
        result = item.check_result or {}
        if item.kind == "output" and result.get("method") == "recomputed" and isinstance(result.get("record"), dict):
            record = Record.from_dict(result["record"])
            earlier.append(record)
            siblings[record.uid] = item.path

    for item in request.files:
        if item.check_status != "pending":
            add_sibling(item)
    acro = acro_verdicts(request, settings.outputs_dir)
    done = 0
    for item in request.files:
        if item.check_status != "pending":
            if item.check_result is not None and item.check_result.get("acro") != acro.get(item.path):
                item.check_result = {**item.check_result, "acro": acro.get(item.path)}
            continue
        data = intake.read_stored(settings.outputs_dir, item.stored_name, item.sha256)
        result = check_file(item, data, extract, earlier, pseudonyms, settings.outputs.max_csv_rows, elsewhere,
                            siblings)
        if item.name == ACRO_RESULTS and any(v["from"] == item.path for v in acro.values()):
            result["notes"].append("ACRO's results.json: its verdicts are shown beside the files it judged.")
        result["acro"] = acro.get(item.path)
        item.check_result, item.check_status, item.checked_at = result, result["status"], utcnow()
        if result["method"] == "recomputed":
            ledger.remember(session, request, item, key, result["record"])
        add_sibling(item)
        done += 1
        audit.record(session, "system", "output_request.file_checked", "output_request", request.id,
                     {"path": item.path, "version": item.version, "method": result["method"],
                      "status": result["status"], "rules": rules_fired(result)})
    session.flush()
    return done


@outbox.handler("outputs.check")
def deliver_checks(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    with unit_of_work(ctx.factory) as session:
        request = session.get(OutputRequest, payload["request_id"])
        if request is None or request.state not in {*REVIEWABLE_STATES, OutputState.REVIEWED}:
            return  # withdrawn or decided meanwhile: nothing to check
        run_checks(session, ctx.settings, request)

"""Risk before approval: the re-identification risk of what an application asks for, before anything is built.

A dry run of the extract build (``pipeline.dry_run``) on the source data selects the application's cohort and
computes the quasi-identifier columns its extract would hold, under the application's generalisation and under
every coarser one; nothing is written and no pseudonym leaves the run. The report says whether the extract
would be held for the custodian (any record in a class smaller than k) and whether it would be high risk (two
custodians), and proposes the smallest changes that bring it under each threshold: coarser generalisations
first, then leaving out the quasi-identifiers that drive the small classes.

The committee sees exact figures. The applicant sees rounded ones (patients to the nearest ten, none below
ten; shares to whole per cent): the preview reruns on every edit of the draft, and exact counts of a cohort
the applicant can narrow at will would let them count people in the source data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.extracts.pipeline import CohortCounts, SourceError, dry_run
from gateway.extracts.pseudonym import new_project_key
from gateway.extracts.risk import RiskReport, assess, class_sizes
from gateway.extracts.spec import LEVELS, DateRange, ExtractSpec, Generalisation, SpecError, level_of
from projects.catalogue import Catalogue, Role
from projects.cohort import to_spec

ROLE_OF_DIMENSION = {"date_of_birth": Role.DATE_OF_BIRTH, "lsoa": Role.LSOA, "area_code": Role.AREA_CODE,
                     "imd_decile": Role.IMD_DECILE}
DROP_COST = 2  # leaving a variable out costs the research more than coarsening one
MAX_DROPS = 2



def describe(generalisation: Generalisation, dimensions: list[str]) -> list[str]:
    """The generalisation in words, for the dimensions the application's variables have."""
    return [LEVELS[d][level_of(generalisation, d)][1] for d in dimensions]


@dataclass(frozen=True)
class Suggestion:
    target: str  # "not_held" | "one_custodian"
    generalisation: Generalisation
    drop: tuple[str, ...]  # "dataset.variable" left out of the application
    changes: tuple[str, ...]  # in words
    report: RiskReport


@dataclass(frozen=True)
class Preview:
    cohort: CohortCounts
    report: RiskReport
    generalisation: Generalisation
    dimensions: list[str]  # generalisation dimensions that apply to the requested variables
    high_risk_share: float
    seconds: float
    suggestions: list[Suggestion] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.report.flagged

    @property
    def high_risk(self) -> bool:
        return self.report.flagged and self.report.share_below_k >= self.high_risk_share


@dataclass(frozen=True)
class Unavailable:
    message: str


TARGETS = {"not_held": "no record in a group smaller than k: the extract is released without the custodian",
           "one_custodian": "under the high-risk threshold: one custodian can release it"}


def application_spec(application: Any, k: int, today: dt.date) -> ExtractSpec:
    """What the application would be built as if approved now (the same mapping as a project's extract)."""
    datasets: dict[str, list[str]] = {}
    for row in application.variables:
        datasets.setdefault(row.dataset, []).append(row.variable)
    if not datasets:
        raise SpecError("choose the variables first")
    start = application.date_from or dt.date(1900, 1, 1)
    end = application.date_to or today
    if start > end:
        raise SpecError("the date range ends before it starts")
    return ExtractSpec(project_id="preview", key=new_project_key(), datasets=datasets, cohort=to_spec(application),
                       date_range=DateRange(start=start, end=end),
                       apply_opt_out=application.opt_out_applies is not False,
                       generalisation=Generalisation(**(application.generalisation or {})), k=k)


@dataclass(frozen=True)
class _Candidate:
    cost: int
    share: float
    flagged: bool
    generalisation: Generalisation
    drop: tuple[str, ...]
    changes: tuple[str, ...]
    table: Any
    columns: list[str]


def _share(table: Any, columns: list[str], k: int) -> tuple[float, bool]:
    """The share of records in classes smaller than k (cheap: no drivers)."""
    sizes = class_sizes(table, columns)
    below = int(sizes[sizes < k].sum())
    return (round(below / table.num_rows, 6) if table.num_rows else 0.0), below > 0


def compute(spec: ExtractSpec, source_dir: Path, catalogue: Catalogue, high_risk_share: float) -> Preview:
    started = time.perf_counter()
    population = catalogue.population
    requested = set(spec.datasets.get(population.name, []))
    dimensions = [d for d, role in ROLE_OF_DIMENSION.items()
                  if (var := population.by_role(role)) is not None and var.name in requested]
    current = spec.generalisation
    ranges = [range(level_of(current, d), len(LEVELS[d])) for d in dimensions]
    combos = []
    for levels in itertools.product(*ranges):
        settings = current.model_dump(mode="json")
        for dimension, level in zip(dimensions, levels, strict=True):
            settings |= LEVELS[dimension][level][0]
        combos.append((levels, Generalisation(**settings)))
    counts, tables = dry_run(spec, source_dir, [g for _, g in combos], catalogue=catalogue)
    report = assess(tables[0].table, tables[0].table.column_names, spec.k)
    # the variables worth leaving out: those driving the small classes now, and once everything is coarsened
    coarsest = assess(tables[-1].table, tables[-1].table.column_names, spec.k) if len(tables) > 1 else report
    drivers: list[str] = []
    for source, rep in ((tables[0], report), (tables[-1], coarsest)):
        for d in rep.drivers:
            if d.reduction_if_removed > 0 and source.sources[d.column] not in drivers and len(drivers) < 4:
                drivers.append(source.sources[d.column])
    base_levels = tuple(r.start for r in ranges)
    candidates: list[_Candidate] = []
    for (levels, generalisation), quasi in zip(combos, tables, strict=True):
        changed = tuple(LEVELS[d][lv][1] for d, lv, base in zip(dimensions, levels, base_levels, strict=True)
                        if lv != base)
        cost = sum(lv - base for lv, base in zip(levels, base_levels, strict=True))
        for size in range(MAX_DROPS + 1):
            for dropped in itertools.combinations(drivers, size):
                columns = [c for c in quasi.table.column_names if quasi.sources[c] not in dropped]
                variables = _variables_behind(dropped, generalisation, requested)
                share, flagged = _share(quasi.table, columns, spec.k)
                candidates.append(_Candidate(cost + DROP_COST * size, share, flagged, generalisation,
                                             tuple(f"{population.name}.{v}" for v in variables),
                                             changed + tuple(f"leave out {v}" for v in variables), quasi.table,
                                             columns))
    suggestions: list[Suggestion] = []
    for target in TARGETS:
        if target == "not_held" and not report.flagged:
            continue
        if target == "one_custodian" and report.share_below_k < high_risk_share:
            continue
        meets = [c for c in candidates if c.changes and (not c.flagged if target == "not_held"
                                                         else c.share < high_risk_share)]
        if not meets:
            continue
        best = min(meets, key=lambda c: (c.cost, c.share, c.changes))
        if any(s.generalisation == best.generalisation and s.drop == best.drop for s in suggestions):
            continue
        suggestions.append(Suggestion(target, best.generalisation, best.drop, best.changes,
                                      assess(best.table, best.columns, spec.k)))
    return Preview(cohort=counts, report=report, generalisation=current, dimensions=dimensions,
                   high_risk_share=high_risk_share, seconds=time.perf_counter() - started, suggestions=suggestions)


def _variables_behind(sources: tuple[str, ...], generalisation: Generalisation, requested: set[str]) -> list[str]:
    """The requested variables to leave out for these source variables (an LSOA coarsened to its borough makes
    the borough column too)."""
    names = set(sources)
    if generalisation.lsoa.value == "borough" and any(n == "borough" for n in names):
        names |= {v for v in requested if v.startswith("lsoa")}
    return sorted(n for n in names if n in requested)


# --- a small cache: the page is viewed far more often than the application changes ----------------------------

_CACHE: OrderedDict[str, Preview] = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 64


def _key(spec: ExtractSpec, source_dir: Path, high_risk_share: float) -> str:
    files = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in source_dir.glob("*")
                   if p.suffix in {".parquet", ".yaml"})
    body = json.dumps([spec.parameters(), files, high_risk_share, str(source_dir)], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def preview(application: Any, source_dir: Path, catalogue: Catalogue, k: int, high_risk_share: float,
            today: dt.date) -> Preview | Unavailable:
    """The preview of this version of the application (cached until it, or the source data, changes)."""
    try:
        spec = application_spec(application, k, today)
        key = _key(spec, source_dir, high_risk_share)
        with _LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        result = compute(spec, source_dir, catalogue, high_risk_share)
    except SpecError as exc:
        return Unavailable(f"No risk preview yet: {str(exc).removeprefix('invalid extract spec: ')}.")
    except (SourceError, FileNotFoundError, OSError):
        return Unavailable("No risk preview: the source data is not available on this gateway.")
    with _LOCK:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def rounded_count(n: int) -> str:
    """A count as the applicant sees it."""
    return "fewer than 10" if n < 10 else f"about {round(n, -1):,}"


def rounded_share(share: float) -> str:
    percent = round(100 * share)
    return "less than 1%" if 0 < share < 0.005 else f"{percent}%"

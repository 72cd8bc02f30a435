"""The Python half of the R package: moving data frames between R and pandas exactly.

R calls ``disclosure_control`` itself through reticulate; this module reads an extract table the way the example
notebook does and carries frames across. Debian's reticulate (1.28) predates numpy 2 and cannot convert numpy
arrays or pandas frames itself (it passed R's missing integers as -2147483648 and missing text as "NA"), so
columns cross explicitly, numbers as the raw bytes of each vector (exact, and fast for a large extract) and text
as JSON, with missing values marked.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _bytes(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _column_to_r(column: pd.Series) -> tuple[str, str]:
    """One column as (kind, payload) for R: numbers as base64 of their little-endian bytes (doubles with NaN where
    a value is missing, whole numbers as 32-bit integers when they fit and none is missing), logicals and text as
    JSON lists (null = missing), date-times as seconds since 1970 (UTC)."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_object_dtype(dtype) and column.map(
            lambda v: v is None or isinstance(v, bool | np.bool_)).all() and column.notna().any()):
        return "logical", json.dumps([None if pd.isna(v) else bool(v) for v in column])
    if pd.api.types.is_integer_dtype(dtype):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        if not np.isnan(values).any() and (np.abs(values) <= np.iinfo(np.int32).max).all():
            return "integer", _bytes(values, "<i4")
        return "double", _bytes(values, "<f8")
    if pd.api.types.is_float_dtype(dtype):
        return "double", _bytes(column.to_numpy(dtype=float, na_value=np.nan), "<f8")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        naive = column.dt.tz_convert("UTC").dt.tz_localize(None) if column.dt.tz is not None else column
        seconds = naive.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
        return "datetime", _bytes(np.where(naive.isna().to_numpy(), np.nan, seconds), "<f8")
    return "character", json.dumps([None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
                                    or v is pd.NaT else str(v) for v in column])


def to_r(frame: pd.DataFrame) -> str:
    """A frame as JSON for R: its number of rows, column names, each column's kind and payload."""
    columns = [_column_to_r(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return json.dumps({"rows": len(frame), "names": [str(c) for c in frame.columns],
                       "kinds": [k for k, _ in columns], "payloads": [p for _, p in columns]})


def from_r(names: list[str], kinds: list[str], payloads: list[Any], rows: int) -> pd.DataFrame:
    """A frame from R's columns: "double" and "integer" as raw little-endian bytes ("double" with NaN where R
    had NA), "logical" and "character" as JSON lists (null = NA), "datetime" as seconds since 1970 (UTC)."""
    data: dict[str, Any] = {}
    for name, kind, payload in zip(names, kinds, payloads, strict=True):
        if kind == "double":
            data[name] = np.frombuffer(bytes(payload), dtype="<f8").copy()
        elif kind == "integer":
            data[name] = np.frombuffer(bytes(payload), dtype="<i4").astype(np.int64)
        elif kind == "datetime":
            data[name] = pd.to_datetime(np.frombuffer(bytes(payload), dtype="<f8"), unit="s")
        elif kind == "logical":
            values = json.loads(payload)
            data[name] = pd.Series(values, dtype=object if None in values else bool)
        elif kind == "character":
            data[name] = pd.Series(json.loads(payload), dtype=object)
        else:
            raise ValueError(f"column {name!r}: R type {kind!r} cannot be passed to Python")
        if len(data[name]) != rows:
            raise ValueError(f"column {name!r}: {len(data[name])} values for {rows} rows")
    return pd.DataFrame(data, index=pd.RangeIndex(rows))


def load_extract(dataset: str, data_dir: str = "/data") -> str:
    """The extract table ``dataset`` (as named in the extract's manifest), as JSON for R (see ``to_r``)."""
    root = Path(data_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    names = [str(t["dataset"]) for t in manifest.get("tables", [])]
    for table in manifest.get("tables", []):
        if table["dataset"] == dataset:
            path = root / table["file"]
            return to_r(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path))
    raise ValueError(f"no table {dataset!r} in this extract; its tables are: {', '.join(names) or 'none'}")


def _label(value: Any) -> Any:
    if isinstance(value, tuple):
        return " / ".join(str(v) for v in value)
    return value


def _plain(level: pd.Index) -> pd.Series:
    """Numbers stay numbers; any other label (categories, intervals, dates) becomes its text."""
    if pd.api.types.is_numeric_dtype(level.dtype) and not pd.api.types.is_bool_dtype(level.dtype):
        return pd.Series(level.to_numpy())
    return pd.Series([str(v) for v in level], dtype=object)


def _value_column(column: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return pd.Series(column.to_numpy(dtype=float, na_value=np.nan))
    return pd.Series(column.to_numpy(), dtype=object)


def flat_table(output: Any) -> str:
    """The checked table as R shows it (JSON for R, as ``to_r``): one column per row label, then one per
    column label. Suppressed cells are missing; every value column is a double, as R keeps numbers.
    """
    table = output.table
    values = {str(_label(column)): _value_column(table.iloc[:, position]) for position, column in
              enumerate(table.columns)}
    index = table.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    labels: dict[str, Any] = {}
    for i, level in enumerate(levels):
        name = str(level.name) if level.name is not None else ("row" if index.nlevels == 1 else f"row{i + 1}")
        labels[name] = _plain(level)
    clash = set(labels) & set(values)
    labels = {(f"{name}_label" if name in clash else name): v for name, v in labels.items()}
    return to_r(pd.DataFrame({**labels, **values}))

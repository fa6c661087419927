"""The judgments frame: the one table the crowd server writes and analysis reads.

One row per answer (docs/contracts.md "Judgments frame"). This module is the whole contract:
the columns and their types, the task kinds, the items each kind produces and the labels and
level of measurement of each item, the model-as-worker prefix, writing the CSV/Parquet export
and reading + validating it back.

It lives in `crowd` because the crowd server writes the frame (as `explain` owns sheets and
`training` owns the dataset folder). It imports nothing from the rest of `crowd` and only the
standard library and numpy at import time (pandas and pyarrow inside the functions that need
them), so the server does not load pandas and `analysis` does not load Flask or SQLAlchemy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# Column -> Parquet type of the export, in export order.
COLUMN_TYPES = {
    "task": "int64", "worker": "string", "label": "string", "item": "string", "kind": "string",
    "assignment": "int64", "batch": "int64", "duration_s": "float64", "submitted_at": "string",
    "sheet": "string", "channel": "int64", "rank": "int64", "text": "string", "points": "string",
    "boxes": "string", "is_gold": "bool", "gold_label": "string", "names_shown": "bool",
    # MTurk visits: "verified" (MTurk confirmed the worker holds the assignment on one of the
    # batch's HITs), "refused" (it did not: drop these), "unchecked"; "" for other providers
    "mturk_check": "string",
    "too_fast": "bool",  # below the kind's minimum plausible seconds (crowd.speed); for review
}
COLUMNS = list(COLUMN_TYPES)
# Columns newer than the first contract: a row written without one gets this value.
DEFAULTS = {"names_shown": False, "mturk_check": "", "too_fast": False}
REQUIRED_COLUMNS = ("task", "worker", "label")
MODEL_PREFIX = "model:"  # the model joins as a worker named `model:<name>`

KINDS = ("rate_arguments", "name_feature", "mark_rationale", "label")
RATINGS = ("yes", "no", "cant_tell")  # labels of a `rate_arguments` "arg:<rank>" item
CANT_TELL = "cant_tell"  # also a `label` item's answer when the image cannot be recognised
ABSTAIN = (CANT_TELL,)  # labels that aggregators treat as "no answer", not as a class
LIKERT = range(1, 6)  # labels of the "match" and "coherence" items

LEVELS = ("nominal", "ordinal", "interval", "ratio")
# (task kind, item group) -> level of measurement of its labels.
KIND_LEVELS = {
    ("rate_arguments", "arg"): "nominal",      # yes | no | cant_tell
    ("rate_arguments", "match"): "ordinal",    # Likert 1..5
    ("name_feature", "name"): "nominal",
    ("name_feature", "coherence"): "ordinal",  # Likert 1..5
    ("mark_rationale", "rationale"): "ratio",  # number of marks
    ("label", "label"): "nominal",             # class name
}

# Column -> kind of coercion applied by `validate_judgments`.
_INT_COLUMNS = ("rank", "channel")
_FLOAT_COLUMNS = ("duration_s",)
_STR_COLUMNS = ("task", "worker", "item", "kind", "assignment", "batch", "sheet", "text", "gold_label")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


class JudgmentFrameError(ValueError):
    """A judgment frame does not follow the contract; the message names the file, column, row
    and value at fault."""


def item_group(item: str) -> str:
    """`"arg:3"` -> `"arg"`; other items unchanged."""
    item = "" if item is None else str(item)
    return item.split(":", 1)[0]


# ----------------------------------------------------------------------------- writing

def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) from a
# worker id or a comment); tab and CR start one too in some programs (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ESCAPE = "'"


def csv_cell(value):
    """A value as written to a CSV export: text that a spreadsheet would run as a formula gets a
    leading `'` (so does text that already starts with `'`, which keeps the escape reversible:
    `read_judgments` removes exactly one). Numbers, booleans and None are written as they are.
    The Parquet export keeps raw values."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS + (CSV_ESCAPE,)):
        return CSV_ESCAPE + value
    return value


def stream_csv(rows: Iterable[dict], chunk_rows: int = 2000) -> Iterator[str]:
    """CSV text in pieces: the header, then `chunk_rows` rows per piece (empty cells for None,
    formula-like text neutralised by `csv_cell`)."""
    buf = io.StringIO()
    # CRLF as RFC 4180 says: a text cell holding CR or LF is then always quoted
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    yield buf.getvalue()
    for chunk in _chunks(rows, chunk_rows):
        buf.seek(0)
        buf.truncate()
        writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in chunk)
        yield buf.getvalue()


class _Sink(io.RawIOBase):
    """A write-only file that keeps bytes until `take()`."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self):
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        return out


def parquet_schema() -> pa.Schema:
    """The Arrow schema of the Parquet export (`COLUMN_TYPES`)."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "string": pa.string(), "float64": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(c, types[t]) for c, t in COLUMN_TYPES.items()])


def stream_parquet(rows: Iterable[dict], chunk_rows: int = 10000) -> Iterator[bytes]:
    """Parquet bytes in pieces, one row group per `chunk_rows` rows (a valid file even when empty).

    Neither this nor `stream_csv` holds the whole export in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    for chunk in _chunks(rows, chunk_rows):
        cols = {c: [r[c] if c in r else DEFAULTS[c] for r in chunk] if c in DEFAULTS else [r[c] for r in chunk]
                for c in COLUMNS}
        for c in ("text", "points", "boxes", "gold_label", "sheet"):
            cols[c] = [v if v is not None else "" for v in cols[c]]
        writer.write_table(pa.Table.from_pydict(cols, schema=schema))
        data = sink.take()
        if data:
            yield data
    writer.close()
    yield sink.take()


def write_judgments(path: str, rows: Iterable[dict], fmt: str | None = None) -> int:
    """Write rows to `path` (format from `fmt` or the extension: .csv / .parquet). Returns rows written."""
    fmt = fmt or ("parquet" if str(path).endswith(".parquet") else "csv")
    count = 0

    def counted():
        nonlocal count
        for r in rows:
            count += 1
            yield r

    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            for piece in stream_csv(counted()):
                fh.write(piece)
    elif fmt == "parquet":
        with open(path, "wb") as fh:
            for piece in stream_parquet(counted()):
                fh.write(piece)
    else:
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    return count


# ----------------------------------------------------------------------------- reading

def read_judgments(source, *, validate: bool = True) -> pd.DataFrame:
    """Read a judgment frame from a CSV/Parquet export (path) or take an existing DataFrame.

    Args:
        source: path to `.csv`, `.csv.gz` or `.parquet`, or a `pandas.DataFrame` with at least
            `task, worker, label`.
        validate: run `validate_judgments` (recommended; it coerces types).

    Returns:
        DataFrame, one row per answer (a copy; the input is never modified).
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        frame, where = source.copy(), "frame"
    else:
        path = Path(source)
        where = str(path)
        if not path.exists():
            raise JudgmentFrameError(f"{path}: judgments file not found")
        name = path.name.lower()
        if name.endswith(".parquet") or name.endswith(".pq"):
            frame = pd.read_parquet(path)
        elif name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".tsv"):
            # Read every field as text: labels such as "1" or "yes" stay labels, empty
            # optional cells stay empty (not NaN) until `validate_judgments` types them.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                                sep="\t" if name.endswith(".tsv") else ",")
            _undo_csv_escape(frame)
        else:
            raise JudgmentFrameError(f"{path}: unknown judgments format (use .csv or .parquet)")
    return validate_judgments(frame, source=where) if validate else frame


def _undo_csv_escape(frame: pd.DataFrame) -> None:
    """Remove the leading `'` that `csv_cell` put before formula-like text (in place)."""
    for col in frame.columns:
        escaped = frame[col].str.startswith(CSV_ESCAPE)
        if escaped.any():
            frame.loc[escaped, col] = frame.loc[escaped, col].str[1:]


def _missing(value) -> bool:
    import pandas as pd

    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == ""


def validate_judgments(frame: pd.DataFrame, *, source: str = "frame") -> pd.DataFrame:
    """Check a judgment frame and coerce its column types.

    Required: `task, worker, label`, none empty. Optional columns are typed: `rank`/`channel`
    -> nullable Int64, `duration_s` -> float, `is_gold` -> bool, id/text columns -> str,
    `submitted_at` -> datetime (UTC). Unknown extra columns are kept untouched.

    Raises:
        JudgmentFrameError naming the source, column, first bad row and value.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise JudgmentFrameError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise JudgmentFrameError(
            f"{source}: missing required column(s) {missing}; found {list(frame.columns)}")
    frame = frame.reset_index(drop=True).copy()
    for col in REQUIRED_COLUMNS:
        bad = frame[col].map(_missing)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise JudgmentFrameError(f"{source}: column '{col}' is empty at row {row} "
                                     f"({int(bad.sum())} empty value(s) in all)")
    for col in ("task", "worker"):
        frame[col] = frame[col].astype(str)
    for col in _STR_COLUMNS:
        if col in frame.columns and col not in ("task", "worker"):
            frame[col] = frame[col].map(lambda v: "" if _missing(v) else str(v))
    for col in _INT_COLUMNS:
        if col in frame.columns:
            frame[col] = _to_int(frame[col], col, source)
    for col in _FLOAT_COLUMNS:
        if col in frame.columns:
            values = pd.to_numeric(frame[col].replace("", np.nan), errors="coerce")
            bad = values.isna() & ~frame[col].map(_missing)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise JudgmentFrameError(f"{source}: column '{col}' row {row}: "
                                         f"{frame[col].iloc[row]!r} is not a number")
            frame[col] = values.astype(float)
    for col in ("is_gold", "names_shown", "too_fast"):
        if col in frame.columns:
            frame[col] = _to_bool(frame[col], source, col)
    if "submitted_at" in frame.columns:
        frame["submitted_at"] = pd.to_datetime(frame["submitted_at"].replace("", None), utc=True,
                                               errors="coerce")
    return frame


def _to_int(series: pd.Series, col: str, source: str) -> pd.Series:
    import pandas as pd

    raw = series.map(lambda v: np.nan if _missing(v) else v)
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()) | (values.notna() & (values % 1 != 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise JudgmentFrameError(f"{source}: column '{col}' row {row}: {series.iloc[row]!r} is not an integer")
    return values.astype("Int64")


def _to_bool(series: pd.Series, source: str, col: str = "is_gold") -> pd.Series:
    def conv(v):
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if _missing(v):
            return False
        s = str(v).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise JudgmentFrameError(f"{source}: column '{col}' has {v!r}; expected true/false")
    return series.map(conv).astype(bool)


def parse_geometry(value) -> list[list[float]]:
    """Parse a `points`/`boxes` cell: JSON list of coordinate lists in normalised [0,1] image
    coords (`[[x,y],...]` or `[[x0,y0,x1,y1],...]`). Empty -> []."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [list(map(float, v)) for v in value]
    if _missing(value):
        return []
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise JudgmentFrameError(f"geometry cell {value!r} is not JSON: {exc}") from None
    if not isinstance(parsed, list):
        raise JudgmentFrameError(f"geometry cell {value!r} is not a list")
    return [list(map(float, v)) for v in parsed]


def is_model_worker(workers):
    """Boolean mask (numpy) of workers named `model:<name>`."""
    import pandas as pd

    return pd.Series(workers, dtype=str).str.startswith(MODEL_PREFIX).to_numpy()

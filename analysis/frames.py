"""Judgment frames and argument sheets: reading, validation, long <-> wide reshaping.

A judgment frame is one long table, one row per answer (docs/contracts.md, "Judgments frame"):
required columns `task, worker, label`; the crowd export adds `item, kind, assignment, batch,
duration_s, submitted_at, sheet, channel, rank, text, points, boxes, is_gold, gold_label`.
Everything in `analysis` takes such a frame (a `pandas.DataFrame`) and never talks to the server.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("task", "worker", "label")
MODEL_PREFIX = "model:"

# Column -> kind of coercion applied by `validate_judgments`.
_INT_COLUMNS = ("rank", "channel")
_FLOAT_COLUMNS = ("duration_s",)
_STR_COLUMNS = ("task", "worker", "item", "kind", "assignment", "batch", "sheet", "text", "gold_label")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


class JudgmentFrameError(ValueError):
    """A judgment frame (or sheet) does not follow docs/contracts.md; the message names the
    file, column, row and value at fault."""


def read_judgments(source, *, validate: bool = True) -> pd.DataFrame:
    """Read a judgment frame from a CSV/Parquet export (path) or take an existing DataFrame.

    Args:
        source: path to `.csv`, `.csv.gz` or `.parquet`, or a `pandas.DataFrame` with at least
            `task, worker, label`.
        validate: run `validate_judgments` (recommended; it coerces types).

    Returns:
        DataFrame, one row per answer (a copy; the input is never modified).
    """
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
        else:
            raise JudgmentFrameError(f"{path}: unknown judgments format (use .csv or .parquet)")
    return validate_judgments(frame, source=where) if validate else frame


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == ""


def validate_judgments(frame: pd.DataFrame, *, source: str = "frame") -> pd.DataFrame:
    """Check a judgment frame and coerce its column types.

    Required: `task, worker, label`, none empty. Optional columns are typed: `rank`/`channel`
    -> nullable Int64, `duration_s` -> float, `is_gold` -> bool, id/text columns -> str,
    `submitted_at` -> datetime (UTC). Unknown extra columns are kept untouched.

    Raises:
        JudgmentFrameError naming the source, column, first bad row and value.
    """
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
    if "is_gold" in frame.columns:
        frame["is_gold"] = _to_bool(frame["is_gold"], source)
    if "submitted_at" in frame.columns:
        frame["submitted_at"] = pd.to_datetime(frame["submitted_at"].replace("", None), utc=True,
                                               errors="coerce")
    return frame


def _to_int(series: pd.Series, col: str, source: str) -> pd.Series:
    raw = series.map(lambda v: np.nan if _missing(v) else v)
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()) | (values.notna() & (values % 1 != 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise JudgmentFrameError(f"{source}: column '{col}' row {row}: {series.iloc[row]!r} is not an integer")
    return values.astype("Int64")


def _to_bool(series: pd.Series, source: str) -> pd.Series:
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
        raise JudgmentFrameError(f"{source}: column 'is_gold' has {v!r}; expected true/false")
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


def unit_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify the thing being judged: `task` plus `item` where present (each
    argument of a `rate_arguments` task is its own unit)."""
    return ["task", "item"] if "item" in frame.columns else ["task"]


def is_model_worker(workers) -> np.ndarray:
    """Boolean mask of workers named `model:<name>`."""
    return pd.Series(workers, dtype=str).str.startswith(MODEL_PREFIX).to_numpy()


def humans_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without `model:<name>` workers."""
    return frame[~is_model_worker(frame["worker"])]


def to_wide(frame: pd.DataFrame, units: Iterable[str] | None = None) -> pd.DataFrame:
    """Long -> wide: one row per unit (`task`[, `item`]), one column per worker, cell = label
    (NaN where the worker did not answer). Duplicate (unit, worker) answers raise."""
    units = list(units) if units is not None else unit_columns(frame)
    dup = frame.duplicated(units + ["worker"], keep=False)
    if dup.any():
        row = frame[dup].iloc[0]
        raise JudgmentFrameError(
            f"worker {row['worker']!r} answered unit {tuple(row[u] for u in units)} more than once")
    wide = frame.pivot(index=units, columns="worker", values="label")
    wide.columns.name = "worker"
    return wide


def to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """Wide -> long: inverse of `to_wide` (index = unit columns, columns = workers)."""
    index_names = [n if n is not None else "task" for n in wide.index.names]
    stacked = wide.rename_axis(index=index_names, columns="worker").stack(future_stack=True).dropna()
    long = stacked.rename("label").reset_index()
    return long[["task", "worker", "label"] + [n for n in index_names if n != "task"]]


def from_matrix(matrix, workers=None, tasks=None) -> pd.DataFrame:
    """Reliability matrix `[raters, units]` (NaN = missing, the `krippendorff` package's
    orientation) -> long frame with `task, worker, label`."""
    m = np.asarray(matrix, dtype=object if np.asarray(matrix).dtype.kind in "OUS" else float)
    if m.ndim != 2:
        raise JudgmentFrameError(f"reliability matrix must be 2-D [raters, units], got shape {m.shape}")
    workers = list(workers) if workers is not None else [f"w{i}" for i in range(m.shape[0])]
    tasks = list(tasks) if tasks is not None else [f"t{j}" for j in range(m.shape[1])]
    r, u = np.nonzero(pd.notna(pd.DataFrame(m)).to_numpy())
    return pd.DataFrame({"task": np.asarray(tasks, dtype=object)[u].astype(str),
                         "worker": np.asarray(workers, dtype=object)[r].astype(str),
                         "label": m[r, u]})


# ----------------------------------------------------------------------------- sheets

def load_sheets(sheets_dir) -> dict[str, dict]:
    """Read every `SHEETS/sheets/<sample_id>.json` (or `*.json` directly in `sheets_dir`).

    Returns:
        {sample_id: sheet dict}; each sheet gets `_dir` (the SHEETS root, for relative paths).
    """
    root = Path(sheets_dir)
    if not root.exists():
        raise JudgmentFrameError(f"{root}: sheets folder not found")
    folder = root / "sheets" if (root / "sheets").is_dir() else root
    sheets: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            sheet = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise JudgmentFrameError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(sheet, dict) or "sample_id" not in sheet or "arguments" not in sheet:
            continue  # index.json / summary.json and other non-sheet files
        for i, arg in enumerate(sheet["arguments"]):
            for field in ("rank", "channel", "contribution"):
                if field not in arg:
                    raise JudgmentFrameError(f"{path}: arguments[{i}] lacks '{field}'")
        sheet["_dir"] = str(folder.parent if folder.name == "sheets" else folder)
        sheets[str(sheet["sample_id"])] = sheet
    return sheets


def sheets_table(sheets: dict[str, dict]) -> pd.DataFrame:
    """One row per sheet: `sheet, true_class, class (predicted), domain, correct, probability,
    background` (background only where the sheet carries it)."""
    rows = []
    for sid, s in sheets.items():
        pred = s.get("prediction") or {}
        rows.append({"sheet": sid, "true_class": s.get("label"), "class": pred.get("class"),
                     "probability": pred.get("probability"), "domain": s.get("domain") or "",
                     "correct": s.get("correct"), "background": s.get("background") or ""})
    return pd.DataFrame(rows, columns=["sheet", "true_class", "class", "probability", "domain",
                                       "correct", "background"])


def arguments_table(sheets: dict[str, dict]) -> pd.DataFrame:
    """One row per (sheet, argument): `sheet, rank, channel, contribution, share_of_margin,
    name, name_source, class, domain`."""
    rows = []
    for sid, s in sheets.items():
        pred = (s.get("prediction") or {}).get("class")
        for a in s["arguments"]:
            rows.append({"sheet": sid, "rank": int(a["rank"]), "channel": int(a["channel"]),
                         "contribution": float(a["contribution"]),
                         "share_of_margin": a.get("share_of_margin"), "name": a.get("name") or "",
                         "name_source": a.get("name_source") or "", "class": pred,
                         "domain": s.get("domain") or ""})
    return pd.DataFrame(rows, columns=["sheet", "rank", "channel", "contribution", "share_of_margin",
                                       "name", "name_source", "class", "domain"])


def attach_sheet_info(frame: pd.DataFrame, sheets: dict[str, dict] | None,
                      samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add `class`, `true_class`, `domain`, `background` to a judgment frame from its `sheet`
    column (and a dataset's `samples.csv` table for `background` / `domain` where given)."""
    out = frame.copy()
    if "sheet" not in out.columns:
        out["sheet"] = out["task"]
    if sheets:
        info = sheets_table(sheets)
        out = out.drop(columns=[c for c in ("class", "true_class", "domain", "background")
                                if c in out.columns]).merge(
            info[["sheet", "class", "true_class", "domain", "background"]], on="sheet", how="left")
    if samples is not None and "sample_id" in samples.columns:
        extra = samples.set_index(samples["sample_id"].astype(str))
        for col in ("background", "domain"):
            if col in extra.columns:
                mapped = out["sheet"].map(extra[col].fillna("").astype(str))
                if col in out.columns:
                    current = out[col].fillna("").astype(str)
                    out[col] = current.where(current != "", mapped.fillna(""))
                else:
                    out[col] = mapped.fillna("")
    for col in ("class", "true_class", "domain", "background"):
        if col in out.columns:
            out[col] = out[col].fillna("").astype(str)
    return out

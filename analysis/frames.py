"""Judgment frames and argument sheets in analysis: long <-> wide reshaping, sheet tables.

Sheets are read by `explain.sheet_files.load_sheets` (`{sample_id: sheet}`).

A judgment frame is one long table, one row per answer; `crowd.judgments` owns its columns,
reading and validation. Everything in `analysis` takes such a frame (a `pandas.DataFrame`) and
never talks to the server.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from crowd.judgments import JudgmentFrameError, is_model_worker


def unit_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify the thing being judged: `task` plus `item` where present (each
    argument of a `rate_arguments` task is its own unit)."""
    return ["task", "item"] if "item" in frame.columns else ["task"]


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

"""The one validation step every statistic, aggregator and report runs on its judgment frame.

An analyst's frame is messy; no statistic may turn that mess into a silent wrong number:

- NaN / None / "" task or worker ids are an error (a worker named "nan" is nobody);
- NaN / None / "" labels are an error unless the caller opts into dropping them (`dropna=True`);
- a column mixing types (worker `1` and `"1"`, label `1` and `"1"`) is an error naming the
  column and two example rows, because any rule that merges or separates them is a guess;
- two answers of one worker to one unit (`task` [+ `item`]) are an error unless the caller
  picks one (`duplicates="first"|"last"`);
- ids keep their type (all ids of a column have one type, so nothing merges or splits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowd.judgments import JudgmentFrameError

DUPLICATES = ("error", "first", "last")
_NUMBER_KINDS = {"integer", "floating", "mixed-integer-float", "decimal"}
_KIND_NAMES = {"string": "str", "integer": "int", "floating": "float", "boolean": "bool",
               "mixed-integer-float": "number", "decimal": "number", "bytes": "bytes"}


def _type_family(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    return type(value).__name__


def _missing_mask(series: pd.Series) -> np.ndarray:
    miss = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        miss |= (series.astype(object) == "").to_numpy()
    return miss


def check_mixed_types(series: pd.Series, column: str) -> None:
    """Raise `JudgmentFrameError` when a column holds values of more than one type family
    (text, number, bool, ...), naming the column and a row of each of two families."""
    if series.dtype != object:
        return
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred in ("string", "empty", "boolean", "bytes") or inferred in _NUMBER_KINDS:
        return
    fam = series.map(_type_family)
    first = fam.iloc[0]
    other = np.flatnonzero((fam != first).to_numpy())
    if not len(other):
        return
    i, j = 0, int(other[0])
    raise JudgmentFrameError(
        f"column {column!r} mixes types: {series.iloc[i]!r} ({first}) at row {i} and {series.iloc[j]!r} "
        f"({fam.iloc[j]}) at row {j}; make the column one type (e.g. all text) before analysing it")


def unit_key_columns(frame: pd.DataFrame) -> list[str]:
    return ["task", "item"] if "item" in frame.columns else ["task"]


def prepare_judgments(data, *, dropna: bool = False, duplicates: str = "error",
                      where: str = "judgment frame") -> pd.DataFrame:
    """Validate a long judgment frame and return the clean copy every statistic works on.

    Args:
        data: DataFrame with `task, worker, label` [+ `item`, ...].
        dropna: drop rows whose label is missing (NaN, None, "") instead of raising.
        duplicates: "error" (default), or keep the "first" / "last" answer of a worker to a unit.
        where: how error messages name the input.

    Returns:
        A copy with missing-label rows dropped when `dropna` and one answer per (unit, worker). `attrs["dropped_labels"]` and
        `attrs["dropped_duplicates"]` count what was dropped.

    Raises:
        JudgmentFrameError naming the column, row and value at fault.
    """
    if not isinstance(data, pd.DataFrame):
        raise JudgmentFrameError(f"{where}: expected a pandas DataFrame, got {type(data).__name__}")
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    missing = [c for c in ("task", "worker", "label") if c not in data.columns]
    if missing:
        raise JudgmentFrameError(f"{where}: missing required column(s) {missing}; found {list(data.columns)}")
    if data.empty:
        raise JudgmentFrameError(f"{where}: the judgment frame is empty")
    frame = data.reset_index(drop=True)
    id_cols = unit_key_columns(frame) + ["worker"]
    for col in id_cols:
        miss = _missing_mask(frame[col])
        if miss.any():
            row = int(np.flatnonzero(miss)[0])
            raise JudgmentFrameError(f"{where}: column {col!r} is empty (NaN/None/'') at row {row} "
                                     f"({int(miss.sum())} in all); every answer needs a {col} id")
    miss = _missing_mask(frame["label"])
    dropped = 0
    if miss.any():
        if not dropna:
            row = int(np.flatnonzero(miss)[0])
            raise JudgmentFrameError(
                f"{where}: column 'label' is empty (NaN/None/'') at row {row} ({int(miss.sum())} in all); "
                "pass dropna=True to leave those answers out")
        frame = frame[~miss].reset_index(drop=True)
        dropped = int(miss.sum())
        if frame.empty:
            raise JudgmentFrameError(f"{where}: every label is empty")
    for col in id_cols + ["label"]:
        check_mixed_types(frame[col], col)
    # one answer per (unit, worker): codes of the id columns, one int64 key per row
    key = np.zeros(len(frame), np.int64)
    for col in id_cols:
        codes, uniques = pd.factorize(frame[col])
        key = key * len(uniques) + codes
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    n_dup = 0
    if dup.any():
        if duplicates == "error":
            row = int(np.flatnonzero(dup)[0])
            r = frame.iloc[row]
            raise JudgmentFrameError(
                f"{where}: worker {r['worker']!r} answered unit {tuple(r[c] for c in id_cols[:-1])} "
                f"{int((key == key[row]).sum())} times (first at row {row}); "
                "pass duplicates='first' or 'last' to keep one answer")
        keep = ~pd.Series(key).duplicated(keep=duplicates).to_numpy()
        n_dup = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    else:
        frame = frame.copy()
    frame.attrs["dropped_labels"] = dropped
    frame.attrs["dropped_duplicates"] = n_dup
    return frame

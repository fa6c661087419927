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


def _column_codes(series: pd.Series, column: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One hash pass over a column: (codes `[n]` into the sorted distinct values, -1 for
    NaN/None/"", uniques). Raises when the column mixes types (checked on the distinct values)."""
    if series.dtype.kind in "iub":
        return id_codes(series, sort=True)
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True, sort=True)
    except TypeError:  # mixed types do not sort: find them below
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    uniques = np.asarray(uniques, dtype=object) if series.dtype == object else np.asarray(uniques)
    if uniques.dtype == object and len(uniques):
        empty = np.flatnonzero(uniques == "")
        if len(empty):  # "" is missing: drop it from the uniques, shift the codes above it
            e = empty[0]
            codes = np.where(codes == e, -1, codes - (codes > e))
            uniques = np.delete(uniques, e)
        inferred = pd.api.types.infer_dtype(uniques, skipna=True)
        if not (inferred in ("string", "empty", "boolean", "bytes") or inferred in _NUMBER_KINDS):
            _raise_mixed(series, codes, uniques, column, where)
    return codes, uniques


def _raise_mixed(series, codes, uniques, column, where):
    fam = np.array([_type_family(u) for u in uniques], dtype=object)
    first_u = codes[codes >= 0][0]
    other_u = np.flatnonzero(fam != fam[first_u])[0]
    i = int(np.flatnonzero(codes == first_u)[0])
    j = int(np.flatnonzero(codes == other_u)[0])
    raise JudgmentFrameError(
        f"{where}: column {column!r} mixes types: {series.iloc[i]!r} ({fam[first_u]}) at row {i} and "
        f"{series.iloc[j]!r} ({fam[other_u]}) at row {j}; make the column one type (e.g. all text) "
        "before analysing it")


def check_mixed_types(series: pd.Series, column: str, where: str = "judgment frame") -> None:
    """Raise `JudgmentFrameError` when a column holds values of more than one type family
    (text, number, bool, ...), naming the column and a row of each of two families."""
    _column_codes(series, column, where)


def id_codes(series: pd.Series, sort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(codes `[n]` int64, uniques) of an id column; integers in a compact range are coded by
    one bincount (O(n), sorted), anything else by `pandas.factorize`."""
    values = series.to_numpy()
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * len(values) + 1024:
            shifted = values.astype(np.int64, copy=False) if lo == 0 else (values - lo).astype(np.int64)
            present = np.bincount(shifted, minlength=hi - lo + 1) > 0
            if present.all():  # ids lo..hi all used: the shifted values are the codes
                return shifted, np.arange(lo, hi + 1)
            remap = np.cumsum(present) - 1
            return remap[shifted], np.flatnonzero(present) + lo
    codes, uniques = pd.factorize(series, sort=sort)
    return codes.astype(np.int64), np.asarray(uniques)


def _duplicated(key: np.ndarray, keep) -> np.ndarray:
    """`pandas.Series.duplicated` of an int64 key (keep=False, "first" or "last"): by bincount
    when the key range is compact, else by one stable sort."""
    if keep is False and len(key) and key.max() <= 4 * len(key) + 1024:
        return np.bincount(key)[key] > 1
    order = np.argsort(key, kind="stable")
    sk = key[order]
    same_prev = np.concatenate([[False], sk[1:] == sk[:-1]])
    same_next = np.concatenate([sk[:-1] == sk[1:], [False]])
    mark = {False: same_prev | same_next, "first": same_prev, "last": same_next}[keep]
    out = np.empty(len(key), bool)
    out[order] = mark
    return out


def judgment_codes(frame: pd.DataFrame, column: str):
    """(codes, sorted uniques) of a column of a frame returned by `prepare_judgments`, or None."""
    stash = getattr(frame, "_judgment_codes", None)
    if stash is None or column not in stash or len(stash[column][0]) != len(frame):
        return None
    return stash[column]


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
    frame = data if isinstance(data.index, pd.RangeIndex) and data.index.start == 0 and data.index.step == 1 \
        else data.reset_index(drop=True)
    id_cols = unit_key_columns(frame) + ["worker"]
    codes = {}
    for col in id_cols:
        c, uniques = _column_codes(frame[col], col, where)
        miss = c < 0
        if miss.any():
            row = int(np.flatnonzero(miss)[0])
            raise JudgmentFrameError(f"{where}: column {col!r} is empty (NaN/None/'') at row {row} "
                                     f"({int(miss.sum())} in all); every answer needs a {col} id")
        codes[col] = (c, uniques)
    label_codes, label_uniques = _column_codes(frame["label"], "label", where)
    miss = label_codes < 0
    dropped = 0
    if miss.any():
        if not dropna:
            row = int(np.flatnonzero(miss)[0])
            raise JudgmentFrameError(
                f"{where}: column 'label' is empty (NaN/None/'') at row {row} ({int(miss.sum())} in all); "
                "pass dropna=True to leave those answers out")
        dropped = int(miss.sum())
        if dropped == len(frame):
            raise JudgmentFrameError(f"{where}: every label is empty")
    # one answer per (unit, worker): one int64 key per row from the id codes
    key = np.zeros(len(frame), np.int64)
    for col in id_cols:
        c, uniques = codes[col]
        key = key * len(uniques) + c
    keep = ~miss
    if dropped:
        dup = np.zeros(len(frame), bool)
        dup[keep] = _duplicated(key[keep], keep=False)
    else:
        dup = _duplicated(key, keep=False)
    n_dup = 0
    if dup.any():
        if duplicates == "error":
            row = int(np.flatnonzero(dup)[0])
            r = frame.iloc[row]
            raise JudgmentFrameError(
                f"{where}: worker {r['worker']!r} answered unit {tuple(r[c] for c in id_cols[:-1])} "
                f"{int((key[keep] == key[row]).sum())} times (first at row {row}); "
                "pass duplicates='first' or 'last' to keep one answer")
        first = np.zeros(len(frame), bool)
        first[keep] = _duplicated(key[keep], keep=duplicates)
        n_dup = int(first.sum())
        keep &= ~first
    if keep.all():
        frame = frame.copy(deep=False)
        # the codes computed here, for `analysis` to reuse on exactly this frame (a plain
        # attribute: any derived frame lacks it, so stale codes cannot leak)
        codes["label"] = (label_codes, label_uniques)
        object.__setattr__(frame, "_judgment_codes", codes)
    else:
        frame = frame[keep].reset_index(drop=True)
    frame.attrs["dropped_labels"] = dropped
    frame.attrs["dropped_duplicates"] = n_dup
    return frame

"""Chance-corrected agreement among raters, as plain functions over a judgment frame.

Every function takes a long frame (`task, worker, label` [+ `item`, `kind`]) and returns an
`Estimate` (value + percentile bootstrap CI over tasks). A unit is a `(task, item)` pair when the
frame has `item` (each argument of a sheet is judged separately); resampling is clustered by
`task` by default, so the several arguments of one sheet move together.

All statistics are ratios of sums over units (see `_bootstrap`), which makes 1,000 bootstrap
resamples a handful of matrix products.

Levels of measurement (Krippendorff): `nominal`, `ordinal`, `interval`, `ratio`. There is no
silent default: pass `level=`, or let it be inferred from the frame's `kind`/`item`
(`KIND_LEVELS`).
"""

from __future__ import annotations

import functools
import itertools
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from crowd.judgments import KIND_LEVELS, LEVELS, JudgmentFrameError, item_group

from ._bootstrap import UNRELIABLE_SHARE, Estimate, bootstrap
from .frames import unit_columns
from .validation import id_codes, judgment_codes, prepare_judgments


def infer_level(frame: pd.DataFrame) -> str:
    """Level of measurement from the frame's `kind` (and `item`) columns.

    Raises ValueError when the frame has no `kind`, an unknown kind, or mixes levels."""
    if "kind" not in frame.columns:
        raise ValueError("level of measurement is required (nominal|ordinal|interval|ratio): "
                         "the frame has no 'kind' column to infer it from")
    items = frame["item"] if "item" in frame.columns else frame["kind"]
    pairs = set(zip(frame["kind"].astype(str), items.map(item_group)))
    levels = set()
    for kind, group in pairs:
        level = KIND_LEVELS.get((kind, group)) or KIND_LEVELS.get((kind, kind))
        if level is None:
            raise ValueError(f"cannot infer the level for kind={kind!r}, item={group!r}; pass level= "
                             f"(one of {LEVELS})")
        levels.add(level)
    if len(levels) != 1:
        raise ValueError(f"the frame mixes items of different levels {sorted(levels)} "
                         f"(kinds/items {sorted(pairs)}); filter it to one kind/item first")
    return levels.pop()


def _resolve_level(data, level) -> str:
    if level is None:
        if not isinstance(data, pd.DataFrame):
            raise ValueError("level of measurement is required for a matrix input "
                             "(nominal|ordinal|interval|ratio)")
        return infer_level(data)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return level


# ----------------------------------------------------------------------------- encoding

class _Coded:
    """Integer-coded judgments: `unit, rater, value` codes `[n]` (None on the matrix fast path),
    `domain` `[V]`, `cluster` `[U]` (task code of every unit), `counts` `[U, V]`,
    `rated`: the `[R, U]` float matrix with NaN for missing (matrix input) or None."""

    def __init__(self, unit, rater, value, domain, n_units, n_raters, cluster, counts=None, rated=None):
        self.unit, self.rater, self.value = unit, rater, value
        self.domain = domain
        self.n_units, self.n_raters = n_units, n_raters
        self.cluster = cluster
        self.rated = rated
        V = len(domain)
        if counts is None:
            counts = np.bincount(unit * V + value, minlength=n_units * V).reshape(n_units, V)
        self.counts = counts.astype(float)

    def raters_in(self, keep: np.ndarray) -> int:
        """Number of distinct raters with a rating in the kept units."""
        if self.rated is not None:
            sub = self.rated if keep.all() else self.rated[:, keep]
            return int(np.isfinite(np.fmax.reduce(sub, axis=1)).sum())
        if keep.all():  # rater codes are compact: every rater has a rating
            return self.n_raters
        return int(np.count_nonzero(np.bincount(self.rater[keep[self.unit]], minlength=self.n_raters)))


def _numeric_domain(values: np.ndarray, categories, level: str, where: str):
    """Codes + domain for ordered levels. `categories` (ordered) wins; else numeric labels."""
    if categories is not None:
        cats = list(categories)
        if level in ("interval", "ratio"):
            try:
                dom = np.asarray(cats, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: level {level!r} needs numeric categories, got {cats}") from None
        else:
            dom = np.arange(len(cats), dtype=float)
        codes = _lookup(values, cats, also_text=True)
        if (codes < 0).any():
            bad = values[np.flatnonzero(codes < 0)[0]]
            raise ValueError(f"{where}: label {bad!r} is not among categories {cats}")
        return codes.astype(np.int64), dom, cats
    try:
        nums = pd.to_numeric(pd.Series(values), errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError):
        example = next((v for v in values if pd.isna(pd.to_numeric(v, errors="coerce"))), values[0])
        raise ValueError(f"{where}: level {level!r} needs numeric labels (or ordered categories=); "
                         f"label {example!r} is not a number") from None
    codes, dom = _fast_codes(nums)
    return codes, dom, list(dom)


def _fast_codes(nums: np.ndarray):
    """Codes into the sorted distinct values; O(n) for small integer ranges, else np.unique."""
    if nums.size and np.all(np.isfinite(nums)):
        lo, hi = nums.min(), nums.max()
        if hi - lo < 100_000 and np.all(nums == np.floor(nums)):
            shifted = (nums - lo).astype(np.int64)
            present = np.bincount(shifted, minlength=int(hi - lo) + 1) > 0
            remap = np.cumsum(present) - 1
            return remap[shifted], np.flatnonzero(present).astype(float) + lo
    dom, codes = np.unique(nums, return_inverse=True)
    return codes.astype(np.int64), dom


def _encode(data, level: str, categories=None, cluster: str | None = "task") -> _Coded:
    if isinstance(data, pd.DataFrame):
        return _encode_frame(data, level, categories, cluster)
    return _encode_matrix(np.asarray(data), level, categories)


def _encode_matrix(matrix: np.ndarray, level: str, categories) -> _Coded:
    if matrix.ndim != 2:
        raise ValueError(f"reliability matrix must be 2-D [raters, units], got shape {matrix.shape}")
    n_raters, n_units = matrix.shape
    if matrix.dtype.kind in "fiu" and categories is None:
        counts = _matrix_counts(matrix.astype(float, copy=False))
        if counts is not None:
            raw, domain_all = counts
            present = raw.sum(0) > 0
            return _Coded(None, None, None, domain_all[present], n_units, n_raters, np.arange(n_units),
                          counts=raw[:, present], rated=matrix)
    if matrix.dtype.kind in "f":
        mask = ~np.isnan(matrix)
    else:
        mask = pd.notna(pd.DataFrame(matrix)).to_numpy()
    rater, unit = np.nonzero(mask)
    values = matrix[rater, unit]
    codes, domain, _ = _value_codes(values, level, categories, "matrix")
    return _Coded(unit, rater, codes, domain, n_units, n_raters, np.arange(n_units))


def _matrix_counts(matrix: np.ndarray, block: int = 65_536):
    """Value counts `[U, V]` of a numeric `[raters, units]` matrix with NaN for missing, for
    integer values in a range under 100,000: one bincount per cache-sized block of raters, no
    long-format copy. Returns (counts, domain) or None (non-integer values: use the general path)."""
    lo, hi = np.fmin.reduce(matrix, axis=None), np.fmax.reduce(matrix, axis=None)
    if not np.isfinite(lo):
        raise ValueError("the reliability matrix has no ratings")
    if hi - lo >= 100_000:
        return None
    n_raters, n_units = matrix.shape
    width = int(hi - lo) + 2  # the last slot collects the missing cells
    offsets = np.arange(n_units, dtype=np.int64) * width
    counts = np.zeros(n_units * width, dtype=np.int64)
    step = max(1, block // max(n_units, 1))
    for r0 in range(0, n_raters, step):
        blk = matrix[r0:r0 + step]
        shifted = np.where(np.isnan(blk), width - 1, blk - lo)
        codes = shifted.astype(np.int64)
        if not np.array_equal(codes, shifted):
            return None
        codes += offsets
        counts += np.bincount(codes.ravel(), minlength=n_units * width)
    return counts.reshape(n_units, width)[:, :-1], np.arange(width - 1) + lo


def _value_codes(values: np.ndarray, level: str, categories, where: str):
    if level == "nominal":
        if categories is not None:
            cats = list(categories)
            codes = _lookup(values, cats)
            if (codes < 0).any():
                bad = values[np.flatnonzero(codes < 0)[0]]
                raise ValueError(f"{where}: label {bad!r} is not among categories {cats}")
            return codes.astype(np.int64), np.asarray(cats, dtype=object), cats
        if values.dtype.kind in "fiub":
            codes, dom = _fast_codes(values.astype(float))
            return codes, dom, list(dom)
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=True)
        return codes.astype(np.int64), np.asarray(uniques, dtype=object), list(uniques)
    return _numeric_domain(values, categories, level, where)


def _encode_frame(frame: pd.DataFrame, level: str, categories, cluster) -> _Coded:
    """Integer codes of a frame that went through `prepare_judgments` (one type per id column,
    one answer per (unit, worker)): units in sorted (task, item) order, raters sorted."""
    for col in ("task", "worker", "label"):
        if col not in frame.columns:
            raise JudgmentFrameError(f"judgment frame lacks required column '{col}'")
    if frame.empty:
        raise ValueError("the judgment frame is empty")
    def codes_of(col):
        return judgment_codes(frame, col) or id_codes(frame[col])

    t, tasks = codes_of("task")
    if "item" in frame.columns:
        i, items = codes_of("item")
        unit, combined = id_codes(pd.Series(t * len(items) + i))
        task_of_unit = combined // len(items)
    else:
        unit, task_of_unit = t, np.arange(len(tasks))
    rater, _ = codes_of("worker")
    known = judgment_codes(frame, "label")
    if level == "nominal" and categories is None and known is not None:
        codes, domain = known[0], np.asarray(known[1], dtype=object if known[1].dtype == object else float)
    else:
        codes, domain, _ = _value_codes(frame["label"].to_numpy(), level, categories, "label")
    n_units = len(task_of_unit)
    clusters = task_of_unit if cluster == "task" else np.arange(n_units)
    return _Coded(unit.astype(np.int64), rater.astype(np.int64), codes, domain, n_units,
                  int(rater.max()) + 1, clusters)


def _lookup(values: np.ndarray, cats: list, also_text: bool = False) -> np.ndarray:
    """Index of each value in `cats` (-1 when absent); `also_text`: "3" finds category 3."""
    codes = pd.Index(cats, dtype=object).get_indexer(pd.Index(values, dtype=object))
    if also_text and (codes < 0).any():
        miss = codes < 0
        codes[miss] = pd.Index([str(c) for c in cats]).get_indexer(pd.Index(values[miss]).astype(str))
    return codes


def _by_cluster(coded: _Coded, keep: np.ndarray, stats: dict) -> dict:
    """Sum per-unit stats within clusters (tasks), so the bootstrap resamples whole tasks."""
    cl = coded.cluster[keep]
    if len(cl) == 0 or cl[-1] - cl[0] + 1 == len(cl) and np.all(np.diff(cl) == 1) or len(np.unique(cl)) == len(cl):
        return stats  # one unit per cluster
    ids, inv = np.unique(cl, return_inverse=True)
    agg = sparse.csr_matrix((np.ones(len(cl)), (inv, np.arange(len(cl)))), shape=(len(ids), len(cl)))
    out = {}
    for k, v in stats.items():
        if hasattr(v, "tocsr"):
            out[k] = (agg @ v).tocsr()
        elif v.ndim == 1:
            out[k] = agg @ v
        else:
            out[k] = np.asarray(agg @ v.reshape(v.shape[0], -1)).reshape((len(ids),) + v.shape[1:])
    return out


def _estimate(name, stat, stats, coded, keep, *, n_boot, seed, confidence, ci="percentile", level=None,
              extra=None):
    stats = _by_cluster(coded, keep, stats)
    value, lo, hi, boots = bootstrap(stat, stats, n_boot=n_boot, seed=seed, confidence=confidence, method=ci)
    n_judg = int(coded.counts[keep].sum())
    n_undef = int(np.isnan(boots).sum())
    unreliable = n_boot > 0 and n_undef > UNRELIABLE_SHARE * n_boot
    reason = ""
    if unreliable:
        reason = (f"{n_undef} of {n_boot} bootstrap resamples were undefined and are left out: "
                  "the interval is unreliable")
    if not np.isfinite(value):
        reason = "the statistic is undefined on these data"
    return Estimate(statistic=name, value=value, ci_low=lo, ci_high=hi, n_units=int(keep.sum()),
                    n_raters=coded.raters_in(keep),
                    n_judgments=n_judg, confidence=confidence, n_boot=n_boot, level=level,
                    extra=extra or {}, reason=reason, n_boot_undefined=n_undef, ci_unreliable=unreliable,
                    ci_method=ci)


class _Undefined(ValueError):
    """The statistic is undefined on these data; the message says why. Public functions turn it
    into an `Estimate` with value NaN and this `reason`."""


def _every_rating(domain) -> str:
    return f"every rating is {domain[0]!r}"


def _statistic(name: str):
    """Run the validation step (`analysis.validation.prepare_judgments`) on frame input and
    turn `_Undefined` into a NaN `Estimate` with its reason. Adds the keyword arguments
    `dropna=False` and `duplicates="error"` to the wrapped function."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(data, *args, dropna: bool = False, duplicates: str = "error", **kw):
            if isinstance(data, pd.DataFrame):
                data = prepare_judgments(data, dropna=dropna, duplicates=duplicates)
                n_judg = len(data)
            else:
                arr = np.asarray(data)
                n_judg = int(pd.notna(pd.DataFrame(arr)).to_numpy().sum()) if arr.ndim == 2 else 0
            try:
                return fn(data, *args, **kw)
            except _Undefined as exc:
                return Estimate(statistic=name, value=float("nan"), n_judgments=n_judg,
                                confidence=kw.get("confidence", 0.95), n_boot=0, reason=str(exc))
        return wrapper
    return deco


# ----------------------------------------------------------------------------- statistics

def _pairwise_units(data, cluster):
    """Nominal coding plus, for units with >= 2 ratings (`keep`), their category counts `ck`
    `[U, K]`, rating counts `mk` `[U]` and share of agreeing rater pairs `p_u` `[U]`."""
    coded = _encode(data, "nominal", cluster=cluster)
    c = coded.counts
    m = c.sum(1)
    keep = m >= 2
    if not keep.any():
        raise _Undefined("no unit has two or more ratings")
    ck, mk = c[keep], m[keep]
    return coded, keep, ck, mk, (ck * (ck - 1)).sum(1) / (mk * (mk - 1))


@_statistic("percent_agreement")
def percent_agreement(data, *, n_boot: int = 1000, seed=0, confidence: float = 0.95,
                      ci: str = "percentile", cluster: str | None = "task") -> Estimate:
    """Observed agreement: the share of agreeing rater pairs within a unit, averaged over
    units with >= 2 ratings (Fleiss' P-bar). Labels compared as nominal.

    Args:
        data: long judgment frame, or a `[raters, units]` matrix (NaN = missing).
    Returns:
        Estimate in [0, 1].
    """
    coded, keep, _, _, p_u = _pairwise_units(data, cluster)
    stat = lambda s: s["p"] / s["one"]  # noqa: E731
    return _estimate("percent_agreement", stat, {"p": p_u, "one": np.ones_like(p_u)}, coded, keep,
                     n_boot=n_boot, seed=seed, confidence=confidence, ci=ci, level="nominal")


@_statistic("fleiss_kappa")
def fleiss_kappa(data, *, marginals: str = "pooled", n_boot: int = 1000, seed=0, confidence: float = 0.95,
                 ci: str = "percentile", cluster: str | None = "task") -> Estimate:
    """Fleiss' kappa (1971) for many raters, with a varying number of ratings per unit.

    Observed agreement P-bar is the mean over units with >= 2 ratings of each unit's share of
    agreeing rater pairs (its own count m_u). Chance agreement sum_j p_j^2 takes the category
    shares p_j from one of two definitions, identical when every unit has the same count
    (then both equal `statsmodels.stats.inter_rater.fleiss_kappa`):

    - `marginals="pooled"` (default): p_j = ratings of category j / all ratings, pooled over the
      units with >= 2 ratings (single-rated units carry no pair and are left out entirely);
    - `marginals="gwet"`: p_j = the mean over *every* rated unit (single-rated ones too) of the
      unit's share of category j: Gwet's generalisation, irrCAC's `CAC.fleiss`.

    Undefined (NaN with the reason) when no unit has two ratings or every rating is the same.
    """
    if marginals not in ("pooled", "gwet"):
        raise ValueError(f"marginals must be 'pooled' or 'gwet', got {marginals!r}")
    coded = _encode(data, "nominal", cluster=cluster)
    c = coded.counts
    m = c.sum(1)
    if not (m >= 2).any():
        raise _Undefined("no unit has two or more ratings")
    if c.shape[1] < 2:
        raise _Undefined(f"{_every_rating(coded.domain)}: chance agreement is 1, kappa is 0/0")
    keep = m >= (2 if marginals == "pooled" else 1)
    ck, mk = c[keep], m[keep]
    two = mk >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p_u = np.where(two, (ck * (ck - 1)).sum(1) / (mk * (mk - 1)), 0.0)
    if marginals == "pooled":
        stats = {"p": p_u, "two": two.astype(float), "c": ck, "m": mk}

        def shares(s):
            return s["c"] / s["m"][:, None]
    else:
        stats = {"p": p_u, "two": two.astype(float), "pi": ck / mk[:, None], "one": np.ones(len(mk))}

        def shares(s):
            return s["pi"] / s["one"][:, None]

    def stat(s):
        p_bar = s["p"] / s["two"]
        p_e = (shares(s) ** 2).sum(1)
        return (p_bar - p_e) / (1 - p_e)

    return _estimate("fleiss_kappa", stat, stats, coded, keep, n_boot=n_boot, seed=seed, confidence=confidence,
                     ci=ci, level="nominal", extra={"marginals": marginals})


def _sorted_categories(labels: pd.Series) -> tuple[list, np.ndarray]:
    """(categories in order, labels) for weighted statistics: numbers when every distinct label
    is one (text "3" counts as 3, ordered numerically), else text in sorted order. Looks at the
    distinct labels only (one hash pass), not at every row."""
    codes, uniques = pd.factorize(labels, sort=False)
    num = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce")
    if num.notna().all():
        values = num.to_numpy(dtype=float)
        if np.all(values == np.round(values)) and labels.dtype.kind in "iu":
            values = values.astype(labels.dtype)
        return sorted(pd.unique(values).tolist()), values[codes]
    return sorted(pd.unique(np.asarray(uniques, dtype=object)).tolist()), labels.to_numpy()


def _kappa_weights(k: int, weights) -> np.ndarray:
    """Disagreement weights `[k, k]` on category indices: None -> 1 - I, linear |i-j|/(k-1),
    quadratic ((i-j)/(k-1))^2, or a given matrix (agreement weights are not accepted)."""
    if weights is None or weights in ("none", "unweighted"):
        return 1.0 - np.eye(k)
    idx = np.arange(k)
    d = np.abs(idx[:, None] - idx[None, :]) / max(k - 1, 1)
    if weights == "linear":
        return d
    if weights == "quadratic":
        return d ** 2
    w = np.asarray(weights, dtype=float)
    if w.shape != (k, k):
        raise ValueError(f"weights matrix must be {k}x{k}, got {w.shape}")
    return w


@_statistic("cohen_kappa")
def cohen_kappa(data, raters: Sequence[str] | str | None = None, *, weights=None, categories=None,
                min_overlap: int = 2, n_boot: int = 1000, seed=0, confidence: float = 0.95, ci: str = "percentile",
                cluster: str | None = "task") -> Estimate:
    """Cohen's kappa between two raters (unweighted, `weights="linear"` or `"quadratic"`).

    Args:
        data: long judgment frame.
        raters: `(worker_a, worker_b)`; None when the frame has exactly two workers; `"all"` for
            Light's kappa (the mean of pairwise Cohen's kappas over every pair of workers sharing
            >= `min_overlap` units).
        weights: None | "linear" | "quadratic" | `[K, K]` disagreement matrix; weights use the
            order of `categories` (default: sorted labels, numerically if all are numbers).
    Returns:
        Estimate; `extra["pairs"]` is the number of rater pairs averaged.
    """
    if not isinstance(data, pd.DataFrame):
        data = _matrix_to_frame(np.asarray(data))
    if weights is not None and categories is None:
        categories, labels = _sorted_categories(data["label"])
        data = data.assign(label=labels)
    coded = _encode(data, "nominal", categories, cluster=cluster)
    # worker ids in the order of the rater codes (ids keep their type: 2 sorts before 10)
    workers = np.asarray([str(w) for w in (judgment_codes(data, "worker") or id_codes(data["worker"]))[1]])
    if raters is None:
        if len(workers) != 2:
            raise ValueError(f"cohen_kappa needs two raters; the frame has {len(workers)}: pass "
                             "raters=(a, b) or raters='all' (Light's kappa)")
        pairs = [(0, 1)]
    elif isinstance(raters, str):
        if raters != "all":
            raise ValueError(f"raters must be a pair of worker ids or 'all', got {raters!r}")
        pairs = list(itertools.combinations(range(len(workers)), 2))
    else:
        a, b = (str(r) for r in raters)
        missing = [r for r in (a, b) if r not in set(workers)]
        if missing:
            raise ValueError(f"rater(s) {missing} not in the frame")
        index = {w: i for i, w in enumerate(workers)}
        pairs = [(index[a], index[b])]
    K = len(coded.domain)
    w = _kappa_weights(K, weights)
    # label of every (unit, rater), -1 where missing
    grid = np.full((coded.n_units, coded.n_raters), -1, dtype=np.int64)
    grid[coded.unit, coded.rater] = coded.value
    rows_, cols_, used = [], [], []
    for i, j in pairs:
        both = np.flatnonzero((grid[:, i] >= 0) & (grid[:, j] >= 0))
        if len(both) < min_overlap:
            continue
        rows_.append(both)
        cols_.append(len(used) * K * K + grid[both, i] * K + grid[both, j])
        used.append((i, j))
    if not used:
        raise _Undefined(f"no pair of raters shares >= {min_overlap} units")
    if K < 2:
        raise _Undefined(f"{_every_rating(coded.domain)}: chance agreement is 1, kappa is 0/0")
    # one block of K*K contingency cells per rater pair; COO -> CSR sums duplicates
    table = sparse.csr_matrix((np.ones(sum(len(r) for r in rows_)),
                               (np.concatenate(rows_), np.concatenate(cols_))),
                              shape=(coded.n_units, len(used) * K * K))
    keep = np.asarray(table.sum(1)).ravel() > 0

    def stat(s):
        t = s["t"].reshape(-1, len(used), K, K)
        n = t.sum((2, 3))
        row, col = t.sum(3) / n[..., None], t.sum(2) / n[..., None]
        po = (t * w).sum((2, 3)) / n
        pe = np.einsum("bpi,ij,bpj->bp", row, w, col)
        with np.errstate(divide="ignore", invalid="ignore"):
            kappas = 1 - po / pe
        return np.nanmean(kappas, axis=1) if kappas.shape[1] > 1 else kappas[:, 0]

    name = "cohen_kappa" if len(used) == 1 else "light_kappa"
    return _estimate(name, stat, {"t": table[keep]}, coded, keep, n_boot=n_boot, seed=seed,
                     confidence=confidence, ci=ci, level="nominal" if weights is None else "ordinal",
                     extra={"pairs": len(used), "weights": weights if isinstance(weights, str) or weights is None else "custom"})


def _matrix_to_frame(matrix: np.ndarray) -> pd.DataFrame:
    from .frames import from_matrix
    return from_matrix(matrix)


@_statistic("krippendorff_alpha")
def krippendorff_alpha(data, level: str | None = None, *, categories=None, n_boot: int = 1000,
                       seed=0, confidence: float = 0.95, ci: str = "percentile",
                       cluster: str | None = "task") -> Estimate:
    """Krippendorff's alpha from the coincidence matrix, any number of raters, missing data.

    Args:
        data: long judgment frame, or a `[raters, units]` matrix with NaN for missing (the
            `krippendorff` package's orientation).
        level: "nominal" | "ordinal" | "interval" | "ratio"; None infers it from the frame's
            `kind`/`item` (`KIND_LEVELS`) and raises if it cannot: there is no silent default.
        categories: ordered label list (for string labels at ordinal level, or to fix the
            nominal domain); numeric labels are used as numbers otherwise.
    Returns:
        Estimate (alpha in (-inf, 1]); only pairable values (units with >= 2 ratings) count.

    Computation: with c_u the value counts of unit u and m_u their sum, the observed
    disagreement is sum_u (c_u' D c_u) / (m_u - 1) and the expected one n' D n / (N - 1), where
    n = sum_u c_u over pairable units; alpha = 1 - (N - 1) D_o / (n' D n).
    """
    level = _resolve_level(data, level)
    coded = _encode(data, level, categories, cluster=cluster)
    c = coded.counts
    m = c.sum(1)
    keep = m >= 2
    if not keep.any():
        raise _Undefined("no unit has two or more ratings")
    if len(coded.domain) < 2:
        raise _Undefined(f"{_every_rating(coded.domain)}: expected disagreement is 0, alpha is 0/0")
    ck, inv = c[keep], 1.0 / (m[keep] - 1)
    dom = np.asarray(coded.domain, dtype=float) if level in ("interval", "ratio") else None
    if level == "ordinal":
        # the ordinal metric depends on the marginals, so keep the full coincidences per unit
        V = ck.shape[1]
        o_u = (ck[:, :, None] * ck[:, None, :] - ck[:, :, None] * np.eye(V)) * inv[:, None, None]
        stats = {"o": o_u.reshape(len(ck), V * V)}

        def stat(s):
            o = s["o"].reshape(-1, V, V)
            n = o.sum(2)
            d = _ordinal_delta(n)
            N = n.sum(1)
            return 1 - (N - 1) * (o * d).sum((1, 2)) / np.einsum("bi,bij,bj->b", n, d, n)
    else:
        if level == "nominal":
            d = 1.0 - np.eye(ck.shape[1])
        elif level == "interval":
            d = (dom[:, None] - dom[None, :]) ** 2
        else:
            s_ = dom[:, None] + dom[None, :]
            d = np.divide(dom[:, None] - dom[None, :], s_, out=np.zeros_like(s_), where=s_ != 0) ** 2
        do_u = ((ck @ d) * ck).sum(1) * inv
        stats = {"do": do_u, "n": ck}

        def stat(s):
            n = s["n"]
            N = n.sum(1)
            return 1 - (N - 1) * s["do"] / np.einsum("bi,ij,bj->b", n, d, n)

    return _estimate("krippendorff_alpha", stat, stats, coded, keep, n_boot=n_boot, seed=seed,
                     confidence=confidence, ci=ci, level=level)


def _ordinal_delta(n: np.ndarray) -> np.ndarray:
    """Ordinal distances `[B, V, V]` from marginals `n` `[B, V]`:
    (sum_{g=a..b} n_g - (n_a + n_b) / 2)^2."""
    cs = np.cumsum(n, axis=1)
    a = np.arange(n.shape[1])
    lo, hi = np.minimum.outer(a, a), np.maximum.outer(a, a)
    between = cs[:, hi] - cs[:, lo] + n[:, lo]
    return (between - (n[:, :, None] + n[:, None, :]) / 2) ** 2


def gwet_weights(categories: Sequence, kind: str = "identity") -> np.ndarray:
    """Agreement weights `[q, q]` as in Gwet (2014) / irrCAC: identity, linear
    `1 - |k-l|/(max-min)`, quadratic `1 - (k-l)^2/(max-min)^2` on the category values when all
    are numbers, else on ranks 1..q."""
    cats = list(categories)
    q = len(cats)
    if kind == "identity":
        return np.eye(q)
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in cats):
        x = np.asarray(sorted(cats), dtype=float)
    else:
        x = np.arange(1, q + 1, dtype=float)
    span = x.max() - x.min() if q > 1 else 1.0
    diff = np.abs(x[:, None] - x[None, :])
    if kind == "linear":
        return 1 - diff / span
    if kind == "quadratic":
        return 1 - (diff / span) ** 2
    raise ValueError(f"unknown weights {kind!r}; use identity|linear|quadratic or a matrix")


@_statistic("gwet_ac2")
def gwet_ac2(data, weights="quadratic", *, categories=None, n_boot: int = 1000, seed=0,
             confidence: float = 0.95, ci: str = "percentile", cluster: str | None = "task") -> Estimate:
    """Gwet's AC2 (weighted AC1) for any number of raters with missing ratings (Gwet 2014,
    same formulas as irrCAC's `CAC.gwet`).

    Args:
        weights: "identity" (= AC1) | "linear" | "quadratic" | `[q, q]` agreement matrix.
        categories: all possible categories in order (default: the labels seen, sorted; unused
            categories change q and so the chance agreement).
    """
    if not isinstance(data, pd.DataFrame):
        data = _matrix_to_frame(np.asarray(data))
    if categories is None:
        categories, labels = _sorted_categories(data["label"])
        data = data.assign(label=labels)
    coded = _encode(data, "nominal", categories, cluster=cluster)
    q = len(categories)
    if q < 2:
        raise _Undefined(f"{_every_rating(categories)} and no other category is given (categories=): "
                         "Gwet's chance agreement needs at least two")
    wm = gwet_weights(categories, weights) if isinstance(weights, str) else np.asarray(weights, float)
    if wm.shape != (q, q):
        raise ValueError(f"weights matrix must be {q}x{q}, got {wm.shape}")
    c = coded.counts
    m = c.sum(1)
    keep = m >= 1
    ck, mk = c[keep], m[keep]
    two = mk >= 2
    cw = ck @ wm.T
    with np.errstate(divide="ignore", invalid="ignore"):
        pa_u = np.where(two, (ck * (cw - 1)).sum(1) / (mk * (mk - 1)), 0.0)
    stats = {"pa": pa_u, "two": two.astype(float), "pi": ck / mk[:, None], "one": np.ones(len(mk))}
    tw = wm.sum()

    def stat(s):
        pa = s["pa"] / s["two"]
        pi = s["pi"] / s["one"][:, None]
        pe = tw * (pi * (1 - pi)).sum(1) / (q * (q - 1))
        return (pa - pe) / (1 - pe)

    name = "gwet_ac1" if isinstance(weights, str) and weights == "identity" else "gwet_ac2"
    return _estimate(name, stat, stats, coded, keep, n_boot=n_boot, seed=seed, confidence=confidence, ci=ci,
                     level="nominal" if name == "gwet_ac1" else "ordinal",
                     extra={"weights": weights if isinstance(weights, str) else "custom"})


@_statistic("gwet_ac1")
def gwet_ac1(data, *, categories=None, n_boot: int = 1000, seed=0, confidence: float = 0.95,
             ci: str = "percentile", cluster: str | None = "task") -> Estimate:
    """Gwet's AC1: `gwet_ac2` with identity weights (nominal labels)."""
    return gwet_ac2.__wrapped__(data, "identity", categories=categories, n_boot=n_boot, seed=seed,
                                confidence=confidence, ci=ci, cluster=cluster)


STATISTICS = {
    "percent_agreement": percent_agreement,
    "fleiss_kappa": fleiss_kappa,
    "krippendorff_alpha": krippendorff_alpha,
    "gwet_ac1": gwet_ac1,
    "gwet_ac2": gwet_ac2,
    "cohen_kappa": cohen_kappa,
}


def agreement_by(frame: pd.DataFrame, by: str | Iterable[str], statistic: str = "krippendorff_alpha",
                 **kwargs) -> pd.DataFrame:
    """One statistic per group (`by` = e.g. "class", "domain", "batch", "rank").

    Groups where the statistic is undefined (no unit with two ratings, one distinct value) get
    NaN and the reason in `note`. For `class`/`domain` join sheet info first
    (`frames.attach_sheet_info`).

    Returns:
        DataFrame: the group column(s), statistic, value, ci_low, ci_high, n_units, n_raters,
        n_judgments, level, note.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in frame.columns]
    if missing:
        raise ValueError(f"cannot break down by {missing}: not columns of the frame "
                         f"({list(frame.columns)}); for class/domain use attach_sheet_info")
    fn = STATISTICS.get(statistic)
    if fn is None:
        raise ValueError(f"unknown statistic {statistic!r}; choose from {sorted(STATISTICS)}")
    rows = []
    for key, group in frame.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        try:
            est = fn(group, **kwargs)
            row.update(est.as_dict())
            row["note"] = est.reason
        except ValueError as exc:
            row.update({"statistic": statistic, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                        "n_units": 0, "n_judgments": len(group), "note": str(exc)})
        rows.append(row)
    cols = by + ["statistic", "value", "ci_low", "ci_high", "n_units", "n_raters", "n_judgments",
                 "level", "note"]
    out = pd.DataFrame(rows)
    return out[[c for c in cols if c in out.columns]]


def agreement_table(frame: pd.DataFrame, *, n_boot: int = 1000, seed=0,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Agreement per task kind and item group, with the level inferred from `KIND_LEVELS`:
    percent agreement, Krippendorff's alpha, Fleiss' kappa and Gwet's AC1 for nominal items;
    percent agreement, alpha and AC2 (quadratic) for ordered ones.

    Returns:
        DataFrame: kind, item, statistic, level, value, ci_low, ci_high, n_units, n_raters,
        n_judgments, note.
    """
    if "kind" not in frame.columns:
        frame = frame.assign(kind="label", item="label")
    items = frame["item"] if "item" in frame.columns else frame["kind"]
    frame = frame.assign(_group=items.map(item_group))
    rows = []
    for (kind, group), sub in frame.groupby(["kind", "_group"], sort=True):
        level = KIND_LEVELS.get((kind, group))
        if level is None:
            continue
        sub = sub.drop(columns="_group")
        if level == "nominal":
            stats = [("percent_agreement", {}), ("krippendorff_alpha", {"level": level}),
                     ("fleiss_kappa", {}), ("gwet_ac1", {})]
        else:
            stats = [("percent_agreement", {}), ("krippendorff_alpha", {"level": level}),
                     ("gwet_ac2", {"weights": "quadratic"})]
        for name, kw in stats:
            row = {"kind": kind, "item": group}
            try:
                est = STATISTICS[name](sub, n_boot=n_boot, seed=seed, confidence=confidence, **kw)
                row.update(est.as_dict())
                row["note"] = est.reason
            except ValueError as exc:
                row.update({"statistic": name, "level": level, "value": np.nan, "ci_low": np.nan,
                            "ci_high": np.nan, "n_units": 0, "n_judgments": len(sub), "note": str(exc)})
            row["level"] = level if name in ("percent_agreement", "krippendorff_alpha") else row.get("level")
            rows.append(row)
    cols = ["kind", "item", "statistic", "level", "value", "ci_low", "ci_high", "n_units", "n_raters",
            "n_judgments", "note"]
    out = pd.DataFrame(rows, columns=cols)
    return out


# ----------------------------------------------------------------------------- per item, worker, category

def item_agreement(frame: pd.DataFrame, *, dropna: bool = False, duplicates: str = "error") -> pd.DataFrame:
    """Agreement on each unit (`task`[, `item`]) of a frame (human workers only: filter
    `model:<name>` out first, `frames.humans_only`).

    Returns:
        DataFrame per unit: `n_ratings`, `modal_label`, `modal_share` (share of ratings equal
        to the most frequent label; ties go to the label that sorts first),
        `pairwise_agreement` (share of agreeing rater pairs; NaN with one rating).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    ucols = unit_columns(frame)
    coded = _encode_frame(frame, "nominal", None, None)
    c = coded.counts
    m = c.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pairs = np.where(m >= 2, (c * (c - 1)).sum(1) / (m * (m - 1)), np.nan)
    units = frame[ucols].drop_duplicates().sort_values(ucols).reset_index(drop=True)  # the codes' order
    return units.assign(n_ratings=m.astype(int), modal_label=np.asarray(coded.domain, dtype=object)[c.argmax(1)],
                        modal_share=c.max(1) / m, pairwise_agreement=pairs)


def worker_agreement(frame: pd.DataFrame, *, dropna: bool = False, duplicates: str = "error") -> pd.DataFrame:
    """How far each worker agrees with the others, on the units they share.

    Per worker: `n_units` (units with at least one other rating), `agreement` = mean over those
    units of the share of the *other* raters giving the worker's label, `chance` = the same
    share expected from the label frequencies alone (sum_k p_w(k) p_others(k), with the
    worker's and everybody else's label shares), and `kappa` = (agreement - chance) /
    (1 - chance). NaN where undefined (no shared unit, or chance = 1).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    coded = _encode_frame(frame, "nominal", None, None)
    c = coded.counts
    m = c.sum(1)
    u, r, v = coded.unit, coded.rater, coded.value
    others = m[u] - 1
    ok = others > 0
    share = np.where(ok, (c[u, v] - 1) / np.maximum(others, 1), 0.0)
    W, K = coded.n_raters, c.shape[1]
    n_units = np.bincount(r[ok], minlength=W)
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.bincount(r[ok], weights=share[ok], minlength=W) / n_units
        own = np.bincount(r * K + v, minlength=W * K).reshape(W, K).astype(float)
        rest = own.sum(0)[None, :] - own
        chance = ((own / own.sum(1, keepdims=True)) * (rest / rest.sum(1, keepdims=True))).sum(1)
        kappa = np.where(chance < 1, (agreement - chance) / (1 - chance), np.nan)
    workers = np.asarray(sorted(frame["worker"].unique()), dtype=object)
    return pd.DataFrame({"worker": workers, "n_units": n_units, "agreement": agreement, "chance": chance,
                         "kappa": kappa})


def fleiss_kappa_per_category(data, *, dropna: bool = False, duplicates: str = "error") -> pd.DataFrame:
    """Fleiss' (1971) kappa for each category j, over units with >= 2 ratings:
    kappa_j = 1 - sum_u x_uj (m_u - x_uj) / (p_j (1 - p_j) sum_u m_u (m_u - 1)), with p_j
    the pooled share of category j (equal counts m give Fleiss' formula). Fleiss' kappa is
    their average weighted by p_j (1 - p_j).

    Returns:
        DataFrame: `label`, `share` (p_j), `kappa` (NaN for a category with p_j in {0, 1}).
    """
    if isinstance(data, pd.DataFrame):
        data = prepare_judgments(data, dropna=dropna, duplicates=duplicates)
    coded = _encode(data, "nominal", cluster=None)
    c = coded.counts
    m = c.sum(1)
    keep = m >= 2
    ck, mk = c[keep], m[keep]
    p = ck.sum(0) / mk.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1 - (ck * (mk[:, None] - ck)).sum(0) / (p * (1 - p) * (mk * (mk - 1)).sum())
    return pd.DataFrame({"label": list(coded.domain), "share": p, "kappa": kappa})


ICC_FORMS = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")


def icc(frame: pd.DataFrame, form: str = "ICC1", *, confidence: float = 0.95, dropna: bool = False,
        duplicates: str = "error") -> Estimate:
    """Intraclass correlation of numeric ratings (e.g. the 1..5 `match`/`coherence` items),
    Shrout & Fleiss (1979) / McGraw & Wong (1996) from a two-way ANOVA, with their F-based
    confidence intervals (as `pingouin.intraclass_corr`).

    Forms: ICC1 / ICC1k (one-way random: each unit may be rated by different people, so rater
    identity is ignored: the ratings of a unit fill slots 1..k), ICC2 / ICC2k (two-way random,
    absolute agreement) and ICC3 / ICC3k (two-way mixed, consistency), which need the same k
    workers on every unit. `k` suffix: reliability of the mean of k ratings. Units without
    exactly k ratings (k = the most common count; for ICC2/3, the workers who rated the most
    units) are left out, and `extra["units_left_out"]` says how many.

    Returns:
        Estimate (`ci_low`, `ci_high` from the F distribution; `n_boot` 0); NaN with the reason
        when fewer than two units or no variance remain.
    """
    from scipy.stats import f as fdist

    if form not in ICC_FORMS:
        raise ValueError(f"form must be one of {ICC_FORMS}, got {form!r}")
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    try:
        y = pd.to_numeric(frame["label"], errors="raise").astype(float)
    except (TypeError, ValueError):
        raise ValueError("icc needs numeric ratings (e.g. 1..5); the label column is not numeric") from None
    ucols = unit_columns(frame)
    unit = frame[ucols].astype(str).agg("\x1f".join, axis=1) if len(ucols) > 1 else frame["task"].astype(str)
    data = pd.DataFrame({"unit": unit.to_numpy(), "worker": frame["worker"].to_numpy(), "y": y.to_numpy()})
    n_all = data["unit"].nunique()
    if form.startswith("ICC1"):
        counts = data.groupby("unit").size()
        k = int(counts.mode().iloc[0])
        data = data[data["unit"].isin(counts.index[counts == k])]
        data = data.assign(worker=data.groupby("unit").cumcount())
    else:
        wide = data.pivot(index="unit", columns="worker", values="y")
        top = wide.notna().sum().sort_values(ascending=False)
        # workers by coverage; keep the prefix that maximises the complete (units x workers) block
        best, best_cols = 0, []
        for j in range(2, len(top) + 1):
            cols = list(top.index[:j])
            n_ok = int(wide[cols].notna().all(axis=1).sum())
            if n_ok >= 2 and n_ok * j >= best:
                best, best_cols = n_ok * j, cols
        if not best_cols:
            return Estimate(statistic=form.lower(), value=float("nan"), n_judgments=len(frame), confidence=confidence,
                            reason="no two units were rated by the same two or more workers", level="interval")
        sub = wide[best_cols].dropna()
        data = sub.stack().rename("y").reset_index()
        k = len(best_cols)
    x = data.pivot(index="unit", columns="worker", values="y").to_numpy(float)
    n = x.shape[0]
    extra = {"k": k, "units_left_out": n_all - n}
    if n < 2 or k < 2:
        return Estimate(statistic=form.lower(), value=float("nan"), n_units=n, n_judgments=len(frame),
                        confidence=confidence, level="interval", extra=extra,
                        reason=f"needs >= 2 units with k >= 2 ratings each; have {n} units, k = {k}")
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_tot = ((x - grand) ** 2).sum()
    ss_err = ss_tot - ss_rows - ss_cols
    msb, msj = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    if msb == 0 and (msw == 0 or mse == 0):
        return Estimate(statistic=form.lower(), value=float("nan"), n_units=n, n_judgments=int(x.size),
                        confidence=confidence, level="interval", extra=extra,
                        reason="every rating is the same: no variance, the ICC is 0/0")
    a = 1 - confidence
    df1, df1kd, df2kd = n - 1, n * (k - 1), (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        f1k, f3k = msb / msw, msb / mse
        f1l, f1u = f1k / fdist.ppf(1 - a / 2, df1, df1kd), f1k * fdist.ppf(1 - a / 2, df1kd, df1)
        f3l, f3u = f3k / fdist.ppf(1 - a / 2, df1, df2kd), f3k * fdist.ppf(1 - a / 2, df2kd, df1)
        fj = msj / mse
        vn = df2kd * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = df1 * k ** 2 * icc2 ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        f2u, f2l = fdist.ppf(1 - a / 2, n - 1, v), fdist.ppf(1 - a / 2, v, n - 1)
        l2 = n * (msb - f2u * mse) / (f2u * (k * msj + (k * n - k - n) * mse) + n * msb)
        u2 = n * (f2l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2l * msb)
        table = {
            "ICC1": ((msb - msw) / (msb + (k - 1) * msw), (f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)),
            "ICC2": (icc2, l2, u2),
            "ICC3": ((msb - mse) / (msb + (k - 1) * mse), (f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)),
            "ICC1k": ((msb - msw) / msb, 1 - 1 / f1l, 1 - 1 / f1u),
            "ICC2k": ((msb - mse) / (msb + (msj - mse) / n), l2 * k / (1 + l2 * (k - 1)), u2 * k / (1 + u2 * (k - 1))),
            "ICC3k": ((msb - mse) / msb, 1 - 1 / f3l, 1 - 1 / f3u),
        }
    value, lo, hi = (float(t) for t in table[form])
    return Estimate(statistic=form.lower(), value=value, ci_low=lo, ci_high=hi, n_units=n, n_raters=k,
                    n_judgments=int(x.size), confidence=confidence, level="interval", extra=extra)

"""Vectorised bootstrap over units (tasks).

Every statistic in `analysis` is written as a function of *sums over units* of per-unit
sufficient statistics (arrays with one row per unit). A bootstrap resample is then just a
vector of unit multiplicities `w` (how often each unit was drawn), and the resampled sums are
`W @ A` for a whole block of resamples at once: one matrix product instead of B Python loops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Estimate:
    """A statistic with its bootstrap confidence interval.

    `ci_low`/`ci_high` are NaN when `n_boot == 0` or the statistic is undefined; `value` is NaN
    with the cause in `reason` when the statistic is undefined on the data (e.g. every rating
    identical). `n_boot_undefined` counts resamples on which the statistic was undefined (they
    are left out of the interval); above 5% of `n_boot` the interval is marked `ci_unreliable`
    and `reason` says so. `ci_method` is "percentile" or "bca".
    """

    statistic: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_units: int = 0
    n_raters: int = 0
    n_judgments: int = 0
    confidence: float = 0.95
    n_boot: int = 0
    level: str | None = None
    extra: dict = field(default_factory=dict)
    reason: str = ""
    n_boot_undefined: int = 0
    ci_unreliable: bool = False
    ci_method: str = "percentile"

    def __float__(self) -> float:
        return float(self.value)

    def as_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


def resample_weights(n_units: int, n_boot: int, seed, block: int = 200):
    """Yield blocks of unit multiplicities, each `[b, n_units]` float64 (rows sum to n_units),
    `b <= block`, `n_boot` rows in all. Seedable: same seed -> same resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        flat = (draws + (np.arange(b) * n_units)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_units).reshape(b, n_units).astype(np.float64)


UNRELIABLE_SHARE = 0.05  # more undefined resamples than this and the interval is marked unreliable


def bootstrap(stat: Callable[[dict], np.ndarray], unit_stats: dict[str, np.ndarray], *,
              n_boot: int = 1000, seed=0, confidence: float = 0.95, block: int | None = None,
              method: str = "percentile"):
    """Point estimate and bootstrap CI of a sum-based statistic.

    Args:
        stat: maps a dict of weighted sums (each `[B, ...]`) to `[B]` values.
        unit_stats: per-unit arrays, each `[U]` or `[U, k]` (dense) or a scipy sparse `[U, k]`.
        n_boot: number of resamples (0: no interval).
        seed: seed of the resampling generator.
        confidence: two-sided level of the interval.
        method: "percentile", or "bca" (bias-corrected and accelerated, Efron 1987: the
            acceleration from the jackknife over units, computed in one pass as every
            leave-one-out sum is the total minus one unit's statistics).

    Returns:
        (value, ci_low, ci_high, boot values `[n_boot]` with NaN where undefined)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    n_units = next(iter(unit_stats.values())).shape[0]
    totals = {k: np.asarray(a.sum(axis=0)).reshape((1,) + tuple(a.shape[1:])) if a.ndim > 1 else
              np.asarray([a.sum()]) for k, a in unit_stats.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(stat(totals)[0])
    if n_boot <= 0 or n_units == 0 or not np.isfinite(value):
        return value, float("nan"), float("nan"), np.empty(0)
    boots = []
    if block is None:  # keep each block's weighted sums under ~4M floats
        width = sum(int(np.prod(a.shape[1:])) if a.ndim > 1 else 1 for a in unit_stats.values())
        block = int(max(1, min(200, 4_000_000 // max(width, 1))))
    for w in resample_weights(n_units, n_boot, seed, block=block):
        with np.errstate(divide="ignore", invalid="ignore"):
            boots.append(np.asarray(stat(_weighted_sums(w, unit_stats)), dtype=float))
    boots = np.concatenate(boots)
    boots[~np.isfinite(boots)] = np.nan
    finite = boots[np.isfinite(boots)]
    if finite.size == 0:
        return value, float("nan"), float("nan"), boots
    alpha = (1 - confidence) / 2
    levels = [alpha, 1 - alpha]
    if method == "bca":
        levels = _bca_levels(stat, unit_stats, totals, value, finite, alpha, block)
    lo, hi = np.quantile(finite, levels)
    return value, float(lo), float(hi), boots


def _bca_levels(stat, unit_stats, totals, value, finite, alpha, block) -> list[float]:
    from scipy.special import ndtr, ndtri

    # bias correction: share of resamples below the estimate (ties count half, as scipy does)
    below = (np.sum(finite < value) + 0.5 * np.sum(finite == value)) / finite.size
    z0 = ndtri(below)
    n_units = next(iter(unit_stats.values())).shape[0]
    jack = []
    for start in range(0, n_units, block):
        idx = np.arange(start, min(start + block, n_units))
        sums = {}
        for k, a in unit_stats.items():
            part = a[idx]
            part = part.toarray() if hasattr(part, "toarray") else part
            sums[k] = totals[k] - part.reshape((len(idx),) + tuple(totals[k].shape[1:]))
        with np.errstate(divide="ignore", invalid="ignore"):
            jack.append(np.asarray(stat(sums), dtype=float))
    jack = np.concatenate(jack)
    jack = jack[np.isfinite(jack)]
    d = jack.mean() - jack
    denom = 6.0 * (d ** 2).sum() ** 1.5
    a = (d ** 3).sum() / denom if denom > 0 else 0.0
    out = []
    for z in (ndtri(alpha), ndtri(1 - alpha)):
        out.append(float(ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    return out


def _weighted_sums(w: np.ndarray, unit_stats: dict) -> dict:
    out = {}
    for key, arr in unit_stats.items():
        if hasattr(arr, "tocsr"):  # scipy sparse [U, k]
            out[key] = np.asarray((arr.T @ w.T).T)
        elif arr.ndim == 1:
            out[key] = w @ arr
        else:
            out[key] = w @ arr.reshape(arr.shape[0], -1)
    return out

"""Query strategies: each one only computes scores or a selection (baal style).

A strategy never trains or runs a model. The pool scorer (`active.pool.score_pool`) streams the
pool through a predictor and keeps only what the strategy declares in `needs`:

- `"scores"`: one float per item, computed batch by batch by `score_batch` (uncertainty strategies),
- `"embeddings"`: the pooled deep features `[N, D]` (memory-mapped when large),
- `"probs"`: the softmax outputs `[N, K]` (BADGE builds its gradient embeddings from these).

`select(outputs, budget, rng)` returns `budget` pool indices, most informative first.

Tie handling (documented, tested): score-based selections sort by score descending and break
ties by the lower pool index; k-center greedy takes the lowest index among equally distant
items; BADGE's k-means++ seeding and Cluster-Margin's within-cluster draw use the generator
passed in, so a fixed seed gives a fixed selection on any device.

Memory: nothing here builds an N x N matrix. Distances are computed in chunks of
`chunk_size` pool items against one new center at a time; only an `[N]` vector of
nearest-center distances lives across iterations. Work runs on CUDA when available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from training.evaluate import resolve_device
from training.registry import Registry


def available_strategies() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str, **kwargs) -> "Strategy":
    """Build a registered strategy by name, e.g. `get_strategy("margin")` (any case, `_` for `-`,
    `kcenter` for `coreset`)."""
    return STRATEGIES.build(name, **kwargs)


@dataclass
class PoolOutputs:
    """What the scorer kept for the candidate items (the unlabelled part of the pool).

    `indices` `[N]` int64 pool indices; `scores` `[N]` float32 (higher = more informative);
    `embeddings` `[N, D]` float32 (array or memmap); `probs` `[N, K]` float32;
    `labelled_embeddings` `[L, D]` for the already labelled items (k-center's initial centers).
    """

    indices: np.ndarray
    scores: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    probs: np.ndarray | None = None
    labelled_embeddings: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)


class Strategy:
    """Base class. Subclasses set `needs` and implement `select` (or `score_batch`)."""

    name = "base"
    needs: frozenset[str] = frozenset()
    mc_samples = 0  # > 0: the scorer passes MC-dropout probabilities to `score_batch`

    def __init__(self, device: str = "auto", chunk_size: int = 65536):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.device = resolve_device(device)
        self.chunk_size = int(chunk_size)

    def select(self, outputs: PoolOutputs, budget: int, rng: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", base=Strategy, aliases={"kcenter": "coreset", "k-center": "coreset", "least-confident": "least-confidence"})
register = STRATEGIES.register  # class decorator: `@register("name")`


def _check_budget(budget: int, n: int) -> int:
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    return min(int(budget), n)


def top_b(scores, budget: int, device: str | torch.device | None = "auto") -> np.ndarray:
    """Positions of the `budget` largest scores, best first; ties go to the lower position.

    `scores` is `[N]` (numpy or torch). O(N) memory; on CUDA 10^7 scores take milliseconds.
    The result is exact: all items strictly above the B-th value, then the lowest-position
    items equal to it, sorted by (score descending, position ascending).
    """
    dev = resolve_device(device)
    s = torch.as_tensor(np.asarray(scores) if not torch.is_tensor(scores) else scores).to(dev).reshape(-1)
    n = s.numel()
    b = _check_budget(budget, n)
    if b == 0:
        return np.zeros(0, dtype=np.int64)
    if torch.isnan(s).any():
        bad = int(torch.isnan(s).nonzero()[0])
        raise ValueError(f"scores contain NaN (first at position {bad})")
    if b < n:
        kth = torch.topk(s, b, sorted=False).values.min()
        above = (s > kth).nonzero().reshape(-1)
        ties = (s == kth).nonzero().reshape(-1)[: b - above.numel()]
        chosen = torch.sort(torch.cat([above, ties])).values  # ascending position
    else:
        chosen = torch.arange(n, device=dev)
    # stable descending sort keeps ascending position among equal scores
    order = torch.sort(s[chosen], descending=True, stable=True).indices
    return chosen[order].cpu().numpy().astype(np.int64)


class ScoreStrategy(Strategy):
    """Scores each item independently; selects the top `budget` scores."""

    needs = frozenset({"scores"})

    def score_batch(self, probs: torch.Tensor, mc_probs: torch.Tensor | None = None) -> torch.Tensor:
        """`probs [B, K]` (rows sum to 1) -> scores `[B]`, higher = more informative."""
        raise NotImplementedError

    def select(self, outputs, budget, rng=None):
        if outputs.scores is None:
            raise ValueError(f"strategy {self.name!r} needs scores; the pool scorer did not keep them")
        return outputs.indices[top_b(outputs.scores, budget, self.device)]


@register("random")
class RandomSampling(Strategy):
    """Uniform sample without replacement from the candidates (seeded by `rng`)."""

    needs = frozenset()

    def select(self, outputs, budget, rng=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        b = _check_budget(budget, len(outputs))
        return outputs.indices[rng.choice(len(outputs), size=b, replace=False)]


@register("least-confidence")
class LeastConfidence(ScoreStrategy):
    """Score = 1 - max_k p_k."""

    def score_batch(self, probs, mc_probs=None):
        return 1.0 - probs.max(dim=1).values


@register("margin")
class Margin(ScoreStrategy):
    """Softmax margin: score = -(p_top1 - p_top2); the smallest margin is queried first."""

    def score_batch(self, probs, mc_probs=None):
        if probs.shape[1] < 2:
            raise ValueError("margin sampling needs at least 2 classes")
        top2 = torch.topk(probs, 2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


@register("entropy")
class Entropy(ScoreStrategy):
    """Predictive entropy in nats: -sum_k p_k log p_k."""

    def score_batch(self, probs, mc_probs=None):
        return _entropy(probs)


@register("bald")
class BALD(ScoreStrategy):
    """BALD with MC dropout (Gal et al. 2017): H[mean_t p_t] - mean_t H[p_t], in nats.

    The scorer runs `mc_samples` stochastic passes (dropout on, batch norm frozen) and hands
    `mc_probs [T, B, K]` to `score_batch`; only the score is kept.
    """

    def __init__(self, mc_samples: int = 20, **kwargs):
        super().__init__(**kwargs)
        if mc_samples < 2:
            raise ValueError(f"BALD needs mc_samples >= 2, got {mc_samples}")
        self.mc_samples = int(mc_samples)

    def score_batch(self, probs, mc_probs=None):
        if mc_probs is None:
            raise ValueError("BALD needs MC-dropout probabilities [T, B, K]")
        return _entropy(mc_probs.mean(0)) - _entropy(mc_probs).mean(0)


# ---------------------------------------------------------------------------------------------
# Diversity strategies (embeddings)


def _resident(array, device: torch.device, max_bytes: int) -> torch.Tensor | None:
    """The whole array as one device tensor when it fits in `max_bytes`, else None (stream it)."""
    nbytes = int(np.prod(array.shape)) * 4
    if nbytes > max_bytes:
        return None
    return torch.from_numpy(np.array(array, dtype=np.float32)).to(device)


class _Rows:
    """Chunked row access to an `[N, D]` array that may be a memmap (streamed) or resident."""

    def __init__(self, array, device, chunk, max_resident_bytes):
        self.array, self.device, self.chunk = array, device, chunk
        self.n = array.shape[0]
        self.full = _resident(array, device, max_resident_bytes)

        # squared row norms, kept resident ([N] floats): a distance is then one mat-vec per chunk
        self.norms = torch.cat([(x * x).sum(1) for _, _, x in self.chunks(with_norms=False)]) if self.n else None

    def chunks(self, with_norms: bool = False):
        for lo in range(0, self.n, self.chunk):
            hi = min(lo + self.chunk, self.n)
            if self.full is not None:
                x = self.full[lo:hi]
            else:
                x = torch.from_numpy(np.array(self.array[lo:hi], dtype=np.float32)).to(self.device)
            yield (lo, hi, x, self.norms[lo:hi]) if with_norms else (lo, hi, x)

    def row(self, i: int) -> torch.Tensor:
        if self.full is not None:
            return self.full[i]
        return torch.from_numpy(np.array(self.array[i], dtype=np.float32)).to(self.device)


def _sq_dist_to(x: torch.Tensor, x_norms: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of each row of `x [n, D]` (squared norms `x_norms [n]`) to one
    center `c [D]` -> `[n]`, as ||x||^2 - 2 x.c + ||c||^2 (clamped at 0 against rounding)."""
    return (x_norms - 2.0 * (x @ c) + (c @ c)).clamp_min_(0.0)


def k_center_greedy(embeddings, budget: int, centers=None, device="auto", chunk_size: int = 65536,
                    rng: np.random.Generator | None = None, max_resident_bytes: int = 8 << 30) -> np.ndarray:
    """Greedy k-center (Sener & Savarese 2018) over `embeddings [N, D]`; returns positions.

    `centers [L, D]` are the already labelled items. Memory is O(N) beyond the embeddings (which
    may be a memmap): the nearest-center distance vector is updated chunk by chunk against each
    new center. Each pick is the item farthest from its nearest center; ties go to the lowest
    position. With no initial centers the first pick is drawn from `rng`.
    """
    dev = resolve_device(device)
    n = embeddings.shape[0]
    b = _check_budget(budget, n)
    if b == 0:
        return np.zeros(0, dtype=np.int64)
    rows = _Rows(embeddings, dev, chunk_size, max_resident_bytes)
    min_d = torch.full((n,), float("inf"), device=dev)
    if centers is not None and len(centers):
        cen = torch.as_tensor(np.asarray(centers, dtype=np.float32)).to(dev)
        for lo, hi, x in rows.chunks():
            for clo in range(0, cen.shape[0], 1024):
                d = torch.cdist(x, cen[clo:clo + 1024], compute_mode="donot_use_mm_for_euclid_dist") ** 2
                min_d[lo:hi] = torch.minimum(min_d[lo:hi], d.min(1).values)
    picks: list[int] = []
    if centers is None or not len(centers):
        rng = rng if rng is not None else np.random.default_rng(0)
        picks.append(int(rng.integers(n)))
    while len(picks) < b:
        if picks:
            c = rows.row(picks[-1])
            for lo, hi, x, xn in rows.chunks(with_norms=True):
                min_d[lo:hi] = torch.minimum(min_d[lo:hi], _sq_dist_to(x, xn, c))
            min_d[picks[-1]] = -1.0  # never pick an item twice
        picks.append(int(torch.argmax(min_d)))  # first maximal index = lowest position
    return np.asarray(picks[:b], dtype=np.int64)


@register("coreset")
class CoreSet(Strategy):
    """k-center greedy on the deep features (labelled items are the initial centers)."""

    needs = frozenset({"embeddings"})

    def __init__(self, max_resident_bytes: int = 8 << 30, **kwargs):
        super().__init__(**kwargs)
        self.max_resident_bytes = max_resident_bytes

    def select(self, outputs, budget, rng=None):
        if outputs.embeddings is None:
            raise ValueError("coreset needs embeddings; the pool scorer did not keep them")
        pos = k_center_greedy(outputs.embeddings, budget, outputs.labelled_embeddings, self.device,
                              self.chunk_size, rng, self.max_resident_bytes)
        return outputs.indices[pos]


def kmeans_pp_gradient(probs, embeddings, budget: int, device="auto", chunk_size: int = 65536,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """BADGE's k-means++ seeding on gradient embeddings, without materialising them.

    The last-layer gradient embedding of item i for its predicted label is
    `g_i = a_i (x) h_i` with `a_i = p_i - onehot(argmax p_i)` (`probs [N, K]`) and `h_i`
    (`embeddings [N, D]`). Since `<g_i, g_j> = <a_i, a_j> <h_i, h_j>`, squared distances
    come from `[N, K + D]` numbers instead of `[N, K * D]`. The first center is the largest
    gradient norm (lowest position on ties), then each next center is drawn with probability
    proportional to its squared distance to the nearest chosen center.
    """
    dev = resolve_device(device)
    n = probs.shape[0]
    b = _check_budget(budget, n)
    if b == 0:
        return np.zeros(0, dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng(0)
    p = torch.as_tensor(np.asarray(probs, dtype=np.float32)).to(dev)
    h = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).to(dev)
    a = p.clone()
    a[torch.arange(n, device=dev), p.argmax(1)] -= 1.0
    sq_norm = (a * a).sum(1) * (h * h).sum(1)  # ||g_i||^2
    picks = [int(torch.argmax(sq_norm))]
    min_d = torch.full((n,), float("inf"), device=dev)
    while len(picks) < b:
        c = picks[-1]
        for lo in range(0, n, chunk_size):
            hi = min(lo + chunk_size, n)
            d = sq_norm[lo:hi] + sq_norm[c] - 2.0 * (a[lo:hi] @ a[c]) * (h[lo:hi] @ h[c])
            min_d[lo:hi] = torch.minimum(min_d[lo:hi], d.clamp_min(0.0))
        min_d[picks] = 0.0
        weights = min_d.double()
        total = float(weights.sum())
        if total <= 0.0:  # every remaining item coincides with a center: fall back to uniform
            rest = np.setdiff1d(np.arange(n), picks)
            picks.append(int(rng.choice(rest)))
            continue
        u = torch.tensor(rng.random() * total, dtype=torch.float64, device=dev)
        idx = int(torch.searchsorted(torch.cumsum(weights, 0), u, right=True))
        idx = min(idx, n - 1)
        while float(weights[idx]) == 0.0:  # rounding at the end of the cumsum; step back
            idx -= 1
        picks.append(idx)
    return np.asarray(picks, dtype=np.int64)


@register("badge")
class BADGE(Strategy):
    """BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings."""

    needs = frozenset({"embeddings", "probs"})

    def select(self, outputs, budget, rng=None):
        if outputs.embeddings is None or outputs.probs is None:
            raise ValueError("badge needs embeddings and probs; the pool scorer did not keep them")
        pos = kmeans_pp_gradient(outputs.probs, outputs.embeddings, budget, self.device, self.chunk_size, rng)
        return outputs.indices[pos]


def _kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """Plain Lloyd k-means (used by Cluster-Margin when HAC would not fit); returns labels."""
    n = x.shape[0]
    centers = x[torch.as_tensor(rng.choice(n, size=k, replace=False), device=x.device)].clone()
    labels = torch.zeros(n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        labels = torch.cat([torch.cdist(x[lo:lo + 8192], centers).argmin(1) for lo in range(0, n, 8192)])
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1).to(x.dtype)
        centers = torch.where(counts > 0, sums / counts.clamp_min(1), centers)  # empty: keep
    return labels.cpu().numpy()


@register("cluster-margin")
class ClusterMargin(Strategy):
    """Cluster-Margin (Citovsky et al. 2021).

    Take the `margin_factor * budget` lowest-margin candidates, cluster their embeddings with
    average-linkage HAC (scipy) into `n_clusters` clusters (default: `budget`), sort clusters by
    size ascending (ties: the cluster holding the lowest position first) and draw round-robin,
    one random member per cluster per turn, until `budget` items are chosen.

    Deviation from the paper, for memory: the paper clusters the whole pool once; HAC on a pool
    of millions is O(N^2), so we cluster the margin candidates each round. Above `hac_max_items`
    candidates, k-means (torch, chunked) replaces HAC.
    """

    needs = frozenset({"scores", "embeddings"})

    def __init__(self, margin_factor: float = 10.0, n_clusters: int | None = None,
                 hac_max_items: int = 10000, **kwargs):
        super().__init__(**kwargs)
        if margin_factor < 1:
            raise ValueError(f"margin_factor must be >= 1, got {margin_factor}")
        self.margin_factor = float(margin_factor)
        self.n_clusters = n_clusters
        self.hac_max_items = int(hac_max_items)
        self._margin = Margin(device=str(self.device))

    def score_batch(self, probs, mc_probs=None):
        return self._margin.score_batch(probs)

    def select(self, outputs, budget, rng=None):
        if outputs.scores is None or outputs.embeddings is None:
            raise ValueError("cluster-margin needs margin scores and embeddings")
        rng = rng if rng is not None else np.random.default_rng(0)
        n = len(outputs)
        b = _check_budget(budget, n)
        if b == 0:
            return np.zeros(0, dtype=np.int64)
        k_m = min(n, int(math.ceil(self.margin_factor * b)))
        cand = np.sort(top_b(outputs.scores, k_m, self.device))  # ascending pool positions
        emb = np.asarray(outputs.embeddings[cand], dtype=np.float64)
        k = min(self.n_clusters or b, len(cand))
        if len(cand) == 1:
            labels = np.zeros(1, dtype=np.int64)
        elif len(cand) <= self.hac_max_items:
            from scipy.cluster.hierarchy import fcluster, linkage

            labels = fcluster(linkage(emb, method="average"), t=k, criterion="maxclust")
        else:
            labels = _kmeans(torch.as_tensor(emb, dtype=torch.float32, device=self.device), k, rng)
        clusters: dict[int, list[int]] = {}
        for pos, lab in zip(cand.tolist(), np.asarray(labels).tolist()):
            clusters.setdefault(int(lab), []).append(pos)
        members = sorted(clusters.values(), key=lambda m: (len(m), m[0]))
        members = [list(rng.permutation(m)) for m in members]
        chosen: list[int] = []
        while len(chosen) < b:
            for m in members:
                if m and len(chosen) < b:
                    chosen.append(int(m.pop()))
        return outputs.indices[np.asarray(chosen, dtype=np.int64)]

"""Epoch draws of training rows: distance-weighted, class-balanced, JTT upsampling, DDP shares.

Every sampler here only *computes an epoch's draw* (a LongTensor of row indices into the train
split) from labels, weights and a seeded generator; the trainer turns the draw into batches and,
under DDP, gives each rank a disjoint share (`rank_share`). None of them reads the domain
column.

Distance-weighted sampling (the dissertation's method for blind imbalanced domains): samples
far from their class center in the pooled deep-feature space are drawn more often. Distances are
recorded batch by batch from the features of the training forward pass itself
(`DistanceWeightedSampler.record`), so no extra pass over the data is needed; the
weights of epoch e+1 come from the distances recorded in epoch e and before.

Weight of sample i of class c, with `d_i` its distance and `m_c` the mean distance of class c::

    z_i = d_i / m_c                      (scale-free: classes with wide spreads are not favoured)
    w_i = z_i ** power                   (weighting="power", default power=1)
    w_i = exp(z_i / temperature)         (weighting="softmax")
    w_i scaled so that sum_{i in c} w_i = n_c   (the class mix of the draw stays the data's)
    p_i = (1 - floor) * w_i / sum(w) + floor / N   (no sample starves: p_i >= floor / N)

and the first `warmup_epochs` epochs draw a uniform permutation (features are meaningless at
initialisation). Samples never seen yet get their class mean distance (z = 1).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from `(seed, epoch)`: the same draw on every rank and every rerun."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919) % (2**63 - 1))
    return g


def rank_share(indices: torch.Tensor, rank: int, world_size: int, pad: bool = True) -> torch.Tensor:
    """This rank's disjoint share of an epoch's draw (like `DistributedSampler`).

    Positions `rank, rank + W, rank + 2W, ...` of the draw go to `rank`, so the shares are
    disjoint and their union is the draw. With `pad=True` the draw is first padded by wrapping
    around to a multiple of `world_size`, so every rank runs the same number of steps (DDP
    needs that); the padded positions are the only repeats.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank_share: rank={rank} must be in [0, world_size={world_size})")
    indices = torch.as_tensor(indices, dtype=torch.long)
    if pad and len(indices) % world_size:
        extra = world_size - len(indices) % world_size
        reps = math.ceil(extra / max(len(indices), 1))
        indices = torch.cat([indices, indices.repeat(reps)[:extra]])
    return indices[rank::world_size]


def _as_labels(labels) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"sampler: labels must be a non-empty 1-d sequence, got shape {list(labels.shape)}")
    if labels.min() < 0:
        raise ValueError(f"sampler: labels must be >= 0, got {int(labels.min())}")
    return labels


def weighted_draw(probabilities: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """Draw `num_samples` row indices with replacement, `P(i) = probabilities[i]` (float64)."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    if (p < 0).any() or not torch.isfinite(p).all() or p.sum() <= 0:
        raise ValueError("weighted_draw: probabilities must be finite, >= 0 and not all zero")
    return torch.multinomial(p, num_samples, replacement=True, generator=generator)


def class_balanced_probabilities(labels) -> torch.Tensor:
    """`P(i) = 1 / (K_present * n_{y_i})`: every present class gets the same share `[N]`."""
    labels = _as_labels(labels)
    counts = torch.bincount(labels).double()
    present = int((counts > 0).sum())
    return 1.0 / (present * counts[labels])


class ClassBalancedSampler:
    """Draws N rows per epoch with replacement so every class is equally likely."""

    def __init__(self, labels, seed: int = 0):
        self.labels = _as_labels(labels)
        self.seed = seed
        self.probabilities = class_balanced_probabilities(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def epoch_indices(self, epoch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator or epoch_generator(self.seed, epoch)
        return weighted_draw(self.probabilities, len(self.labels), g)


def distance_weights(distances, labels, weighting: str = "power", power: float = 1.0,
                     temperature: float = 1.0, floor: float = 0.1) -> torch.Tensor:
    """Draw probabilities `[N]` (float64, sum 1) from distances to class centers.

    See the module docstring for the formula. `distances` `[N]` (feature units, NaN = not seen
    yet), `labels` `[N]`. `floor` in [0, 1] is the uniform share mixed in (each p_i >= floor/N).
    """
    labels = _as_labels(labels)
    d = torch.as_tensor(distances, dtype=torch.float64).cpu()
    if d.shape != labels.shape:
        raise ValueError(f"distance_weights: distances {list(d.shape)} and labels {list(labels.shape)} differ")
    if (d[~torch.isnan(d)] < 0).any():
        raise ValueError("distance_weights: distances must be >= 0")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"distance_weights: floor={floor} must be in [0, 1]")
    n, k = len(labels), int(labels.max()) + 1
    seen = ~torch.isnan(d)
    counts = torch.bincount(labels, minlength=k).double()
    seen_counts = torch.bincount(labels[seen], minlength=k).double()
    sums = torch.zeros(k, dtype=torch.float64).index_add(0, labels[seen], d[seen])
    class_mean = sums / seen_counts.clamp(min=1)
    z = torch.ones(n, dtype=torch.float64)
    ok = seen & (class_mean[labels] > 0)
    z[ok] = d[ok] / class_mean[labels][ok]
    if weighting == "power":
        if power < 0:
            raise ValueError(f"distance_weights: power={power} must be >= 0")
        w = z.pow(power)
    elif weighting == "softmax":
        if temperature <= 0:
            raise ValueError(f"distance_weights: temperature={temperature} must be > 0")
        logits = z / temperature
        # per-class shift for stability; the per-class rescale below removes it anyway
        shift = torch.full((k,), -math.inf, dtype=torch.float64).scatter_reduce(0, labels, logits, "amax")
        w = (logits - shift[labels]).exp()
    else:
        raise ValueError(f"distance_weights: weighting={weighting!r} must be 'power' or 'softmax'")
    class_w = torch.zeros(k, dtype=torch.float64).index_add(0, labels, w)
    # a class whose distances are all zero keeps uniform weights inside it
    flat = class_w[labels] <= 0
    w[flat] = 1.0
    class_w = torch.zeros(k, dtype=torch.float64).index_add(0, labels, w)
    w = w * counts[labels] / class_w[labels]
    return (1.0 - floor) * w / w.sum() + floor / n


class DistanceWeightedSampler:
    """Distance-to-class-center weighted epoch draws, refreshed from the training forward pass.

    Use: call `record` on every training batch with the batch's row indices and the
    distances of its pooled features to their class centers (e.g. `CenterLoss.distances`);
    call `end_epoch` once per epoch (it merges the distances of all DDP ranks); ask
    `epoch_indices` for the next epoch's draw (the full draw, identical on every rank;
    take a rank's part with `rank_share`).

    Args:
        labels: `[N]` train labels (class ids).
        seed: base seed; epoch e draws with `epoch_generator(seed, e)`.
        warmup_epochs: epochs drawn uniformly before distances are used.
        weighting, power, temperature, floor: see `distance_weights`.
        num_samples: rows per epoch (default N).
        anneal_epochs: after warm-up, ramp the weighting up linearly over this many epochs (0: at
            once), see :meth:`strength`.
    """

    def __init__(self, labels, seed: int = 0, warmup_epochs: int = 1, weighting: str = "power",
                 power: float = 1.0, temperature: float = 1.0, floor: float = 0.1,
                 num_samples: int | None = None, anneal_epochs: int = 0):
        self.labels = _as_labels(labels)
        self.seed = int(seed)
        if warmup_epochs < 0:
            raise ValueError(f"DistanceWeightedSampler: warmup_epochs={warmup_epochs} must be >= 0")
        if anneal_epochs < 0:
            raise ValueError(f"DistanceWeightedSampler: anneal_epochs={anneal_epochs} must be >= 0")
        self.warmup_epochs = int(warmup_epochs)
        self.anneal_epochs = int(anneal_epochs)
        self.weighting, self.power, self.temperature, self.floor = weighting, power, temperature, floor
        # validate the weight options once, early
        distance_weights(torch.ones(len(self.labels)), self.labels, weighting, power, temperature, floor)
        self.num_samples = int(num_samples or len(self.labels))
        n = len(self.labels)
        self.distances = torch.full((n,), float("nan"), dtype=torch.float64)
        # this epoch's records (summed, so DDP ranks and repeats within an epoch average out);
        # kept on the device of the first record so that recording never syncs a GPU
        self._epoch_sum: torch.Tensor | None = None
        self._epoch_count: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.num_samples

    @torch.no_grad()
    def record(self, indices: torch.Tensor, distances: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Store distances `[B]` of train rows `indices` `[B]` seen in this step.

        `valid` `[B]` bool (optional) marks the rows whose distance means something (e.g. their
        class center exists yet); the others are ignored without a device sync.
        """
        d = torch.as_tensor(distances).detach()
        idx = torch.as_tensor(indices, dtype=torch.long).to(d.device)
        d = d.to(torch.float64)
        if idx.shape != d.shape:
            raise ValueError(f"record: indices {list(idx.shape)} and distances {list(d.shape)} differ")
        if idx.numel() and not idx.is_cuda and (idx.min() < 0 or idx.max() >= len(self.labels)):
            raise ValueError(f"record: indices must be in [0, {len(self.labels)})")
        if self._epoch_sum is None or self._epoch_sum.device != d.device:
            n = len(self.labels)
            self._epoch_sum = torch.zeros(n, dtype=torch.float64, device=d.device)
            self._epoch_count = torch.zeros(n, dtype=torch.float64, device=d.device)
        w = torch.ones_like(d) if valid is None else torch.as_tensor(valid).to(d.device, torch.float64)
        self._epoch_sum.index_add_(0, idx, d * w)
        self._epoch_count.index_add_(0, idx, w)

    def end_epoch(self) -> dict:
        """Merge this epoch's records (all-reduced under DDP) into the stored distances."""
        n = len(self.labels)
        if self._epoch_sum is None:  # nothing recorded on this rank
            packed = torch.zeros(2, n, dtype=torch.float64)
        else:
            packed = torch.stack([self._epoch_sum, self._epoch_count])
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            backend = torch.distributed.get_backend()
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
            buf = packed.to(device)
            torch.distributed.all_reduce(buf)
            packed = buf
        packed = packed.cpu()
        seen = packed[1] > 0
        self.distances[seen] = packed[0][seen] / packed[1][seen]
        self._epoch_sum = self._epoch_count = None
        known = ~torch.isnan(self.distances)
        return {"sampler_seen_fraction": float(seen.double().mean()),
                "sampler_mean_distance": float(self.distances[known].mean()) if known.any() else float("nan")}

    def strength(self, epoch: int) -> float:
        """Share of the full weighting used in `epoch` (after warm-up): 1, or with `anneal_epochs`
        a linear ramp `(epoch - warmup_epochs + 1) / anneal_epochs` up to 1 (power and 1/temperature
        are scaled by it, so the draw moves gradually from uniform to the full weighting)."""
        if self.anneal_epochs <= 0:
            return 1.0
        return float(min(1.0, max(0.0, (epoch - self.warmup_epochs + 1) / self.anneal_epochs)))

    def probabilities(self, strength: float = 1.0) -> torch.Tensor:
        """Current draw probabilities `[N]` (float64, sum 1); `strength` scales the weighting."""
        if strength <= 0:
            return torch.full((len(self.labels),), 1.0 / len(self.labels), dtype=torch.float64)
        return distance_weights(self.distances, self.labels, self.weighting, self.power * strength,
                                self.temperature / strength, self.floor)

    def epoch_indices(self, epoch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The full draw of epoch `epoch` `[num_samples]`: uniform in warm-up, weighted after."""
        g = generator or epoch_generator(self.seed, epoch)
        if epoch < self.warmup_epochs or torch.isnan(self.distances).all():
            n = len(self.labels)
            perm = torch.randperm(n, generator=g)
            return perm.repeat(math.ceil(self.num_samples / n))[: self.num_samples]
        return weighted_draw(self.probabilities(self.strength(epoch)), self.num_samples, g)

    def state_dict(self) -> dict:
        return {"distances": self.distances.clone()}

    def load_state_dict(self, state: dict) -> None:
        d = torch.as_tensor(state["distances"], dtype=torch.float64)
        if d.shape != self.distances.shape:
            raise ValueError(f"DistanceWeightedSampler: saved distances {list(d.shape)} do not match "
                             f"{list(self.distances.shape)} train rows")
        self.distances = d.clone()


def jtt_upsampled_indices(error_mask, upweight: int) -> torch.Tensor:
    """JTT's second-stage training set (Liu et al., ICML 2021) as row indices.

    Every row appears once, and rows the first-stage ERM model got wrong (`error_mask` `[N]`
    bool) appear `upweight` times in total (the paper's lambda_up, an integer >= 1).
    """
    err = torch.as_tensor(error_mask, dtype=torch.bool).cpu()
    if err.ndim != 1:
        raise ValueError("jtt_upsampled_indices: error_mask must be 1-d")
    if int(upweight) != upweight or upweight < 1:
        raise ValueError(f"jtt_upsampled_indices: upweight={upweight} must be an integer >= 1")
    rows = torch.arange(len(err))
    return torch.cat([rows, rows[err].repeat(int(upweight) - 1)])


class JTTSampler:
    """Uniform shuffle of JTT's upsampled set (errors repeated `upweight` times) each epoch."""

    def __init__(self, error_mask, upweight: int, seed: int = 0):
        self.base = jtt_upsampled_indices(error_mask, upweight)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def epoch_indices(self, epoch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator or epoch_generator(self.seed, epoch)
        return self.base[torch.randperm(len(self.base), generator=g)]


class EpochDrawSampler(Sampler[int]):
    """A `torch.utils.data.Sampler` over any of the draws above, for use in your own loop.

    `source` has `epoch_indices(epoch)`; call `set_epoch` before each epoch (like
    `DistributedSampler`). With `rank`/`world_size` it yields that rank's disjoint share.
    """

    def __init__(self, source, rank: int = 0, world_size: int = 1):
        self.source, self.rank, self.world_size, self.epoch = source, rank, world_size, 0
        rank_share(torch.arange(1), rank, world_size)  # validate

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self) -> torch.Tensor:
        return rank_share(self.source.epoch_indices(self.epoch), self.rank, self.world_size)

    def __iter__(self):
        return iter(self._draw().tolist())

    def __len__(self) -> int:
        return math.ceil(len(self.source) / self.world_size)

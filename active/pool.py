"""Unlabelled pools and streaming pool scoring.

A pool is anything indexable that yields `(image [3, H, W] float32, label int)`; the label is
the ground truth that only oracles and evaluation may read. Two kinds ship:

- `DatasetPool`: wraps any torch Dataset (e.g. `training.datasets.ImageDataset`).
- `ToyWorldPool`: the realistic huge pool. Item i is rendered on demand by
  `training.toyworld.render_sample(offset + i, seed, ...)`: deterministic per index, no images
  stored, millions of items, domain-imbalanced with the training proportions by default.

`score_pool` streams a pool through a predictor in batches (AMP on CUDA) and keeps only what the
strategy needs: one score per item for uncertainty strategies, embeddings (memory-mapped to disk
above `memmap_min_bytes`) and probabilities for diversity strategies. It scores every candidate;
subsampling the pool happens only when asked for (`subsample_candidates`) and is recorded.

Fast path (the one that keeps a GPU busy): a pool that offers `uint8_images()` (a
`ToyWorldPool` renders itself once into a memory-mapped uint8 shard cache,
`training.image_cache`; a cached `ImageDataset` already holds its uint8 tensor) is read through
`training.batches` -- the whole uint8 pool on the GPU when it fits (a batch is an index gather),
else loader processes and pinned memory -- and a predictor that knows its input normalisation
(`ModelPredictor(uint8_normalization=...)`) normalises on the device. Scores, and embeddings
when they fit, stay on the device until the pass ends.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from active.strategies import PoolOutputs, Strategy
from training.evaluate import resolve_device

MAX_CACHE_BYTES = 8 << 30
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.25, 0.25, 0.25)


class Pool(Protocol):
    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...

    def domain(self, index: int) -> str: ...


def pil_to_tensor(image, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """PIL RGB image -> normalised float32 tensor `[3, H, W]`."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (t - m) / s


class ToyWorldPool(Dataset):
    """A lazily rendered toy-world pool of `size` items (see module docstring).

    `cache_images` (default: when the uint8 pool takes at most `MAX_CACHE_BYTES`): score and
    train from a uint8 shard cache rendered once (`uint8_images`, in `cache_dir`, default
    `$ARGUS_CACHE/images`); otherwise every access renders (no disk, any size).
    Item i renders toy-world index `offset + i`. `labels`/`domains` optionally fix the class and
    domain per item (used for a balanced test split); otherwise both are drawn from
    `(seed, index)` with the `domains` proportions (default: the training proportions).
    `cache_size` rendered tensors are kept (labelled items are reused every epoch).
    """

    def __init__(self, size: int, seed: int = 0, image_size: int = 32, domains: dict | str | None = None,
                 offset: int | None = None, spurious: float = 0.0, labels: list[str] | None = None,
                 fixed_domains: list[str] | None = None, mean=DEFAULT_MEAN, std=DEFAULT_STD, cache_size: int = 20000,
                 cache_dir: str | os.PathLike | None = None, render_workers: int | None = None,
                 cache_images: bool | None = None):
        from training import toyworld

        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size, self.seed, self.image_size = int(size), int(seed), int(image_size)
        self.domains = toyworld.parse_domains(domains if domains is not None else toyworld.DEFAULT_DOMAINS)
        self.offset = toyworld.POOL_OFFSET if offset is None else int(offset)
        self.spurious = float(spurious)
        self.fixed_labels, self.fixed_domains = labels, fixed_domains
        for name, values in (("labels", labels), ("fixed_domains", fixed_domains)):
            if values is not None and len(values) != self.size:
                raise ValueError(f"ToyWorldPool: {name} has {len(values)} entries for {self.size} items")
        self.classes = list(toyworld.CLASSES)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.mean, self.std = mean, std
        self.cache_size = int(cache_size)
        self._cache: dict[int, tuple[torch.Tensor, int, str]] = {}
        self.cache_dir = cache_dir
        self.render_workers = render_workers
        if cache_images is None:  # auto: cache pools up to MAX_CACHE_BYTES; bigger ones stay lazy (no disk)
            cache_images = self.size * 3 * self.image_size**2 <= MAX_CACHE_BYTES
        self.cache_images = bool(cache_images)
        self._images = None  # the uint8 shard cache, once `uint8_images()` has built/opened it

    @classmethod
    def balanced_test(cls, n: int, seed: int = 0, image_size: int = 32, domains: dict | str | None = None, **kw):
        """The toy world's test split: `TEST_OFFSET` indices, domains balanced, classes balanced."""
        from training import toyworld

        props = toyworld.parse_domains(domains if domains is not None else toyworld.DEFAULT_DOMAINS)
        plan = toyworld.plan_split(n, {d: 1.0 / len(props) for d in props}, np.random.default_rng([int(seed), 0x7E57]))
        return cls(n, seed, image_size, props, offset=toyworld.TEST_OFFSET, labels=[p[0] for p in plan],
                   fixed_domains=[p[1] for p in plan], **kw)

    def __len__(self) -> int:
        return self.size

    def _cache_folder(self) -> Path:
        from training.image_cache import cache_key, cache_root

        fixed = [None if v is None else cache_key(values=list(v)) for v in (self.fixed_labels, self.fixed_domains)]
        key = cache_key(**self.describe(), fixed=fixed, renderer=1)
        root = Path(self.cache_dir) if self.cache_dir is not None else cache_root()
        return root / f"toyworld-{self.size}x{self.image_size}px-{key}"

    def uint8_images(self, progress: bool = True):
        """The whole pool rendered once into a uint8 shard cache (`training.image_cache.ImageCache`,
        `[N, 3, S, S]`, with `label` and `domain` columns); later calls, later runs and other
        processes with the same pool reuse it. Rendering runs in `render_workers` processes
        (default: every CPU, at most 16). None when the pool is not cached (`cache_images`)."""
        if not self.cache_images:
            return None
        if self._images is None:
            from training.image_cache import open_image_cache

            workers = self.render_workers if self.render_workers is not None else min(os.cpu_count() or 1, 16)
            filler = _RenderToyWorld(self.offset, self.seed, self.image_size, self.domains, self.spurious,
                                     self.fixed_labels, self.fixed_domains)
            self._images = open_image_cache(self._cache_folder(), self.size, self.image_size, filler, workers=workers,
                                            progress=progress, desc=f"rendering pool ({self.size} items)",
                                            meta=self.describe())
        return self._images

    def _render(self, index: int):
        from training.toyworld import render_sample

        if not 0 <= index < self.size:
            raise IndexError(f"pool index {index} out of range [0, {self.size})")
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        image, label, domain, _mask, _meta = render_sample(
            self.offset + index, self.seed, image_size=self.image_size, domains=self.domains, spurious=self.spurious,
            label=None if self.fixed_labels is None else self.fixed_labels[index],
            domain=None if self.fixed_domains is None else self.fixed_domains[index])
        item = (pil_to_tensor(image, self.mean, self.std), self.class_index[label], domain)
        if len(self._cache) < self.cache_size:
            self._cache[index] = item
        return item

    def __getitem__(self, index: int):
        if self._images is not None:
            from training.datasets import normalize_uint8

            x = normalize_uint8(self._images[int(index)][None], self.mean, self.std)[0]
            return x, int(self._images.column("label")[int(index)])
        x, y, _ = self._render(int(index))
        return x, y

    def label(self, index: int) -> int:
        if self._images is not None:
            return int(self._images.column("label")[int(index)])
        return self._render(int(index))[1]

    def domain(self, index: int) -> str:
        if self._images is not None:
            return str(self._images.column("domain")[int(index)])
        return self._render(int(index))[2]

    def describe(self) -> dict:
        return {"kind": "toyworld", "size": self.size, "seed": self.seed, "image_size": self.image_size,
                "domains": self.domains, "offset": self.offset, "spurious": self.spurious}


class _RenderToyWorld:
    """Picklable cache filler: pool items `[start, stop)` as uint8 `[n, 3, S, S]` plus their
    `label` (class id) and `domain` columns."""

    def __init__(self, offset, seed, image_size, domains, spurious, fixed_labels, fixed_domains):
        self.offset, self.seed, self.image_size = offset, seed, image_size
        self.domains, self.spurious = domains, spurious
        self.fixed_labels, self.fixed_domains = fixed_labels, fixed_domains

    def __call__(self, start: int, stop: int):
        from training.toyworld import CLASSES, render_sample

        index = {c: i for i, c in enumerate(CLASSES)}
        images, labels, domains = [], [], []
        for i in range(start, stop):
            image, label, domain, _mask, _meta = render_sample(
                self.offset + i, self.seed, image_size=self.image_size, domains=self.domains, spurious=self.spurious,
                label=None if self.fixed_labels is None else self.fixed_labels[i],
                domain=None if self.fixed_domains is None else self.fixed_domains[i])
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(index[label])
            domains.append(domain)
        arr = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
        return arr, {"label": np.asarray(labels, np.int64), "domain": np.asarray(domains, dtype="<U32")}


class DatasetPool(Dataset):
    """Any torch Dataset whose items start with `(image, label)` as a pool.

    `domains` (one string per item, may be empty) is read only by evaluation and reports.
    """

    def __init__(self, dataset, classes: list[str], domains: list[str] | None = None):
        self.dataset, self.classes = dataset, list(classes)
        self.domains = None if domains is None else [("" if d is None or d != d else str(d)) for d in domains]
        if self.domains is not None and len(self.domains) != len(dataset):
            raise ValueError(f"DatasetPool: {len(self.domains)} domains for {len(dataset)} items")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[int(index)]
        return item[0], int(item[1])

    def label(self, index: int) -> int:
        return int(self.dataset[int(index)][1])

    def domain(self, index: int) -> str:
        return "" if self.domains is None else self.domains[int(index)]

    def uint8_images(self, progress: bool = True):
        """The dataset's decoded uint8 images when it keeps them (a cached `ImageDataset`), else None."""
        return getattr(self.dataset, "_images", None)

    def describe(self) -> dict:
        return {"kind": type(self.dataset).__name__, "size": len(self)}


def pool_labels(pool) -> np.ndarray:
    """Ground-truth class ids of every pool item `[N]` (from the cache's column when there is one)."""
    images = getattr(pool, "_images", None)
    if images is not None and hasattr(images, "column"):
        return np.asarray(images.column("label"), np.int64)
    if isinstance(pool, DatasetPool) and hasattr(pool.dataset, "targets"):
        return torch.as_tensor(pool.dataset.targets).numpy().astype(np.int64)
    return np.asarray([pool.label(i) for i in range(len(pool))], np.int64)


def pool_domains(pool) -> list[str]:
    """Domain of every pool item (evaluation and reports only)."""
    images = getattr(pool, "_images", None)
    if images is not None and hasattr(images, "column"):
        return [str(d) for d in images.column("domain")]
    return [pool.domain(i) for i in range(len(pool))]


def batch_source(pool, device: torch.device, progress: bool = True, placement: str = "auto", workers: int = 4):
    """The pool's uint8 images as a `training.batches` source on `device` (kept on the pool
    object, so the GPU copy is made once per process), or None when the pool has no uint8 form."""
    if not hasattr(pool, "uint8_images"):
        return None
    sources = pool.__dict__.setdefault("_batch_sources", {})
    key = (str(device), placement)
    if key not in sources:
        from training.batches import make_batches

        images = pool.uint8_images(progress=progress)
        if images is None:
            return None
        sources[key] = make_batches(images, None, device, placement, workers=workers)
    return sources[key]


class _Indexed(Dataset):
    """`pool[indices[j]]` -> `(image, j)`."""

    def __init__(self, pool, indices: np.ndarray):
        self.pool, self.indices = pool, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        return self.pool[int(self.indices[j])][0], j


def subsample_candidates(candidates: np.ndarray, fraction_or_n: float, seed: int) -> np.ndarray:
    """Explicit pool subsampling (`--pool-subsample`): a fraction in (0, 1] or an item count."""
    n = len(candidates)
    k = int(round(fraction_or_n * n)) if fraction_or_n <= 1 else int(fraction_or_n)
    if k < 1:
        raise ValueError(f"--pool-subsample {fraction_or_n} leaves no items of {n}")
    if k >= n:
        return candidates
    rng = np.random.default_rng([int(seed), 0x5AB5])
    return np.sort(candidates[rng.choice(n, size=k, replace=False)])


# ---------------------------------------------------------------------------------------------
# predictors: the callable the loop gets from training (baal style)


class Predictor(Protocol):
    """`predictor(x [B,3,H,W]) -> (probs [B,K] float32, features [B,D] float32 or None)`."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ModelPredictor:
    """Wraps an Argus model (`forward_features` + linear `fc`) as a predictor.

    Runs in eval mode under `torch.autocast` on CUDA (`amp=True`); outputs are float32.
    `mc_probs` gives MC-dropout samples for BALD: when dropout sits only before the head (Argus
    models), features are computed once and only the head is resampled, which equals full MC
    dropout for that architecture at a fraction of the cost.
    """

    def __init__(self, model: nn.Module, device="auto", amp: bool = True, renormalize=None,
                 class_map: list[int] | None = None, num_classes: int | None = None,
                 uint8_normalization: tuple | None = None, amp_dtype: str = "float16"):
        self.device = resolve_device(device)
        # (mean, std) of the model's input: lets the scorer feed uint8 batches normalised on the device
        self.uint8_normalization = uint8_normalization
        self.amp_dtype = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
        self.model = model.to(self.device).eval()
        self.amp = bool(amp) and self.device.type == "cuda"
        self.split = hasattr(model, "forward_features") and isinstance(getattr(model, "fc", None), nn.Linear)
        # renormalize = (pool mean, pool std, model mean, std): pool tensors -> the model's input scaling
        self.affine = None
        if renormalize is not None:
            sm, ss, dm, ds = (torch.as_tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in renormalize)
            self.affine = ((ss / ds).to(self.device), ((sm - dm) / ds).to(self.device))
        # class_map[j] = pool class id of model output j (a model may know a subset of the classes)
        self.class_map = None if class_map is None else torch.as_tensor(class_map, dtype=torch.long, device=self.device)
        self.num_classes = num_classes

    def _input(self, x):
        x = x.to(self.device, non_blocking=True)
        return x if self.affine is None else x * self.affine[0] + self.affine[1]

    def _to_pool_classes(self, probs: torch.Tensor) -> torch.Tensor:
        if self.class_map is None:
            return probs
        full = probs.new_zeros(*probs.shape[:-1], self.num_classes)
        full[..., self.class_map] = probs
        return full

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.amp else torch.autocast("cpu", enabled=False)

    def from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 `[B, 3, H, W]` (on the device) -> the model's normalised float input."""
        from training.batches import prepare_batch

        if self.uint8_normalization is None:
            raise ValueError("this predictor does not know its input normalisation (uint8_normalization)")
        mean, std = self.uint8_normalization
        return prepare_batch(x.to(self.device, non_blocking=True), mean, std, channels_last=self.device.type == "cuda")

    @torch.no_grad()
    def predict_uint8(self, x: torch.Tensor):
        """`(probs [B, K], features [B, D] | None)` for a uint8 batch, normalised on the device."""
        return self._forward(self.from_uint8(x))

    @torch.no_grad()
    def __call__(self, x):
        return self._forward(self._input(x))

    def _forward(self, x):
        with self._autocast():
            if self.split:
                feats = self.model.forward_features(x)
                logits = self.model.fc(feats)
            else:
                feats, logits = None, self.model(x)
        probs = self._to_pool_classes(torch.softmax(logits.float(), dim=1))
        return probs, None if feats is None else feats.float()

    def _dropout_p(self) -> float:
        ps = [m.p for m in self.model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if not ps:
            raise ValueError("BALD needs a model with dropout (MC dropout); this model has none "
                             "(train with dropout > 0, e.g. SmallCNN(dropout=0.3))")
        return ps[0]

    @torch.no_grad()
    def mc_probs(self, x, samples: int, uint8: bool = False) -> torch.Tensor:
        """`[T, B, K]` softmax outputs with dropout active (batch norm stays in eval mode);
        `uint8=True` takes a uint8 batch (normalised like `predict_uint8`)."""
        p = self._dropout_p()
        x = self.from_uint8(x) if uint8 else self._input(x)
        head_only = self.split and not any(isinstance(m, nn.Dropout) and m.p > 0
                                           for m in self.model.modules() if m is not getattr(self.model, "dropout", None))
        with self._autocast():
            if head_only:
                feats = self.model.forward_features(x).float()
                out = [self.model.fc(nn.functional.dropout(feats, p, training=True)) for _ in range(samples)]
            else:
                drops = [m for m in self.model.modules() if isinstance(m, nn.Dropout)]
                for m in drops:
                    m.train()
                try:
                    out = [self.model(x) for _ in range(samples)]
                finally:
                    for m in drops:
                        m.eval()
        return self._to_pool_classes(torch.softmax(torch.stack(out).float(), dim=2))


# ---------------------------------------------------------------------------------------------


def _store(n: int, d: int, work_dir: Path | None, name: str, memmap_min_bytes: int):
    """An `[n, d]` float32 array in RAM, or a memmap in `work_dir` when it is large."""
    if n * d * 4 < memmap_min_bytes:
        return np.zeros((n, d), dtype=np.float32)
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="argus-pool-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(work_dir / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, d))


def make_loader(pool, indices: np.ndarray, batch_size: int, num_workers: int, device: torch.device) -> DataLoader:
    return DataLoader(_Indexed(pool, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def score_pool(predictor: Callable, pool, strategy: Strategy, candidates: np.ndarray | None = None,
               labelled: np.ndarray | None = None, batch_size: int = 256, num_workers: int = 0,
               work_dir: str | os.PathLike | None = None, memmap_min_bytes: int = 1 << 30,
               progress: bool = True, desc: str = "scoring pool", device_max_bytes: int = 2 << 30) -> PoolOutputs:
    """Stream `candidates` (pool indices, default: all) through `predictor`; keep what `strategy` needs.

    Returns `PoolOutputs` aligned with `candidates` (sorted ascending). For `coreset`, the
    embeddings of `labelled` items are computed too (initial centers). Every candidate is scored.
    `info` records item counts, seconds spent and the data path. With a uint8 pool and a
    predictor that knows its normalisation, the fast path runs (module docstring); embeddings
    and probabilities up to `device_max_bytes` then stay on the device during the pass.
    """
    from training.progress import progress_bar as tqdm

    cand = np.arange(len(pool), dtype=np.int64) if candidates is None else np.sort(np.asarray(candidates, dtype=np.int64))
    device = getattr(predictor, "device", torch.device("cpu"))
    needs = strategy.needs
    out = PoolOutputs(indices=cand, info={"n_scored": int(len(cand)), "needs": sorted(needs)})
    t0 = time.perf_counter()
    if not needs:
        out.info["seconds"] = 0.0
        return out
    source = batch_source(pool, device, progress) if getattr(predictor, "uint8_normalization", None) is not None else None
    if source is not None:
        _score_uint8(predictor, source, strategy, cand, labelled, batch_size, out, work_dir, memmap_min_bytes,
                     device_max_bytes, progress, desc)
        out.info["seconds"] = time.perf_counter() - t0
        out.info["data_path"] = f"uint8 {source.placement}"
        return out
    scores = np.zeros(len(cand), dtype=np.float32) if "scores" in needs else None
    emb = probs = None
    loader = make_loader(pool, cand, batch_size, num_workers, device)
    with tqdm(total=len(cand), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x, j in loader:
            j = j.numpy()
            lo, hi = int(j[0]), int(j[-1]) + 1  # the loader is sequential: j is a contiguous range
            p, f = predictor(x)
            if scores is not None:
                mc = predictor.mc_probs(x, strategy.mc_samples) if strategy.mc_samples else None
                scores[lo:hi] = strategy.score_batch(p, mc).float().cpu().numpy()
            if "embeddings" in needs:
                if f is None:
                    raise ValueError(f"strategy {strategy.name!r} needs features; the predictor returned none")
                if emb is None:
                    emb = _store(len(cand), f.shape[1], work_dir, "embeddings", memmap_min_bytes)
                emb[lo:hi] = f.cpu().numpy()
            if "probs" in needs:
                if probs is None:
                    probs = _store(len(cand), p.shape[1], work_dir, "probs", memmap_min_bytes)
                probs[lo:hi] = p.cpu().numpy()
            bar.update(hi - lo)
    out.scores, out.embeddings, out.probs = scores, emb, probs
    if "embeddings" in needs and labelled is not None and len(labelled):
        lab = np.sort(np.asarray(labelled, dtype=np.int64))
        chunks = [predictor(x)[1].cpu().numpy() for x, _ in make_loader(pool, lab, batch_size, num_workers, device)]
        out.labelled_embeddings = np.concatenate(chunks)
    out.info["seconds"] = time.perf_counter() - t0
    return out


def _device_or_host(n: int, d: int, device, device_max_bytes: int, work_dir, name: str, memmap_min_bytes: int):
    if n * d * 4 <= device_max_bytes:
        return torch.empty((n, d), dtype=torch.float32, device=device)
    return _store(n, d, work_dir, name, memmap_min_bytes)


def _to_numpy(a):
    return a.cpu().numpy() if torch.is_tensor(a) else a


def _put(store, lo: int, hi: int, value: torch.Tensor):
    if torch.is_tensor(store):
        store[lo:hi] = value
    else:
        store[lo:hi] = value.cpu().numpy()


@torch.no_grad()
def _score_uint8(predictor, source, strategy: Strategy, cand: np.ndarray, labelled, batch_size: int, out: PoolOutputs,
                 work_dir, memmap_min_bytes: int, device_max_bytes: int, progress: bool, desc: str) -> None:
    """The fast path of `score_pool`: uint8 batches from `source`, results kept on the device."""
    from training.progress import progress_bar as tqdm

    needs, device = strategy.needs, source.device
    n = len(cand)
    scores = torch.empty(n, dtype=torch.float32, device=device) if "scores" in needs else None
    emb = probs = None
    lo = 0
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for _idx, xb, _ in source.batches(torch.from_numpy(cand), batch_size):
            hi = lo + len(xb)
            p, f = predictor.predict_uint8(xb)
            if scores is not None:
                mc = predictor.mc_probs(xb, strategy.mc_samples, uint8=True) if strategy.mc_samples else None
                scores[lo:hi] = strategy.score_batch(p, mc).float()
            if "embeddings" in needs:
                if f is None:
                    raise ValueError(f"strategy {strategy.name!r} needs features; the predictor returned none")
                if emb is None:
                    emb = _device_or_host(n, f.shape[1], device, device_max_bytes, work_dir, "embeddings", memmap_min_bytes)
                _put(emb, lo, hi, f)
            if "probs" in needs:
                if probs is None:
                    probs = _device_or_host(n, p.shape[1], device, device_max_bytes, work_dir, "probs", memmap_min_bytes)
                _put(probs, lo, hi, p)
            lo = hi
            bar.update(len(xb))
    out.scores = None if scores is None else scores.cpu().numpy()
    out.embeddings, out.probs = _to_numpy(emb), _to_numpy(probs)
    if "embeddings" in needs and labelled is not None and len(labelled):
        lab = torch.from_numpy(np.sort(np.asarray(labelled, dtype=np.int64)))
        chunks = [predictor.predict_uint8(xb)[1] for _i, xb, _ in source.batches(lab, batch_size)]
        out.labelled_embeddings = torch.cat(chunks).cpu().numpy()


@torch.no_grad()
def predict_classes(predictor, pool, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Predicted class ids `[N]` for every pool item (fast path when the pool has uint8 images)."""
    device = getattr(predictor, "device", torch.device("cpu"))
    source = batch_source(pool, device, progress) if getattr(predictor, "uint8_normalization", None) is not None else None
    if source is not None:
        preds = [predictor.predict_uint8(xb)[0].argmax(1) for _i, xb, _ in
                 source.batches(torch.arange(len(pool)), batch_size)]
        return torch.cat(preds).cpu().numpy() if preds else np.zeros(0, np.int64)
    preds = [predictor(x)[0].argmax(1).cpu().numpy() for x, _ in make_loader(pool, np.arange(len(pool)), batch_size, 0, device)]
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def gather_uint8(pool, indices, device) -> torch.Tensor:
    """uint8 images `[L, 3, S, S]` of pool items `indices`, on `device` (for training on them)."""
    source = batch_source(pool, torch.device(device), progress=False)
    if source is None:
        raise ValueError(f"{type(pool).__name__} has no uint8 images")
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    if source.placement == "device":
        return source.images[idx.to(source.device)]
    images = source.images
    x = torch.from_numpy(images.gather(idx.numpy())) if hasattr(images, "gather") else torch.as_tensor(images)[idx]
    return x.to(device)

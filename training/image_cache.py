"""Decoded or rendered images cached once as uint8 tensor shards, memory-mapped.

A cache is a folder `<root>/<name>-<S>px-<key>/` holding `shard-00000.npy`, ... (uint8
`[n, 3, S, S]`, at most `shard_size` images each), optional per-item columns beside them
(`shard-00000.label.npy`, ...) and `manifest.json`, written last. The key hashes whatever
defines the pixels (a dataset split's fingerprint, a generator's parameters, the image size, the
decoder), so a second process or a later run with the same inputs reuses the files and any
change of inputs gets a new folder.

Safe when many processes open the same cache at once (ten trainers starting together): each
shard is built by whichever process holds its lock (`fcntl.flock`, released by the kernel when
a builder dies), written to a temporary file and renamed into place, so a reader never sees a
partial shard; processes that find a shard locked build the next free one and wait for the
rest. A build that was killed resumes from the shards already written.

`fill(start, stop)` produces the images `[start, stop)` as uint8 `[stop-start, 3, S, S]`
(or `(images, {column: array})`); it must be picklable when `workers > 1` (it then runs in a
process pool, chunk by chunk).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def cache_root() -> Path:
    """`$ARGUS_CACHE/images` or `~/.cache/argus/images`: where caches live when the data folder
    itself is not writable (and for generated pools, which have no folder)."""
    return Path(os.environ.get("ARGUS_CACHE", Path.home() / ".cache" / "argus")) / "images"


def cache_key(**parts) -> str:
    """A short stable hash of keyword parts (JSON-serialised, keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class ImageCache:
    """An opened cache: `len(cache)` images of `image_size`², in memory-mapped shards.

    `gather(indices)` -> uint8 numpy `[B, 3, S, S]`; `column(name)` -> one per-item array
    (e.g. labels written by the filler); `to_tensor(device)` -> the whole set as one tensor
    (one host copy, or one device allocation filled shard by shard).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        manifest = json.loads((self.folder / MANIFEST).read_text())
        self.n = int(manifest["n"])
        self.image_size = int(manifest["image_size"])
        self.shard_size = int(manifest["shard_size"])
        self.columns = list(manifest.get("columns", []))
        self.meta = manifest.get("meta", {})
        self.shards = [np.load(self.folder / _shard_name(i), mmap_mode="r") for i in range(_n_shards(self.n, self.shard_size))]
        self._columns: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        return self.n * 3 * self.image_size * self.image_size

    def gather(self, indices) -> np.ndarray:
        """uint8 `[B, 3, S, S]` for pool/split positions `indices` (any order, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"{self.folder}: index {bad} out of range [0, {self.n})")
        out = np.empty((len(idx), 3, self.image_size, self.image_size), np.uint8)
        shard_of = idx // self.shard_size
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            out[sel] = self.shards[int(s)][idx[sel] - int(s) * self.shard_size]
        return out

    def __getitem__(self, key) -> torch.Tensor:
        """`cache[i]`, `cache[lo:hi]` or `cache[indices]` as a uint8 tensor (read from the maps)."""
        if isinstance(key, slice):
            return torch.from_numpy(self.gather(np.arange(self.n)[key]))
        if isinstance(key, (int, np.integer)):
            return torch.from_numpy(self.gather([int(key)])[0])
        return torch.from_numpy(self.gather(torch.as_tensor(key).cpu().numpy()))

    def column(self, name: str) -> np.ndarray:
        """The per-item column `name` written by the filler, `[N]`."""
        if name not in self.columns:
            raise KeyError(f"{self.folder}: no column {name!r} (has {', '.join(self.columns) or 'none'})")
        if name not in self._columns:
            self._columns[name] = np.concatenate([np.load(self.folder / _shard_name(i, name), allow_pickle=False)
                                                  for i in range(len(self.shards))])
        return self._columns[name]

    def to_tensor(self, device: str | torch.device = "cpu", pin: bool = False) -> torch.Tensor:
        """The whole set as one uint8 tensor `[N, 3, S, S]` on `device` (copied shard by shard,
        so host memory never holds a second full copy when `device` is a GPU)."""
        device = torch.device(device)
        out = torch.empty((self.n, 3, self.image_size, self.image_size), dtype=torch.uint8, device=device,
                          pin_memory=pin and device.type == "cpu")
        for i, shard in enumerate(self.shards):
            lo = i * self.shard_size
            if device.type == "cpu":
                out[lo:lo + len(shard)].numpy()[:] = shard
            else:
                out[lo:lo + len(shard)].copy_(torch.from_numpy(np.array(shard)))
        return out


def _shard_name(i: int, column: str | None = None) -> str:
    return f"shard-{i:05d}.npy" if column is None else f"shard-{i:05d}.{column}.npy"


def _n_shards(n: int, shard_size: int) -> int:
    return max(1, -(-n // shard_size)) if n else 0


@contextlib.contextmanager
def _locked(path: Path, blocking: bool):
    """An exclusive `flock` on `path` (yields False when non-blocking and taken)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _split_fill(out, n_expected: int, image_size: int, where: str):
    images, columns = (out if isinstance(out, tuple) else (out, {}))
    images = np.asarray(images)
    want = (n_expected, 3, image_size, image_size)
    if images.dtype != np.uint8 or images.shape != want:
        raise ValueError(f"{where}: fill returned {images.dtype} {tuple(images.shape)}, expected uint8 {want}")
    return images, {k: np.asarray(v) for k, v in columns.items()}


def _build_shard(folder: Path, i: int, n: int, image_size: int, shard_size: int, fill, executor, chunk: int) -> list[str]:
    lo, hi = i * shard_size, min(n, (i + 1) * shard_size)
    if executor is None:
        images, cols = _split_fill(fill(lo, hi), hi - lo, image_size, str(folder))
    else:
        starts = list(range(lo, hi, chunk))
        parts = list(executor.map(fill, starts, [min(s + chunk, hi) for s in starts]))
        split = [_split_fill(p, min(s + chunk, hi) - s, image_size, str(folder)) for p, s in zip(parts, starts)]
        images = np.concatenate([p[0] for p in split])
        cols = {k: np.concatenate([p[1][k] for p in split]) for k in split[0][1]}
    for name, arr in [(None, images), *cols.items()]:
        target = folder / _shard_name(i, name)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, target)
    return sorted(cols)


def open_image_cache(folder, n: int, image_size: int, fill: Callable, *, shard_size: int = 4096, workers: int = 0,
                     chunk: int = 256, progress: bool = True, desc: str = "caching images",
                     meta: dict | None = None) -> ImageCache:
    """Open the cache in `folder`, building (or finishing) it first with `fill` if needed.

    `n` images of `image_size`²; `workers` > 1 runs `fill` in that many processes, `chunk`
    images per call. Several processes may call this at once on the same folder (see the module
    docstring). `meta` is recorded in the manifest. Raises `ValueError` when `fill` returns the
    wrong shape or dtype, naming the cache folder.
    """
    from training.progress import progress_bar as tqdm

    folder = Path(folder)
    if (folder / MANIFEST).exists():
        cache = ImageCache(folder)
        if cache.n == n and cache.image_size == image_size:
            return cache
        raise ValueError(f"{folder}: holds {cache.n} images of {cache.image_size} px, asked for {n} of {image_size} px")
    if n < 0 or image_size < 1 or shard_size < 1:
        raise ValueError(f"{folder}: bad cache shape n={n} image_size={image_size} shard_size={shard_size}")
    folder.mkdir(parents=True, exist_ok=True)
    shards = _n_shards(n, shard_size)
    executor = None
    if workers > 1 and n > chunk:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=workers)
    columns: list[str] | None = None
    try:
        with tqdm(total=n, desc=desc, unit="img", disable=not progress) as bar:
            for blocking in (False, True):  # first build every free shard, then wait for the others' builders
                for i in range(shards):
                    target = folder / _shard_name(i)
                    if target.exists():
                        continue
                    with _locked(folder / f".shard-{i:05d}.lock", blocking) as held:
                        if not held or target.exists():
                            continue
                        columns = _build_shard(folder, i, n, image_size, shard_size, fill, executor, chunk)
                        bar.update(min(n, (i + 1) * shard_size) - i * shard_size)
    finally:
        if executor is not None:
            executor.shutdown()
    with _locked(folder / ".manifest.lock", True):
        if not (folder / MANIFEST).exists():
            if columns is None:  # every shard was built by other processes: read their column names
                columns = sorted(p.name.split(".")[1] for p in folder.glob("shard-00000.*.npy"))
            doc = {"version": FORMAT_VERSION, "n": n, "image_size": image_size, "shard_size": shard_size,
                   "columns": columns, "meta": meta or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, folder / MANIFEST)
    return ImageCache(folder)

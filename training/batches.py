"""Mini-batches from uint8 images without per-item Python: GPU-resident or streamed.

Two sources share one interface, `source.batches(indices, batch_size)` yielding
`(idx [B] on the device, x uint8 [B, 3, S, S] on the device, y [B] on the device)`:

- `DeviceBatches`: the whole uint8 set lives on the device (64 px: 12 KiB per image, so 50,000
  images take 0.6 GiB); a batch is one index gather. Chosen when the set fits (`place_images`).
- `StreamedBatches`: the set stays on the host (a tensor or a memory-mapped `ImageCache`);
  loader processes cut whole batches (one fancy index per batch, no per-item Python), the
  batches come back in pinned memory and are copied with `non_blocking=True`.

Augmentation and normalisation then run on the device (`Augment.apply`, `normalize_uint8`).
Every random draw comes from a CPU `torch.Generator` in a fixed order (shifts y, shifts x,
mirror flags per batch), so the two sources, and CPU and GPU, give the same batches for the same
seed; only the arithmetic of the network differs between devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.datasets import normalize_uint8


@dataclass(frozen=True)
class Augment:
    """Random per-sample shifts of up to `shift` px (edge-replicated) and, when `mirror`,
    horizontal flips with probability 1/2. `Augment()` does nothing."""

    shift: int = 0
    mirror: bool = False

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.mirror

    def draw(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """The draws of one batch as int64 `[3, b]` (dy, dx, flip), from `generator` (CPU)."""
        if self.shift > 0:
            dy = torch.randint(-self.shift, self.shift + 1, (b,), generator=generator)
            dx = torch.randint(-self.shift, self.shift + 1, (b,), generator=generator)
        else:
            dy = dx = torch.zeros(b, dtype=torch.long)
        flip = (torch.rand(b, generator=generator) < 0.5).long() if self.mirror else torch.zeros(b, dtype=torch.long)
        return torch.stack([dy, dx, flip])

    def draw_share(self, n_local: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
        """The draws of one DDP rank's share of a global batch, `[3, n_local]`.

        Rank r's batch b holds positions `r, r + W, r + 2W, ...` of global batch b (the trainer
        deals each epoch's draw round-robin), so drawing for the whole global batch and keeping
        columns `r::W` gives every image the augmentation it gets in a single process.
        """
        draws = self.draw(n_local * world, generator)
        return draws if world == 1 else draws[:, rank::world]

    @staticmethod
    def apply(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Shift/mirror images `x [B, C, H, W]` (any dtype) by `draws [3, B]` on x's device."""
        b, c, h, w = x.shape
        if x.device.type == "cuda" and not draws.is_cuda:
            draws = draws.pin_memory()  # a pageable host->GPU copy would wait for the GPU
        draws = draws.to(x.device, non_blocking=True)
        dy, dx, flip = draws[0], draws[1], draws[2].bool()
        iy = (torch.arange(h, device=x.device)[None, :] + dy[:, None]).clamp_(0, h - 1)
        ix = (torch.arange(w, device=x.device)[None, :] + dx[:, None]).clamp_(0, w - 1)
        ix = torch.where(flip[:, None], ix.flip(1), ix)
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return x[bi, ci, iy[:, None, :, None], ix[:, None, None, :]]


def augment_uint8(x: torch.Tensor, generator: torch.Generator, shift: int = 4, mirror: bool = True) -> torch.Tensor:
    """Random per-sample shifts (up to `shift` px, edge-replicated) and mirroring of uint8 or
    float images `[B, C, H, W]`; randomness only from `generator` (CPU)."""
    aug = Augment(shift, mirror)
    return Augment.apply(x, aug.draw(x.shape[0], generator))


def _nbytes(images) -> int:
    if hasattr(images, "nbytes") and not torch.is_tensor(images):
        return int(images.nbytes)
    return int(images.numel() * images.element_size())


def place_images(images, device: torch.device, placement: str = "auto", max_fraction: float = 0.5) -> str:
    """`"device"` when the uint8 set should live on `device`, else `"host"`.

    `placement`: `auto` (device when it is a GPU and the set takes at most `max_fraction` of
    its free memory; on CPU the set is in host memory either way), `device` or `host`.
    """
    if placement not in ("auto", "device", "host"):
        raise ValueError(f"data placement must be auto, device or host, got {placement!r}")
    if placement != "auto":
        return placement
    if device.type != "cuda":
        return "device"  # host memory is the device: gather straight from the tensor
    free, _total = torch.cuda.mem_get_info(device)
    return "device" if _nbytes(images) <= max_fraction * free else "host"


class DeviceBatches:
    """All uint8 images (and labels) of a set on one device; batches are index gathers."""

    placement = "device"

    def __init__(self, images, labels: torch.Tensor | None, device):
        self.device = torch.device(device)
        if hasattr(images, "to_tensor"):  # ImageCache
            self.images = images.to_tensor(self.device)
        else:
            images = torch.as_tensor(images)
            self.images = images if images.device == self.device else images.to(self.device)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long).to(self.device)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, indices: torch.Tensor, batch_size: int):
        idx_all = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        for lo in range(0, len(idx_all), batch_size):
            idx = idx_all[lo:lo + batch_size]
            yield idx, self.images[idx], None if self.labels is None else self.labels[idx]


class _BatchReader(torch.utils.data.Dataset):
    """Item j = the whole batch `batches[j]` of uint8 images (one gather, no per-item Python)."""

    def __init__(self, images, batches: list[np.ndarray]):
        self.images, self.batches = images, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, j):
        idx = self.batches[j]
        if hasattr(self.images, "gather"):
            return torch.from_numpy(self.images.gather(idx))
        if torch.is_tensor(self.images):
            return self.images[torch.from_numpy(idx)]
        return torch.from_numpy(np.ascontiguousarray(self.images[idx]))


class StreamedBatches:
    """uint8 images kept on the host (tensor, array or memory-mapped `ImageCache`); loader
    processes cut batches into pinned memory, copied to the device without blocking."""

    placement = "host"

    def __init__(self, images, labels: torch.Tensor | None, device, workers: int = 4, prefetch: int = 4):
        self.device = torch.device(device)
        self.images = images
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.workers, self.prefetch = int(workers), int(prefetch)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, indices: torch.Tensor, batch_size: int):
        idx_all = torch.as_tensor(indices, dtype=torch.long).cpu()
        chunks = [c.numpy() for c in idx_all.split(batch_size)]
        pin = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            _BatchReader(self.images, chunks), batch_size=None, shuffle=False, num_workers=self.workers,
            pin_memory=pin, prefetch_factor=self.prefetch if self.workers > 0 else None)
        for chunk, x in zip(chunks, loader):
            idx = torch.from_numpy(chunk)
            y = None if self.labels is None else self.labels[idx]
            if pin and y is not None:
                y = y.pin_memory()
            yield (idx.to(self.device, non_blocking=True), x.to(self.device, non_blocking=True),
                   None if y is None else y.to(self.device, non_blocking=True))


def make_batches(images, labels, device, placement: str = "auto", workers: int = 4, max_fraction: float = 0.5):
    """`DeviceBatches` or `StreamedBatches` for `images` (see `place_images`)."""
    device = torch.device(device)
    where = place_images(images, device, placement, max_fraction)
    if where == "device":
        return DeviceBatches(images, labels, device)
    return StreamedBatches(images, labels, device, workers=workers)


def prepare_batch(x_uint8: torch.Tensor, mean, std, draws: torch.Tensor | None = None,
                  channels_last: bool = True) -> torch.Tensor:
    """Augment (when `draws` is given) and normalise a uint8 batch on its device -> float32."""
    if draws is not None:
        x_uint8 = Augment.apply(x_uint8, draws)
    x = normalize_uint8(x_uint8, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

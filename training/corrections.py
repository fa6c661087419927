"""Corrections of a model that learnt a shortcut: training methods that use where the evidence
should be (part masks or human marks) or which cue or channels were judged invalid.

=========================  ======================================================================
name                       what it changes
=========================  ======================================================================
`rrr-gradient`             cross-entropy + `weight` x share of the input-gradient energy of
                           sum_k log p_k that lies outside the allowed region (right for the
                           right reasons, Ross et al. 2017)
`rrr-contribution`         cross-entropy + `weight` x share of the labelled class's positive
                           channel evidence (the GAP-linear decomposition W[y,c] A[c,h,w] / HW)
                           that lies outside the allowed region (in the spirit of Rieger et al.
                           2020, on the decomposition Argus explains with)
`counterfactual-bg`        each training image, with probability `p`, gets another training
                           image's background behind its own object (the flagged cue at chance)
`suppress-channels`        the head's weights of the channels judged invalid are held at zero
                           (a baseline; meaningful only with `init`, the model they were judged on)
=========================  ======================================================================

Every correction accepts `init` (a run folder): the model starts from that checkpoint (a
fine-tune) instead of a fresh initialisation; the penalties also take `counterfactual` (the
probability of the background swap, so a penalty and the swap train together). The allowed region comes from the dataset's part
masks (`masks/<sample_id>.png`): `region="object"` allows every part, `region="parts"` only the
discriminative parts of the row's class (`parts.json`), grown by `dilate` pixels. Masks follow
the batch's shifts and flips exactly. None of these methods reads the domain column.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.batches import Augment
from training.method_base import TrainingMethod, _no_options, register_method

REGIONS = ("object", "parts")


# ----------------------------------------------------------------------------- the pieces

def input_gradient_penalty(inputs: torch.Tensor, logits: torch.Tensor, allowed: torch.Tensor,
                           eps: float = 1e-12) -> torch.Tensor:
    """Share of input-gradient energy outside the allowed region, averaged over the batch.

    `inputs [B, C, H, W]` (requires grad, `logits` computed from it), `logits [B, K]`,
    `allowed [B, 1, H, W]` in {0, 1}. The gradient is that of `sum_k log softmax(logits)_k`
    (Ross et al. 2017); per image the penalty is `sum (1 - allowed) g^2 / sum g^2` (0 when all
    the gradient lies in the allowed region, 1 when none does). Differentiable (double backprop).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    (grad,) = torch.autograd.grad(log_p.sum(), inputs, create_graph=True)
    energy = grad.float().pow(2).sum(dim=1, keepdim=True)  # [B, 1, H, W]
    outside = (energy * (1.0 - allowed.float())).flatten(1).sum(1)
    return (outside / (energy.flatten(1).sum(1) + eps)).mean()


def class_evidence_map(fmap: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Where the labelled class's logit comes from: `E[b, h, w] = sum_c W[y_b, c] A[b, c, h, w] / (H W)`.

    `fmap [B, C, h, w]` (the explained layer, before global average pooling), `weight [K, C]`
    (the linear head), `labels [B]`. `E[b].sum()` is the logit of class `y_b` minus its bias."""
    w = weight[labels].to(fmap.dtype)  # [B, C]
    h, wd = fmap.shape[-2:]
    return torch.einsum("bc,bchw->bhw", w, fmap) / (h * wd)


def contribution_penalty(fmap: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor,
                         eps: float = 1e-12) -> torch.Tensor:
    """Share of the labelled class's positive evidence that lies outside the allowed region.

    A cell of the `[h, w]` map is allowed when any pixel of `allowed [B, 1, H, W]` under it is
    (max-pooled to the map's size, so `H, W` must be multiples of `h, w`). Per image the penalty
    is `sum_out relu(E) / sum relu(E)` with `E` from `class_evidence_map`; the batch mean."""
    evidence = class_evidence_map(fmap.float(), weight.float(), labels).clamp_min(0)
    cells = cell_mask(allowed, fmap.shape[-2:])
    outside = (evidence * (1.0 - cells)).flatten(1).sum(1)
    return (outside / (evidence.flatten(1).sum(1) + eps)).mean()


def cell_mask(allowed: torch.Tensor, size) -> torch.Tensor:
    """`allowed [B, 1, H, W]` -> `[B, h, w]` float: 1 where any pixel of the cell is allowed."""
    h, w = int(size[0]), int(size[1])
    H, W = allowed.shape[-2:]
    if H % h or W % w:
        raise ValueError(f"mask of {H}x{W} px does not tile a {h}x{w} feature map")
    return F.max_pool2d(allowed.float(), kernel_size=(H // h, W // w)).squeeze(1)


def swap_backgrounds(images: torch.Tensor, foreground: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Counterfactual images: each image's object on another image's background.

    `images [B, C, H, W]`, `foreground [B, 1, H, W]` in {0, 1} (the object), `donors [B]`
    (index of the image whose background to use; `donors[i] == i` keeps image i). Where the
    donor's own object hides its background, the donor's background is taken from the donor
    rolled by half the image (right, down, then both); pixels hidden in every copy get the mean
    of the donor's visible background. Returns a new tensor; the object pixels are unchanged."""
    fg = foreground.to(images.dtype)
    donor, donor_fg = images[donors], fg[donors]
    H, W = images.shape[-2:]
    bg = torch.zeros_like(donor)
    todo = torch.ones_like(donor_fg)  # donor pixels still without a background value
    for shift in ((0, 0), (0, W // 2), (H // 2, 0), (H // 2, W // 2)):
        src = torch.roll(donor, shift, dims=(-2, -1))
        ok = 1.0 - torch.roll(donor_fg, shift, dims=(-2, -1))
        take = todo * ok
        bg = bg + take * src
        todo = todo * (1.0 - ok)
    visible = (1.0 - donor_fg)
    mean = (donor * visible).sum(dim=(-2, -1), keepdim=True) / visible.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    bg = bg + todo * mean
    same = (donors == torch.arange(len(donors), device=donors.device)).to(images.dtype)[:, None, None, None]
    swapped = fg * images + (1.0 - fg) * bg
    return same * images + (1.0 - same) * swapped


def allowed_masks(part_maps: np.ndarray, labels: np.ndarray, region: str = "parts", class_parts: dict | None = None,
                  dilate: int = 0) -> np.ndarray:
    """Allowed regions `uint8 [N, H, W]` from part label maps `[N, H, W]` (0 = background).

    `region="object"`: every part; `"parts"`: the ids `class_parts[label]` (a class index ->
    list of discriminative part ids). `dilate` grows the region by that many pixels (a square
    neighbourhood)."""
    if region not in REGIONS:
        raise ValueError(f"region={region!r}: choose one of {', '.join(REGIONS)}")
    maps = np.asarray(part_maps)
    if region == "object":
        out = maps > 0
    else:
        if class_parts is None:
            raise ValueError("region='parts' needs the discriminative parts of each class (parts.json)")
        out = np.zeros(maps.shape, bool)
        for k in np.unique(labels):
            rows = np.asarray(labels) == k
            out[rows] = np.isin(maps[rows], list(class_parts[int(k)]))
    out = torch.from_numpy(out.astype(np.uint8))
    if dilate > 0:
        out = F.max_pool2d(out[:, None].float(), 2 * dilate + 1, stride=1, padding=dilate)[:, 0].to(torch.uint8)
    return out.numpy()


def load_part_maps(info, split: str, image_size: int) -> np.ndarray:
    """Part label maps `uint8 [N, S, S]` of a split (rows in split order), resized (nearest) to
    `image_size`; FileNotFoundError naming the first missing mask."""
    from PIL import Image

    from training.datasets import read_part_mask

    ids = info.split_table(split)["sample_id"].tolist()
    out = np.zeros((len(ids), image_size, image_size), np.uint8)
    for i, sid in enumerate(ids):
        m = read_part_mask(info.root, sid)
        if m.shape != (image_size, image_size):
            m = np.asarray(Image.fromarray(m).resize((image_size, image_size), Image.NEAREST))
        out[i] = m
    return out


def class_discriminative_parts(info) -> dict[int, list[int]]:
    """Class index -> discriminative part ids, from the dataset's `parts.json`."""
    from training.datasets import read_parts

    parts = read_parts(info.root)
    by_name = {c["name"]: list(c["discriminative_parts"]) for c in parts["classes"]}
    missing = [c for c in info.classes if c not in by_name]
    if missing:
        raise ValueError(f"{info.root}/parts.json: no discriminative parts for class {missing[0]!r}")
    return {i: by_name[c] for i, c in enumerate(info.classes)}


# ----------------------------------------------------------------------------- the methods

class CorrectionMethod(TrainingMethod):
    """Shared machinery: optional warm start from `init` (a run folder) and, when the method
    needs them (`uses_masks`), the training rows' part masks on the trainer's device, augmented
    with each batch's draws (`self.batch_allowed`, `self.batch_foreground`)."""

    uses_masks = True

    def __init__(self, init: str | None = None, region: str = "parts", dilate: int = 1, counterfactual: float = 0.0,
                 **kwargs):
        _no_options(self.name, kwargs)
        super().__init__()
        if region not in REGIONS:
            raise ValueError(f"method {self.name!r}: region={region!r}: choose one of {', '.join(REGIONS)}")
        if dilate < 0:
            raise ValueError(f"method {self.name!r}: dilate={dilate} must be >= 0")
        if not 0.0 <= counterfactual <= 1.0:
            raise ValueError(f"method {self.name!r}: counterfactual={counterfactual} must be in [0, 1]")
        self.init, self.region, self.dilate = init, region, int(dilate)
        self.swap_p = float(counterfactual)
        self._gen = None
        self._part_maps = self._allowed = None
        self.batch_inputs_ = self.batch_allowed = self.batch_foreground = None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        if self.init:
            self._load_init(trainer)
        if self.uses_masks:
            info = trainer.info
            if info is None:
                raise ValueError(f"method {self.name!r} needs part masks: train from a dataset folder with masks/")
            maps = load_part_maps(info, "train", trainer.image_size)
            labels = trainer.train_labels.numpy()
            parts = class_discriminative_parts(info) if self.region == "parts" else None
            allowed = allowed_masks(maps, labels, self.region, parts, self.dilate)
            self._part_maps = torch.from_numpy((maps > 0).astype(np.uint8))[:, None].to(trainer.device)
            self._allowed = torch.from_numpy(allowed)[:, None].to(trainer.device)

    def _load_init(self, trainer) -> None:
        from training.checkpoint import load_checkpoint

        model, meta = load_checkpoint(self.init, "cpu")
        if meta.get("arch") != trainer.config.arch:
            raise ValueError(f"method {self.name!r}: init={self.init} is a {meta.get('arch')} model, "
                             f"this run trains {trainer.config.arch}")
        if list(meta.get("classes", [])) != list(trainer.classes):
            raise ValueError(f"method {self.name!r}: init={self.init} has classes {meta.get('classes')}, "
                             f"the data has {trainer.classes}")
        trainer.model.load_state_dict(model.state_dict())
        # same input scaling as the model it starts from
        trainer.normalization = meta["normalization"]

    def epoch_indices(self, epoch, generator):
        # the swaps' own stream, seeded by (seed, epoch): runs repeat exactly, resumed ones too
        self._gen = torch.Generator().manual_seed(int(self.trainer.config.seed) * 7_919 + int(epoch) * 104_729 + 17)
        return None

    def batch_inputs(self, x, idx, draws):
        if self.uses_masks:
            idx = idx.to(self._allowed.device)
            allowed, fg = self._allowed[idx], self._part_maps[idx]
            if draws is not None:
                allowed, fg = Augment.apply(allowed, draws), Augment.apply(fg, draws)
            self.batch_allowed, self.batch_foreground = allowed.float(), fg.float()
        if self.swap_p > 0:
            b = len(idx)
            donors = torch.randint(0, b, (b,), generator=self._gen)
            keep = torch.rand(b, generator=self._gen) >= self.swap_p
            donors = torch.where(keep, torch.arange(b), donors).to(x.device)
            x = swap_backgrounds(x, self.batch_foreground.to(x.dtype), donors)
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def config(self) -> dict:
        return {"init": self.init, "region": self.region, "dilate": self.dilate, "counterfactual": self.swap_p}


@register_method("rrr-gradient")
class InputGradientMethod(CorrectionMethod):
    """Cross-entropy + `weight` x `input_gradient_penalty` (right for the right reasons)."""

    def __init__(self, weight: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"method {self.name!r}: weight={weight} must be >= 0")
        self.weight = float(weight)
        self._sum, self._steps = 0.0, 0

    def batch_inputs(self, x, idx, draws):
        x = super().batch_inputs(x, idx, draws).detach().requires_grad_(True)
        self.batch_inputs_ = x
        return x

    def loss(self, logits, features, labels, indices, domains=None):
        ce = F.cross_entropy(logits.float(), labels)
        penalty = input_gradient_penalty(self.batch_inputs_, logits, self.batch_allowed)
        self._sum, self._steps = self._sum + penalty.detach(), self._steps + 1
        return ce + self.weight * penalty

    def end_epoch(self, epoch: int) -> dict:
        out = {"outside_gradient_share": float(self._sum) / self._steps} if self._steps else {}
        self._sum, self._steps = 0.0, 0
        return out

    def config(self) -> dict:
        return {**super().config(), "weight": self.weight}


@register_method("rrr-contribution")
class ContributionMethod(CorrectionMethod):
    """Cross-entropy + `weight` x `contribution_penalty` on the explained layer's map."""

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"method {self.name!r}: weight={weight} must be >= 0")
        self.weight = float(weight)
        self._fmap = None
        self._hook = None
        self._sum, self._steps = 0.0, 0

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        layer = trainer.model.get_submodule(trainer.model.explained_layer)
        self._hook = layer.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self._fmap = output if module.training else None

    def loss(self, logits, features, labels, indices, domains=None):
        ce = F.cross_entropy(logits.float(), labels)
        penalty = contribution_penalty(self._fmap, self.trainer.model.fc.weight, labels, self.batch_allowed)
        self._fmap = None
        self._sum, self._steps = self._sum + penalty.detach(), self._steps + 1
        return ce + self.weight * penalty

    def end_epoch(self, epoch: int) -> dict:
        out = {"outside_evidence_share": float(self._sum) / self._steps} if self._steps else {}
        self._sum, self._steps = 0.0, 0
        return out

    def config(self) -> dict:
        return {**super().config(), "weight": self.weight}


@register_method("counterfactual-bg")
class CounterfactualBackgroundMethod(CorrectionMethod):
    """Cross-entropy on counterfactual images: with probability `p` per image, its object is
    put on another batch image's background (`swap_backgrounds`), so the background says
    nothing about the class."""

    def __init__(self, p: float = 0.75, **kwargs):
        kwargs.setdefault("region", "object")
        if "counterfactual" in kwargs:
            raise TypeError("method 'counterfactual-bg': unknown option(s) counterfactual (use p)")
        super().__init__(counterfactual=p, **kwargs)

    def config(self) -> dict:
        return {"init": self.init, "p": self.swap_p}


@register_method("suppress-channels")
class SuppressChannelsMethod(CorrectionMethod):
    """The linear head's weights of `channels` are zero from the start and after every step, so
    those channels contribute nothing to any logit (exactly, for a GAP-linear head)."""

    uses_masks = False

    def __init__(self, channels=(), **kwargs):
        super().__init__(**kwargs)
        try:
            self.channels = sorted({int(c) for c in channels})
        except (TypeError, ValueError):
            raise ValueError(f"method {self.name!r}: channels={channels!r} must be a list of channel numbers") from None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        n = trainer.model.fc.weight.shape[1]
        bad = [c for c in self.channels if not 0 <= c < n]
        if bad:
            raise ValueError(f"method {self.name!r}: channel {bad[0]} is not one of the head's {n} channels")
        self.after_step()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.channels:
            self.trainer.model.fc.weight[:, self.channels] = 0.0

    def config(self) -> dict:
        return {"init": self.init, "channels": self.channels}

"""The trainer: ERM by default, other methods through `training.method_base.TrainingMethod`.

What it does per run (`Trainer(data, out, TrainConfig(...)).fit()`):
- decodes the train and val splits once into memory-mapped uint8 shards (`training.image_cache`,
  shared by every later run and concurrent process) and draws mini-batches without per-item
  Python (`training.batches`): on a GPU the whole uint8 set lives on the device and a batch is an
  index gather + on-device augmentation + normalisation; sets too large for the device stream
  from the memory map through loader processes into pinned memory. `data` may also be an
  `InMemoryData` (uint8 tensors, e.g. an active-learning round's labelled set, already on the GPU);
- seeds everything from `config.seed`; the epoch's index draw and augmentation use a generator
  seeded by `(seed, epoch)`, so a resumed run continues exactly where it stopped;
- `device="auto"` picks CUDA when present; AMP (float16 + GradScaler) on CUDA;
- DDP when launched by `torchrun` (`WORLD_SIZE` > 1; gloo on CPU, nccl on CUDA): every rank
  makes the same index draw and takes a disjoint share of it; `batch_size` is the global batch;
  rank 0 evaluates and writes files;
- after each epoch: validation report (labels only), model selection by
  `method.selection_score` (default: worst-class val accuracy), `RUN/last.pt` (everything needed
  to resume), `RUN/model.pt` + `RUN/model.json` when the selected score improves,
  `RUN/metrics.json` (one record per epoch) and any `callbacks(trainer, epoch, record)`.

The trainer never reads the `domain` column. It hands domain ids to the method only when the
method declares `reads_domains = True` (oracle baselines).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from training.progress import progress_bar as tqdm

from training.batches import Augment, augment_uint8, make_batches, prepare_batch  # noqa: F401 (augment_uint8 re-exported)
from training.checkpoint import read_meta, save_checkpoint, write_json
from training.datasets import DatasetInfo, load_dataset, open_split_cache, parse_augment
from training.evaluate import class_report, predict_uint8, resolve_device
from training.method_base import TrainingMethod
from training.methods import build_method
from training.models import build_model

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
LAST_FILE = "last.pt"
METRICS_FILE = "metrics.json"
DEFAULT_AUGMENT = ("shift",)  # data that says nothing is not mirrored (digits, text, most real data)
MIN_EPOCHS = 15
MIN_STEPS = 500  # epochs=None: small datasets train for at least this many optimisation steps
MAX_AUTO_EPOCHS = 200
UNDERTRAINED_STEPS = 200


class UndertrainedWarning(UserWarning):
    """A run that clearly stopped before converging (too few steps, or still improving)."""


def auto_epochs(num_train: int, batch_size: int, min_epochs: int = MIN_EPOCHS, min_steps: int = MIN_STEPS,
                max_epochs: int = MAX_AUTO_EPOCHS, steps_per_epoch: int | None = None) -> int:
    """Epochs of a run whose length is not given: at least `min_epochs` and at least `min_steps`
    optimisation steps (`steps_per_epoch`, default `ceil(num_train / batch_size)`), at most
    `max_epochs`. 6,000 rows at batch 128 -> 15 epochs (705 steps); 1,258 rows -> 50 epochs."""
    steps_per_epoch = steps_per_epoch or max(1, math.ceil(num_train / max(batch_size, 1)))
    return int(min(max_epochs, max(min_epochs, math.ceil(min_steps / steps_per_epoch))))


def undertrained_reasons(history: list[dict], steps: int) -> list[str]:
    """Why a finished run looks clearly under-trained (empty when it does not).

    `history`: the epoch records (`val_accuracy`, `train_accuracy`); `steps`: optimisation steps
    taken. Flags fewer than 200 steps, and validation accuracy that still rose by >= 3 points over
    the last quarter of the epochs while training accuracy stayed under 0.98 (a converged run
    fits its training data; the cosine schedule's last quarter adds a point or two, not three)."""
    reasons = []
    if steps < UNDERTRAINED_STEPS:
        reasons.append(f"only {steps} optimisation steps (< {UNDERTRAINED_STEPS}): raise --epochs")
    vals = [r.get("val_accuracy") for r in history]
    if len(history) >= 4 and all(v is not None for v in vals):
        quarter = max(1, len(history) // 4)
        rise = vals[-1] - vals[-1 - quarter]
        train_acc = history[-1].get("train_accuracy", 1.0)
        if rise >= 0.03 and train_acc < 0.98:
            reasons.append(f"validation accuracy still rose {100 * rise:.1f} points over the last {quarter} epoch(s) "
                           f"and training accuracy is {train_acc:.3f}: train longer (--epochs)")
    return reasons


@dataclass
class TrainConfig:
    """Training options (all recorded in `model.json` under `config`).

    `lr` is the peak learning rate of a linear-warmup + cosine schedule (per step);
    `batch_size` is the global batch (split over DDP ranks); `image_size` None = the dataset's
    native size (toy world: from `parts.json`, else 64). `epochs` None = sized by steps
    (`auto_epochs`: at least 15 epochs and 500 optimisation steps). `augment`: which
    augmentations, `"flip,shift"`, `"shift"` or `"none"` (`True`/`False` mean auto/none); None
    (auto) = the dataset's `dataset.json` `augment` field, else shift only -- mirroring is used
    only when the data says so. `shift`: largest random translation in pixels (edge-replicated).
    `data_placement`: `auto` (uint8 set on the GPU when it fits in half its free memory),
    `device` or `host` (streamed by `workers` loader processes). `steps_per_epoch`: when set,
    every epoch takes exactly that many batches (the epoch's draw is repeated with further draws
    from the same generator, or cut), so small training sets get a step-sized schedule.
    `amp_dtype`: `float16` (with a GradScaler) or `bfloat16` (no scaler, no per-step sync).
    """

    arch: str = "small-cnn"
    method: str = "erm"
    method_options: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: str = "sgd"  # sgd | adamw
    warmup_epochs: float = 0.3
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    image_size: int | None = None
    augment: str | bool | None = None
    shift: int = 4
    weights: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    eval_batch_size: int = 512
    data_placement: str = "auto"
    steps_per_epoch: int | None = None
    amp_dtype: str = "float16"
    decoder: str = "pil"

    def check(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.augment is not None and not isinstance(self.augment, bool):
            parse_augment(self.augment)
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.data_placement not in ("auto", "device", "host"):
            raise ValueError(f"data_placement must be auto, device or host, got {self.data_placement!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")


class _FeaturesAndLogits(nn.Module):
    """Wraps a model so one forward returns `(logits, pooled features)`; DDP wraps this."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        feats = self.model.forward_features(x)
        head_in = self.model.dropout(feats) if hasattr(self.model, "dropout") else feats
        return self.model.fc(head_in), feats


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def channel_stats(images, chunk: int = 1024) -> dict:
    """Per-channel mean and std (in [0, 1] units) of uint8 images `[N, 3, H, W]` (a tensor on
    any device or an `ImageCache`)."""
    total = torch.zeros(3, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3)).cpu()
        sq += (x * x).sum(dim=(0, 2, 3)).cpu()
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (sq / max(count, 1) - mean**2).clamp_min(1e-8).sqrt()
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}


@dataclass
class InMemoryData:
    """Training data already decoded: uint8 images `[N, 3, S, S]` (any device) and labels.

    `val_images`/`val_labels` are optional (no validation = the last epoch is kept).
    `train_domains` (domain names) is read only by methods with `reads_domains = True`.
    `name` is recorded in `model.json` as the dataset root. `meta` is what a folder's
    `dataset.json` would say (e.g. `{"augment": ("flip", "shift")}` for mirror-symmetric data).
    """

    classes: list
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    name: str = "in-memory"
    train_domains: list | None = None
    meta: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha1(str(tuple(self.train_images.shape)).encode())
        h.update(torch.as_tensor(self.train_labels).cpu().numpy().astype("int64").tobytes())
        return h.hexdigest()[:16]


class Trainer:
    """Trains one model on `data` (a folder, `DatasetInfo` or `InMemoryData`) into the run
    folder `out`."""

    def __init__(self, data, out, config: TrainConfig | None = None, method: TrainingMethod | None = None,
                 callbacks=(), progress: bool = True):
        self.config = config or TrainConfig()
        self.config.check()
        self.info: DatasetInfo | None = data if isinstance(data, (DatasetInfo, InMemoryData)) else load_dataset(data)
        self.out = Path(out)
        self.method = method or build_method(self.config.method, **self.config.method_options)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.world, self.rank, self.local_rank = _dist_info()
        self.device = resolve_device(self.config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.rank == 0
        if isinstance(data, InMemoryData):
            self.image_size = int(self.config.image_size or data.train_images.shape[-1])
        else:
            self.image_size = int(self.config.image_size or self.info.native_image_size)

        show = progress and self.is_main
        cfg = self.config
        if isinstance(data, InMemoryData):
            self.info, self.memory = None, data
            self.classes = list(data.classes)
            self.train_labels = torch.as_tensor(data.train_labels, dtype=torch.long).cpu()
            self.val_labels = torch.zeros(0, dtype=torch.long) if data.val_labels is None else torch.as_tensor(data.val_labels, dtype=torch.long).cpu()
            train_images, val_images = data.train_images, data.val_images
            if self.image_size != train_images.shape[-1]:
                raise ValueError(f"InMemoryData: images are {train_images.shape[-1]} px, image_size is {self.image_size}")
        else:
            self.memory = None
            self.classes = list(self.info.classes)
            # labels and images only: the domain column is not touched here
            self.train_labels = self.info.labels("train")
            self.val_labels = self.info.labels("val")
            train_images = open_split_cache(self.info, "train", self.image_size, workers=cfg.workers, progress=show, decoder=cfg.decoder)
            val_images = open_split_cache(self.info, "val", self.image_size, workers=cfg.workers, progress=show, decoder=cfg.decoder) if len(self.val_labels) else None
        self.num_classes = len(self.classes)
        if self.num_classes < 2:
            raise ValueError(f"{self._data_name()}: need at least 2 classes to train, found {self.num_classes}")
        self.num_train = len(self.train_labels)
        if self.num_train == 0:
            raise ValueError(f"{self._data_name()}: the train split is empty")
        self.epochs = int(cfg.epochs or auto_epochs(self.num_train, cfg.batch_size, steps_per_epoch=cfg.steps_per_epoch))
        self.train_source = make_batches(train_images, self.train_labels, self.device, cfg.data_placement, workers=max(cfg.workers, 1))
        self.train_images = self.train_source.images
        self.val_images = None
        if val_images is not None and len(self.val_labels):
            self.val_images = make_batches(val_images, None, self.device, cfg.data_placement, workers=max(cfg.workers, 1)).images
        self.normalization = IMAGENET_NORMALIZATION if cfg.weights else channel_stats(self.train_images)
        self.augment = self._augment()
        self.train_domains = None
        if self.method.reads_domains:
            # only for methods that declare they need domains
            names = self.memory.train_domains if self.memory is not None else self.info.domains("train")
            if names is None:
                raise ValueError(f"method {self.method.name!r} reads domains; {self._data_name()} has none")
            self.domain_names = sorted(set(names))
            lookup = {d: i for i, d in enumerate(self.domain_names)}
            self.train_domains = torch.tensor([lookup[d] for d in names], dtype=torch.long)
            self.method.domains = self.train_domains
            self.method.domain_names = self.domain_names
        self.history: list[dict] = []

    # ------------------------------------------------------------------ helpers
    def _data_name(self) -> str:
        return self.memory.name if self.memory is not None else str(self.info.root)

    def _augment(self) -> Augment:
        """The training augmentation: `config.augment` names it, else the dataset's `dataset.json`
        (`augment` field), else shift only -- mirroring only when the data says so (digits, text
        and most real data must not be mirrored)."""
        cfg = self.config
        if cfg.augment is False:
            names: tuple = ()
        elif cfg.augment is None or cfg.augment is True:
            meta = (self.memory.meta if self.memory is not None else self.info.meta) or {}
            names = tuple(meta.get("augment", DEFAULT_AUGMENT))
        else:
            names = parse_augment(cfg.augment)
        self.augmentations = names
        return Augment(cfg.shift if "shift" in names else 0, "flip" in names)

    def new_model(self, seed: int | None = None) -> nn.Module:
        """A freshly initialised model (seeded) on the trainer's device."""
        torch.manual_seed(self.config.seed if seed is None else seed)
        model = build_model(self.config.arch, self.num_classes, weights=self.config.weights, **self.config.model_kwargs)
        # channels-last convolutions are ~30% faster on CPU (oneDNN) and on tensor cores
        return model.to(self.device, memory_format=torch.channels_last)

    def _optimizer(self, model: nn.Module, extra: list) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if extra:
            groups.append({"params": list(extra), "weight_decay": 0.0})
        if self.config.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=self.config.lr)
        return torch.optim.SGD(groups, lr=self.config.lr, momentum=self.config.momentum, nesterov=True)

    def _lr_at(self, progress_epochs: float, total_epochs: int) -> float:
        warm = min(self.config.warmup_epochs, total_epochs / 2)
        if progress_epochs < warm:
            return self.config.lr * (progress_epochs + 1e-3) / warm
        t = (progress_epochs - warm) / max(total_epochs - warm, 1e-8)
        return self.config.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    def _epoch_generator(self, epoch: int, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.config.seed) * 1_000_003 + epoch * 7919 + salt)

    def _wrap(self, model: nn.Module) -> nn.Module:
        net = _FeaturesAndLogits(model)
        if self.world > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            net = nn.parallel.DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return net

    def _steps_draw(self, indices: torch.Tensor, method: TrainingMethod, epoch: int, gen: torch.Generator) -> torch.Tensor:
        """Exactly `steps_per_epoch * batch_size` rows: the epoch's draw, extended by further draws
        from the same generator (a fresh shuffle or the method's draw again) or cut."""
        want = self.config.steps_per_epoch * self.config.batch_size
        parts, have = [indices], len(indices)
        while have < want:
            more = method.epoch_indices(epoch, gen)
            more = torch.randperm(self.num_train, generator=gen) if more is None else torch.as_tensor(more, dtype=torch.long).cpu()
            parts.append(more)
            have += len(more)
        return torch.cat(parts)[:want]

    def _run_epoch(self, net, model, optimizer, scaler, method: TrainingMethod, epoch: int, total_epochs: int, desc: str) -> dict:
        cfg = self.config
        gen = self._epoch_generator(epoch)
        indices = method.epoch_indices(epoch, gen)
        if indices is None:
            indices = torch.randperm(self.num_train, generator=gen)
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if len(indices) == 0:
            raise ValueError(f"method {method.name!r} drew no training rows for epoch {epoch}")
        if cfg.steps_per_epoch:
            indices = self._steps_draw(indices, method, epoch, gen)
        if self.world > 1:  # disjoint equal shares of the same draw
            usable = len(indices) - len(indices) % self.world
            indices = indices[:usable][self.rank::self.world]
        batch = max(1, cfg.batch_size // self.world)
        n_batches = math.ceil(len(indices) / batch)
        aug_gen = self._epoch_generator(epoch, salt=1)
        use_amp = cfg.amp and self.device.type == "cuda"
        amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
        extra = list(method.extra_parameters())
        extra_opts = list(method.extra_optimizers())
        mean, std = self.normalization["mean"], self.normalization["std"]
        domains_dev = self.train_domains.to(self.device) if method.reads_domains and self.train_domains is not None else None
        net.train()
        # running sums stay on the device: reading them every step would stall the GPU pipeline
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        show = self.progress and self.is_main
        bar = tqdm(total=n_batches, desc=desc, unit="batch", leave=False, disable=not show)
        lr = self._lr_at(epoch, total_epochs)
        for b, (idx, xb, y) in enumerate(self.train_source.batches(indices, batch)):
            draws = self.augment.draw_share(len(idx), aug_gen, self.rank, self.world) if self.augment.active else None
            x = prepare_batch(xb, mean, std, draws)
            x = method.batch_inputs(x, idx, draws)
            lr = self._lr_at(epoch + b / n_batches, total_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=self.device.type, dtype=amp_dtype, enabled=use_amp):
                logits, feats = net(x)
            logits, feats = logits.float(), feats.float()
            if method.reads_domains:
                loss = method.loss(logits, feats, y, idx, domains=None if domains_dev is None else domains_dev[idx])
            else:
                loss = method.loss(logits, feats, y, idx)
            optimizer.zero_grad(set_to_none=True)
            for opt in extra_opts:
                opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.world > 1:  # the method's own parameters live outside DDP: average their grads
                for p in extra:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= self.world
            scaler.step(optimizer)
            for opt in extra_opts:
                scaler.step(opt)
            scaler.update()
            method.after_step()
            with torch.no_grad():
                seen += len(idx)
                correct += (logits.argmax(1) == y).sum()
                loss_sum += loss.detach().double() * len(idx)
            bar.update(1)
            if show and b % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}", lr=f"{lr:.3g}")
        bar.close()
        return {"train_loss": float(loss_sum) / max(seen, 1), "train_accuracy": int(correct) / max(seen, 1),
                "train_rows": int(len(indices)), "lr_end": lr}

    def _setup(self, model: nn.Module, method: TrainingMethod):
        extra = list(method.extra_parameters())
        own = {id(p) for opt in method.extra_optimizers() for g in opt.param_groups for p in g["params"]}
        optimizer = self._optimizer(model, [p for p in extra if id(p) not in own])
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.config.amp and self.device.type == "cuda"
                                      and self.config.amp_dtype == "float16")
        return optimizer, scaler

    # ------------------------------------------------------------------ public API
    def predict(self, split: str = "train", model: nn.Module | None = None, features: bool = False):
        """Logits `[N, K]` (and pooled features `[N, D]`) of a split, in eval mode, no augmentation."""
        model = model or self.model
        if split in ("train", "val"):
            images = self.train_images if split == "train" else self.val_images
        elif self.info is None:
            raise ValueError(f"{self._data_name()}: in-memory data has no {split!r} split")
        else:
            images = open_split_cache(self.info, split, self.image_size, progress=False, decoder=self.config.decoder)
        if images is None:
            return torch.zeros(0, self.num_classes)
        return predict_uint8(model, images, self.normalization["mean"], self.normalization["std"], self.device, self.config.eval_batch_size, features=features)

    def train_erm_stage(self, epochs: int, seed: int | None = None) -> nn.Module:
        """Train a fresh model with plain ERM for `epochs` (no files written) and return it in
        eval mode: the first stage of two-stage methods such as JTT."""
        model = self.new_model(seed)
        erm = TrainingMethod()
        erm.trainer = self
        net = self._wrap(model)
        optimizer, scaler = self._setup(model, erm)
        for epoch in range(epochs):
            self._run_epoch(net, model, optimizer, scaler, erm, epoch, epochs, f"ERM stage {epoch + 1}/{epochs}")
        return model.eval()

    def validate(self, model: nn.Module | None = None) -> dict | None:
        """Class report on the val split (labels only; no domains)."""
        if self.val_images is None:
            return None
        logits = self.predict("val", model)
        return class_report(logits.argmax(1).numpy(), self.val_labels.numpy(), self.classes)

    def _model_kwargs(self) -> dict:
        """Constructor options recorded so the checkpoint loads even if defaults change later."""
        kwargs = dict(self.config.model_kwargs)
        if self.config.arch == "small-cnn":
            kwargs["widths"] = [m.out_channels for m in self.model.features if isinstance(m, nn.Conv2d)]
        return kwargs

    def _meta(self, metrics: dict) -> dict:
        model = self.model
        return {
            "arch": self.config.arch,
            "classes": self.classes,
            "num_classes": self.num_classes,
            "explained_layer": model.explained_layer,
            "feature_dim": getattr(model, "feature_dim", None),
            "input_size": self.image_size,
            "normalization": self.normalization,
            "method": self.method.name,
            "method_config": self.method.config(),
            "config": {**asdict(self.config), "epochs": self.epochs},
            "augment": list(self.augmentations),
            "model_kwargs": self._model_kwargs(),
            "metrics": metrics,
            "dataset": {"root": self._data_name(), "kind": "in-memory" if self.info is None else self.info.kind,
                        "n_train": self.num_train,
                        "train_fingerprint": self.memory.fingerprint() if self.info is None else self.info.fingerprint("train")},
        }

    def fit(self, resume: bool = False) -> dict:
        """Train `self.epochs` epochs (continuing from `RUN/last.pt` if `resume`); returns the
        metrics document also written to `RUN/metrics.json` (with `steps` and `undertrained`:
        the reasons the run looks clearly under-trained, also raised as `UndertrainedWarning`)."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        self.model = self.new_model()
        self.method.prepare(self)
        optimizer, scaler = self._setup(self.model, self.method)
        start_epoch, best_score, best_epoch, elapsed = 0, -math.inf, None, 0.0
        last_path = self.out / LAST_FILE
        if resume:
            if not last_path.exists():
                raise FileNotFoundError(f"--resume: {last_path} does not exist (nothing to resume)")
            state = torch.load(last_path, map_location="cpu", weights_only=False)
            if state["config"]["arch"] != cfg.arch or state["config"]["method"] != cfg.method:
                raise ValueError(f"--resume: {last_path} was trained with arch={state['config']['arch']} method={state['config']['method']}, not arch={cfg.arch} method={cfg.method}")
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            self.method.load_state_dict(state["method"])
            torch.set_rng_state(state["torch_rng"])
            start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
            self.history, elapsed = state["history"], state.get("train_time_s", 0.0)
        elif self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        net = self._wrap(self.model)
        metrics = {"epochs": self.history}
        for epoch in range(start_epoch, self.epochs):
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1}
            record.update(self._run_epoch(net, self.model, optimizer, scaler, self.method, epoch, self.epochs, f"epoch {epoch + 1}/{self.epochs}"))
            record.update({f"method_{k}" if k in record else k: v for k, v in (self.method.end_epoch(epoch) or {}).items()})
            elapsed += time.perf_counter() - t0
            record["train_time_s"] = round(elapsed, 3)
            if self.is_main:
                val = self.validate()
                if val is not None:
                    record["val_accuracy"] = val["overall_accuracy"]
                    record["val_worst_class_accuracy"] = val["worst_class_accuracy"]
                    score = float(self.method.selection_score(val))
                else:
                    score = float(epoch)  # no val split: keep the last epoch
                record["selection_score"] = score
                improved = score > best_score
                if improved:
                    best_score, best_epoch = score, epoch + 1
                record["selected"] = improved
                self.history.append(record)
                metrics = {"epochs": self.history, "best_epoch": best_epoch, "best_score": best_score,
                           "selection": "method.selection_score (default: worst-class val accuracy)",
                           "train_time_s": round(elapsed, 3), "complete": epoch + 1 == self.epochs,
                           "device": str(self.device), "world_size": self.world}
                if improved:
                    save_checkpoint(self.out, self.model, self._meta({**metrics, "val": val}))
                torch.save({"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                            "method": self.method.state_dict(), "torch_rng": torch.get_rng_state(),
                            "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                            "history": self.history, "train_time_s": elapsed, "config": asdict(cfg)},
                           last_path.with_name(".last.pt.tmp"))
                os.replace(last_path.with_name(".last.pt.tmp"), last_path)
                write_json(self.out / METRICS_FILE, metrics)
                # keep model.json's metrics current even when this epoch was not selected
                meta = read_meta(self.out)
                meta["metrics"] = {**metrics, "val": meta["metrics"].get("val")}
                write_json(self.out / "model.json", meta)
                for cb in self.callbacks:  # after the files are written, so callbacks may read them
                    cb(self, epoch, record)
                if self.progress:
                    tqdm.write(f"epoch {epoch + 1}/{self.epochs}: loss {record['train_loss']:.4f} train acc {record['train_accuracy']:.4f}"
                               + (f" val acc {record['val_accuracy']:.4f} worst-class {record['val_worst_class_accuracy']:.4f}" if "val_accuracy" in record else "")
                               + (" *" if improved else "") + f" ({elapsed:.0f}s)")
            if self.world > 1:
                dist.barrier()
        if start_epoch >= self.epochs and (self.out / METRICS_FILE).exists():  # resumed a finished run
            metrics = json.loads((self.out / METRICS_FILE).read_text())
        elif self.is_main and self.history:
            batch = max(1, cfg.batch_size // self.world)
            steps = sum(math.ceil(r["train_rows"] / self.world / batch) for r in self.history)
            metrics["steps"] = steps
            metrics["undertrained"] = undertrained_reasons(self.history, steps)
            write_json(self.out / METRICS_FILE, metrics)
            if metrics["undertrained"]:
                warnings.warn(f"{self.out}: the run looks under-trained: " + "; ".join(metrics["undertrained"]),
                              UndertrainedWarning, stacklevel=2)
        return metrics


def train(data, out, config: TrainConfig | None = None, resume: bool = False, progress: bool = True, **overrides) -> dict:
    """Convenience: `Trainer(data, out, TrainConfig(**overrides)).fit(resume)`."""
    config = config or TrainConfig(**overrides)
    return Trainer(data, out, config, progress=progress).fit(resume=resume)

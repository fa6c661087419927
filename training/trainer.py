"""The trainer: ERM by default, other methods through `training.method_base.TrainingMethod`.

What it does per run (`Trainer(data, out, TrainConfig(...)).fit()`):
- decodes the train and val splits once into uint8 tensors (cached on disk, see
  `training.datasets.load_split_uint8`) and draws mini-batches from memory: on a small CPU the
  PNG decoder, not the CNN, would otherwise be the bottleneck;
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from training.checkpoint import read_meta, save_checkpoint, write_json
from training.datasets import DatasetInfo, load_dataset, load_split_uint8, normalize_uint8
from training.evaluate import class_report, predict_uint8, resolve_device
from training.method_base import TrainingMethod, build_method
from training.models import build_model

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
LAST_FILE = "last.pt"
METRICS_FILE = "metrics.json"


@dataclass
class TrainConfig:
    """Training options (all recorded in `model.json` under `config`).

    `lr` is the peak learning rate of a linear-warmup + cosine schedule (per step);
    `batch_size` is the global batch (split over DDP ranks); `image_size` None = the dataset's
    native size (toy world: from `parts.json`, else 64). `augment`: random shifts of up to
    `shift` pixels (edge-replicated) and horizontal mirroring.
    """

    arch: str = "small-cnn"
    method: str = "erm"
    method_options: dict = field(default_factory=dict)
    epochs: int = 15
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
    augment: bool = True
    shift: int = 4
    mirror: bool = True
    weights: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    eval_batch_size: int = 512

    def check(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")


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


def augment_uint8(x: torch.Tensor, generator: torch.Generator, shift: int = 4, mirror: bool = True) -> torch.Tensor:
    """Random per-sample shifts (up to `shift` px, edge-replicated) and mirroring of uint8 or
    float images `[B, C, H, W]`; randomness only from `generator` (CPU)."""
    b, c, h, w = x.shape
    if shift > 0:
        dy = torch.randint(-shift, shift + 1, (b,), generator=generator)
        dx = torch.randint(-shift, shift + 1, (b,), generator=generator)
        iy = (torch.arange(h)[None, :] + dy[:, None]).clamp_(0, h - 1).to(x.device)
        ix = (torch.arange(w)[None, :] + dx[:, None]).clamp_(0, w - 1).to(x.device)
    else:
        iy = torch.arange(h, device=x.device).expand(b, h)
        ix = torch.arange(w, device=x.device).expand(b, w)
    if mirror:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        ix = torch.where(flip[:, None], ix.flip(1), ix)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return x[bi, ci, iy[:, None, :, None], ix[:, None, None, :]]


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> dict:
    """Per-channel mean and std (in [0, 1] units) of uint8 images `[N, 3, H, W]`."""
    total = torch.zeros(3, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (sq / max(count, 1) - mean**2).clamp_min(1e-8).sqrt()
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}


class Trainer:
    """Trains one model on `data` (a folder or `DatasetInfo`) into the run folder `out`."""

    def __init__(self, data, out, config: TrainConfig | None = None, method: TrainingMethod | None = None,
                 callbacks=(), progress: bool = True):
        self.config = config or TrainConfig()
        self.config.check()
        self.info: DatasetInfo = data if isinstance(data, DatasetInfo) else load_dataset(data)
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
        self.image_size = int(self.config.image_size or self._native_size())

        self.classes = list(self.info.classes)
        self.num_classes = len(self.classes)
        if self.num_classes < 2:
            raise ValueError(f"{self.info.root}: need at least 2 classes to train, found {self.num_classes}")
        # labels and images only: the domain column is not touched here
        self.train_labels = self.info.labels("train")
        self.num_train = len(self.train_labels)
        if self.num_train == 0:
            raise ValueError(f"{self.info.root}: the train split is empty")
        self.val_labels = self.info.labels("val")
        show = progress and self.is_main
        self.train_images = load_split_uint8(self.info, "train", self.image_size, workers=self.config.workers, progress=show)
        self.val_images = load_split_uint8(self.info, "val", self.image_size, workers=self.config.workers, progress=show) if len(self.val_labels) else None
        self.normalization = IMAGENET_NORMALIZATION if self.config.weights else channel_stats(self.train_images)
        self.train_domains = None
        if self.method.reads_domains:
            names = self.info.domains("train")  # only for methods that declare they need domains
            self.domain_names = sorted(set(names))
            lookup = {d: i for i, d in enumerate(self.domain_names)}
            self.train_domains = torch.tensor([lookup[d] for d in names], dtype=torch.long)
            self.method.domains = self.train_domains
            self.method.domain_names = self.domain_names
        self.history: list[dict] = []

    # ------------------------------------------------------------------ helpers
    def _native_size(self) -> int:
        try:
            from training.toyworld import load_parts

            return int(load_parts(self.info.root)["image_size"])
        except (FileNotFoundError, KeyError, ValueError):
            return 64

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

    def _run_epoch(self, net, model, optimizer, scaler, method: TrainingMethod, epoch: int, total_epochs: int, desc: str) -> dict:
        cfg = self.config
        gen = self._epoch_generator(epoch)
        indices = method.epoch_indices(epoch, gen)
        if indices is None:
            indices = torch.randperm(self.num_train, generator=gen)
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if len(indices) == 0:
            raise ValueError(f"method {method.name!r} drew no training rows for epoch {epoch}")
        if self.world > 1:  # disjoint equal shares of the same draw
            usable = len(indices) - len(indices) % self.world
            indices = indices[:usable][self.rank::self.world]
        batch = max(1, cfg.batch_size // self.world)
        n_batches = math.ceil(len(indices) / batch)
        aug_gen = self._epoch_generator(epoch, salt=1)
        use_amp = cfg.amp and self.device.type == "cuda"
        extra = list(method.extra_parameters())
        extra_opts = list(method.extra_optimizers())
        net.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(range(n_batches), desc=desc, unit="batch", leave=False, disable=not (self.progress and self.is_main))
        for b in bar:
            idx = indices[b * batch:(b + 1) * batch]
            x = self.train_images[idx]
            if cfg.augment:
                x = augment_uint8(x, aug_gen, cfg.shift, cfg.mirror)
            x = normalize_uint8(x.to(self.device, non_blocking=True), self.normalization["mean"], self.normalization["std"])
            x = x.contiguous(memory_format=torch.channels_last)
            y = self.train_labels[idx].to(self.device, non_blocking=True)
            lr = self._lr_at(epoch + b / n_batches, total_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=use_amp):
                logits, feats = net(x)
            logits, feats = logits.float(), feats.float()
            domains = self.train_domains[idx].to(self.device) if method.reads_domains and self.train_domains is not None else None
            if method.reads_domains:
                loss = method.loss(logits, feats, y, idx.to(self.device), domains=domains)
            else:
                loss = method.loss(logits, feats, y, idx.to(self.device))
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
                seen += len(y)
                correct += int((logits.argmax(1) == y).sum())
                loss_sum += float(loss.detach()) * len(y)
            if b % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.3g}")
        bar.close()
        return {"train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1), "train_rows": int(len(indices)), "lr_end": lr}

    def _setup(self, model: nn.Module, method: TrainingMethod):
        extra = list(method.extra_parameters())
        own = {id(p) for opt in method.extra_optimizers() for g in opt.param_groups for p in g["params"]}
        optimizer = self._optimizer(model, [p for p in extra if id(p) not in own])
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.config.amp and self.device.type == "cuda")
        return optimizer, scaler

    # ------------------------------------------------------------------ public API
    def predict(self, split: str = "train", model: nn.Module | None = None, features: bool = False):
        """Logits `[N, K]` (and pooled features `[N, D]`) of a split, in eval mode, no augmentation."""
        model = model or self.model
        images = self.train_images if split == "train" else self.val_images if split == "val" else load_split_uint8(self.info, split, self.image_size, progress=False)
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
            "config": asdict(self.config),
            "model_kwargs": self._model_kwargs(),
            "metrics": metrics,
            "dataset": {"root": str(self.info.root), "kind": self.info.kind, "n_train": self.num_train,
                        "train_fingerprint": self.info.fingerprint("train")},
        }

    def fit(self, resume: bool = False) -> dict:
        """Train `config.epochs` epochs (continuing from `RUN/last.pt` if `resume`); returns the
        metrics document also written to `RUN/metrics.json`."""
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
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1}
            record.update(self._run_epoch(net, self.model, optimizer, scaler, self.method, epoch, cfg.epochs, f"epoch {epoch + 1}/{cfg.epochs}"))
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
                           "train_time_s": round(elapsed, 3), "complete": epoch + 1 == cfg.epochs,
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
                    tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f} train acc {record['train_accuracy']:.4f}"
                               + (f" val acc {record['val_accuracy']:.4f} worst-class {record['val_worst_class_accuracy']:.4f}" if "val_accuracy" in record else "")
                               + (" *" if improved else "") + f" ({elapsed:.0f}s)")
            if self.world > 1:
                dist.barrier()
        if start_epoch >= cfg.epochs and (self.out / METRICS_FILE).exists():  # resumed a finished run
            metrics = json.loads((self.out / METRICS_FILE).read_text())
        return metrics


def train(data, out, config: TrainConfig | None = None, resume: bool = False, progress: bool = True, **overrides) -> dict:
    """Convenience: `Trainer(data, out, TrainConfig(**overrides)).fit(resume)`."""
    config = config or TrainConfig(**overrides)
    return Trainer(data, out, config, progress=progress).fit(resume=resume)

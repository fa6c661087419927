"""Train functions for the loop, backed by the training module (`training.trainer.Trainer`).

`TrainerFn` trains the labelled set with the chosen method (`erm`, `center-distance`, ...) from
scratch (default) or from the previous round's weights, keeps the epoch chosen by blind model
selection on the validation pool (default: worst-class validation accuracy; labels only), and
returns a `ModelPredictor` for pool scoring plus the weights for a warm start.

Two data paths:
- **in memory** (pools with uint8 images: a cached `ToyWorldPool` or a cached `ImageDataset`):
  the labelled images are gathered straight from the pool's uint8 copy (on the GPU when it
  lives there) into `training.trainer.InMemoryData`; nothing is written but the run folder.
- **files** (any other pool): the labelled set is written as an Argus dataset folder
  (`samples.csv` + PNGs, domain column empty: the learner does not know it), each PNG once.

`min_steps` gives small labelled sets a step-sized schedule: every epoch takes
`max(ceil(L / batch), ceil(min_steps / epochs))` batches, so round 0 trains as many steps as it
needs while validation still runs once per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from active.oracles import save_pool_png
from active.pool import DEFAULT_MEAN, DEFAULT_STD, ModelPredictor, gather_uint8, pool_labels


class TrainerFn:
    """`train_fn(pool, indices, labels, *, round, seed, init_state) -> (predictor, state_dict)`.

    Options go to `training.trainer.TrainConfig` (`method`, `epochs`, `arch`, `batch_size`,
    `lr`, `device`, `model_kwargs`, `amp_dtype`, ...); `image_size` defaults to the pool's.
    `val_pool`: labelled validation items for model selection (None: the last epoch is kept).
    `in_memory`: None = whenever the pool has uint8 images. `keep_runs=False` deletes each
    round's run folder once its predictor is built, keeping only `round<r>-metrics.json`
    (long experiments would otherwise keep a checkpoint per round).
    """

    def __init__(self, work_dir, method: str = "erm", method_options: dict | None = None, epochs: int = 8,
                 min_steps: int = 0, progress: bool = False, val_pool=None, in_memory: bool | None = None,
                 keep_runs: bool = True, **train_config):
        from training.trainer import TrainConfig

        self.work_dir = Path(work_dir)
        self.method, self.method_options, self.epochs = method, dict(method_options or {}), int(epochs)
        self.min_steps = int(min_steps)
        self.train_config = dict(train_config)
        self.progress = progress
        self.val_pool = val_pool
        self.in_memory = in_memory
        self.keep_runs = keep_runs
        TrainConfig(method=method, method_options=self.method_options, epochs=self.epochs, **self.train_config).check()

    def _write_dataset(self, pool, indices, labels, rnd: int) -> Path:
        root = self.work_dir / "labelled"
        (root / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i, y in zip(indices.tolist(), labels.tolist()):
            rel = f"images/pool-{i}.png"
            if not (root / rel).exists():
                save_pool_png(pool, i, root / rel)
            rows.append({"sample_id": f"pool-{i}", "path": rel, "label": pool.classes[y], "domain": "", "split": "train"})
        if self.val_pool is not None:
            for i, y in enumerate(pool_labels(self.val_pool).tolist()):
                rel = f"images/val-{i}.png"
                if not (root / rel).exists():
                    save_pool_png(self.val_pool, i, root / rel)
                rows.append({"sample_id": f"val-{i}", "path": rel, "label": self.val_pool.classes[y], "domain": "",
                             "split": "val"})
        pd.DataFrame(rows, columns=["sample_id", "path", "label", "domain", "split"]).to_csv(root / "samples.csv", index=False)
        from training.datasets import write_dataset_meta

        write_dataset_meta(root, **_pool_meta(pool))  # the same augmentation as the in-memory path
        return root

    def _in_memory_data(self, pool, indices, labels, device):
        from training.trainer import InMemoryData

        val_images = val_labels = None
        if self.val_pool is not None:
            val_images = gather_uint8(self.val_pool, np.arange(len(self.val_pool)), device)
            val_labels = torch.as_tensor(pool_labels(self.val_pool))
        return InMemoryData(list(pool.classes), gather_uint8(pool, indices, device), torch.as_tensor(labels),
                            val_images, val_labels, name=f"active pool ({len(indices)} labelled)", meta=_pool_meta(pool))

    def __call__(self, pool, indices, labels, *, round: int, seed: int, init_state=None):
        from training.evaluate import resolve_device
        from training.trainer import TrainConfig, Trainer

        indices, labels = np.asarray(indices, np.int64), np.asarray(labels, np.int64)
        cfg = TrainConfig(method=self.method, method_options=self.method_options, epochs=self.epochs, seed=seed,
                          **{"image_size": getattr(pool, "image_size", None), **self.train_config})
        if self.min_steps:
            per_epoch = math.ceil(len(indices) / cfg.batch_size)
            cfg.steps_per_epoch = max(per_epoch, math.ceil(self.min_steps / cfg.epochs))
        in_memory = self.in_memory if self.in_memory is not None else (
            getattr(pool, "uint8_images", None) is not None and pool.uint8_images(progress=False) is not None)
        if in_memory:
            data = self._in_memory_data(pool, indices, labels, resolve_device(cfg.device))
        else:
            data = self._write_dataset(pool, indices, labels, round)

        class _Warm(Trainer):
            def new_model(self, seed=None):
                model = super().new_model(seed)
                if init_state is not None and model.fc.out_features == init_state["fc.weight"].shape[0]:
                    model.load_state_dict(init_state)  # warm start (a new class appearing forces scratch)
                return model

        run = self.work_dir / f"run-round{round:02d}"
        trainer = _Warm(data, run, cfg, progress=self.progress)
        trainer.fit()
        model = trainer.model
        if (run / "model.pt").exists():  # the epoch blind model selection kept, not the last one
            model.load_state_dict(torch.load(run / "model.pt", map_location=trainer.device, weights_only=True))
        model.eval()
        norm = trainer.normalization
        class_map = [pool.classes.index(c) for c in trainer.classes]
        predictor = ModelPredictor(model, trainer.device, amp=cfg.amp,
                                   renormalize=(getattr(pool, "mean", DEFAULT_MEAN), getattr(pool, "std", DEFAULT_STD),
                                                norm["mean"], norm["std"]),
                                   class_map=class_map, num_classes=len(pool.classes),
                                   uint8_normalization=(norm["mean"], norm["std"]), amp_dtype=cfg.amp_dtype)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if not self.keep_runs:
            import shutil

            if (run / "metrics.json").exists():
                (run / "metrics.json").replace(self.work_dir / f"round{round:02d}-metrics.json")
            shutil.rmtree(run, ignore_errors=True)
        return predictor, state


def _pool_meta(pool) -> dict:
    """What the pool's data allows (a folder's `dataset.json`): a pool's own `meta`, else flip and
    shift (toy-world creatures may be mirrored; what every pool got before dataset.json existed)."""
    return dict(getattr(pool, "meta", None) or {"augment": ("flip", "shift")})

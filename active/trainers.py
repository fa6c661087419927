"""Train functions for the loop, backed by the training module (`training.trainer.Trainer`).

`TrainerFn` writes the labelled set as an Argus dataset folder (the contract between packages is
files: `samples.csv` + PNGs, domain column left empty because the learner does not know it),
trains with the chosen method (`erm`, `center-distance`, ...) from scratch (default) or from the
previous round's weights, and returns a `ModelPredictor` for pool scoring plus the weights for a
warm start. Each item's PNG is written once and reused by later rounds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from active.pool import DEFAULT_MEAN, DEFAULT_STD, ModelPredictor
from active.oracles import save_pool_png


class TrainerFn:
    """`train_fn(pool, indices, labels, *, round, seed, init_state) -> (predictor, state_dict)`.

    Options go to `training.trainer.TrainConfig` (`method`, `epochs`, `arch`, `batch_size`,
    `lr`, `device`, `model_kwargs`, ...); `image_size` defaults to the pool's. `min_steps`
    raises the epoch count for small labelled sets so each round gets at least that many
    optimizer steps.
    """

    def __init__(self, work_dir, method: str = "erm", method_options: dict | None = None, epochs: int = 8,
                 min_steps: int = 0, progress: bool = False, **train_config):
        from training.trainer import TrainConfig

        self.work_dir = Path(work_dir)
        self.method, self.method_options, self.epochs = method, dict(method_options or {}), int(epochs)
        self.min_steps = int(min_steps)
        self.train_config = dict(train_config)
        self.progress = progress
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
        pd.DataFrame(rows, columns=["sample_id", "path", "label", "domain", "split"]).to_csv(root / "samples.csv", index=False)
        return root

    def __call__(self, pool, indices, labels, *, round: int, seed: int, init_state=None):
        from training.trainer import TrainConfig, Trainer

        root = self._write_dataset(pool, np.asarray(indices), np.asarray(labels), round)
        cfg = TrainConfig(method=self.method, method_options=self.method_options, epochs=self.epochs, seed=seed,
                          **{"image_size": getattr(pool, "image_size", None), **self.train_config})
        # small labelled sets: at least `min_steps` optimizer steps, else round 0 models barely train
        cfg.epochs = max(cfg.epochs, math.ceil(self.min_steps * cfg.batch_size / max(len(indices), 1)))

        class _Warm(Trainer):
            def new_model(self, seed=None):
                model = super().new_model(seed)
                if init_state is not None and model.fc.out_features == init_state["fc.weight"].shape[0]:
                    model.load_state_dict(init_state)  # warm start (a new class appearing forces scratch)
                return model

        trainer = _Warm(root, self.work_dir / f"run-round{round:02d}", cfg, progress=self.progress)
        trainer.fit()
        model = trainer.model.eval()
        norm = trainer.normalization
        class_map = [pool.classes.index(c) for c in trainer.classes]
        predictor = ModelPredictor(model, trainer.device, amp=cfg.amp,
                                   renormalize=(getattr(pool, "mean", DEFAULT_MEAN), getattr(pool, "std", DEFAULT_STD),
                                                norm["mean"], norm["std"]),
                                   class_map=class_map, num_classes=len(pool.classes))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return predictor, state

"""The plug-in point for training methods (center loss, distance sampling, JTT, GroupDRO, ...).

A `TrainingMethod` decides three things the ERM trainer otherwise does itself: which training
rows an epoch draws (`epoch_indices`), the loss of a mini-batch (`loss`), and extra trainable
state (`extra_parameters` / `extra_optimizers`). The default implementation IS ERM: uniform
shuffle and mean cross-entropy. Methods register under a name in `training.methods.METHODS`
(which registers this class as `erm`):

    @register_method("center-loss")      # from training.methods
    class CenterLoss(TrainingMethod): ...

    method = build_method("center-loss", weight=0.01)

A method sees the `domain` column only when its class sets
`reads_domains = True` (oracle baselines such as GroupDRO); the trainer never reads it otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.registry import Registry

class TrainingMethod:
    """Base class: ERM behaviour by default. Subclasses override what they change.

    Attributes set by `prepare`: `trainer` (the `training.trainer.Trainer`), `num_classes`,
    `num_train` (rows in the training split), `labels` (`[N]` int64 train labels on CPU) and,
    only when `reads_domains`, `domains` (`[N]` int64 domain ids) and `domain_names`.
    """

    name = "erm"
    reads_domains = False

    def __init__(self, **kwargs):
        if kwargs:
            raise TypeError(f"method {self.name!r} takes no options, got {', '.join(sorted(kwargs))}")
        self.trainer = None
        self.num_classes = 0
        self.num_train = 0
        self.labels: torch.Tensor | None = None

    def prepare(self, trainer) -> None:
        """Called once before the first epoch (also on resume, before state is loaded). JTT-style
        methods may run a first ERM stage here through `trainer.train_erm_stage(epochs)`."""
        self.trainer = trainer
        self.num_classes = trainer.num_classes
        self.num_train = trainer.num_train
        self.labels = trainer.train_labels

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable tensors besides the model's (e.g. class centers); the trainer adds them to
        the model optimizer unless `extra_optimizers` handles them."""
        return []

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers the method steps itself (each `step()`/`zero_grad()`-ed by the trainer)."""
        return []

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor | None:
        """The epoch's draw of training-row indices (`LongTensor [M]`, repeats allowed), or None
        for a uniform shuffle of all rows. Must only use `generator` for randomness (DDP ranks
        share it and take disjoint shares of the draw)."""
        return None

    def batch_inputs(self, x: torch.Tensor, idx: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """The mini-batch the network sees: `x [B, C, H, W]` (augmented, normalised), `idx [B]`
        (training-row ids), `draws` (the batch's augmentation `[3, B]`, or None). Corrections
        change or annotate it here (counterfactual backgrounds, inputs that need a gradient)."""
        return x

    def loss(self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
             domains: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss of a mini-batch. `logits [B, K]`, pooled `features [B, D]` (same forward
        pass), `labels [B]`, `indices [B]` (training-row ids), `domains [B]` only when
        `reads_domains`."""
        return F.cross_entropy(logits, labels)

    def after_step(self) -> None:
        """Called after every optimizer step."""

    def end_epoch(self, epoch: int) -> dict:
        """Called after each epoch; the returned dict is logged into `metrics.json`."""
        return {}

    def selection_score(self, val_report: dict) -> float:
        """Model-selection score from a validation report (higher is better). Default: the
        worst-class validation accuracy (uses labels only, never domains)."""
        return float(val_report["worst_class_accuracy"])

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def config(self) -> dict:
        """Options recorded in `model.json` (override to report hyperparameters)."""
        return {}


# The registry of methods lives beside the base class so that modules of methods
# (`training.methods`, `training.corrections`) import it without importing each other.
METHODS: Registry[type[TrainingMethod]] = Registry("training method", base=TrainingMethod)
register_method = METHODS.register  # class decorator: `@register_method("name")`


def _no_options(name: str, kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"method {name!r}: unknown option(s) {', '.join(sorted(kwargs))}")

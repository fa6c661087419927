"""Training methods for blind imbalanced domains, registered for `argus train --method NAME`.

=====================  ==========================================================  ============
name                   what it changes                                             domains?
=====================  ==========================================================  ============
`erm`                  nothing (defined in `training.method_base`)                 never read
`class-balanced`       draws rows with P(i) ∝ 1 / n_{y_i}                          never read
`focal`                focal loss (gamma) instead of cross-entropy                 never read
`center`               cross-entropy + center loss (alpha rule)                    never read
`distance-sampling`    draws rows by distance to their class center                never read
`center-distance`      center loss + distance sampling (the dissertation's)        never read
`jtt`                  short ERM run, then its training errors upsampled           never read
`groupdro-oracle`      GroupDRO over domains: an ORACLE, it reads domain labels    **read**
`domain-balanced-      every domain drawn equally often, cross-entropy: ORACLE     **read**
oracle`
=====================  ==========================================================  ============

The corrections of `argus improve` (`rrr-gradient`, `rrr-contribution`, `counterfactual-bg`,
`suppress-channels`) live in `training.corrections` and register here too.

Options are keyword arguments of each class (`argus train --method-option KEY=VALUE`). Only the
`*-oracle` methods set `reads_domains = True`; the trainer passes domains to no
other method, and `tests/training/blind/test_blind_no_domain_read.py` checks that poisoning the domain
column changes nothing for every other method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import CenterLoss, GroupDROLoss, focal_loss
from training.method_base import METHODS, TrainingMethod, _no_options, register_method
from training.samplers import (DistanceWeightedSampler, class_balanced_probabilities, jtt_upsampled_indices,
                               weighted_draw)

register_method("erm")(TrainingMethod)


def build_method(name: str, **options) -> TrainingMethod:
    """The method registered as `name`, built with its options (keyword arguments)."""
    return METHODS.build(name, **options)


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    return METHODS.names()


@register_method("class-balanced")
class ClassBalancedMethod(TrainingMethod):
    """Each epoch draws N rows with replacement so every class is equally likely."""

    def __init__(self, **kwargs):
        _no_options("class-balanced", kwargs)
        super().__init__()
        self._probabilities = None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        self._probabilities = class_balanced_probabilities(self.labels)

    def epoch_indices(self, epoch, generator):
        return weighted_draw(self._probabilities, self.num_train, generator)


@register_method("focal")
class FocalMethod(TrainingMethod):
    """Focal loss `-(1 - p_y)^gamma log p_y` (Lin et al. 2017); gamma=0 is ERM."""

    def __init__(self, gamma: float = 2.0, **kwargs):
        _no_options("focal", kwargs)
        super().__init__()
        if gamma < 0:
            raise ValueError(f"method 'focal': gamma={gamma} must be >= 0")
        self.gamma = float(gamma)

    def loss(self, logits, features, labels, indices, domains=None):
        return focal_loss(logits, labels, self.gamma)

    def config(self) -> dict:
        return {"gamma": self.gamma}


class _CenterMethod(TrainingMethod):
    """Shared machinery: class centers in pooled-feature space (CenterLoss, alpha rule),
    optionally a center-loss term (`center_weight` > 0) and/or distance-weighted sampling.

    The centers are created lazily from the first batch's feature size and device, so the
    method needs nothing from the model but the pooled features the trainer passes in.

    Options beyond the faithful method (all blind; each off by default, ablated in the bench):
    `distances="eval"` takes the sampling distances from an eval-mode pass over the training
    rows after each epoch (every row measured by the same model, without augmentation) instead
    of from the training forward passes; `anneal_epochs=k` ramps the sampling weighting up over
    k epochs after the warm-up; `center_warmup_epochs=k` ramps the center-loss weight up over
    the first k epochs (features mean little at initialisation).
    """

    uses_center_loss = True
    uses_sampler = True

    def __init__(self, center_weight: float = 0.01, center_alpha: float = 0.5, warmup_epochs: int = 1,
                 weighting: str = "power", power: float = 1.0, temperature: float = 1.0, floor: float = 0.1,
                 distances: str = "train", anneal_epochs: int = 0, center_warmup_epochs: int = 0, **kwargs):
        _no_options(self.name, kwargs)
        super().__init__()
        if self.uses_center_loss and center_weight <= 0:
            raise ValueError(f"method {self.name!r}: center_weight={center_weight} must be > 0")
        if distances not in ("train", "eval"):
            raise ValueError(f"method {self.name!r}: distances={distances!r} must be 'train' or 'eval'")
        if anneal_epochs < 0:
            raise ValueError(f"method {self.name!r}: anneal_epochs={anneal_epochs} must be >= 0")
        if center_warmup_epochs < 0:
            raise ValueError(f"method {self.name!r}: center_warmup_epochs={center_warmup_epochs} must be >= 0")
        self.center_weight = float(center_weight) if self.uses_center_loss else 0.0
        self.center_alpha = float(center_alpha)
        self.distance_source = distances
        self.center_warmup_epochs = int(center_warmup_epochs)
        self.sampler_options = dict(warmup_epochs=int(warmup_epochs), weighting=weighting, power=float(power),
                                    temperature=float(temperature), floor=float(floor),
                                    anneal_epochs=int(anneal_epochs))
        self._epoch = 0
        self.centers: CenterLoss | None = None
        self.sampler: DistanceWeightedSampler | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pending_state: dict | None = None
        self._center_sum = 0.0
        self._steps = 0

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        if self.uses_sampler:
            # validates the options now, not at the end of epoch 1
            self.sampler = DistanceWeightedSampler(self.labels, **self.sampler_options)

    def _ensure_centers(self, features: torch.Tensor) -> CenterLoss:
        if self.centers is None:
            self.centers = CenterLoss(self.num_classes, features.shape[1], lam=max(self.center_weight, 1e-12),
                                      alpha=self.center_alpha).to(features.device)
            if self._pending_state is not None:
                self.centers.load_state_dict(self._pending_state)
                self._pending_state = None
        return self.centers

    def loss(self, logits, features, labels, indices, domains=None):
        centers = self._ensure_centers(features)
        ce = F.cross_entropy(logits.float(), labels)
        if self.sampler is not None:
            # distances to the centers as they are now, from this very forward pass
            self.sampler.record(indices, centers.distances(features, labels), valid=centers.initialized[labels])
        self._pending = (features.detach(), labels.detach())
        if not self.uses_center_loss:
            return ce
        center_term = centers(features, labels) * self._center_ramp()
        self._center_sum = self._center_sum + center_term.detach()  # a tensor: no sync per step
        self._steps += 1
        return ce + center_term

    def _center_ramp(self) -> float:
        """Center-loss warm-up: the weight grows linearly from 1/k to 1 over the first k epochs."""
        k = self.center_warmup_epochs
        return 1.0 if k <= 0 else min(1.0, (self._epoch + 1) / k)

    def after_step(self) -> None:
        if self._pending is not None:
            self.centers.update(*self._pending)
            self._pending = None

    def epoch_indices(self, epoch, generator):
        self._epoch = int(epoch)
        if self.sampler is None:
            return None
        return self.sampler.epoch_indices(epoch, generator)

    def end_epoch(self, epoch: int) -> dict:
        out = {}
        if self.sampler is not None:
            out.update(self.sampler.end_epoch())
            if self.distance_source == "eval" and self.centers is not None:
                out.update(self._eval_distances())
        if self._steps:
            out["center_loss"] = float(self._center_sum) / self._steps
            self._center_sum, self._steps = 0.0, 0
        return out

    @torch.no_grad()
    def _eval_distances(self) -> dict:
        """Replace the recorded distances by those of an eval-mode pass over the training rows (no
        augmentation, BatchNorm in eval mode): every row gets a distance from the same model,
        instead of one from the step that last drew it (costs one forward pass per epoch)."""
        _, feats = self.trainer.predict("train", self.trainer.model, features=True)
        centers = self.centers.centers.detach().cpu().float()
        labels = self.labels.cpu()
        d = (feats.float() - centers[labels]).norm(dim=1).double()
        ready = self.centers.initialized.cpu()[labels]
        self.sampler.distances = torch.where(ready, d, torch.full_like(d, float("nan")))
        return {"sampler_eval_mean_distance": float(d[ready].mean()) if ready.any() else float("nan")}

    def state_dict(self) -> dict:
        state = {}
        if self.centers is not None:
            state["centers"] = {k: v.cpu() for k, v in self.centers.state_dict().items()}
        if self.sampler is not None:
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if "centers" in state:
            if self.centers is None:
                self._pending_state = state["centers"]
            else:
                self.centers.load_state_dict(state["centers"])
        if "sampler" in state and self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])

    def config(self) -> dict:
        out = {"center_alpha": self.center_alpha}
        if self.uses_center_loss:
            out["center_weight"] = self.center_weight
            out["center_warmup_epochs"] = self.center_warmup_epochs
        if self.uses_sampler:
            out.update(self.sampler_options)
            out["distances"] = self.distance_source
        return out


@register_method("center")
class CenterMethod(_CenterMethod):
    """Cross-entropy + `center_weight` * center loss; centers by the paper's alpha rule."""

    uses_sampler = False

    def __init__(self, center_weight: float = 0.01, center_alpha: float = 0.5, center_warmup_epochs: int = 0,
                 **kwargs):
        _no_options("center", kwargs)
        super().__init__(center_weight=center_weight, center_alpha=center_alpha,
                         center_warmup_epochs=center_warmup_epochs)


@register_method("distance-sampling")
class DistanceSamplingMethod(_CenterMethod):
    """Cross-entropy on batches drawn by distance to the class center (centers tracked by the
    alpha rule, no center-loss term)."""

    uses_center_loss = False

    def __init__(self, center_alpha: float = 0.5, **kwargs):
        if "center_weight" in kwargs or "center_warmup_epochs" in kwargs:
            raise TypeError("method 'distance-sampling' has no center loss; use 'center-distance' for center_weight")
        super().__init__(center_alpha=center_alpha, **kwargs)


@register_method("center-distance")
class CenterDistanceMethod(_CenterMethod):
    """The dissertation's method: center loss + distance-weighted mini-batch sampling."""


@register_method("jtt")
class JTTMethod(TrainingMethod):
    """Just Train Twice (Liu et al., ICML 2021), without group labels.

    Stage 1 (in `prepare`): a short ERM run of `first_epochs` epochs through the trainer; the
    training rows it misclassifies form the error set. Stage 2: the model trains from its fresh
    initialisation on the training set with the error set upsampled `upweight` times (each
    epoch a shuffle of the upsampled list, so epochs are longer by the error count x
    (upweight - 1)). `first_epochs=None` uses a quarter of the run's epochs (at least 1).
    """

    def __init__(self, first_epochs: int | None = None, upweight: int = 5, **kwargs):
        _no_options("jtt", kwargs)
        super().__init__()
        if first_epochs is not None and first_epochs < 1:
            raise ValueError(f"method 'jtt': first_epochs={first_epochs} must be >= 1")
        if int(upweight) != upweight or upweight < 1:
            raise ValueError(f"method 'jtt': upweight={upweight} must be an integer >= 1")
        self.first_epochs = first_epochs
        self.upweight = int(upweight)
        self.error_mask: torch.Tensor | None = None
        self._base: torch.Tensor | None = None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        if self.error_mask is not None:  # resumed: the error set was restored
            return
        epochs = self.first_epochs or max(1, int(round(getattr(trainer, "epochs", 4) / 4)))
        self.first_epochs = epochs
        self.set_error_set(_jtt_stage_one(trainer, epochs))

    def set_error_set(self, error_mask) -> None:
        """Set the stage-1 error set (`[N]` bool over training rows)."""
        mask = torch.as_tensor(error_mask, dtype=torch.bool).cpu()
        if mask.shape != (self.num_train,):
            raise ValueError(f"method 'jtt': error set has {list(mask.shape)} rows, the training split {self.num_train}")
        self.error_mask = mask
        self._base = jtt_upsampled_indices(mask, self.upweight)

    def epoch_indices(self, epoch, generator):
        return self._base[torch.randperm(len(self._base), generator=generator)]

    def end_epoch(self, epoch: int) -> dict:
        return {"jtt_errors": int(self.error_mask.sum()), "jtt_epoch_rows": int(len(self._base))}

    def state_dict(self) -> dict:
        return {"error_mask": self.error_mask.clone()} if self.error_mask is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if "error_mask" in state:
            self.set_error_set(state["error_mask"])

    def config(self) -> dict:
        return {"first_epochs": self.first_epochs, "upweight": self.upweight,
                "errors": None if self.error_mask is None else int(self.error_mask.sum())}


def _jtt_stage_one(trainer, epochs: int) -> torch.Tensor:
    """Train the trainer's ERM stage and return the `[N]` bool mask of misclassified train rows
    (predicted in eval mode, without augmentation, identically on every DDP rank)."""
    model = trainer.train_erm_stage(epochs)
    pred = trainer.predict("train", model).argmax(1).cpu()
    errors = pred != trainer.train_labels.cpu()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # BatchNorm statistics differ slightly per rank (no SyncBN): take rank 0's error set so
        # that every rank makes the same epoch draw
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        buf = errors.to(device, torch.uint8)
        dist.broadcast(buf, src=0)
        errors = buf.cpu().bool()
    return errors


@register_method("groupdro-oracle")
class GroupDROOracleMethod(TrainingMethod):
    """GroupDRO over domains (Sagawa et al. 2020). ORACLE: it reads the domain labels of the
    training rows, which blind methods never see; it is the upper reference of gap closure.

    `groups="domain"` (default) or `"domain-class"` (one group per (domain, class) pair, the
    paper's choice for spurious correlations). `eta` is the q step size, `adjustment` the
    paper's C (group-size adjustment). `balance=True` (default) draws every group equally often,
    as the paper's code does for GroupDRO (`--reweight_groups`): with uniform draws a 5 % domain
    has a handful of rows per batch, q piles onto their noisy loss and the majority collapses."""

    reads_domains = True

    def __init__(self, eta: float = 0.01, adjustment: float = 0.0, groups: str = "domain", balance: bool = True,
                 **kwargs):
        _no_options("groupdro-oracle", kwargs)
        super().__init__()
        if groups not in ("domain", "domain-class"):
            raise ValueError(f"method 'groupdro-oracle': groups={groups!r} must be 'domain' or 'domain-class'")
        self.eta, self.adjustment, self.groups, self.balance = float(eta), float(adjustment), groups, bool(balance)
        self.dro: GroupDROLoss | None = None
        self.n_domains = 0
        self._probabilities = None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        domains = torch.as_tensor(self.domains, dtype=torch.long)
        self.n_domains = int(domains.max()) + 1
        group_ids = self._group_ids(domains, self.labels)
        n_groups = self.n_domains * (self.num_classes if self.groups == "domain-class" else 1)
        counts = torch.bincount(group_ids, minlength=n_groups).float()
        self.dro = GroupDROLoss(counts.clamp(min=1.0), eta=self.eta, adjustment=self.adjustment)
        if self.balance:
            self._probabilities = class_balanced_probabilities(group_ids)  # equal share per group

    def epoch_indices(self, epoch, generator):
        if self._probabilities is None:
            return None
        return weighted_draw(self._probabilities, self.num_train, generator)

    def _group_ids(self, domains: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.groups == "domain":
            return domains
        return domains * self.num_classes + labels

    def loss(self, logits, features, labels, indices, domains=None):
        if domains is None:
            raise RuntimeError("groupdro-oracle needs the domain labels of the batch (reads_domains=True)")
        self.dro.to(logits.device)
        return self.dro(logits, labels, self._group_ids(domains.to(labels.device), labels))

    def end_epoch(self, epoch: int) -> dict:
        names = list(getattr(self, "domain_names", [])) or [str(i) for i in range(self.n_domains)]
        q = self.dro.q.cpu().tolist()
        if self.groups == "domain":
            return {f"groupdro_q/{names[i] if i < len(names) else i}": v for i, v in enumerate(q)}
        return {"groupdro_q_max": max(q)}

    def state_dict(self) -> dict:
        return {"q": self.dro.q.cpu().clone()} if self.dro is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if "q" in state and self.dro is not None:
            self.dro.q.copy_(state["q"])

    def config(self) -> dict:
        return {"eta": self.eta, "adjustment": self.adjustment, "groups": self.groups, "balance": self.balance,
                "oracle": True}


@register_method("domain-balanced-oracle")
class DomainBalancedOracleMethod(TrainingMethod):
    """ERM on draws in which every domain is equally likely (N rows with replacement per epoch).
    ORACLE: it reads the domain labels of the training rows. The simplest upper reference for
    gap closure: the minority domains get as many visits as the majority."""

    reads_domains = True

    def __init__(self, **kwargs):
        _no_options("domain-balanced-oracle", kwargs)
        super().__init__()
        self._probabilities = None

    def prepare(self, trainer) -> None:
        super().prepare(trainer)
        self._probabilities = class_balanced_probabilities(torch.as_tensor(self.domains, dtype=torch.long))

    def epoch_indices(self, epoch, generator):
        return weighted_draw(self._probabilities, self.num_train, generator)

    def config(self) -> dict:
        return {"oracle": True}


# the corrections of `argus improve` register themselves in METHODS
from training import corrections  # noqa: E402,F401

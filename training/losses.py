"""Losses for blind imbalanced domain training: center loss, focal loss, GroupDRO (oracle).

All three compute in float32 whatever the input dtype, so they are safe under autocast
(bf16/fp16 logits and features are upcast before any square, exp or log).

Center loss (Wen et al., ECCV 2016, "A Discriminative Feature Learning Approach for Deep Face
Recognition") is built with the paper's update rule for the class centers rather than as
parameters of an optimizer. Why:

* the centers then move at a rate `alpha` that does not depend on the model optimizer, its
  learning-rate schedule, momentum, Adam's per-coordinate scaling or weight decay (the usual
  bug in public code is to put centers in the model optimizer, where weight decay drags them to
  zero and the lr schedule freezes them);
* the update is a closed form over the batch, so under DDP it is exact: every rank all-reduces
  the per-class sums and counts and applies the same update, and the centers stay bit-identical
  on every rank without being wrapped by DDP;
* nothing is left out of an optimizer by mistake, because there is no optimizer to forget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _distributed_world() -> int:
    """World size when torch.distributed is initialised, else 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors in place over all ranks (no-op outside DDP). One collective per tensor."""
    if _distributed_world() > 1:
        for t in tensors:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)


class CenterLoss(nn.Module):
    """Center loss with the paper's center update rule.

    Loss (a scalar, feature units squared)::

        L_C = lam * 1/2 * mean_i ||x_i - c_{y_i}||^2

    where `x_i` are pooled deep features `[B, D]` and `c` the class centers `[K, D]` (a buffer,
    not a parameter: the loss gives gradients to the features only). The gradient with respect
    to `x_i` is `lam * (x_i - c_{y_i}) / B`.

    Centers are updated by `update` (call it once per optimisation step, after the loss
    was computed with the old centers, as in the paper's Algorithm 1)::

        delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)
        c_j      <- c_j - alpha * delta_c_j

    with `n_j` the number of samples of class j in the (global, under DDP) batch. A class seen
    for the first time has its center set to the mean of its features in that batch
    (`init="first_batch"`, the default) so the loss is on a sensible scale from step one;
    `init="zeros"` reproduces the paper exactly.

    Args:
        num_classes: K.
        feat_dim: D, the pooled feature size (`model.feature_dim`).
        lam: weight lambda of the center term (the paper's lambda).
        alpha: center learning rate in (0, 1] (the paper's alpha).
        init: "first_batch" or "zeros".
    """

    def __init__(self, num_classes: int, feat_dim: int, lam: float = 0.01, alpha: float = 0.5,
                 init: str = "first_batch"):
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"CenterLoss: num_classes={num_classes} and feat_dim={feat_dim} must be >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"CenterLoss: alpha={alpha} must be in (0, 1]")
        if lam < 0:
            raise ValueError(f"CenterLoss: lam={lam} must be >= 0")
        if init not in ("first_batch", "zeros"):
            raise ValueError(f"CenterLoss: init={init!r} must be 'first_batch' or 'zeros'")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.lam = float(lam)
        self.alpha = float(alpha)
        self.init = init
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))
        self.register_buffer("initialized", torch.full((num_classes,), init == "zeros"))

    def _check(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"CenterLoss: features must be [B, {self.feat_dim}], got {list(features.shape)}")
        if labels.shape != features.shape[:1]:
            raise ValueError(f"CenterLoss: labels must be [B]={features.shape[0]}, got {list(labels.shape)}")
        # value check on CPU only: on a GPU it would force a device sync every step
        if labels.numel() and not labels.is_cuda and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"CenterLoss: labels must be in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")

    def distances(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each feature to its class center, `[B]` float32 (no grad)."""
        self._check(features, labels)
        with torch.no_grad():
            return (features.detach().float() - self.centers[labels]).norm(dim=1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`lam/2 * mean ||x - c_y||^2` over the batch (scalar float32 tensor)."""
        self._check(features, labels)
        if labels.numel() == 0:
            return features.float().sum() * 0.0
        diff = features.float() - self.centers[labels]
        # Classes without a center yet (first_batch init, update not run) contribute nothing.
        ready = self.initialized[labels].to(diff.dtype)
        per_sample = (diff * diff).sum(dim=1) * ready
        return 0.5 * self.lam * per_sample.mean()

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Apply the paper's alpha rule with this batch (all-reduced over DDP ranks).

        `features` `[B, D]` (any float dtype; detached here), `labels` `[B]` int64.
        """
        self._check(features, labels)
        x = features.detach().float()
        k = self.num_classes
        counts = torch.zeros(k, device=x.device, dtype=torch.float32)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        sums = torch.zeros(k, self.feat_dim, device=x.device, dtype=torch.float32)
        sums.index_add_(0, labels, x)
        # One collective: sums and counts travel together.
        packed = torch.cat([sums, counts[:, None]], dim=1)
        _all_reduce_sum(packed)
        sums, counts = packed[:, :-1], packed[:, -1:]
        present = counts[:, 0] > 0
        fresh = (present & ~self.initialized)[:, None]
        old = (present & self.initialized)[:, None]
        # element-wise selects, not masked indexing or `.any()`: no device sync per step
        first_mean = sums / counts.clamp(min=1.0)
        # sum_i (c_j - x_i) = n_j c_j - sum_i x_i
        delta = (counts * self.centers - sums) / (1.0 + counts)
        self.centers.copy_(torch.where(fresh, first_mean, torch.where(old, self.centers - self.alpha * delta, self.centers)))
        self.initialized |= present


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0,
               alpha: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Multi-class focal loss (Lin et al., ICCV 2017).

    `FL_i = -alpha_{y_i} * (1 - p_i)^gamma * log p_i` with `p_i` the softmax probability of the
    true class. `gamma = 0` and no alpha gives cross-entropy exactly.

    Args:
        logits: `[B, K]`, any float dtype (computed in float32).
        labels: `[B]` int64 in `[0, K)`.
        gamma: focusing parameter >= 0.
        alpha: optional per-class weights `[K]`.
        reduction: "mean", "sum" or "none" (`[B]`).
    """
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma={gamma} must be >= 0")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"focal_loss: logits [B, K] and labels [B] expected, got "
                         f"{list(logits.shape)} and {list(labels.shape)}")
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    p = log_p.exp()
    loss = -((1.0 - p).clamp(min=0.0) ** gamma) * log_p
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=torch.float32, device=logits.device)
        if alpha.shape != logits.shape[1:]:
            raise ValueError(f"focal_loss: alpha must be [K]={logits.shape[1]}, got {list(alpha.shape)}")
        loss = loss * alpha[labels]
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"focal_loss: reduction={reduction!r} must be mean|sum|none")


class GroupDROLoss(nn.Module):
    """Online GroupDRO (Sagawa et al., ICLR 2020, Algorithm 1). **Oracle: reads group labels.**

    Keeps a distribution `q` over G groups (here: the domains, or domain x class). Each step::

        loss_g = mean cross-entropy of the batch's samples in group g    (0 if none present)
        q_g   <- q_g * exp(eta * (loss_g + C / sqrt(n_g)))   for groups present, then normalise
        loss   = sum_g q_g * loss_g

    `C` is the paper's generalisation adjustment (0 disables it), `n_g` the group's training
    size. Under DDP the group losses that drive `q` are all-reduced (sum of losses and counts),
    so every rank keeps the same `q`; the gradient uses the local batch weighted by that `q`.

    Args:
        group_counts: `[G]` training-set size of each group.
        eta: step size of the q update.
        adjustment: C.
    """

    def __init__(self, group_counts, eta: float = 0.01, adjustment: float = 0.0):
        super().__init__()
        counts = torch.as_tensor(group_counts, dtype=torch.float32)
        if counts.ndim != 1 or counts.numel() < 1 or (counts <= 0).any():
            raise ValueError(f"GroupDROLoss: group_counts must be positive [G], got {counts.tolist()}")
        if eta <= 0:
            raise ValueError(f"GroupDROLoss: eta={eta} must be > 0")
        self.n_groups = counts.numel()
        self.eta = float(eta)
        self.adjustment = float(adjustment)
        self.register_buffer("group_counts", counts)
        self.register_buffer("q", torch.full((self.n_groups,), 1.0 / self.n_groups))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Weighted group loss (scalar); updates `q` as a side effect when training."""
        if groups.shape != labels.shape:
            raise ValueError(f"GroupDROLoss: groups {list(groups.shape)} must match labels {list(labels.shape)}")
        if groups.numel() and not groups.is_cuda and (groups.min() < 0 or groups.max() >= self.n_groups):
            raise ValueError(f"GroupDROLoss: group ids must be in [0, {self.n_groups}), got "
                             f"[{int(groups.min())}, {int(groups.max())}]")
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none")
        g = self.n_groups
        sums = torch.zeros(g, device=logits.device).index_add(0, groups, per_sample)
        counts = torch.zeros(g, device=logits.device).index_add(0, groups, torch.ones_like(per_sample))
        group_loss = sums / counts.clamp(min=1.0)
        if self.training:
            with torch.no_grad():
                packed = torch.stack([sums.detach(), counts])
                _all_reduce_sum(packed)
                present = packed[1] > 0
                global_loss = packed[0] / packed[1].clamp(min=1.0)
                adjusted = global_loss + self.adjustment / self.group_counts.to(global_loss.device).sqrt()
                step = torch.where(present, self.eta * adjusted, torch.zeros_like(adjusted))
                # multiply in log space for stability
                q = self.q.log() + step
                self.q.copy_(torch.softmax(q, dim=0))
        return (self.q.to(group_loss.device) * group_loss).sum()

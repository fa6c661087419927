"""Per-channel, class-discriminative contributions of a CNN layer to the logits.

For a head `logit_k = sum_c W[k, c] * f_c + b_k` with `f = GAP(A)` over the explained
layer's map `A[c, h, w]`, `W[k, c] * f_c` is an exact decomposition of every logit, and
`(W[k, c] - W[j, c]) * f_c` explains "k rather than j". One forward pass gives it for every
class of a whole batch. Heads that are not GAP-linear fall back to gradient x activation
(`sum_hw dlogit_k/dA[c,h,w] * A[c,h,w]`), which reduces to the exact value on GAP-linear heads,
and a warning says so.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Explanation",
    "LayerContributions",
    "LayerNotFoundError",
    "candidate_layers",
    "resolve_module",
]


class LayerNotFoundError(ValueError):
    """The requested layer name does not exist in the model."""


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the explained layer has run."""


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of modules that can be explained: convolutions and the containers holding them."""
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        if isinstance(module, (nn.Conv2d, nn.Sequential, nn.BatchNorm2d, nn.ReLU)) or any(
            isinstance(m, nn.Conv2d) for m in module.modules()
        ):
            names.append(name)
    return names


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (dotted path), or `LayerNotFoundError` listing candidates."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    candidates = candidate_layers(model)
    shown = ", ".join(candidates[-25:])
    more = f" (last 25 of {len(candidates)})" if len(candidates) > 25 else ""
    raise LayerNotFoundError(
        f"layer {name!r} not found in {type(model).__name__}; candidate layers{more}: {shown}"
    )


@dataclass
class Explanation:
    """What `LayerContributions.explain` returns; every tensor stays on the model's device.

    Shapes: B images, K classes, C channels of the explained layer, (h, w) its spatial size.
    Contributions are in logit units. For exact (GAP-linear) heads the all-class decomposition is
    kept factored, `contributions[b, c, k] = pooled[b, c] * weight[k, c]`: any class's channel
    contributions cost O(B*C), and the dense `[B, C, K]` tensor (4 bytes * B*C*K: 0.5 GB for a
    ResNet-50 batch of 64 with 1,000 classes) is built only when `contributions` is read.
    """

    logits: torch.Tensor  # [B, K]
    probabilities: torch.Tensor  # [B, K] softmax (single-label) or sigmoid (multi-label)
    rest: torch.Tensor  # [B, K]; the bias (exact) or the unexplained remainder (approximate)
    maps: torch.Tensor  # [B, C, h, w] channel activations of the explained layer
    target: torch.Tensor  # [B] long, the explained class k
    contrast: torch.Tensor | None  # [B] long, the contrast class j, or None
    contrast_contributions: torch.Tensor  # [B, C]: contributions to logit_k - logit_j (or logit_k)
    margin: torch.Tensor  # [B]: logit_k - logit_j (or logit_k without contrast)
    layer: str
    decomposition: str  # "exact" | "gradient_x_activation"
    multilabel: bool = False
    pooled: torch.Tensor | None = None  # [B, C] GAP(maps), exact heads only
    weight: torch.Tensor | None = None  # [K, C] head weights, exact heads only
    dense: torch.Tensor | None = field(default=None, repr=False)  # [B, C, K] once built (or given)
    ranking: str = "localised"  # how `top_channels` orders arguments (see `argument_scores`)

    @property
    def exact(self) -> bool:
        return self.decomposition == "exact"

    @property
    def contributions(self) -> torch.Tensor:
        """`[B, C, K]`: sum over C + rest == logits. Built on first read for exact heads."""
        if self.dense is None:
            self.dense = self.pooled.unsqueeze(2) * self.weight.t().to(self.pooled.dtype).unsqueeze(0)
        return self.dense

    def class_contributions(self, classes) -> torch.Tensor:
        """Channel contributions `[B, C]` to one class per image (`classes`: an int or `[B]` ints)."""
        b = self.logits.shape[0]
        idx = torch.as_tensor(classes, dtype=torch.long, device=self.logits.device).reshape(-1).expand(b)
        if self.dense is None and self.pooled is not None:
            return self.pooled * self.weight[idx].to(self.pooled.dtype)
        return self.contributions[torch.arange(b, device=idx.device), :, idx]

    def logits_after_removal(self, order: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Logits `[B, S, K]` once the first `counts[s]` channels of `order [B, C]` are zeroed.

        Exact heads: one `[B*S, C] x [C, K]` product on the pooled features (zeroing a channel
        removes exactly its contributions), without the dense tensor."""
        b, c = order.shape
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(c, device=order.device).expand(b, c))
        removed = rank.unsqueeze(1) < counts.to(order.device).view(1, -1, 1)  # [B, S, C]
        if self.dense is None and self.pooled is not None:
            dropped = (self.pooled.unsqueeze(1) * removed.to(self.pooled.dtype)) @ self.weight.t().to(self.pooled.dtype)
        else:
            dropped = torch.einsum("bsc,bck->bsk", removed.to(self.contributions.dtype), self.contributions)
        return self.logits.unsqueeze(1) - dropped.to(self.logits.dtype)

    def channel_weights(self, target, contrast=None) -> torch.Tensor:
        """Per-channel head weights `[B, C]` for "k (rather than j)": `W[k] - W[j]` (exact heads)."""
        if self.weight is None:
            raise ValueError(f"channel weights need a GAP-linear head; layer {self.layer!r} is explained by "
                             f"{self.decomposition}")
        b = self.logits.shape[0]
        k = torch.as_tensor(target, dtype=torch.long, device=self.weight.device).reshape(-1).expand(b)
        w = self.weight[k]
        if contrast is not None:
            j = torch.as_tensor(contrast, dtype=torch.long, device=self.weight.device).reshape(-1).expand(b)
            w = w - self.weight[j]
        return w

    def class_map(self, target=None, contrast="explained") -> torch.Tensor:
        """The full class map `[B, h, w]` in logit units: `sum_c w_c * A_c / (h*w)` (a CAM, no ReLU).

        `target` None = the explained class; `contrast` `"explained"` = the explanation's contrast
        (so the map sums to the margin minus the bias difference), None = logit_k alone.
        Exact heads only (other heads: `LayerContributions.grad_cam`)."""
        target = self.target if target is None else target
        if isinstance(contrast, str):
            contrast = self.contrast
        w = self.channel_weights(target, contrast).to(self.maps.dtype)
        h, wd = self.maps.shape[-2:]
        return torch.einsum("bc,bchw->bhw", w, self.maps) / (h * wd)

    def concentration(self) -> torch.Tensor:
        """`[B, C]` in [0, 1]: the share of each channel's (positive) activation that lies in the
        3x3 cells around its strongest cell; 1 = one compact blob, 9/(h*w) = spread evenly."""
        maps = self.maps.float().clamp_min(0)
        # 3x3 sums at every cell (zero padding), read at each channel's strongest cell.
        window = F.avg_pool2d(maps, 3, stride=1, padding=1, count_include_pad=True).flatten(2) * 9
        peak = maps.flatten(2).argmax(dim=2, keepdim=True)
        window = window.gather(2, peak)[:, :, 0]
        total = maps.sum(dim=(2, 3))
        return torch.where(total > 0, window / total.clamp_min(1e-12), torch.zeros_like(total))

    def argument_scores(self) -> torch.Tensor:
        """`[B, C]`: how arguments are ranked. `"localised"`: contrast contribution x
        concentration^3 (strong *and* compact evidence: one place a person can check);
        `"contribution"`: the contrast contribution alone. The contributions themselves are not
        changed by the ranking (they still sum to the margin)."""
        if self.ranking == "contribution":
            return self.contrast_contributions
        return self.contrast_contributions * self.concentration().to(self.contrast_contributions.dtype) ** 3

    def argument_order(self) -> torch.Tensor:
        """All channels `[B, C]`, best argument first."""
        return torch.argsort(self.argument_scores(), dim=1, descending=True)

    def top_channels(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `m` best arguments: (contrast contributions [B,m], channels [B,m])."""
        m = min(m, self.contrast_contributions.shape[1])
        chans = torch.topk(self.argument_scores(), m, dim=1).indices
        return self.contrast_contributions.gather(1, chans), chans

    def class_evidence(self, target=None) -> torch.Tensor:
        """Where the evidence for class k lies, `[B, h, w]` in [0, 1]: the class map of logit_k
        (each channel's contribution spread over its positive activation), ReLU, over its
        maximum. On GAP-linear heads with non-negative maps this is Grad-CAM, normalised."""
        k = self.target if target is None else target
        maps = self.maps.float().clamp_min(0)
        total = maps.sum(dim=(2, 3), keepdim=True)
        share = torch.where(total > 0, maps / total.clamp_min(1e-12), torch.zeros_like(maps))
        cam = torch.einsum("bc,bchw->bhw", self.class_contributions(k).float(), share).clamp_min(0)
        return cam / cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]

    def peak_support(self) -> torch.Tensor:
        """`[B, h, w]` weights for placing an argument: a channel's peak is read from its map times
        this, so a channel active in several places is placed where the predicted class's evidence
        is (`class_evidence()` squared)."""
        return self.class_evidence() ** 2


class LayerContributions:
    """Explain a classifier through the channels of one layer (Captum-style: model + layer).

    Parameters
    ----------
    model: a classifier returning logits `[B, K]` for images `[B, 3, H, W]`.
    layer: dotted module name (e.g. `"features"` or `"backbone.layer4"`). `None` uses the
        model's `explained_layer` attribute if present, else auto-detects the last spatial
        layer feeding global pooling on the first call.
    multilabel: the head is read through a sigmoid per class (multi-label) instead of softmax.
    ranking: how arguments are ordered: `"localised"` (contribution x concentration^3, the
        default) or `"contribution"` (contribution alone); see `Explanation.argument_scores`.

    Example
    -------
    >>> explainer = LayerContributions(model)               # doctest: +SKIP
    >>> e = explainer.explain(images)                       # one forward pass, all classes
    >>> e.contributions.shape                               # [B, C, K]
    """

    def __init__(self, model: nn.Module, layer: str | None = None, multilabel: bool = False,
                 ranking: str = "localised"):
        if ranking not in ("localised", "contribution"):
            raise ValueError(f"ranking must be 'localised' or 'contribution'; got {ranking!r}")
        self.model = model
        self.multilabel = multilabel
        self.ranking = ranking
        if layer is None:
            layer = getattr(model, "explained_layer", None)
        self.layer_name: str | None = layer
        self.layer: nn.Module | None = resolve_module(model, layer) if layer else None
        self.head: nn.Linear | None = None
        self.decomposition: str | None = None  # set on the first call
        self._warned = False

    # -- hooks ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def hooks(self, capture_head: bool = True, requires_grad: bool = False, stop_after_layer: bool = False):
        """Attach the capture hooks for the duration of the block; they are always released.

        Yields a dict that receives `"maps"` (the layer output) and, when the head is known,
        `"head_in"`/`"head_out"`.
        """
        store: dict = {}
        handles = []

        def layer_hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                raise ValueError(
                    f"layer {self.layer_name!r} must output a [B, C, h, w] tensor, got "
                    f"{type(output).__name__} {tuple(getattr(output, 'shape', ()))}"
                )
            if requires_grad:
                output = output.detach().requires_grad_(True)
            store["maps"] = output
            if stop_after_layer:
                raise _StopForward
            return output if requires_grad else None

        def head_hook(_module, inputs, output):
            store["head_in"] = inputs[0]
            store["head_out"] = output

        try:
            handles.append(self.layer.register_forward_hook(layer_hook))
            if capture_head and self.head is not None:
                handles.append(self.head.register_forward_hook(head_hook))
            yield store
        finally:
            for handle in handles:
                handle.remove()

    def active_hooks(self) -> int:
        """Number of hooks currently attached to the explained layer and head (0 outside `explain`)."""
        n = len(self.layer._forward_hooks) if self.layer is not None else 0
        if self.head is not None:
            n += len(self.head._forward_hooks)
        return n

    # -- structure detection -------------------------------------------------------------------

    def _detect(self, images: torch.Tensor) -> None:
        """Find the layer (if not given) and check whether the head is GAP-linear, on one batch."""
        records: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
        handles = []

        def make_hook(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor):
                    inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
                    records.append((name, module, inp, output))

            return hook

        for name, module in self.model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        try:
            with torch.no_grad():
                logits = self.model(images[:2])
        finally:
            for h in handles:
                h.remove()
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError(f"model must return logits [B, K]; got {tuple(getattr(logits, 'shape', ()))}")

        linears = [(n, m, i, o) for n, m, i, o in records if isinstance(m, nn.Linear) and i is not None]
        if self.layer is None:
            # The last 4-D output whose spatial mean feeds a Linear; of the modules returning that
            # same tensor (e.g. layer4, layer4.2, layer4.2.relu) take the outermost.
            chosen = None
            spatial = [(n, o) for n, m, i, o in records if o.dim() == 4 and o.shape[-1] * o.shape[-2] > 1]
            for n, o in reversed(spatial):
                pooled = o.float().mean(dim=(2, 3))
                if any(i.shape == pooled.shape and torch.allclose(i.float(), pooled, rtol=1e-4, atol=1e-5)
                       for _, _, i, _ in linears):
                    chosen = o
                    break
            if chosen is None:
                if not spatial:
                    raise ValueError("no layer with a spatial [B, C, h, w] output found; pass layer=")
                chosen = spatial[-1][1]
            same = [n for n, o in spatial if o.data_ptr() == chosen.data_ptr() and o.shape == chosen.shape]
            self.layer_name = min(same, key=lambda n: (n.count("."), len(n)))
            self.layer = resolve_module(self.model, self.layer_name)

        maps = next((o for n, m, i, o in records if m is self.layer), None)
        if maps is None:
            raise ValueError(f"layer {self.layer_name!r} did not run in the forward pass")
        pooled = maps.float().mean(dim=(2, 3))
        self.head = None
        for _n, m, i, o in linears:
            if (i.shape == pooled.shape and torch.allclose(i.float(), pooled, rtol=1e-4, atol=1e-5)
                    and o.shape == logits.shape and torch.allclose(o.float(), logits.float(), rtol=1e-4, atol=1e-5)):
                self.head = m
                break
        self.decomposition = "exact" if self.head is not None else "gradient_x_activation"
        if self.head is None and not self._warned:
            warnings.warn(
                f"the head after layer {self.layer_name!r} is not global-average-pooling + linear; "
                "using gradient x activation (an approximation) for channel contributions",
                stacklevel=3,
            )
            self._warned = True

    # -- the verb ------------------------------------------------------------------------------

    def explain(self, images: torch.Tensor, target=None, contrast="runner_up") -> Explanation:
        """Explain a batch in one forward pass (plus one batched backward for non-linear heads).

        images: `[B, 3, H, W]` on the model's device (already normalised).
        target: `None` (the predicted class), an int, or a sequence/tensor of `B` ints.
        contrast: `"runner_up"` (highest other logit), an int or `B` ints, or `None`
            (explain logit_k itself; the default for multi-label heads, whose decision
            threshold is logit 0).
        """
        if images.dim() != 4:
            raise ValueError(f"images must be [B, C, H, W]; got shape {tuple(images.shape)}")
        if self.decomposition is None:
            self._detect(images)
        if self.decomposition == "exact":
            with torch.no_grad(), self.hooks() as store:
                logits = self.model(images)
            maps = store["maps"]
            pooled = store["head_in"]  # == GAP(maps), as checked on the first call
            weight = self.head.weight  # [K, C]; the [B, C, K] decomposition stays factored
            bias = self.head.bias if self.head.bias is not None else torch.zeros_like(weight[:, 0])
            rest = bias.unsqueeze(0).expand(logits.shape[0], -1).to(pooled.dtype)
            return self._assemble(logits, maps, None, rest, target, contrast, pooled=pooled, weight=weight)
        logits, maps, contributions, rest = self._gradient_x_activation(images)
        return self._assemble(logits, maps, contributions, rest, target, contrast)

    __call__ = explain

    def _gradient_x_activation(self, images):
        with torch.enable_grad(), self.hooks(capture_head=False, requires_grad=True) as store:
            logits = self.model(images)
            maps = store["maps"]
            k = logits.shape[1]
            eye = torch.eye(k, device=logits.device, dtype=logits.dtype)
            grad_outputs = eye.unsqueeze(1).expand(k, logits.shape[0], k)  # [K, B, K]
            try:
                (grads,) = torch.autograd.grad(logits, maps, grad_outputs, is_grads_batched=True)
            except RuntimeError:  # some ops have no batching rule: one backward per class
                grads = torch.stack([
                    torch.autograd.grad(logits, maps, grad_outputs[i], retain_graph=True)[0] for i in range(k)
                ])
        maps = maps.detach()
        contributions = (grads * maps.unsqueeze(0)).sum(dim=(3, 4)).permute(1, 2, 0)  # [B, C, K]
        logits = logits.detach()
        rest = logits - contributions.sum(dim=1)
        return logits, maps, contributions, rest

    def _assemble(self, logits, maps, contributions, rest, target, contrast, pooled=None, weight=None) -> Explanation:
        b, k = logits.shape
        device = logits.device
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits.float(), dim=1)
        if isinstance(contrast, str) and contrast != "runner_up":
            raise ValueError(f"contrast must be 'runner_up', a class index or None; got {contrast!r}")
        target_t = _as_index(target, b, k, device, "target")
        runner_up = isinstance(contrast, str) and not self.multilabel and k >= 2
        if target_t is None and runner_up:
            top2 = torch.topk(logits, 2, dim=1).indices  # predicted class and runner-up in one op
            target_t, contrast_t = top2[:, 0], top2[:, 1]
        elif target_t is None:
            target_t = logits.argmax(dim=1)
        if isinstance(contrast, str):
            if not runner_up:
                contrast_t = None
            elif target is not None:
                masked = logits.detach().clone().float()
                masked[torch.arange(b, device=device), target_t] = float("-inf")
                contrast_t = masked.argmax(dim=1)
        else:
            contrast_t = _as_index(contrast, b, k, device, "contrast")
        rows = torch.arange(b, device=device)
        if contrast_t is None:
            margin = logits[rows, target_t]
        else:
            margin = logits[rows, target_t] - logits[rows, contrast_t]
        if pooled is not None:  # exact: f * (W[k] - W[j]) without touching the [B, C, K] tensor
            w_diff = weight[target_t] if contrast_t is None else weight[target_t] - weight[contrast_t]
            contrast_contributions = pooled * w_diff.to(pooled.dtype)
        else:
            contrib_k = contributions[rows, :, target_t]  # [B, C]
            contrast_contributions = contrib_k if contrast_t is None else contrib_k - contributions[rows, :, contrast_t]
        return Explanation(
            logits=logits, probabilities=probs, rest=rest, maps=maps,
            target=target_t, contrast=contrast_t, contrast_contributions=contrast_contributions,
            margin=margin, layer=self.layer_name, decomposition=self.decomposition, multilabel=self.multilabel,
            pooled=pooled, weight=None if weight is None else weight.detach(), dense=contributions,
            ranking=self.ranking,
        )

    def grad_cam(self, images: torch.Tensor, target=None, e: Explanation | None = None) -> torch.Tensor:
        """Grad-CAM (Selvaraju et al. 2017) at the explained layer: `ReLU(sum_c a_c A_c)` `[B, h, w]`,
        `a_c` the spatial mean of `dlogit_k/dA_c`; `target` None = the predicted class.

        On GAP-linear heads `a_c = W[k, c] / (h*w)`, so it is the ReLU of the class map, computed
        from an explanation's maps (pass `e` to reuse one) with no backward pass; other heads take
        one backward pass."""
        if self.decomposition is None:
            self._detect(images)
        if self.decomposition == "exact":
            e = e if e is not None else self.explain(images, target=target, contrast=None)
            k = e.logits.argmax(dim=1) if target is None else _as_index(target, *e.logits.shape, e.logits.device, "target")
            return e.class_map(k, contrast=None).clamp_min(0)
        with torch.enable_grad(), self.hooks(capture_head=False, requires_grad=True) as store:
            logits = self.model(images)
            maps = store["maps"]
            b, k = logits.shape
            t = logits.argmax(dim=1) if target is None else _as_index(target, b, k, logits.device, "target")
            (grads,) = torch.autograd.grad(logits[torch.arange(b, device=logits.device), t].sum(), maps)
        alpha = grads.mean(dim=(2, 3), keepdim=True)
        return (alpha * maps.detach()).sum(dim=1).clamp_min(0)

    # -- interventions -------------------------------------------------------------------------

    def logits_with_channels_removed(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits `[B, K]` after multiplying the layer's channels by `keep` `[B, C]` (0 = removed).

        A real intervention forward pass; used for heads where the decomposition is approximate.
        """
        if self.layer is None:
            self._detect(images)

        def hook(_m, _i, output):
            return output * keep.to(output.dtype)[:, :, None, None]

        handle = self.layer.register_forward_hook(hook)
        try:
            with torch.no_grad():
                return self.model(images)
        finally:
            handle.remove()

    def layer_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Only the explained layer's activations `[B, C, h, w]`; the forward stops there."""
        if self.layer is None:
            self._detect(images)
        with torch.no_grad(), self.hooks(capture_head=False, stop_after_layer=True) as store:
            try:
                self.model(images)
            except _StopForward:
                pass
        return store["maps"]


def _as_index(value, b: int, k: int, device, what: str) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, int):
        t = torch.full((b,), value, dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(value, dtype=torch.long, device=device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(b).clone()
        elif t.numel() != b:
            raise ValueError(f"{what} must be one class index or {b} of them; got {t.numel()}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
        raise ValueError(f"{what} class index out of range [0, {k}): {t.tolist()[:10]}")
    return t

"""Receptive field of a layer's units, computed from the architecture.

Walks the modules that run before (and inside) the explained layer in registration order and
composes kernel size, stride, padding and dilation of every convolution and pooling layer
(Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019):

    r_out = r_in + (k - 1) * d * j_in      j_out = j_in * s      start_out = start_in + ((k-1)/2*d - p) * j_in

Residual shortcuts (`downsample` branches of ResNet blocks) are skipped: the main path has the
larger field and contains the shortcut's. Modules that keep the geometry (BatchNorm, ReLU,
Dropout, ...) are ignored; anything else with unknown geometry raises a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

_NEUTRAL = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Hardswish, nn.Dropout, nn.Dropout2d,
    nn.Identity, nn.Softmax,
)
_STOP = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of one layer's grid in input pixels.

    size: side of the receptive field (px); jump: distance between neighbouring units (px);
    start: centre of unit (0, 0) in input coordinates (px, may be negative with padding).
    """

    size: float
    jump: float
    start: float

    def center(self, row: int, col: int) -> tuple[float, float]:
        """Centre (x, y) in input pixels of unit (row, col)."""
        return self.start + col * self.jump, self.start + row * self.jump

    def box(self, row: int, col: int, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Crop box `(x0, y0, x1, y1)` (pixels, end-exclusive) of unit (row, col), clipped to the image.

        image_size: `(height, width)`.
        """
        cx, cy = self.center(row, col)
        half = self.size / 2.0
        h, w = image_size
        x0 = int(max(0, round(cx - half + 0.5)))
        y0 = int(max(0, round(cy - half + 0.5)))
        x1 = int(min(w, round(cx + half + 0.5)))
        y1 = int(min(h, round(cy + half + 0.5)))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _pair(v):
    return v if isinstance(v, (tuple, list)) else (v, v)


def receptive_field(model: nn.Module, layer: str) -> ReceptiveField:
    """Receptive field of the units of `layer` (dotted module name) in `model`'s input pixels.

    Square kernels are assumed for the reported size (the first spatial axis is used).
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        from explain.contributions import resolve_module

        resolve_module(model, layer)  # raises with the candidate list
    r, j, start = 1.0, 1.0, 0.0  # input pixel i is centred at coordinate i
    reached = False
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # only leaves do work
        inside = name == layer or name.startswith(layer + ".")
        if reached and not inside:
            break
        if "downsample" in name.split("."):
            continue
        if isinstance(module, _STOP):
            if inside:
                continue
            break
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(module.kernel_size)[0]
            s = _pair(module.stride if module.stride is not None else k)[0]
            p = _pair(module.padding)[0]
            d = _pair(getattr(module, "dilation", 1))[0]
            if isinstance(p, str):  # padding="same"/"valid" on Conv2d
                p = (k - 1) * d // 2 if p == "same" else 0
            start = start + ((k - 1) / 2.0 * d - p) * j
            r = r + (k - 1) * d * j
            j = j * s
        elif not isinstance(module, _NEUTRAL):
            raise ValueError(
                f"cannot compute the receptive field through module {name!r} ({type(module).__name__}); "
                "pass receptive_field=ReceptiveField(size, jump, start) explicitly"
            )
        if inside:
            reached = True
    if not reached:
        raise ValueError(f"layer {layer!r} has no leaf modules to walk")
    return ReceptiveField(size=r, jump=j, start=start)

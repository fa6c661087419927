"""Model architectures and the name of the layer each one explains.

Every model built here ends in global average pooling followed by one linear layer, so the
explanation engine can decompose its logits exactly over the channels of `explained_layer`.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("small-cnn", "resnet18", "resnet50")


class SmallCNN(nn.Module):
    """Conv blocks -> global average pooling -> linear. Fast on CPU.

    Input `[B, 3, H, W]`; the explained layer is `features` (its output `[B, C, H/8, W/8]`
    after the last ReLU); `forward_features` returns the pooled vector `[B, C]`.
    Default widths (32, 64, 128, 128): the lighter (16, 32, 64, 128) trains the toy world to
    the same accuracy at a third of the cost, but its channels localise parts less sharply
    (pointing game 0.79 vs 0.88 on day images, docs/explain.md), and explanations are the point.
    """

    explained_layer = "features"

    def __init__(self, num_classes: int, in_channels: int = 3, widths=(32, 64, 128, 128), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(c_in, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled deep features `[B, C]` (the input of the linear head)."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet with its head sized to `num_classes`; explained layer `layer4`."""

    explained_layer = "backbone.layer4"

    def __init__(self, arch: str, num_classes: int, weights: str | None = None):
        super().__init__()
        import torchvision

        backbone = getattr(torchvision.models, arch)(weights=None)
        if weights:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, _ = backbone.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise ValueError(f"--weights {weights}: missing keys for {arch}: {missing[:5]}...")
        self.feature_dim = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def build_model(arch: str, num_classes: int, weights: str | None = None, **kwargs) -> nn.Module:
    """Build an architecture by name (see `ARCHITECTURES`)."""
    if arch == "small-cnn":
        if weights:
            raise ValueError("--weights is only supported for torchvision architectures")
        return SmallCNN(num_classes, **kwargs)
    if arch in ("resnet18", "resnet34", "resnet50"):
        return TorchvisionResNet(arch, num_classes, weights=weights)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")

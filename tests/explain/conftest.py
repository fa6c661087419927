"""Tiny hand-set CNNs and a toy image folder for the explanation-engine tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyGapNet(nn.Module):
    """conv(3->C, 3x3, pad 1) -> ReLU -> GAP -> Linear(C->K); weights set by hand."""

    explained_layer = "features"

    def __init__(self, channels: int = 4, classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class MaxHeadNet(TinyGapNet):
    """Same body, but global *max* pooling: not GAP-linear, so gradient x activation applies."""

    def forward(self, x):
        return self.fc(torch.amax(self.features(x), dim=(2, 3)))


def hand_set(net: nn.Module) -> nn.Module:
    """Deterministic, readable weights: conv channel c sums input channel c % 3 times (c+1)."""
    with torch.no_grad():
        conv = net.features[0]
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c % 3, 1, 1] = float(c + 1)
        k, c = net.fc.weight.shape
        net.fc.weight.copy_(torch.arange(k * c, dtype=torch.float32).reshape(k, c) / 10.0 - 0.5)
        net.fc.bias.copy_(torch.tensor([0.1 * (i + 1) for i in range(k)]))
    return net.eval()


@pytest.fixture
def tiny_net():
    return hand_set(TinyGapNet())


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(5, 3, 8, 8, generator=g)


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """A tiny toy world (32 px) and an untrained small-cnn checkpoint saved the foundation's way."""
    from training.checkpoint import save_checkpoint
    from training.datasets import load_dataset
    from training.models import SmallCNN
    from training.toyworld import generate_toyworld

    base = tmp_path_factory.mktemp("toy")
    data = generate_toyworld(base / "data", n_train=48, n_val=0, n_test=24, image_size=32, workers=1, progress=False)
    info = load_dataset(data)
    torch.manual_seed(0)
    kwargs = {"widths": [8, 8, 16, 16]}
    model = SmallCNN(len(info.classes), **kwargs).eval()
    save_checkpoint(base / "run", model, {
        "arch": "small-cnn", "classes": info.classes, "num_classes": len(info.classes), "input_size": 32,
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "model_kwargs": kwargs,
        "method": "erm", "config": {}, "metrics": {}, "dataset": str(data)})
    return {"data": data, "run": base / "run", "info": info, "base": base}


@pytest.fixture(scope="session")
def sheets(toy_run, tmp_path_factory):
    """`argus explain` run once on the tiny toy world: (sheets folder, printed output)."""
    from click.testing import CliRunner

    from argus.cli import cli

    out = tmp_path_factory.mktemp("sheets")
    result = CliRunner().invoke(cli, ["explain", "--model", str(toy_run["run"]), "--data", str(toy_run["data"]), "--out", str(out),
                                      "--limit", "12", "--top", "2", "--device", "cpu", "--workers", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output

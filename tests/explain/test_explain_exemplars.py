"""Receptive fields from the architecture and the streaming exemplar index."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from explain.exemplars import mine_exemplars, stream_top_activations
from explain.receptive_fields import ReceptiveField, receptive_field

from .conftest import TinyGapNet, hand_set


def gradient_support(net: nn.Module, size: int, row: int, col: int) -> tuple[int, int, int, int]:
    """Box of input pixels that reach unit (row, col) of net's output (positive weights, linear)."""
    x = torch.ones(1, 1, size, size, requires_grad=True)
    net(x)[0, 0, row, col].backward()
    ys, xs = torch.nonzero(x.grad[0, 0] != 0, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("layers", [
    [nn.Conv2d(1, 1, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, padding=1)],
    [nn.Conv2d(1, 1, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(1, 1, 3, dilation=2, padding=2), nn.AvgPool2d(3, stride=2, padding=1)],
    [nn.Conv2d(1, 1, 7, stride=2, padding=3), nn.BatchNorm2d(1), nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Conv2d(1, 1, 1)],
], ids=["smallcnn-like", "dilated-strided", "stem-like"])
def test_receptive_field_matches_gradient_support(layers):
    net = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
    rf = receptive_field(net, str(len(layers) - 1))
    size = 96
    out_h = net(torch.zeros(1, 1, size, size)).shape[-1]
    for row, col in [(out_h // 2, out_h // 2), (out_h // 2 + 1, out_h // 2 - 1)]:
        assert rf.box(row, col, (size, size)) == gradient_support(net, size, row, col)


def test_receptive_field_of_known_architectures():
    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    from training.models import SmallCNN, TorchvisionResNet

    assert receptive_field(SmallCNN(3), "features") == ReceptiveField(38, 8, 3.5)
    vgg16 = make_layers(cfgs["D"])
    assert receptive_field(vgg16, "29").size == 196 and receptive_field(vgg16, "30").size == 212  # conv5_3, pool5
    assert receptive_field(torchvision.models.alexnet().features, "11") == ReceptiveField(163, 16, 15)
    assert receptive_field(TorchvisionResNet("resnet18", 2), "backbone.layer4") == ReceptiveField(435, 32, 0)
    with pytest.raises(ValueError, match="candidate layers"):
        receptive_field(SmallCNN(3), "layer9")
    with pytest.raises(ValueError, match="Upsample"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3)), "2")


class Dots(torch.utils.data.Dataset):
    """12 images 8x8: image i has one dot (value (i+1)/12) in input channel i % 3 at (i % 8, 2i % 8)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        x = torch.zeros(3, 8, 8)
        x[i % 3, i % 8, (2 * i) % 8] = (i + 1) / 12
        return x, i % 3, i


def test_mining_hand_checked(tmp_path):
    net = hand_set(TinyGapNet())
    index = mine_exemplars(net, "features", Dots(), top_n=2, out_dir=tmp_path / "exemplars", checkpoint_hash="abc",
                           batch_size=5, device="cpu", sample_ids=[f"s{i}" for i in range(12)], progress=False)
    ch0 = index.channels["0"]["exemplars"]
    assert [e["sample_index"] for e in ch0] == [9, 6]
    assert [(e["row"], e["col"]) for e in ch0] == [(1, 2), (6, 4)]
    assert ch0[0]["value"] == pytest.approx(10 / 12) and index.channels["3"]["exemplars"][0]["value"] == pytest.approx(40 / 12)
    assert ch0[0]["box"] == [1, 0, 4, 3]  # 3x3 receptive field around (row 1, col 2)
    assert [e["sample_index"] for e in index.channels["1"]["exemplars"]] == [10, 7]
    assert ch0[0]["sample_id"] == "s9"
    strip = Image.open(tmp_path / index.strip(0))
    assert strip.size == (2 * 64 + 2, 64)
    assert (tmp_path / index.crops(0)[1]).exists()
    saved = json.loads((tmp_path / "exemplars" / "index.json").read_text())
    assert saved["checkpoint_hash"] == "abc" and saved["receptive_field"] == {"size": 3.0, "jump": 1.0, "start": 0.0}
    assert index.reused is False
    again = mine_exemplars(net, "features", Dots(), top_n=2, out_dir=tmp_path / "exemplars", checkpoint_hash="abc",
                           device="cpu", progress=False)
    assert again.reused is True and again.data == saved
    other = mine_exemplars(net, "features", Dots(), top_n=2, out_dir=tmp_path / "exemplars", checkpoint_hash="xyz",
                           device="cpu", progress=False)
    assert other.reused is False


def test_streaming_topk_equals_brute_force():
    torch.manual_seed(0)
    net = TinyGapNet(channels=6).eval()
    data = torch.utils.data.TensorDataset(torch.rand(37, 3, 8, 8))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    stats = stream_top_activations(net, "features", loader, top_n=5, device=torch.device("cpu"), progress=False)
    with torch.no_grad():
        peaks = net.features(data.tensors[0]).flatten(2).amax(2)  # [N, C]
    vals, idx = torch.topk(peaks.t(), 5, dim=1)
    torch.testing.assert_close(stats["values"], vals)
    assert torch.equal(stats["indices"], idx)
    assert stats["values"].shape == (6, 5) and stats["n_images"] == 37  # O(C*N) state
    # Fewer images than top_n: padded with -1.
    few = stream_top_activations(net, "features", [data.tensors[0][:3]], top_n=5, device=torch.device("cpu"), progress=False)
    assert few["indices"][0, 3:].tolist() == [-1, -1]

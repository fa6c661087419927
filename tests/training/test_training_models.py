"""Model shapes, explained layers, torchvision weights."""

from __future__ import annotations

import pytest
import torch

from training.models import SmallCNN, TorchvisionResNet, build_model


@pytest.mark.parametrize("size", [32, 64], ids=["32px", "64px"])
def test_small_cnn_shapes(size):
    model = build_model("small-cnn", 6).eval()
    x = torch.randn(3, 3, size, size)
    layer = dict(model.named_modules())[model.explained_layer]
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
    handle.remove()
    assert logits.shape == (3, 6) and feats.shape == (3, model.feature_dim) == (3, 128)
    assert seen["a"].shape == (3, 128, size // 8, size // 8)
    # GAP-linear head: logits = fc(mean over the explained map)
    assert torch.allclose(logits, model.fc(seen["a"].mean((2, 3))), atol=1e-5)
    assert (seen["a"] >= 0).all()  # after the last ReLU


def test_small_cnn_custom_widths_and_channels_last():
    model = SmallCNN(4, widths=(8, 16)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == (2, 4) and model.feature_dim == 16
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_head_fits_class_count(arch, dim):
    model = build_model(arch, 5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5) and model.feature_dim == dim and model.fc.in_features == dim
    assert model.explained_layer in dict(model.named_modules())


def test_resnet_weights_file_loads_backbone_and_replaces_head(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # a 1000-class "pretrained" net
    path = tmp_path / "r18.pt"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 3, weights=str(path))
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 3
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": reference.conv1.weight}, bad)
    with pytest.raises(ValueError, match="missing keys for resnet18"):
        TorchvisionResNet("resnet18", 3, weights=str(bad))


def test_unknown_arch_and_weights_on_small_cnn_are_errors():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", 3)
    with pytest.raises(ValueError, match="only supported for torchvision"):
        build_model("small-cnn", 3, weights="x.pt")

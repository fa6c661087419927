"""Cross-check against Captum's LayerGradCam and pytorch-grad-cam on GAP-linear models."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam

from explain.contributions import LayerContributions
from training.models import SmallCNN

pytestmark = pytest.mark.slow  # Captum and grad-cam imports take seconds


def small_cnn():
    torch.manual_seed(1)
    net = SmallCNN(num_classes=6, widths=(8, 8, 16, 16)).eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


def test_captum_layer_gradcam_per_channel_sums_equal_contributions():
    net = small_cnn()
    x = torch.randn(4, 3, 32, 32)
    e = LayerContributions(net).explain(x)
    gradcam = LayerGradCam(net, net.features)
    for k in range(6):
        attr = gradcam.attribute(x, target=k, attr_dim_summation=False, relu_attributions=False)  # [B, C, h, w]
        torch.testing.assert_close(attr.sum(dim=(2, 3)), e.contributions[:, :, k], rtol=1e-4, atol=1e-5)
    # Per-sample targets in one Captum call agree with Argus's per-sample contrast pieces.
    targets = [0, 3, 5, 1]
    attr = gradcam.attribute(x, target=targets, attr_dim_summation=False).sum(dim=(2, 3))
    torch.testing.assert_close(attr, e.contributions[torch.arange(4), :, torch.tensor(targets)], rtol=1e-4, atol=1e-5)


def test_pytorch_grad_cam_weights_times_gap_equal_contributions():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = small_cnn()
    x = torch.randn(2, 3, 32, 32)
    e = LayerContributions(net).explain(x)
    cam = GradCAM(model=net, target_layers=[net.features])
    try:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(2), ClassifierOutputTarget(2)])
        acts = cam.activations_and_grads.activations[0].cpu().numpy()
        grads = cam.activations_and_grads.gradients[0].cpu().numpy()
        weights = cam.get_cam_weights(x, net.features, None, acts, grads)  # [B, C] (numpy)
        # grad-cam's weight is the mean gradient; times the spatial sum of A = the channel's share.
        per_channel = torch.as_tensor(weights * acts.sum(axis=(2, 3)))
    finally:
        cam.activations_and_grads.release()
    torch.testing.assert_close(per_channel.float(), e.contributions[:, :, 2], rtol=1e-4, atol=1e-5)


def _reference_grad_cam(net, layer, x, targets):
    """pytorch-grad-cam's GradCAM (upsampled to the input, min-max normalised per image)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=net, target_layers=[layer])
    try:
        return torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in targets]))
    finally:
        cam.activations_and_grads.release()


def _normalised_upsampled(maps, size):
    up = torch.nn.functional.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    up = up - up.flatten(1).min(dim=1).values[:, None, None]
    return up / up.flatten(1).max(dim=1).values.clamp_min(1e-7)[:, None, None]


def test_grad_cam_matches_pytorch_grad_cam_on_gap_linear_head():
    net = small_cnn()
    x = torch.randn(4, 3, 32, 32)
    explainer = LayerContributions(net)
    e = explainer.explain(x)
    ours = explainer.grad_cam(x, e=e)  # from the decomposition's maps, no backward pass
    assert ours.shape == (4, 4, 4) and (ours >= 0).all()
    # Grad-CAM on a GAP-linear head is the ReLU of the class map for logit_k alone.
    torch.testing.assert_close(ours, e.class_map(e.target, contrast=None).clamp_min(0))
    ref = _reference_grad_cam(net, net.features, x, e.target)
    torch.testing.assert_close(_normalised_upsampled(ours, (32, 32)), ref.float(), rtol=0, atol=1e-4)
    # Explicit targets and the backward-pass path (forced) give the same maps.
    targets = [0, 3, 5, 1]
    torch.testing.assert_close(explainer.grad_cam(x, target=targets),
                               _grad_cam_by_backward(net, x, targets), rtol=1e-4, atol=1e-6)


def _grad_cam_by_backward(net, x, targets):
    forced = LayerContributions(net)
    forced._detect(x)
    forced.decomposition = "gradient_x_activation"
    return forced.grad_cam(x, target=targets)


def test_grad_cam_matches_pytorch_grad_cam_on_max_pooled_head():
    import warnings

    from .conftest import MaxHeadNet, hand_set

    torch.manual_seed(2)
    net = hand_set(MaxHeadNet())
    x = torch.rand(3, 3, 8, 8)
    explainer = LayerContributions(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = explainer.grad_cam(x, target=[2, 0, 1])
    assert explainer.decomposition == "gradient_x_activation"
    ref = _reference_grad_cam(net, net.features, x, [2, 0, 1])
    torch.testing.assert_close(_normalised_upsampled(ours, (8, 8)), ref.float(), rtol=0, atol=1e-4)

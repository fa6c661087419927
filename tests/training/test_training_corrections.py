"""The corrections of `argus improve`: penalties, the counterfactual swap and channel suppression
on inputs small enough to check by hand, then each method training through the real trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint
from training.corrections import (allowed_masks, class_evidence_map, contribution_penalty, input_gradient_penalty,
                                  swap_backgrounds)
from training.methods import available_methods, build_method
from training.trainer import TrainConfig, Trainer

TINY = {"widths": (8, 8, 8, 8)}
pytestmark = pytest.mark.filterwarnings("ignore::training.trainer.UndertrainedWarning")


def _two_pixel_logits(x, w1):
    """logits = [x0 + w1 * x1, 0] for x of shape [1, 1, 1, 2]."""
    return torch.stack([x[:, 0, 0, 0] + w1 * x[:, 0, 0, 1], torch.zeros(1)], dim=1)


@pytest.mark.parametrize("w1, allowed, expected", [
    (0.0, [1, 0], 0.0),   # the logits read only pixel 0, which is allowed: no gradient outside
    (1.0, [1, 0], 0.5),   # both pixels read equally: half the energy outside
    (3.0, [1, 0], 0.9),   # gradient (1, 3) * c: energy 1 : 9, pixel 1 outside
    (3.0, [1, 1], 0.0),   # everything allowed
    (3.0, [0, 0], 1.0),   # nothing allowed
], ids=["inside-only", "equal", "one-to-three", "all-allowed", "none-allowed"])
def test_input_gradient_penalty_is_the_share_of_gradient_energy_outside(w1, allowed, expected):
    x = torch.ones(1, 1, 1, 2, requires_grad=True)
    logits = _two_pixel_logits(x, w1)
    mask = torch.tensor(allowed, dtype=torch.float32).view(1, 1, 1, 2)
    p = input_gradient_penalty(x, logits, mask)
    assert float(p) == pytest.approx(expected, abs=1e-6)


def test_input_gradient_penalty_is_differentiable_towards_the_allowed_pixel():
    w = torch.tensor(3.0, requires_grad=True)
    x = torch.ones(1, 1, 1, 2, requires_grad=True)
    p = input_gradient_penalty(x, _two_pixel_logits(x, w), torch.tensor([1.0, 0.0]).view(1, 1, 1, 2))
    p.backward()
    # share = w^2 / (1 + w^2): d/dw = 2w / (1 + w^2)^2 = 6 / 100
    assert float(w.grad) == pytest.approx(0.06, abs=1e-5)


def _fmap(values):
    """Channel 0 = `values` (2x2), channel 1 = ones: `[1, 2, 2, 2]`."""
    return torch.stack([torch.tensor(values, dtype=torch.float32), torch.ones(2, 2)])[None]


TOP_LEFT = torch.zeros(1, 1, 4, 4)
TOP_LEFT[..., :2, :2] = 1  # allows feature cell (0, 0) only
ONE_PIXEL = torch.zeros(1, 1, 4, 4)
ONE_PIXEL[..., 3, 3] = 1  # one pixel of cell (1, 1) allows the whole cell


@pytest.mark.parametrize("values, allowed, expected", [
    ([[4.0, 0.0], [0.0, 0.0]], TOP_LEFT, 0.0),    # all evidence in the allowed cell
    ([[4.0, 0.0], [0.0, 4.0]], TOP_LEFT, 0.5),
    ([[4.0, 0.0], [0.0, -4.0]], TOP_LEFT, 0.0),   # negative evidence is not evidence for the class
    ([[1.0, 0.0], [0.0, 3.0]], ONE_PIXEL, 0.25),
], ids=["inside", "half", "negative-ignored", "cell-allowed-by-one-pixel"])
def test_contribution_penalty_is_the_share_of_positive_class_evidence_outside(values, allowed, expected):
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # class 0 reads channel 0 only
    p = contribution_penalty(_fmap(values), weight, torch.tensor([0]), allowed)
    assert float(p) == pytest.approx(expected, abs=1e-6)


def test_class_evidence_map_sums_to_the_logit_without_bias():
    torch.manual_seed(0)
    fmap, weight = torch.rand(3, 5, 4, 4), torch.randn(4, 5)
    labels = torch.tensor([0, 3, 1])
    logits = fmap.mean(dim=(2, 3)) @ weight.T
    e = class_evidence_map(fmap, weight, labels)
    assert torch.allclose(e.sum(dim=(1, 2)), logits[torch.arange(3), labels], atol=1e-6)


def test_contribution_penalty_refuses_a_mask_that_does_not_tile_the_map():
    with pytest.raises(ValueError, match="5x5 px does not tile a 2x2"):
        contribution_penalty(_fmap([[1.0, 0.0], [0.0, 0.0]]), torch.eye(2), torch.tensor([0]), torch.ones(1, 1, 5, 5))


def test_swap_backgrounds_keeps_the_object_and_takes_the_donors_background():
    # image 0: object in the 2x2 centre (value 100 + position); image 1: background = position,
    # its own object on pixel (0, 0), which rolling by half the width uncovers from (0, 2)
    h = w = 4
    pos = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    img0 = torch.full((1, 1, h, w), -1.0)
    img0[..., 1:3, 1:3] = 100 + pos[..., 1:3, 1:3]
    img1 = pos.clone()
    img1[..., 0, 0] = 500.0  # the donor's own object
    fg = torch.zeros(2, 1, h, w)
    fg[0, :, 1:3, 1:3] = 1
    fg[1, :, 0, 0] = 1
    out = swap_backgrounds(torch.cat([img0, img1]), fg, torch.tensor([1, 1]))
    expected0 = pos.clone()[0, 0]
    expected0[1:3, 1:3] = 100 + pos[0, 0, 1:3, 1:3]
    expected0[0, 0] = pos[0, 0, 0, 2]  # hidden by the donor's object: from the donor rolled by w/2
    assert torch.equal(out[0, 0], expected0)
    assert torch.equal(out[1], img1[0])  # donor == itself: unchanged


def test_swap_backgrounds_fills_pixels_hidden_in_every_copy_with_the_visible_mean():
    img = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]], [[[9.0, 9.0], [9.0, 9.0]]]])
    fg = torch.zeros(2, 1, 2, 2)
    fg[0, 0, 1, 1] = 1  # donor 0: object at (1, 1), hidden in every roll of a 2x2 image? no: rolls uncover it
    fg[1, 0] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # image 1: object everywhere but (1, 1)
    out = swap_backgrounds(img, fg, torch.tensor([0, 0]))
    # image 1 keeps its object; (1, 1) comes from donor 0 where donor 0's object hides it: the
    # roll by (0, 1) uncovers donor pixel (1, 0) = 3
    assert torch.equal(out[1, 0], torch.tensor([[9.0, 9.0], [9.0, 3.0]]))
    all_fg = torch.ones(2, 1, 2, 2)
    all_fg[1] = 0
    out = swap_backgrounds(torch.tensor([[[[5.0, 5.0], [5.0, 5.0]]], [[[1.0, 2.0], [3.0, 6.0]]]]), all_fg,
                           torch.tensor([1, 0]))
    # image 1 gets donor 0's background, which is hidden everywhere: the mean of nothing visible is 0
    assert torch.equal(out[1, 0], torch.zeros(2, 2))


def test_allowed_masks_object_parts_and_dilation():
    maps = np.array([[[0, 1, 6], [0, 0, 0], [0, 7, 0]]], np.uint8)  # body, horn, wings
    assert allowed_masks(maps, np.array([0]), "object").tolist() == [[[0, 1, 1], [0, 0, 0], [0, 1, 0]]]
    parts = {0: [6], 1: [7]}
    assert allowed_masks(maps, np.array([0]), "parts", parts).tolist() == [[[0, 0, 1], [0, 0, 0], [0, 0, 0]]]
    assert allowed_masks(maps, np.array([1]), "parts", parts).tolist() == [[[0, 0, 0], [0, 0, 0], [0, 1, 0]]]
    assert allowed_masks(maps, np.array([0]), "parts", parts, dilate=1).tolist() == [[[0, 1, 1], [0, 1, 1], [0, 0, 0]]]
    with pytest.raises(ValueError, match="region='edges'"):
        allowed_masks(maps, np.array([0]), "edges")


def test_corrections_are_registered_training_methods_that_never_read_domains():
    names = set(available_methods())
    assert {"rrr-gradient", "rrr-contribution", "counterfactual-bg", "suppress-channels"} <= names
    for name in ("rrr-gradient", "rrr-contribution", "counterfactual-bg", "suppress-channels"):
        assert build_method(name).reads_domains is False
    with pytest.raises(ValueError, match="region='nowhere'"):
        build_method("rrr-gradient", region="nowhere")
    with pytest.raises(TypeError, match="unknown option"):
        build_method("counterfactual-bg", colour="red")


def _config(method, **options):
    return TrainConfig(method=method, method_options=options, epochs=1, batch_size=32, device="cpu", image_size=32,
                       model_kwargs=dict(TINY), lr=0.05)


@pytest.fixture(scope="module")
def base_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("corr") / "base"
    Trainer(tiny_world, out, _config("erm"), progress=False).fit()
    return out


def test_suppressed_channels_contribute_nothing_after_fine_tuning(tiny_world, base_run, tmp_path):
    before, _ = load_checkpoint(base_run)
    out = tmp_path / "suppressed"
    Trainer(tiny_world, out, _config("suppress-channels", init=str(base_run), channels=[1, 5]), progress=False).fit()
    after, meta = load_checkpoint(out)
    w = after.fc.weight.detach()
    assert torch.equal(w[:, [1, 5]], torch.zeros(6, 2))
    assert bool((w[:, [0, 2, 3, 4, 6, 7]] != 0).all())
    assert meta["method_config"] == {"init": str(base_run), "channels": [1, 5]}
    # the fine-tune started from the judged model: its normalisation is kept
    assert meta["normalization"] == load_checkpoint(base_run)[1]["normalization"]
    assert not torch.equal(before.fc.weight, after.fc.weight)


def test_suppress_channels_names_a_channel_the_head_does_not_have(tiny_world, base_run, tmp_path):
    with pytest.raises(ValueError, match="channel 8 is not one of the head's 8 channels"):
        Trainer(tiny_world, tmp_path / "x", _config("suppress-channels", init=str(base_run), channels=[8]),
                progress=False).fit()


@pytest.mark.parametrize("method, key", [("rrr-gradient", "outside_gradient_share"),
                                         ("rrr-contribution", "outside_evidence_share"),
                                         ("counterfactual-bg", None)])
def test_each_correction_trains_through_the_trainer(method, key, tiny_world, tmp_path):
    metrics = Trainer(tiny_world, tmp_path / method, _config(method), progress=False).fit()
    record = metrics["epochs"][0]
    assert math.isfinite(record["train_loss"])
    if key:
        assert 0.0 <= record[key] <= 1.0


def test_counterfactual_runs_repeat_exactly(tiny_world, tmp_path):
    a = Trainer(tiny_world, tmp_path / "a", _config("counterfactual-bg", p=1.0), progress=False)
    a.fit()
    b = Trainer(tiny_world, tmp_path / "b", _config("counterfactual-bg", p=1.0), progress=False)
    b.fit()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_masks_follow_the_batch_augmentation(tiny_world):
    trainer = Trainer(tiny_world, "/nonexistent-not-written", _config("rrr-contribution", region="object"),
                      progress=False)
    trainer.model = trainer.new_model()
    method = trainer.method
    method.prepare(trainer)
    idx = torch.tensor([0, 1])
    draws = torch.tensor([[2, -1], [-3, 0], [1, 0]])  # dy, dx, flip per image
    method.batch_inputs(torch.zeros(2, 3, 32, 32), idx, draws)
    from training.batches import Augment
    raw = method._part_maps[idx].float()
    assert torch.equal(method.batch_foreground, Augment.apply(raw, draws))
    assert not torch.equal(method.batch_foreground, raw)

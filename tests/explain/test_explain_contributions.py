"""LayerContributions: exact decomposition, contrast, targets, hooks, errors, approximations."""

from __future__ import annotations

import warnings

import pytest
import torch

from explain.contributions import LayerContributions, LayerNotFoundError

from .conftest import MaxHeadNet, hand_set


def one_hot_image(channel: int = 0, size: int = 6) -> torch.Tensor:
    x = torch.zeros(1, 3, size, size)
    x[0, channel] = 1.0
    return x


def test_hand_checked_numbers(tiny_net):
    # Input channel 0 == 1 everywhere -> conv channels 0 and 3 fire 1 and 4; GAP f = [1, 0, 0, 4].
    e = LayerContributions(tiny_net).explain(one_hot_image(0))
    assert e.decomposition == "exact"
    torch.testing.assert_close(e.logits[0], torch.tensor([-1.2, 0.9, 3.0]))
    torch.testing.assert_close(e.contributions[0, :, 2], torch.tensor([0.3, 0.0, 0.0, 2.4]))
    assert e.target.tolist() == [2] and e.contrast.tolist() == [1]
    torch.testing.assert_close(e.contrast_contributions[0], torch.tensor([0.4, 0.0, 0.0, 1.6]))
    torch.testing.assert_close(e.margin, torch.tensor([2.1]))
    vals, chans = e.top_channels(2)
    assert chans[0].tolist() == [3, 0]
    assert e.maps.shape == (1, 4, 6, 6)


def test_sum_over_channels_plus_bias_is_logit(tiny_net, images):
    e = LayerContributions(tiny_net).explain(images)
    recon = e.contributions.sum(dim=1) + e.rest
    assert (recon - e.logits).abs().max().item() <= 1e-5
    torch.testing.assert_close(e.logits, tiny_net(images))
    # The contrast decomposition sums to the margin.
    assert (e.contrast_contributions.sum(1) + (e.rest.gather(1, e.target[:, None]) - e.rest.gather(1, e.contrast[:, None]))[:, 0] - e.margin).abs().max() <= 1e-5


def test_small_cnn_exact_and_autodetect():
    from training.models import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(num_classes=5, widths=(8, 8, 16, 16)).eval()
    x = torch.randn(3, 3, 32, 32)
    e = LayerContributions(net).explain(x)
    assert e.layer == "features" and e.exact
    assert e.maps.shape == (3, 16, 4, 4)
    assert (e.contributions.sum(1) + e.rest - e.logits).abs().max() <= 1e-5
    # Without the explained_layer attribute the layer is found by tracing (outermost name wins).
    plain = LayerContributions(net, layer=None)
    plain.layer_name = plain.layer = None
    e2 = plain.explain(x)
    assert e2.layer == "features"
    torch.testing.assert_close(e2.contributions, e.contributions)


@pytest.mark.parametrize("target,expected", [(None, [2, 2]), (0, [0, 0]), ([1, 0], [1, 0]), (torch.tensor([2, 1]), [2, 1])],
                         ids=["argmax", "int", "list", "tensor"])
def test_per_sample_targets(tiny_net, target, expected):
    x = torch.cat([one_hot_image(0), one_hot_image(0)])
    e = LayerContributions(tiny_net).explain(x, target=target)
    assert e.target.tolist() == expected
    rows = torch.arange(2)
    torch.testing.assert_close(e.contrast_contributions, e.contributions[rows, :, e.target] - e.contributions[rows, :, e.contrast])


def test_contrast_options(tiny_net):
    x = one_hot_image(0)
    explainer = LayerContributions(tiny_net)
    e = explainer.explain(x, target=2, contrast=0)
    torch.testing.assert_close(e.margin, torch.tensor([4.2]))
    e = explainer.explain(x, target=2, contrast=None)
    assert e.contrast is None
    torch.testing.assert_close(e.margin, torch.tensor([3.0]))
    torch.testing.assert_close(e.contrast_contributions[0], torch.tensor([0.3, 0.0, 0.0, 2.4]))
    with pytest.raises(ValueError, match="out of range"):
        explainer.explain(x, target=7)
    with pytest.raises(ValueError, match="contrast must be"):
        explainer.explain(x, contrast="second")


def test_multilabel_uses_sigmoid_and_no_runner_up(tiny_net):
    e = LayerContributions(tiny_net, multilabel=True).explain(one_hot_image(0))
    torch.testing.assert_close(e.probabilities, torch.sigmoid(torch.tensor([[-1.2, 0.9, 3.0]])))
    assert e.contrast is None
    torch.testing.assert_close(e.margin, torch.tensor([3.0]))


def test_hooks_released_after_explain_and_on_error(tiny_net, images):
    explainer = LayerContributions(tiny_net)
    explainer.explain(images)
    assert explainer.active_hooks() == 0
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())
    with explainer.hooks() as store:
        assert explainer.active_hooks() == 2
        tiny_net(images)
        assert store["maps"].shape == (5, 4, 8, 8)
    assert explainer.active_hooks() == 0
    with pytest.raises(RuntimeError):
        with explainer.hooks():
            raise RuntimeError("boom")
    assert explainer.active_hooks() == 0
    with pytest.raises(ValueError):
        explainer.explain(images, target=[0, 1])  # wrong length
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())


def test_unknown_layer_lists_candidates(tiny_net):
    with pytest.raises(LayerNotFoundError) as err:
        LayerContributions(tiny_net, layer="layer4")
    assert "'layer4'" in str(err.value) and "features.0" in str(err.value)


def test_non_gap_head_warns_and_uses_gradient_x_activation(images):
    net = hand_set(MaxHeadNet())
    with pytest.warns(UserWarning, match="gradient x activation"):
        e = LayerContributions(net).explain(images)
    assert e.decomposition == "gradient_x_activation"
    # Max pooling: dlogit_k/dA is W[k,c] at each channel's argmax, so GxA = W[k,c] * max(A_c).
    expected = e.maps.amax(dim=(2, 3)).unsqueeze(2) * net.fc.weight.t().unsqueeze(0)
    torch.testing.assert_close(e.contributions, expected)
    torch.testing.assert_close(e.contributions.sum(1) + e.rest, e.logits)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_gradient_x_activation_equals_exact_on_gap_linear(tiny_net, images):
    exact = LayerContributions(tiny_net).explain(images)
    approx = LayerContributions(tiny_net)
    approx._detect(images)
    approx.decomposition = "gradient_x_activation"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = approx.explain(images)
    torch.testing.assert_close(e.contributions, exact.contributions, rtol=1e-5, atol=1e-6)


def test_removal_intervention_matches_decomposition(tiny_net, images):
    explainer = LayerContributions(tiny_net)
    e = explainer.explain(images)
    keep = torch.ones(5, 4)
    keep[:, 3] = 0
    keep[0, 0] = 0
    after = explainer.logits_with_channels_removed(images, keep)
    expected = e.logits - (e.contributions * (1 - keep).unsqueeze(2)).sum(1)
    torch.testing.assert_close(after, expected)
    assert explainer.layer_maps(images).shape == (5, 4, 8, 8)
    assert explainer.active_hooks() == 0


def test_rejects_bad_images(tiny_net):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        LayerContributions(tiny_net).explain(torch.zeros(3, 8, 8))


def test_all_class_decomposition_is_factored_until_read(tiny_net, images):
    e = LayerContributions(tiny_net).explain(images)
    assert e.dense is None  # explain builds no [B, C, K] tensor on exact heads
    torch.testing.assert_close(e.class_contributions(e.target), e.contrast_contributions + e.class_contributions(e.contrast))
    order = torch.argsort(e.contrast_contributions, dim=1, descending=True)
    counts = torch.tensor([0, 1, 3, 4])
    factored = e.logits_after_removal(order, counts)
    assert e.dense is None and factored.shape == (5, 4, 3)
    dense = e.contributions  # built on first read, then kept
    assert e.dense is dense and dense.shape == (5, 4, 3)
    for s, n in enumerate(counts.tolist()):
        removed = torch.zeros(5, 4).scatter_(1, order[:, :n], 1.0)
        torch.testing.assert_close(factored[:, s], e.logits - (dense * removed.unsqueeze(2)).sum(1))
    torch.testing.assert_close(e.logits_after_removal(order, counts), factored)  # the dense path agrees
    torch.testing.assert_close(factored[:, 0], e.logits)
    torch.testing.assert_close(factored[:, -1], e.rest)  # all channels removed: the bias is left


def test_class_map_sums_to_the_contributions(tiny_net, images):
    e = LayerContributions(tiny_net).explain(images)
    # The contrastive class map sums over space to the margin's channel part (exactness kept).
    torch.testing.assert_close(e.class_map().sum(dim=(1, 2)), e.contrast_contributions.sum(1))
    torch.testing.assert_close(e.class_map(2, contrast=None).sum(dim=(1, 2)), e.class_contributions(2).sum(1))


def _explanation(maps, weight, ranking="localised"):
    """An exact explanation of a GAP-linear head (no bias) over the given layer maps [B, C, h, w]."""
    from explain.contributions import Explanation

    pooled = maps.mean(dim=(2, 3))
    logits = pooled @ weight.t()
    top2 = torch.topk(logits, 2, dim=1).indices
    k, j = top2[:, 0], top2[:, 1]
    return Explanation(logits=logits, probabilities=torch.softmax(logits, 1), rest=torch.zeros_like(logits), maps=maps,
                       target=k, contrast=j, contrast_contributions=pooled * (weight[k] - weight[j]),
                       margin=logits[0, k] - logits[0, j], layer="features", decomposition="exact",
                       pooled=pooled, weight=weight, ranking=ranking)


def test_localised_ranking_prefers_compact_evidence_and_keeps_exact_contributions():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0] = 1.0  # spread over the whole map: contribution 1.0
    maps[0, 1, 1, 1] = 12.0  # one cell: contribution 0.75
    weight = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    e = _explanation(maps, weight)
    torch.testing.assert_close(e.concentration(), torch.tensor([[4 / 16, 1.0]]))  # corner peak: 4 cells in its window
    torch.testing.assert_close(e.argument_scores(), torch.tensor([[1.0 * 0.25 ** 3, 0.75]]))
    vals, chans = e.top_channels(2)
    assert chans.tolist() == [[1, 0]]
    torch.testing.assert_close(vals, torch.tensor([[0.75, 1.0]]))  # the contributions, not the scores
    assert vals.sum().item() == pytest.approx(e.margin.item())  # still the whole margin
    assert e.argument_order().tolist() == [[1, 0]]
    plain = _explanation(maps, weight, ranking="contribution")
    assert plain.top_channels(2)[1].tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="ranking must be"):
        LayerContributions(torch.nn.Linear(2, 2), layer=None, ranking="largest")


def test_argument_is_placed_where_the_class_evidence_is():
    from explain.sheets import peak_locations

    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0], maps[0, 0, 3, 3] = 2.0, 1.9  # two blobs; its own maximum is top left
    maps[0, 1, 3, 3] = 8.0  # the rest of the class evidence is bottom right
    weight = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    e = _explanation(maps, weight)
    evidence = e.class_evidence()
    # Class map of logit_k: sum_c W[k,c] A_c / (h*w), ReLU, over its maximum (= Grad-CAM, normalised).
    cam = (maps[0, 0] + maps[0, 1]) / 16
    torch.testing.assert_close(evidence[0], cam / cam.max())
    assert e.peak_support()[0, 3, 3].item() == 1.0 and e.peak_support()[0, 0, 0].item() == pytest.approx((2 / 9.9) ** 2)
    own = peak_locations(maps[:, :1], (4, 4))[0, 0]
    placed = peak_locations(maps[:, :1] * e.peak_support()[:, None], (4, 4))[0, 0]
    torch.testing.assert_close(own, torch.tensor([0.125, 0.125]))
    torch.testing.assert_close(placed, torch.tensor([0.875, 0.875]))

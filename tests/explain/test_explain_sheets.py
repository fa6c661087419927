"""Sheet data: faithfulness, ground truth, regions, sentence, heatmap scale, schema."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from explain.contributions import LayerContributions
from explain.names import ConceptNames
from explain.sheet_files import SheetError, validate_sheet
from explain.sheets import analyse_batch, build_sheet, faithfulness, ground_truth, make_sentence, region_name

from .conftest import MaxHeadNet, hand_set


@pytest.mark.parametrize("x,y,words", [(0.1, 0.1, "upper left"), (0.5, 0.1, "top"), (0.9, 0.5, "right"),
                                       (0.5, 0.5, "center"), (0.2, 0.9, "lower left"), (0.5, 0.95, "bottom")],
                         ids=["ul", "top", "right", "center", "ll", "bottom"])
def test_region_name(x, y, words):
    assert region_name(x, y) == words


def test_sentence():
    args = [{"name": "striped tail", "share_of_margin": 0.41, "region": "lower left"},
            {"name": "feature 37", "share_of_margin": 0.22, "region": "center"},
            {"name": "red dot", "share_of_margin": 0.09, "region": "upper right"}]
    assert make_sentence("X", 0.934, "Y", args) == (
        "Predicted 'X' (0.93) rather than 'Y' mainly because of 'striped tail' (41% of the margin, lower left), "
        "'feature 37' (22%, center) and 'red dot' (9%, upper right).")
    assert make_sentence("X", 0.5, None, args[:1]) == "Predicted 'X' (0.50) mainly because of 'striped tail' (41% of the logit, lower left)."


def test_faithfulness_hand_checked(tiny_net):
    x = torch.zeros(1, 3, 6, 6)
    x[0, 0] = 1.0  # GAP f = [1, 0, 0, 4]; logits [-1.2, 0.9, 3.0]; contrast contributions [0.4, 0, 0, 1.6]
    explainer = LayerContributions(tiny_net)
    e = explainer.explain(x)
    f = faithfulness(explainer, x, e, top_m=1)
    assert f["margin_after_removal"].item() == pytest.approx(2.1 - 1.6)
    # Removing channel 3: logits [-0.4, 0.1, 0.6] -> still class 2.
    assert f["prediction_flips"].tolist() == [False]
    f2 = faithfulness(explainer, x, e, top_m=2)
    # Removing channels 3 and 0: logits = biases [0.1, 0.2, 0.3] -> still class 2, margin 0.1.
    assert f2["margin_after_removal"].item() == pytest.approx(0.1)
    # Deletion curve over 4 channels (order 3, 0, 1, 2): p(class 2) at 0, 1, 2, 3, 4 removed.
    logits = torch.tensor([[-1.2, 0.9, 3.0], [-0.4, 0.1, 0.6], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    p = torch.softmax(logits, 1)[:, 2]
    assert f["deletion_auc"].item() == pytest.approx(torch.trapezoid(p, torch.linspace(0, 1, 5)).item(), abs=1e-6)


def test_faithfulness_flip_and_intervention_agree(images):
    exact_net = hand_set(MaxHeadNet())
    # A max-pooling head goes through real interventions; the GAP twin uses the decomposition.
    with pytest.warns(UserWarning):
        approx = LayerContributions(exact_net)
        e = approx.explain(images)
    f = faithfulness(approx, images, e, top_m=2)
    keep = torch.ones(5, 4)
    keep.scatter_(1, e.top_channels(2)[1], 0.0)
    after = approx.logits_with_channels_removed(images, keep)
    rows = torch.arange(5)
    torch.testing.assert_close(f["margin_after_removal"], after[rows, e.target] - after[rows, e.contrast])
    assert f["prediction_flips"].tolist() == (after.argmax(1) != e.target).tolist()
    assert ((f["deletion_auc"] >= 0) & (f["deletion_auc"] <= 1)).all()


def test_exact_faithfulness_equals_intervention(tiny_net, images):
    explainer = LayerContributions(tiny_net)
    e = explainer.explain(images)
    exact = faithfulness(explainer, images, e, top_m=2)
    explainer.decomposition = "gradient_x_activation"  # force the intervention path
    e2 = explainer.explain(images)
    inter = faithfulness(explainer, images, e2, top_m=2)
    for key in exact:
        torch.testing.assert_close(exact[key].float(), inter[key].float(), rtol=1e-5, atol=1e-5)


def test_ground_truth_pointing_and_mass():
    part_map = np.zeros((8, 8), dtype=np.uint8)
    part_map[0:4, 0:4] = 6  # horn, upper left
    part_map[4:8, 4:8] = 1  # body (not discriminative)
    relevance = np.zeros((8, 8))
    relevance[0:4, 0:4] = 1.0  # 16 inside
    relevance[4:8, 4:8] = 3.0  # 48 outside
    relevance[0, 7] = -5.0  # negative relevance is ignored
    record = {"peaks": np.array([[0.2, 0.2]]), "relevance": relevance}
    assert ground_truth(record, part_map, [6]) == {"pointing_hit": True, "relevance_mass": 0.25}
    record["peaks"] = np.array([[0.9, 0.9]])
    assert ground_truth(record, part_map, [6])["pointing_hit"] is False
    record["peaks"] = np.array([[0.5 + 0.5 / 8, 0.5 + 0.5 / 8]])  # pixel (4, 4): one pixel off the horn
    assert ground_truth(record, part_map, [6])["pointing_hit"] is False
    assert ground_truth(record, part_map, [6], tolerance_px=1)["pointing_hit"] is True


def make_sheet(tiny_net, images):
    explainer = LayerContributions(tiny_net)
    e = explainer.explain(images)
    record = analyse_batch(explainer, images, e, top_m=2)[0]
    names = ConceptNames({"3": {"name": "red blob", "source": "crowd", "confidence": 0.8, "iou": None}})
    return record, build_sheet(record, sample_id="s0", classes=["a", "b", "c"], label="c", domain="day", split="test",
                               model_info={"name": "tiny", "arch": "tiny", "layer": e.layer, "decomposition": e.decomposition},
                               names=names, exemplars=None, heatmap_scale=2.0, image_path="images/s0.png",
                               heatmap_paths=["heatmaps/s0_1.png", "heatmaps/s0_2.png"],
                               gt={"pointing_hit": True, "relevance_mass": 0.5}, gt_parts=["horn"])


def test_sheet_is_valid_and_consistent(tiny_net, images):
    record, sheet = make_sheet(tiny_net, images)
    validate_sheet(sheet)
    args = sheet["arguments"]
    assert [a["rank"] for a in args] == [1, 2]
    assert args[0]["contribution"] >= args[1]["contribution"]
    assert args[0]["share_of_margin"] == pytest.approx(args[0]["contribution"] / sheet["margin"], rel=1e-4)
    named = [a for a in args if a["channel"] == 3]
    assert all(a["name"] == "red blob" and a["name_source"] == "crowd" for a in named)
    assert all(a["name"] == f"feature {a['channel']}" for a in args if a["channel"] != 3)
    assert len(args[0]["heatmap_grid"]) == 8 and min(min(r) for r in args[0]["heatmap_grid"]) >= 0
    assert sheet["correct"] == (sheet["prediction"]["class"] == "c")
    assert sheet["sentence"].startswith(f"Predicted '{sheet['prediction']['class']}'")


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.pop("margin"), "s0.json: missing field 'margin'"),
    (lambda s: s["arguments"][0].update(name_source="model"), "s0.json: field 'arguments[0].name_source': 'model' is not one of"),
    (lambda s: s["arguments"][0].update(peak={"x": 1.5, "y": 0.1}), "s0.json: field 'arguments[0].peak.x': 1.5 is greater than"),
    (lambda s: s["faithfulness"].update(prediction_flips="no"), "s0.json: field 'faithfulness.prediction_flips': 'no' is not of type 'boolean'"),
    (lambda s: s.update(schema_version="2"), "s0.json: field 'schema_version': '1' was expected"),
    (lambda s: s["arguments"][0].update(heatmap="/abs/path.png"), "s0.json: field 'arguments[0].heatmap': '/abs/path.png' does not match"),
    (lambda s: s.update(extra_field=1), "s0.json: Additional properties are not allowed ('extra_field' was unexpected)"),
], ids=["missing-margin", "bad-name-source", "peak-out-of-range", "flips-not-bool", "version", "absolute-path", "unknown-field"])
def test_schema_rejects_broken_sheets_naming_the_field(tiny_net, images, mutate, message):
    _, sheet = make_sheet(tiny_net, images)
    broken = copy.deepcopy(sheet)
    mutate(broken)
    with pytest.raises(SheetError, match=re.escape(message)):
        validate_sheet(broken, "s0.json")


def test_peak_locations_hand_checked():
    from explain.sheets import peak_locations

    g = torch.zeros(1, 2, 4, 4)
    g[0, 0, 1, 1] = 2.0  # a single cell: its centre (1.5/4, 1.5/4)
    g[0, 1, 2, 0] = 3.0  # two equal neighbours (2,0) and (2,1): between them
    g[0, 1, 2, 1] = 3.0
    p = peak_locations(g, (32, 32), "centroid")
    torch.testing.assert_close(p[0, 0], torch.tensor([1.5 / 4, 1.5 / 4]))
    torch.testing.assert_close(p[0, 1], torch.tensor([1.0 / 4, 2.5 / 4]))
    up = peak_locations(g[:, :1], (32, 32), "upsampled")
    # Cell 1 spans pixels 8..15: the upsampled argmax is one of the two middle pixels (11 or 12).
    assert ((up[0, 0] - 1.5 / 4).abs() <= 0.5 / 32 + 1e-6).all()
    with pytest.raises(ValueError, match="peak method"):
        peak_locations(g, (32, 32), "max")

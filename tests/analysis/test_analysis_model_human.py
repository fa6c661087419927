"""Model-vs-human metrics: hand-checked localisation, validity, naming, ranks, model as a
worker, and improvement clues on the committed fixtures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frames import attach_sheet_info
from analysis.model_human import (argument_validity, improvement_clues, localisation_by, localisation_scores,
                                  localisation_table, model_answers_from_sheets, model_vs_human, naming_agreement,
                                  canonical_name, rank_agreement, rationale_mask, synonyms_from_parts, upsample)
from crowd.judgments import read_judgments
from explain.sheet_files import load_sheets


def test_localisation_scores_by_hand():
    heat = np.array([[0, 0, 0, 0], [0, 4, 2, 0], [0, 1, 0, 0], [0, 0, 0, 3]], float)
    target = np.zeros((4, 4), bool)
    target[1:3, 1:3] = True
    s = localisation_scores(heat, target)
    # mass inside = (4 + 2 + 1 + 0) / 10; peak (1,1) inside; top-4 = 4, 3, 2, 1 -> 3 inside
    assert s == pytest.approx({"pointing_hit": 1.0, "relevance_mass": 0.7, "relevance_rank": 0.75, "iou": 3 / 5})
    assert np.isnan(localisation_scores(heat, np.zeros((4, 4), bool))["iou"])
    with pytest.raises(ValueError, match="differ in size"):
        localisation_scores(heat, target[:2])


def test_upsample_matches_torch_bilinear():
    import torch
    grid = np.random.default_rng(0).random((3, 5))
    ref = torch.nn.functional.interpolate(torch.tensor(grid)[None, None], size=(12, 17), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(upsample(grid, (12, 17)), ref, atol=1e-12)


def test_rationale_mask_by_hand():
    box = rationale_mask([], [[0, 0, 0.5, 0.5]], (4, 4))
    assert box.sum() == 4 and box[:2, :2].all()
    # pixel centres 0.375/0.625 are 0.177 from (0.5, 0.5): inside a radius of 0.2
    point = rationale_mask([[0.5, 0.5]], [], (4, 4), point_radius=0.2)
    assert point.sum() == 4 and point[1:3, 1:3].all()


def test_validity_by_hand():
    frame = pd.DataFrame({
        "task": ["t1"] * 5 + ["t2"], "worker": ["a", "b", "c", "a", "b", "a"],
        "item": ["arg:1", "arg:1", "arg:1", "arg:2", "arg:2", "arg:1"],
        "label": ["yes", "yes", "no", "no", "cant_tell", "yes"]})
    v = argument_validity(frame, by="rank", n_boot=0).set_index("rank")
    assert v.loc[1, "validity"] == pytest.approx(3 / 4) and v.loc[1, "n_judgments"] == 4
    assert v.loc[2, "validity"] == 0 and v.loc[2, "n_cant_tell"] == 1
    with pytest.raises(ValueError, match="not yes\\|no\\|cant_tell"):
        argument_validity(frame.assign(label="maybe"), n_boot=0)


def test_model_vs_human_by_hand(frame_5x5):
    model = pd.DataFrame({"task": [f"u{i}" for i in range(1, 6)], "worker": "model:toy", "label": "a"})
    frame = pd.concat([frame_5x5, model], ignore_index=True)
    res = model_vs_human(frame, n_boot=200)
    # share of humans saying "a": 1, 0.8, 0.4, 0, 0.2 -> 0.48; ceiling = P-bar = 0.72
    assert res["model_agreement"].value == pytest.approx(0.48)
    assert res["human_ceiling"].value == pytest.approx(0.72)
    assert res["ratio"].value == pytest.approx(2 / 3)
    assert res["ratio"].ci_low < 2 / 3 < res["ratio"].ci_high
    workers = res["workers"].set_index("worker")
    # r1 (a a a b a): others agree 4/4, 3/4, 1/4, 4/4, 0/4 -> 0.6
    assert workers.loc["r1", "loo_agreement"] == pytest.approx(0.6)
    assert workers.loc["model:toy", "is_model"]
    kappa = model_vs_human(frame, "model:toy", chance_corrected=True, n_boot=0)
    # p_e = 0.48^2 + 0.52^2 = 0.5008
    assert kappa["ratio"].value == pytest.approx((0.48 - 0.5008) / (0.72 - 0.5008))
    with pytest.raises(ValueError, match="not in the frame"):
        model_vs_human(frame, "model:other", n_boot=0)


def test_naming_normalisation_and_agreement():
    syn = synonyms_from_parts({"parts": [{"id": 1, "key": "wing", "name": "wing", "synonyms": ["feather"]}]})
    assert canonical_name("The Wings!", syn) == "wing"
    assert canonical_name("feathers", syn) == "wing"
    assert canonical_name("glass") == "glass"
    frame = pd.DataFrame({"task": ["1"] * 3 + ["2"] * 3, "worker": ["a", "b", "c"] * 2, "item": "name",
                          "channel": [7, 7, 7, 9, 9, 9],
                          "label": ["wing", "Wings", "feather", "beak", "beak", "nose"]})
    res = naming_agreement(frame, reference={7: "wing", 9: "tail"}, synonyms=syn, n_boot=0)
    # channel 7: all three say "wing" (1.0); channel 9: beak/beak/nose -> 2/6 pairs = 1/3
    assert res["among_workers"].value == pytest.approx((1 + 1 / 3) / 2)
    table = res["table"].set_index("unit")
    assert table.loc["7", "match"] == 1 and table.loc["9", "match"] == 0
    assert res["crowd_vs_reference"].value == pytest.approx(0.5)


def test_fixture_metrics(fixtures_dir):
    import json
    frame = read_judgments(fixtures_dir / "judgments.csv")
    sheets = load_sheets(fixtures_dir / "sheets")
    samples = pd.read_csv(fixtures_dir / "data" / "samples.csv", dtype=str, keep_default_na=False)
    loc = localisation_table(sheets, frame, fixtures_dir / "data")
    assert set(loc["target"]) == {"human", "object", "parts"}
    by = localisation_by(loc, "domain", n_boot=50).set_index(["domain", "target", "metric"])["value"]
    # day heatmaps sit on the centre square (the object), night ones in a corner
    assert by[("day", "object", "pointing_hit")] == 1.0 and by[("night", "object", "pointing_hit")] == 0.0
    assert by[("day", "object", "relevance_mass")] > 0.6 > 0.2 > by[("night", "object", "relevance_mass")]
    validity = argument_validity(frame, sheets, by="domain", n_boot=100).set_index("domain")
    assert validity.loc["day", "validity"] > 0.6 > 0.3 > validity.loc["night", "validity"]
    ranks = rank_agreement(frame, sheets, n_boot=50)
    for _, r in ranks["table"].iterrows():  # cross-check one sheet's tau against scipy
        from scipy.stats import kendalltau
        rows = frame[(frame["sheet"] == r["sheet"]) & frame["item"].str.startswith("arg:")]
        rows = rows[rows["label"] != "cant_tell"]
        votes = rows.assign(v=(rows["label"] == "yes").astype(float)).groupby("rank")["v"].mean()
        contrib = [a["contribution"] for a in sheets[r["sheet"]]["arguments"] if a["rank"] in votes.index]
        assert r["kendall_tau"] == pytest.approx(kendalltau(contrib, votes.to_numpy()).statistic)
        break
    parts = json.loads((fixtures_dir / "data" / "parts.json").read_text())
    model_rows = model_answers_from_sheets(sheets, frame)
    assert set(model_rows["item"]) == {"label", "name"} and (model_rows["worker"] == "model:toy").all()
    naming = naming_agreement(frame, synonyms=synonyms_from_parts(parts), n_boot=0)
    assert naming["table"].set_index("unit").loc["21", "modal_share"] == 1.0
    info = attach_sheet_info(frame, sheets, samples)
    assert set(info.loc[info["domain"] == "night", "background"]) == {"stripes"}


def test_clues_name_the_background(fixtures_dir):
    frame = read_judgments(fixtures_dir / "judgments.csv")
    sheets = load_sheets(fixtures_dir / "sheets")
    samples = pd.read_csv(fixtures_dir / "data" / "samples.csv", dtype=str, keep_default_na=False)
    loc = localisation_table(sheets, frame, fixtures_dir / "data")
    clues = improvement_clues(frame, sheets, loc, samples=samples, n_boot=100)
    top = clues.iloc[0]
    assert (top["group_type"], top["group"], top["cue"]) == ("domain", "night", "background")
    assert top["suggestion"].startswith("in `night`, arguments fire on the background")
    assert "check for a shortcut, add night training data" in top["suggestion"]
    assert "`stripes` background" in top["suggestion"]
    assert set(top["examples"].split()) <= {"s08", "s09", "s10", "s11"}
    assert "day" not in set(clues.loc[clues["group_type"] == "domain", "group"])
    # without masks the human marks stand in for the object, and the clue still says background
    no_mask = improvement_clues(frame, sheets, localisation_table(sheets, frame), n_boot=0)
    assert no_mask.iloc[0]["group"] == "night" and "outside the regions people marked" in no_mask.iloc[0]["suggestion"]
    # judged invalid without geometry: an "invalid" clue
    only_votes = improvement_clues(frame, sheets, None, n_boot=0)
    night = only_votes[only_votes["group"] == "night"].iloc[0]
    assert night["cue"] == "invalid" and "judged invalid" in night["suggestion"]

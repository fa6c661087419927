"""Ground truth and worker models of the simulated crowd, on the hand-made fixture."""

from __future__ import annotations

import numpy as np
import pytest

from sim.crowd import CrowdMember, WorkerProfile, _typo, answer_task, make_crowd
from sim.truth import BACKGROUND_SYNONYMS, GroundTruth


@pytest.fixture(scope="module")
def truth(world):
    return GroundTruth(world["sheets"], world["data"], overlap_threshold=0.3, tolerance_px=0)


def test_argument_relevance_by_overlap_with_discriminative_parts(truth):
    # argument 1 fires on the 4x4 horn block: its hot pixels (>= half max of the bilinear
    # upsampling) are rows 0-2 x cols 0-3 and row 3 x cols 0-2, all on the horn -> overlap 1.
    # argument 2 fires on the bottom-right background block -> overlap 0.
    for i in range(24):
        sid = f"test-{i:06d}"
        assert truth.overlap[(sid, 1)] == pytest.approx(1.0)
        assert truth.overlap[(sid, 2)] == 0.0
        assert truth.argument_truth(sid, 1) == "yes" and truth.argument_truth(sid, 2) == "no"


def test_channel_concepts_and_names(truth):
    assert truth.channel_concept[3]["key"] == "horn"
    assert truth.channel_names(3) == ["horn", "spike"]
    assert truth.channel_concept[5]["is_background"] and truth.channel_concept[5]["share"] == pytest.approx(1.0)
    assert truth.channel_names(5) == BACKGROUND_SYNONYMS["grass"]  # 12 grass vs 12 sky sheets: first seen wins


def test_evidence_boxes_and_class_confusion(truth):
    # dragon: horn at rows/cols 0-3 and wings at rows 0-3, cols 12-15 of a 16x16 image
    assert truth.evidence_boxes("test-000000", pad=0.0) == [[0.0, 0.0, 0.25, 0.25], [0.75, 0.0, 1.0, 0.25]]
    assert truth.evidence_boxes("test-000001", pad=0.0) == [[0.0, 0.0, 0.25, 0.25]]
    assert truth.classes == ["dragon", "rhino"]
    assert np.allclose(truth.confusion, [[0, 1], [1, 0]])


def test_gold_answers_follow_the_truth(truth):
    gold = truth.gold(["rate_arguments", "name_feature", "mark_rationale", "label"], n_per_kind=2)
    kinds = [g["kind"] for g in gold]
    assert kinds.count("rate_arguments") == 2 and kinds.count("label") == 2
    for g in gold:
        if g["kind"] == "rate_arguments":
            assert g["answer"] == {"arguments": {"1": "yes", "2": "no"}}
        if g["kind"] == "name_feature":
            assert g["answer"]["names"] == truth.channel_names(g["channel"])
        if g["kind"] == "mark_rationale":  # only dragons have two evidence parts
            assert int(g["sheet"][-1]) % 2 == 0


def _worker(kind, strategy="", noise=0.0, cant_tell=0.0, seed=0):
    return CrowdMember("sim-x", WorkerProfile(kind, noise=noise, cant_tell=cant_tell, typo=0.0, strategy=strategy), seed)


@pytest.mark.parametrize("kind,strategy,expected", [
    ("reliable", "", {"1": "yes", "2": "no"}),
    ("adversarial", "", {"1": "no", "2": "yes"}),
    ("spammer", "always_yes", {"1": "yes", "2": "yes"}),
], ids=["reliable", "adversarial", "always-yes"])
def test_rating_models_without_noise(truth, kind, strategy, expected):
    w = _worker(kind, strategy)
    answer, log = answer_task(w, truth, {"kind": "rate_arguments", "sheet": "test-000000", "ranks": [1, 2]})
    assert answer["arguments"] == expected
    assert [r["truth"] for r in log] == ["yes", "no"]
    assert 1 <= answer["match"] <= 5


def test_noise_rate_matches_the_profile(truth):
    w = _worker("reliable", noise=0.2, seed=3)
    wrong = 0
    for _ in range(500):
        _, log = answer_task(w, truth, {"kind": "rate_arguments", "sheet": "test-000002", "ranks": [1, 2]})
        wrong += sum(r["answer"] != r["truth"] for r in log)
    assert wrong / 1000 == pytest.approx(0.2, abs=0.04)


def test_marks_land_on_discriminative_parts(truth):
    w = _worker("reliable")
    mask = truth.evidence_mask("test-000000")
    for _ in range(30):
        answer, _ = answer_task(w, truth, {"kind": "mark_rationale", "sheet": "test-000000", "max_marks": 5})
        for x, y in answer["points"]:
            assert mask[min(15, int(y * 16)), min(15, int(x * 16))]
    adv = _worker("adversarial")
    answer, _ = answer_task(adv, truth, {"kind": "mark_rationale", "sheet": "test-000000", "max_marks": 5})
    assert not any(mask[min(15, int(y * 16)), min(15, int(x * 16))] for x, y in answer["points"])


def test_names_and_labels(truth):
    answer, log = answer_task(_worker("reliable"), truth, {"kind": "name_feature", "channel": 3})
    assert answer["name"] in ("horn", "spike") and log[0]["truth"] == "horn"
    answer, _ = answer_task(_worker("adversarial"), truth, {"kind": "label", "sheet": "test-000000", "classes": ["dragon", "rhino"]})
    assert answer == {"label": "rhino"}  # the most confusable wrong class
    answer, _ = answer_task(_worker("reliable"), truth, {"kind": "label", "sheet": "test-000001", "classes": ["dragon", "rhino"]})
    assert answer == {"label": "rhino"}


def test_typos_change_one_letter():
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = _typo("antennae", rng)
        assert t != "" and abs(len(t) - 8) <= 1 and sorted(t) != sorted("antennae") or len(t) == 8


def test_make_crowd_counts_shares_and_errors():
    crowd = make_crowd(20, {"reliable": 13, "sloppy": 3, "spammer": 3, "adversarial": 1}, seed=1)
    kinds = [w.profile.kind for w in crowd]
    assert (kinds.count("reliable"), kinds.count("spammer"), kinds.count("adversarial")) == (13, 3, 1)
    assert sorted(w.worker_id for w in crowd) == [f"sim-{i:02d}" for i in range(1, 21)]
    assert sorted(w.profile.strategy for w in crowd if w.profile.kind == "spammer") == ["always_yes", "random", "random"]
    shares = make_crowd(10, {"reliable": 0.55, "spammer": 0.45})
    assert [w.profile.kind for w in shares].count("spammer") == 4 or [w.profile.kind for w in shares].count("spammer") == 5
    with pytest.raises(ValueError, match="sum to 5"):
        make_crowd(6, {"reliable": 5})
    with pytest.raises(ValueError, match="unknown worker kind"):
        make_crowd(3, {"robot": 3})
    assert WorkerProfile("reliable", noise=0.1, cant_tell=0.0).nominal_accuracy == pytest.approx(0.9)
    assert WorkerProfile("adversarial", noise=0.1, cant_tell=0.0).nominal_accuracy == pytest.approx(0.1)

""""Can't tell" is an abstention for every aggregator: no vote for any label, a task only
abstained on gets no label, an abstaining worker is neither right nor wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene, Wawa
from crowd.judgments import CANT_TELL, JudgmentFrameError

ROWS = [("t1", "w1", "a"), ("t1", "w2", "a"), ("t1", "w3", CANT_TELL),
        ("t2", "w1", "b"), ("t2", "w2", CANT_TELL), ("t2", "w3", "b"),
        ("t3", "w1", CANT_TELL), ("t3", "w2", CANT_TELL), ("t3", "w3", CANT_TELL),
        ("t4", "w1", "a"), ("t4", "w2", "b"), ("t4", "w3", "a")]
FRAME = pd.DataFrame(ROWS, columns=["task", "worker", "label"])


def test_majority_vote_leaves_cant_tell_out():
    mv = MajorityVote().fit(FRAME)
    assert mv.labels_.to_dict() == {"t1": "a", "t2": "b", "t4": "a"}  # t3: everyone abstained
    assert list(mv.probas_.columns) == ["a", "b"]
    assert mv.probas_.loc["t1"].tolist() == [1.0, 0.0]
    assert mv.probas_.loc["t2"].tolist() == [0.0, 1.0]
    assert mv.probas_.loc["t4"].tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-12)
    # w2 abstained on t2 and t3: scored on t1 (right) and t4 (wrong) only
    assert mv.skills_.to_dict() == {"w1": 1.0, "w2": 0.5, "w3": 1.0}


def test_counting_cant_tell_as_a_label_is_a_choice():
    mv = MajorityVote(abstain=()).fit(FRAME)
    assert mv.labels_.to_dict() == {"t1": "a", "t2": "b", "t3": CANT_TELL, "t4": "a"}
    assert mv.probas_.loc["t1"].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])


@pytest.mark.parametrize("model", [DawidSkene(), OneCoinDawidSkene(), GLAD(), Wawa()],
                         ids=["ds", "onecoin", "glad", "wawa"])
def test_every_aggregator_fits_as_if_the_abstentions_were_not_there(model):
    answered = FRAME[FRAME["label"] != CANT_TELL].reset_index(drop=True)
    ours = type(model)().fit(FRAME)
    ref = type(model)(abstain=()).fit(answered)
    assert ours.labels_.to_dict() == ref.labels_.to_dict()
    assert "t3" not in ours.labels_.index and CANT_TELL not in ours.probas_.columns
    assert np.array_equal(ours.probas_.to_numpy(), ref.probas_.to_numpy())


def test_dawid_skene_numbers_match_crowdkit_on_the_answers():
    import crowdkit.aggregation as ck

    ds = DawidSkene().fit(FRAME)
    ref = ck.DawidSkene().fit(FRAME[FRAME["label"] != CANT_TELL])
    assert ds.labels_.to_dict() == {"t1": "a", "t2": "b", "t4": "a"}
    probas = ref.probas_.reindex(index=ds.probas_.index, columns=ds.probas_.columns)
    assert np.abs(ds.probas_.to_numpy() - probas.to_numpy()).max() < 1e-9


def test_only_abstentions_is_an_error():
    only = FRAME[FRAME["task"] == "t3"]
    with pytest.raises(JudgmentFrameError, match="every answer is an abstention"):
        DawidSkene().fit(only)

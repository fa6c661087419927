"""The parts of `argus.pipelines.improve` that need no training: clues, correction options, table."""

from __future__ import annotations

import pandas as pd
import pytest

from argus.pipelines.improve import Clues, best_correction, correction_config, markdown_table, read_clues


def test_read_clues_takes_the_background_kinds_the_clues_name(tmp_path):
    (tmp_path / "tables").mkdir()
    pd.DataFrame([
        {"group_type": "background", "group": "sand", "cue": "background", "top_background": "sand", "suggestion": "a"},
        {"group_type": "class", "group": "rhino", "cue": "background", "top_background": "water", "suggestion": "b"},
        {"group_type": "domain", "group": "day", "cue": "background", "top_background": "grass", "suggestion": "c"},
        {"group_type": "class", "group": "bee", "cue": "invalid", "top_background": "sky", "suggestion": "d"},
    ]).to_csv(tmp_path / "tables" / "clues.csv", index=False)
    clues = read_clues(tmp_path)
    assert clues.cue == "background" and clues.backgrounds == ["sand", "water"]
    assert clues.suggestions == ["a", "b", "c", "d"] and clues.invalid_channels == [] and clues.n_marks == 0
    assert clues.describe() == "shortcut cue: background (sand, water)"


def test_correction_config_fills_the_method_options_from_the_clues():
    clues = Clues(cue="background", invalid_channels=[4, 9])
    assert correction_config("counterfactual", clues) == ("counterfactual-bg", {})
    assert correction_config("rrr-contribution", clues, init="run", weight=2, counterfactual=0.5) == (
        "rrr-contribution", {"init": "run", "region": "parts", "weight": 2.0, "counterfactual": 0.5})
    assert correction_config("suppress", clues, init="run") == ("suppress-channels", {"init": "run", "channels": [4, 9]})
    with pytest.raises(ValueError, match="give its run folder"):
        correction_config("suppress", clues)
    with pytest.raises(ValueError, match="judged no channel invalid"):
        correction_config("suppress", Clues(cue="background"), init="run")
    with pytest.raises(ValueError, match="unknown correction 'dropout'; choose from"):
        correction_config("dropout", clues)


def _r(test, cf, pg):
    return {"test": {"overall": test, "per_domain": {"day": test, "night": test / 2}},
            "cue_free": {"overall": cf, "per_domain": {"day": cf, "night": cf / 2}},
            "majority_domain": "day", "majority_pointing_game": pg, "pointing_game": {"overall": pg / 2}}


def test_markdown_table_and_best_correction():
    results = {"before": _r(0.4, 0.2, 0.3), "counterfactual": _r(0.5, 0.45, 0.9), "suppress": _r(0.41, 0.21, 0.3)}
    assert best_correction(results) == "counterfactual"
    lines = markdown_table(results).splitlines()
    assert lines[0] == ("| model | test | test day | test night | cue-free | cue-free day | cue-free night | "
                        "pointing game (day) | pointing game |")
    assert lines[3] == "| counterfactual | 0.500 | 0.500 | 0.250 | 0.450 | 0.450 | 0.225 | 0.900 | 0.450 |"
    assert best_correction({"before": results["before"]}) is None

"""Channel validity from argument ratings, and the "After the fix" section of a report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.model_human import channel_validity
from analysis.report import add_improvement

SHEETS = {"s1": {"arguments": [{"rank": 1, "channel": 7}, {"rank": 2, "channel": 3}]},
          "s2": {"arguments": [{"rank": 1, "channel": 3}, {"rank": 2, "channel": 9}]}}


def _frame(rows):
    return pd.DataFrame(rows, columns=["task", "worker", "kind", "item", "label"])


def test_channel_validity_counts_yes_and_no_per_channel_over_sheets():
    frame = _frame([
        ("s1", "a", "rate_arguments", "arg:1", "no"), ("s1", "b", "rate_arguments", "arg:1", "no"),
        ("s1", "c", "rate_arguments", "arg:1", "yes"),
        ("s1", "a", "rate_arguments", "arg:2", "yes"), ("s1", "b", "rate_arguments", "arg:2", "cant_tell"),
        ("s2", "a", "rate_arguments", "arg:1", "yes"), ("s2", "b", "rate_arguments", "arg:1", "no"),
        ("s2", "a", "rate_arguments", "arg:2", "no"),
        ("s2", "a", "label", "label", "bee"),  # not an argument rating
    ])
    out = channel_validity(frame, SHEETS)
    assert out["channel"].tolist() == [3, 7, 9]
    assert out["n_sheets"].tolist() == [2, 1, 1]
    assert out["n_judgments"].tolist() == [3, 3, 1]  # can't-tell left out
    assert out["validity"].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert out["invalid"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_channel_validity_without_ratings_is_empty():
    out = channel_validity(_frame([("s1", "a", "label", "label", "bee")]), SHEETS)
    assert out.empty and list(out.columns) == ["channel", "n_sheets", "n_judgments", "validity", "invalid"]


def _doc():
    def res(test, cue_free, pg):
        return {"test": {"overall": test, "per_domain": {}}, "cue_free": {"overall": cue_free, "per_domain": {}},
                "majority_domain": "day", "majority_pointing_game": pg, "pointing_game": {"overall": pg}}

    return {"results": {"before": res(0.41, 0.16, 0.32), "counterfactual": res(0.49, 0.46, 0.9)},
            "best": "counterfactual", "clues": {"cue": "background", "backgrounds": ["sand"]}}


def test_add_improvement_puts_one_section_after_the_clues(tmp_path):
    from PIL import Image

    (tmp_path / "report.html").write_text('<h2 id="clues">Clues</h2>\n<h2 id="agreement">Agreement</h2>\n')
    png = tmp_path / "fig.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    add_improvement(tmp_path, _doc(), png)
    add_improvement(tmp_path, _doc(), png)  # a second run replaces the section
    html = (tmp_path / "report.html").read_text()
    assert html.count('<section id="improvement">') == 1
    assert html.index('id="clues"') < html.index('<section id="improvement">') < html.index('id="agreement"')
    assert "0.16 → 0.46" in html and "+30.0 points" in html and "0.32 → 0.90" in html
    assert "shortcut through the sand background" in html and "<b>counterfactual</b>" in html
    assert (tmp_path / "figures" / "improvement.png").read_bytes() == png.read_bytes()


def test_add_improvement_refuses_a_page_that_is_not_a_report(tmp_path):
    (tmp_path / "report.html").write_text("<html></html>")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="no '<h2 id=\"agreement\">' heading"):
        add_improvement(tmp_path, _doc(), tmp_path / "f.png")

"""Judgment frames: reading, validation errors, reshaping."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.frames import from_matrix, to_long, to_wide
from crowd.judgments import JudgmentFrameError, parse_geometry, read_judgments
from explain.sheet_files import SheetError, load_sheets


def test_read_csv_export_types(fixtures_dir):
    frame = read_judgments(fixtures_dir / "judgments.csv")
    assert len(frame) == 276
    assert frame["rank"].dtype == "Int64" and frame["channel"].dtype == "Int64"
    assert frame["is_gold"].dtype == bool and frame["is_gold"].sum() == 20
    assert frame["duration_s"].dtype == float
    assert set(frame["kind"]) == {"rate_arguments", "label", "mark_rationale", "name_feature"}
    assert frame["label"].map(type).eq(str).all()  # "1".."5" stay labels


def test_parquet_roundtrip(fixtures_dir, tmp_path):
    frame = read_judgments(fixtures_dir / "judgments.csv")
    frame.to_parquet(tmp_path / "j.parquet")
    back = read_judgments(tmp_path / "j.parquet")
    pd.testing.assert_frame_equal(frame, back)


@pytest.mark.parametrize("change,message", [
    (lambda f: f.drop(columns="worker"), r"missing required column\(s\) \['worker'\]"),
    (lambda f: f.assign(label=[""] + list(f["label"][1:])), "column 'label' is empty at row 0"),
    (lambda f: f.assign(rank=["x"] + list(f["rank"][1:])), "column 'rank' row 0: 'x' is not an integer"),
    (lambda f: f.assign(is_gold=["perhaps"] + list(f["is_gold"][1:])), "'is_gold' has 'perhaps'"),
], ids=["no-worker", "empty-label", "bad-rank", "bad-gold"])
def test_validation_errors_name_the_problem(fixtures_dir, tmp_path, change, message):
    raw = pd.read_csv(fixtures_dir / "judgments.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "bad.csv"
    change(raw).to_csv(path, index=False)
    with pytest.raises(JudgmentFrameError, match=message) as err:
        read_judgments(path)
    assert "bad.csv" in str(err.value)


def test_missing_file_and_format(tmp_path):
    with pytest.raises(JudgmentFrameError, match="not found"):
        read_judgments(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(JudgmentFrameError, match="unknown judgments format"):
        read_judgments(tmp_path / "x.xlsx")


def test_long_wide_roundtrip(frame_5x5):
    wide = to_wide(frame_5x5)
    assert wide.shape == (5, 5) and wide.loc["u3", "r3"] == "b"
    back = to_long(wide)
    pd.testing.assert_frame_equal(back.sort_values(["task", "worker"]).reset_index(drop=True),
                                  frame_5x5.sort_values(["task", "worker"]).reset_index(drop=True))
    with pytest.raises(JudgmentFrameError, match="more than once"):
        to_wide(pd.concat([frame_5x5, frame_5x5.iloc[[0]]]))
    m = from_matrix([[1, None], [2, 3]])
    assert m.to_dict("list") == {"task": ["t0", "t0", "t1"], "worker": ["w0", "w1", "w1"], "label": [1.0, 2.0, 3.0]}


def test_geometry_and_sheets(fixtures_dir, tmp_path):
    assert parse_geometry('[[0.1, 0.2, 0.3, 0.4]]') == [[0.1, 0.2, 0.3, 0.4]]
    assert parse_geometry("") == []
    with pytest.raises(JudgmentFrameError, match="not JSON"):
        parse_geometry("[[0.1,")
    sheets = load_sheets(fixtures_dir / "sheets")
    assert len(sheets) == 12 and sheets["s08"]["domain"] == "night"
    (tmp_path / "sheets").mkdir()
    sheet = json.loads((fixtures_dir / "sheets" / "sheets" / "s00.json").read_text())
    del sheet["arguments"][0]["channel"]
    (tmp_path / "sheets" / "x.json").write_text(json.dumps(sheet))
    with pytest.raises(SheetError, match=r"x\.json: missing field 'arguments\[0\]\.channel'$"):
        load_sheets(tmp_path)

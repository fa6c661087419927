"""Task kinds: answer validation (400 naming the field), name normalisation, gold scoring,
export rows; sheets folder loading."""

import json

import pytest

from crowd import kinds as K
from crowd.sheets import tasks_from_images, tasks_from_sheets
from explain.sheet_files import SheetError, load_sheets

RATE = {"arguments": [{"rank": 1, "channel": 3}, {"rank": 2, "channel": 7}]}
LABEL = {"classes": ["apple", "banana"]}
MARK = {"max_marks": 3}
NAME = {"channel": 12}


@pytest.mark.parametrize("kind,payload,answer,field", [
    ("rate_arguments", RATE, {"arguments": {"1": "yes"}, "match": 3}, "answer.arguments.2"),
    ("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "maybe"}, "match": 3}, "answer.arguments.2"),
    ("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "no", "9": "no"}, "match": 3}, "answer.arguments.9"),
    ("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "no"}, "match": 6}, "answer.match"),
    ("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "no"}, "match": True}, "answer.match"),
    ("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "no"}, "match": 2, "comment": "x" * 2001}, "answer.comment"),
    ("rate_arguments", RATE, {"arguments": ["yes"], "match": 2}, "answer.arguments"),
    ("name_feature", NAME, {"name": "   ", "coherence": 3}, "answer.name"),
    ("name_feature", NAME, {"name": "!!!", "coherence": 3}, "answer.name"),
    ("name_feature", NAME, {"name": "wheel", "coherence": "x"}, "answer.coherence"),
    ("name_feature", NAME, {"name": "w" * 81, "coherence": 3}, "answer.name"),
    ("mark_rationale", MARK, {"points": []}, "answer.points"),
    ("mark_rationale", MARK, {"points": [[0.1, 1.5]]}, "answer.points.0.1"),
    ("mark_rationale", MARK, {"points": [[0.1, float("nan")]]}, "answer.points.0.1"),
    ("mark_rationale", MARK, {"boxes": [[0.1, 0.2, 0.3]]}, "answer.boxes.0"),
    ("mark_rationale", MARK, {"points": [[0.1, 0.1]] * 4}, "answer.points"),
    ("mark_rationale", {"max_marks": 10_000}, {"points": [[0.1, 0.1]] * 51}, "answer.points"),
    ("label", LABEL, {"label": "cherry"}, "answer.label"),
    ("label", LABEL, [], "answer"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_invalid_answers_name_the_field(kind, payload, answer, field):
    with pytest.raises(K.AnswerError) as err:
        K.validate_answer(kind, payload, answer)
    assert err.value.field == field


def test_valid_answers_are_cleaned():
    assert K.validate_answer("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "cant_tell"}, "match": "4",
                                                      "comment": "  ok\x00 "}) == \
        {"arguments": {"1": "yes", "2": "cant_tell"}, "match": 4, "comment": "ok"}
    assert K.validate_answer("mark_rationale", MARK, {"boxes": [[0.5, 0.6, 0.1, 0.2]]}) == \
        {"points": [], "boxes": [[0.1, 0.2, 0.5, 0.6]]}
    assert K.validate_answer("name_feature", NAME, {"name": " Red  wheel ", "coherence": 5}) == \
        {"name": "Red  wheel", "coherence": 5}


@pytest.mark.parametrize("raw,expected", [("  Red  Wheel!", "red wheel"), ("ＷＨＥＥＬ", "wheel"),
                                          ("Straße", "strasse"), ("(stripes)", "stripes"), ("a\tb\nc", "a b c")])
def test_normalise_name(raw, expected):
    assert K.normalise_name(raw) == expected


def test_gold_scoring():
    assert K.score_gold("label", {"label": "apple"}, {"label": "apple"}) == 1.0
    assert K.score_gold("label", {"label": "apple"}, {"label": "banana"}) == 0.0
    gold = K.validate_gold("rate_arguments", RATE, {"arguments": {"1": "no", "2": "yes"}})
    assert K.score_gold("rate_arguments", gold, {"arguments": {"1": "no", "2": "no"}, "match": 3}) == 0.5
    names = K.validate_gold("name_feature", NAME, {"names": ["Wheel", "tyre"]})
    assert names == {"names": ["tyre", "wheel"]}
    assert K.score_gold("name_feature", names, {"name": " WHEEL.", "coherence": 2}) == 1.0
    box = {"boxes": [[0.0, 0.0, 0.5, 0.5]]}
    assert K.score_gold("mark_rationale", box, {"points": [[0.2, 0.2], [0.9, 0.9]], "boxes": []}) == 1.0  # half inside
    assert K.score_gold("mark_rationale", box, {"points": [[0.9, 0.9]], "boxes": [[0.6, 0.6, 1, 1]]}) == 0.0
    with pytest.raises(K.AnswerError) as err:
        K.validate_gold("label", LABEL, {"label": "cherry"})
    assert err.value.field == "gold.label"


def test_export_rows_follow_the_contract():
    rows = K.export_rows("rate_arguments", RATE, {"arguments": {"1": "yes", "2": "no"}, "match": 4, "comment": "hm"})
    assert [(r["item"], r["label"], r["rank"], r["channel"], r["text"]) for r in rows] == [
        ("arg:1", "yes", 1, 3, ""), ("arg:2", "no", 2, 7, ""), ("match", "4", None, None, "hm")]
    rows = K.export_rows("name_feature", NAME, {"name": "Red Wheel!", "coherence": 2})
    assert [(r["item"], r["label"], r["text"], r["channel"]) for r in rows] == [
        ("name", "red wheel", "Red Wheel!", 12), ("coherence", "2", "", 12)]
    rows = K.export_rows("mark_rationale", MARK, {"points": [[0.1, 0.2]], "boxes": [[0, 0, 0.5, 0.5]]})
    assert rows[0]["item"] == "rationale" and rows[0]["label"] == "2"
    assert json.loads(rows[0]["points"]) == [[0.1, 0.2]] and json.loads(rows[0]["boxes"]) == [[0, 0, 0.5, 0.5]]
    assert K.export_rows("label", LABEL, {"label": "apple"})[0]["item"] == "label"


def test_tasks_from_sheets(sheets_dir):
    specs, classes = tasks_from_sheets(sheets_dir, ["rate_arguments", "name_feature", "mark_rationale", "label"])
    assert classes == ["apple", "banana", "cherry"]
    by_kind = {}
    for s in specs:
        by_kind.setdefault(s.kind, []).append(s)
    assert {k: len(v) for k, v in by_kind.items()} == {"rate_arguments": 3, "mark_rationale": 3, "label": 3,
                                                       "name_feature": 3}
    assert sorted(s.payload["channel"] for s in by_kind["name_feature"]) == [3, 7, 12]
    rate = by_kind["rate_arguments"][0].payload
    assert rate["image"] == "images/s1.png" and [a["channel"] for a in rate["arguments"]] == [3, 7]
    assert rate["arguments"][0]["heatmap"] == "heatmaps/s1_c3.png"


def test_bad_sheets_name_file_and_field(tmp_path, sheets_dir):
    with pytest.raises(SheetError, match="no 'sheets/' folder"):
        load_sheets(tmp_path)
    (tmp_path / "sheets").mkdir()
    (tmp_path / "sheets" / "x.json").write_text(json.dumps({"sample_id": "x", "image": "images/x.png", "arguments": []}))
    with pytest.raises(SheetError, match=r"x\.json: missing fields 'schema_version', 'label', .*'prediction'"):
        load_sheets(tmp_path)
    sheet = json.loads((sheets_dir / "sheets" / "s1.json").read_text())
    sheet["image"] = "../../etc/passwd.png"
    (tmp_path / "sheets" / "x.json").write_text(json.dumps(sheet))
    with pytest.raises(SheetError, match="leaves the sheets folder"):
        tasks_from_sheets(tmp_path, ["label"], classes=["apple", "banana", "cherry"])


def test_tasks_from_images(sheets_dir):
    manifest, specs = tasks_from_images([str(sheets_dir / "images" / "s1.png"),
                                         {"id": "pool-7", "image": str(sheets_dir / "images" / "s2.png")}], ["a", "b"])
    assert manifest == {"i00001.png": str((sheets_dir / "images" / "s1.png").resolve()),
                        "i00002.png": str((sheets_dir / "images" / "s2.png").resolve())}
    assert [(s.sheet, s.payload["image"]) for s in specs] == [("s1", "i00001.png"), ("pool-7", "i00002.png")]
    with pytest.raises(SheetError, match=r"images\[0\]"):
        tasks_from_images(["/nonexistent.png"], ["a"])

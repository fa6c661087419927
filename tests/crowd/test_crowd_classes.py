"""Label choices come from the model's full class list that explain records in the sheets
summary; a label batch whose choices miss a class is refused, naming the missing classes."""

import json
import shutil

import pytest
from click.testing import CliRunner

from argus.cli import cli
from crowd.sheets import sheet_batch
from explain.sheet_files import SheetError, summary_classes, write_summary

MODEL = ["apple", "banana", "cherry", "durian"]  # durian: a class of the model no sheet shows


@pytest.fixture
def folder(sheets_dir, tmp_path):
    out = tmp_path / "sheets"
    shutil.copytree(sheets_dir, out)
    write_summary(out, {"n_sheets": 3}, classes=MODEL)
    return out


def test_label_choices_are_the_models_full_class_list(folder):
    assert json.loads((folder / "summary.json").read_text())["classes"] == MODEL
    made = sheet_batch(folder, ["label"], limit=1)  # s1 shows apple and banana only
    assert made.classes == MODEL and {tuple(s.payload["classes"]) for s in made.specs} == {tuple(MODEL)}


def test_choices_that_miss_a_class_are_refused_by_name(folder):
    with pytest.raises(SheetError, match=r"miss 2 of the model's classes .*summary\.json: cherry, durian"):
        sheet_batch(folder, ["label"], classes=["apple", "banana"])
    assert sheet_batch(folder, ["label"], classes=MODEL + ["none of these"]).classes == MODEL + ["none of these"]


def test_old_summary_without_classes_needs_explicit_choices(folder):
    (folder / "summary.json").write_text(json.dumps({"n_sheets": 3}))
    assert summary_classes(folder) is None
    with pytest.raises(SheetError, match=r"summary\.json: no 'classes' .*give them explicitly \(--classes\)"):
        sheet_batch(folder, ["label"])
    # explicit choices must still cover what the sheets show
    with pytest.raises(SheetError, match=r"miss 1 of the classes the sheets mention: cherry"):
        sheet_batch(folder, ["label"], classes=["apple", "banana"])
    assert sheet_batch(folder, ["label"], classes=["apple", "banana", "cherry"]).classes == ["apple", "banana", "cherry"]
    # kinds that offer no class choices still work (classes as the sheets mention them)
    assert sheet_batch(folder, ["rate_arguments"]).classes == ["apple", "banana", "cherry"]


def test_malformed_class_lists_name_the_field(folder):
    (folder / "summary.json").write_text(json.dumps({"classes": ["apple", "apple"]}))
    with pytest.raises(SheetError, match=r"summary\.json: field 'classes': a class name appears twice"):
        summary_classes(folder)
    with pytest.raises(SheetError, match="classes: expected distinct"):
        write_summary(folder, {}, classes=["a", ""])


def test_cli_and_api_refuse_a_label_batch_missing_classes(folder, tmp_path, monkeypatch, client, h):
    monkeypatch.setenv("ARGUS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    r = CliRunner().invoke(cli, ["crowd", "batch", "create", str(folder), "--kind", "label", "--classes", "apple,banana"])
    assert r.exit_code != 0 and "cherry, durian" in r.output, r.output
    r = CliRunner().invoke(cli, ["crowd", "batch", "create", str(folder), "--kind", "label", "--limit", "1"])
    assert r.exit_code == 0 and "batch 1 created: 1 tasks" in r.output, r.output
    r = client.post("/api/batches", json={"sheets_dir": str(folder), "kind": "label", "classes": ["apple"]},
                    headers=h.AUTH)
    assert r.status_code == 400 and r.get_json()["field"] == "classes"
    assert "banana, cherry, durian" in r.get_json()["message"]

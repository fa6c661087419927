"""The sheets-folder contract (`explain.sheet_files`): reading a folder, every problem a
`SheetError` naming the file, the summary, and no torch at import time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from explain.sheet_files import SheetError, load_sheets, read_summary, write_sheet, write_summary

FIXTURE = Path(__file__).resolve().parents[1] / "crowd" / "fixtures" / "sheets"


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "sheets_root"
    shutil.copytree(FIXTURE, root)
    return root


def test_load_sheets_keys_by_sample_id_in_order_with_root_and_files(folder):
    sheets = load_sheets(folder)
    assert list(sheets) == ["s1", "s2", "s3"]
    assert sheets.root == folder and sheets.files["s2"] == folder / "sheets" / "s2.json"
    assert sheets["s1"]["prediction"]["class"] == json.loads((folder / "sheets" / "s1.json").read_text())["prediction"]["class"]


def test_write_then_load_round_trips(folder, tmp_path):
    out = tmp_path / "out"
    (out / "sheets").mkdir(parents=True)
    for sheet in load_sheets(folder).values():
        write_sheet(out, sheet)
    assert load_sheets(out) == load_sheets(folder)


@pytest.mark.parametrize("breakage,message", [
    (lambda root: shutil.rmtree(root / "sheets"), r"no 'sheets/' folder"),
    (lambda root: [p.unlink() for p in (root / "sheets").glob("*.json")], r"no sheet JSON files"),
    (lambda root: (root / "sheets" / "s2.json").write_text("{not json"), r"s2\.json: not valid JSON"),
    (lambda root: (root / "sheets" / "s9.json").write_text((root / "sheets" / "s1.json").read_text()),
     r"s9\.json: sample_id 's1' is also the sample_id of .*s1\.json"),
    (lambda root: (root / "sheets" / "s3.json").write_text(json.dumps(
        {**json.loads((root / "sheets" / "s3.json").read_text()), "margin": "big"})),
     r"s3\.json: field 'margin': 'big' is not of type 'number'"),
], ids=["no-folder", "empty", "bad-json", "duplicate-id", "bad-field"])
def test_bad_folders_name_the_file(folder, breakage, message):
    breakage(folder)
    with pytest.raises(SheetError, match=message):
        load_sheets(folder)


def test_summary_is_strict_unless_optional(folder, tmp_path):
    assert read_summary(folder)["classes"] == ["apple", "banana", "cherry"]
    write_summary(tmp_path, {"n_sheets": 2})
    assert read_summary(tmp_path) == {"n_sheets": 2}
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(SheetError, match=r"summary\.json: expected a JSON object, got list"):
        read_summary(tmp_path)
    assert read_summary(tmp_path, optional=True) == {}
    with pytest.raises(SheetError, match=r"missing.*summary\.json: cannot read the sheets summary"):
        read_summary(tmp_path / "missing")
    assert read_summary(tmp_path / "missing", optional=True) == {}


def test_reading_sheets_loads_no_torch():
    code = ("import sys; from explain.sheet_files import load_sheets; "
            f"load_sheets({str(FIXTURE)!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

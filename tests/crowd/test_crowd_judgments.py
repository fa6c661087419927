"""The judgments-frame contract (`crowd.judgments`): every row the task kinds export has a
known item and level, the export reads back with the same values in CSV and Parquet, and the
module stays cheap to import for the server and for analysis."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from crowd import judgments as J
from crowd import kinds as K

PAYLOADS = {
    "rate_arguments": ({"arguments": [{"rank": 1, "channel": 3}, {"rank": 2, "channel": 7}]},
                       {"arguments": {"1": "yes", "2": "cant_tell"}, "match": 4, "comment": "ok"}),
    "name_feature": ({"channel": 12}, {"name": "Red Wheel", "coherence": 2}),
    "mark_rationale": ({"max_marks": 3}, {"points": [[0.1, 0.2]], "boxes": [[0.1, 0.1, 0.5, 0.5]]}),
    "label": ({"classes": ["apple", "banana"]}, {"label": "banana"}),
}


def _rows() -> list[dict]:
    rows = []
    for n, kind in enumerate(J.KINDS):
        payload, answer = PAYLOADS[kind]
        for r in K.export_rows(kind, payload, K.validate_answer(kind, payload, answer)):
            rows.append({"task": n + 1, "worker": f"lab:w{n}", "kind": kind, "assignment": 10 + n, "batch": 1,
                         "duration_s": 2.5, "submitted_at": "2024-05-01T12:00:00+00:00", "sheet": f"s{n}",
                         "is_gold": n == 3, "gold_label": "banana" if n == 3 else "", **r,
                         **({"names_shown": True} if kind == "rate_arguments" else {})})
    return rows


def test_every_exported_item_has_a_level_and_every_kind_is_covered():
    items = {(r["kind"], J.item_group(r["item"])) for r in _rows()}
    assert items == set(J.KIND_LEVELS)
    assert {kind for kind, _ in J.KIND_LEVELS} == set(J.KINDS)
    assert set(J.KIND_LEVELS.values()) <= set(J.LEVELS)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reads_back_with_the_same_values(tmp_path, fmt):
    path = tmp_path / f"judgments.{fmt}"
    assert J.write_judgments(str(path), iter(_rows())) == 7
    frame = J.read_judgments(path)
    assert list(frame.columns) == J.COLUMNS
    assert frame["label"].tolist() == ["yes", "cant_tell", "4", "red wheel", "2", "2", "banana"]
    assert frame["item"].tolist() == ["arg:1", "arg:2", "match", "name", "coherence", "rationale", "label"]
    assert frame["channel"].tolist() == [3, 7, pd.NA, 12, 12, pd.NA, pd.NA]
    assert frame["rank"].dtype == "Int64" and frame["duration_s"].tolist() == [2.5] * 7
    assert frame["is_gold"].tolist() == [False] * 6 + [True]
    # rows written without `names_shown` (older producers) read back as False
    assert frame["names_shown"].tolist() == [True] * 3 + [False] * 4
    assert frame["task"].tolist() == ["1", "1", "1", "2", "2", "3", "4"]
    assert frame["submitted_at"].iloc[0] == pd.Timestamp("2024-05-01T12:00:00", tz="UTC")
    assert J.parse_geometry(frame["boxes"].iloc[5]) == [[0.1, 0.1, 0.5, 0.5]]
    assert J.is_model_worker(["model:cnn", "lab:w1"]).tolist() == [True, False]


def test_importing_the_contract_loads_neither_pandas_nor_the_server():
    code = ("import sys, crowd.judgments, crowd.kinds; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'flask', 'sqlalchemy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

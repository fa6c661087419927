"""`argus improve` end to end on a tiny shortcut world: real sheets, a judgments file, the
report's clues table; every correction trains, the before/after files are written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from argus.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::training.trainer.UndertrainedWarning")]


@pytest.fixture(scope="module")
def shortcut(tmp_path_factory):
    """A tiny world with the background cue on 90% of day images (test too), a 1-epoch model,
    6 real sheets, judgments calling every top argument invalid, and a report clues table."""
    from explain.pipeline import run_explain
    from training.toyworld import generate_toyworld
    from training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("improve")
    data = generate_toyworld(root / "data", n_train=120, n_val=30, n_test=36, image_size=32, spurious=0.9,
                             spurious_splits=("train", "val", "test"), seed=0, workers=1, progress=False)
    Trainer(data, root / "run", TrainConfig(epochs=1, batch_size=32, device="cpu", model_kwargs={"widths": (8, 8, 8, 8)}),
            progress=False).fit()
    run_explain(root / "run", data, root / "sheets", limit=6, top_m=2, device="cpu", progress=False, workers=1)
    sheets = sorted(p.stem for p in (root / "sheets" / "sheets").glob("*.json"))
    rows = []
    for sid in sheets:
        for w in range(3):
            rows.append({"task": sid, "worker": f"w{w}", "kind": "rate_arguments", "item": "arg:1", "label": "no"})
            rows.append({"task": sid, "worker": f"w{w}", "kind": "rate_arguments", "item": "arg:2", "label": "yes"})
        rows.append({"task": sid, "worker": "w0", "kind": "mark_rationale", "item": "rationale", "label": "[]"})
    pd.DataFrame(rows).to_csv(root / "judgments.csv", index=False)
    (root / "report" / "tables").mkdir(parents=True)
    pd.DataFrame([{"group_type": "class", "group": "lemur", "n_sheets": 5, "cue": "background",
                   "top_background": "sand", "suggestion": "for class `lemur`, arguments fire on the background"},
                  {"group_type": "domain", "group": "day", "n_sheets": 5, "cue": "background", "top_background": "",
                   "suggestion": "in `day`, arguments fire on the background"}]).to_csv(
        root / "report" / "tables" / "clues.csv", index=False)
    top = [json.loads((root / "sheets" / "sheets" / f"{s}.json").read_text())["arguments"][0]["channel"] for s in sheets]
    second = [json.loads((root / "sheets" / "sheets" / f"{s}.json").read_text())["arguments"][1]["channel"] for s in sheets]
    return root, data, top, second


def test_argus_improve_end_to_end(shortcut):
    root, data, top, second = shortcut
    out = root / "out"
    result = CliRunner().invoke(cli, [
        "improve", "--model", str(root / "run"), "--data", str(data), "--report", str(root / "report"),
        "--judgments", str(root / "judgments.csv"), "--sheets", str(root / "sheets"), "--out", str(out),
        "--correction", "rrr-contribution", "--correction", "counterfactual", "--correction", "suppress",
        "--explain", "4", "--device", "cpu"])  # epochs: the judged model's (1)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "improve.json").read_text())
    # every top argument got 3 "no", every second one 3 "yes": invalid = a "no" share >= 0.5 (a
    # channel can be top on one sheet and second on another)
    expected = sorted(c for c in set(top) if top.count(c) >= second.count(c))
    assert doc["clues"]["invalid_channels"] == expected
    assert doc["clues"]["cue"] == "background" and doc["clues"]["backgrounds"] == ["sand"]
    assert doc["clues"]["n_marks"] == 6
    assert list(doc["results"]) == ["before", "rrr-contribution", "counterfactual", "suppress"]
    for r in doc["results"].values():
        assert set(r["test"]["per_domain"]) == set(r["cue_free"]["per_domain"]) == {"day", "night", "fog"}
        assert r["pointing_game"]["n"] == 36 and 0.0 <= r["majority_pointing_game"] <= 1.0
    assert doc["best"] in ("rrr-contribution", "counterfactual", "suppress")
    suppressed = torch.load(out / "runs" / "suppress" / "model.pt", weights_only=True)["fc.weight"]
    assert torch.equal(suppressed[:, doc["clues"]["invalid_channels"]],
                       torch.zeros(6, len(doc["clues"]["invalid_channels"])))
    assert (out / "improve.png").stat().st_size > 1000
    table = (out / "improve.md").read_text().splitlines()
    assert table[0].startswith("| model | test |") and len(table) == 2 + 4
    assert "clues: shortcut cue: background (sand)" in result.output and "best correction:" in result.output
    assert doc["config"]["epochs"] == 1
    sheets = json.loads((out / "sheets" / "summary.json").read_text())
    assert sheets["n_sheets"] == 4 and f"sheets of {doc['best']}: 4" in result.output


def test_argus_improve_explains_what_is_missing(shortcut, tmp_path):
    root, data, _, _ = shortcut
    base = ["improve", "--model", str(root / "run"), "--data", str(data), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, base + ["--report", str(tmp_path)])
    assert result.exit_code == 1 and "tables/clues.csv: no clues table (run `argus report` first)" in result.output
    result = CliRunner().invoke(cli, base + ["--report", str(root / "report"), "--judgments", str(root / "judgments.csv")])
    assert result.exit_code == 2 and "--judgments and --sheets go together" in result.output


def test_the_cue_free_test_keeps_the_creatures_and_draws_backgrounds_at_chance(shortcut, tmp_path):
    from training.toyworld import write_cue_free_test

    _, data, _, _ = shortcut
    out = write_cue_free_test(data, tmp_path / "cf")
    a = pd.read_csv(data / "samples.csv")
    a = a[a["split"] == "test"].reset_index(drop=True)
    b = pd.read_csv(out / "samples.csv")
    assert b["sample_id"].tolist() == a["sample_id"].tolist()
    assert b["label"].tolist() == a["label"].tolist() and b["domain"].tolist() == a["domain"].tolist()
    assert a["spurious"].sum() > 0 and b["spurious"].sum() == 0
    changed = 0
    for sid, dom in zip(a["sample_id"], a["domain"]):
        m0 = np.array(Image.open(data / "masks" / f"{sid}.png"))
        assert np.array_equal(m0, np.array(Image.open(out / "masks" / f"{sid}.png")))  # the same creature
        if dom == "day":  # no blur or noise: the object's pixels are identical
            i0, i1 = (np.array(Image.open(d / "images" / f"{sid}.png")) for d in (data, out))
            assert np.array_equal(i0[m0 > 0], i1[m0 > 0])
            changed += int(not np.array_equal(i0, i1))
    assert changed > 0

"""End to end: `argus explain` on a tiny toy world writes a valid, self-contained sheets folder."""

from __future__ import annotations

import json
import re

import pytest
import torch
from click.testing import CliRunner

from argus.cli import cli
from explain.names import ConceptNames
from explain.sheet_files import load_sheets

pytestmark = pytest.mark.slow  # renders a toy world end to end


def test_cli_writes_the_contract_layout(sheets):
    out, output = sheets
    docs = list(load_sheets(out).values())  # each validated against the schema
    assert len(docs) == 12
    for doc in docs:
        if doc["domain"] == "night":  # dark: a brightened copy beside the input
            assert doc["image_brightened"] == doc["image"][:-4] + "_bright.png"
        for rel in [doc["image"]] + [doc["image_brightened"] or doc["image"]] + [a["heatmap"] for a in doc["arguments"]] + [a["exemplar_strip"] for a in doc["arguments"]] \
                + [p for a in doc["arguments"] for p in a["exemplars"]]:
            assert (out / rel).is_file(), rel
        assert (out / "sheets" / f"{doc['sample_id']}.html").is_file() and (out / "sheets" / f"{doc['sample_id']}.png").is_file()
        assert doc["ground_truth"] is not None and doc["domain"] in ("day", "night", "fog")
    assert len({d["heatmap_scale"] for d in docs}) == 1  # one colour scale per run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sheets"] == 12 and sorted(summary["sheets"]) == sorted(d["sample_id"] for d in docs)
    by_domain = summary["ground_truth"]["by_domain"]
    assert sum(r["n"] for r in by_domain.values()) == 12
    hits = [d["ground_truth"]["pointing_hit"] for d in docs]
    assert summary["ground_truth"]["overall"]["pointing_game"] == pytest.approx(sum(hits) / len(hits))
    index = json.loads((out / "exemplars" / "index.json").read_text())
    assert index["checkpoint_hash"] == summary["checkpoint_hash"] and index["n_images"] == 48
    assert "pointing" in output and "sheets ->" in output


def test_html_is_self_contained_with_relative_paths(sheets):
    out, _ = sheets
    page = next((out / "sheets").glob("*.html"))
    html = page.read_text()
    assert 'name="viewport"' in html
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(not s.startswith(("/", "http")) for s in srcs)
    assert all((page.parent / s).resolve().is_file() for s in srcs)
    index = (out / "index.html").read_text()
    assert index.count('class="item"') == 12
    for sel in ("f-class", "f-domain", "f-correct"):
        assert f'id="{sel}"' in index
    assert all((out / s).is_file() for s in re.findall(r'<img src="([^"]+)"', index))


def test_rerun_reuses_exemplars_and_crowd_names(toy_run, sheets):
    out, _ = sheets
    doc = json.loads(next((out / "sheets").glob("*.json")).read_text())
    channel = doc["arguments"][0]["channel"]
    names = ConceptNames.load(out / "names.json")
    names.set(channel, "zigzag fur", "crowd", confidence=0.9)
    names.save()
    result = CliRunner().invoke(cli, ["explain", "--model", str(toy_run["run"]), "--data", str(toy_run["data"]), "--out", str(out),
                                      "--limit", "12", "--top", "2", "--device", "cpu", "--workers", "1", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["exemplars"]["reused"] is True
    again = json.loads((out / "sheets" / f"{doc['sample_id']}.json").read_text())
    arg = next(a for a in again["arguments"] if a["channel"] == channel)
    assert (arg["name"], arg["name_source"]) == ("zigzag fur", "crowd")
    assert "zigzag fur" in again["sentence"] or arg["rank"] > 1
    assert ConceptNames.load(out / "names.json").lookup(channel)[1] == "crowd"  # reference names never overwrite crowd ones


def test_cli_errors_are_clear(toy_run, tmp_path):
    result = CliRunner().invoke(cli, ["explain", "--model", str(toy_run["run"]), "--data", str(toy_run["data"]), "--out", str(tmp_path),
                                      "--layer", "nope", "--device", "cpu", "--quiet"])
    assert result.exit_code != 0 and "candidate layers" in result.output


def test_split_batches_cached_and_streamed_agree(toy_run):
    from explain.pipeline import SplitBatches, evenly_spaced
    from training.datasets import ImageDataset

    info = toy_run["info"]
    cached = ImageDataset(info, "test", image_size=32, cache=True)
    streamed = ImageDataset(info, "test", image_size=32, cache=False)
    rows = evenly_spaced(len(cached), 7)
    assert rows == [0, 4, 8, 12, 15, 19, 23]
    a = list(SplitBatches(cached, rows, 3))
    b = list(SplitBatches(streamed, rows, 3, workers=0))
    assert len(a) == len(b) == 3
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        torch.testing.assert_close(xa, xb)
        assert ya.tolist() == yb.tolist() and ia.tolist() == ib.tolist()
    assert torch.cat([i for _, _, i in a]).tolist() == rows


def test_summary_records_the_models_full_class_list(sheets, toy_run):
    from explain.sheet_files import summary_classes

    out, _ = sheets
    meta = json.loads((toy_run["run"] / "model.json").read_text())
    assert summary_classes(out) == meta["classes"] and len(meta["classes"]) >= 2

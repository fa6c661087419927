"""`argus experiment blind-domains` end to end on a tiny world: files, resume, shards, --imbalance."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from argus.cli import cli
from training.datasets import load_dataset
from training.experiments import run_blind_domains, write_imbalanced_dataset
from training.trainer import Trainer

TRAIN = {"batch_size": 32, "device": "cpu", "image_size": 32, "model_kwargs": {"widths": (8, 16, 16, 16)}}


@pytest.mark.slow
def test_blind_domains_writes_table_and_resumes(tiny_world, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    methods = ["erm", "center-distance", "groupdro-oracle"]
    # two shards, one after the other: the first leaves runs missing and writes no summary
    assert run_blind_domains(tiny_world, out, methods, seeds=2, epochs=1, train_options=TRAIN,
                             progress=False, shard=(0, 2)) is None
    assert not (out / "summary.csv").exists()
    summary = run_blind_domains(tiny_world, out, methods, seeds=2, epochs=1, train_options=TRAIN,
                                progress=False, shard=(1, 2))
    for name in ("summary.csv", "summary.md", "summary.json", "results.csv", "blind_domains.png",
                 "summary_oracle_selection.csv", "experiment.json"):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "summary.csv")
    assert list(table["method"]) == ["erm", "center-distance", "groupdro-oracle (oracle)"]
    assert {"day", "night", "fog", "worst domain", "worst domain (oracle sel.)", "gap closure"} <= set(table.columns)
    assert list(summary["domains"])[0] == "day"  # majority first
    assert table.loc[0, "compute vs ERM"] == "1.00x"  # rows seen, relative to ERM
    per_seed = pd.read_csv(out / "results.csv")
    assert len(per_seed) == 6 and set(per_seed["seed"]) == {0, 1}
    result = json.loads((out / "runs" / "erm" / "seed1" / "result.json").read_text())
    saved = json.loads((out / "runs" / "erm" / "seed1" / "per_domain_epochs.json").read_text())
    assert result["selections"]["worst_class"]["test"]["per_domain"] == saved["1"]["test_per_domain"]
    assert set(result["selections"]["worst_class"]["test"]["per_domain"]) == {"day", "night", "fog"}
    doc = json.loads((out / "summary.json").read_text())  # valid JSON (no NaN)
    assert doc["gap_closure"]["groupdro-oracle"]["value"] in (1.0, None)

    # rerun: every run is finished, nothing trains, the same table comes back
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = run_blind_domains(tiny_world, out, methods, seeds=2, epochs=1, train_options=TRAIN, progress=False)
    assert again["table"].equals(summary["table"])


def test_imbalanced_dataset_loads_with_ratio(tiny_world, tmp_path):
    root = write_imbalanced_dataset(tiny_world, tmp_path / "imb", ratio=34, seed=0)
    info = load_dataset(root)
    train = info.split_table("train")
    counts = train["domain"].value_counts().to_dict()
    assert counts["day"] == 136 and counts["night"] <= 4 and counts["fog"] <= 4  # 136 / 34 = 4
    assert info.paths("train")[0].exists()  # paths resolve back to the source images
    assert len(info.split_table("test")) == 60
    assert json.loads((root / "imbalance.json").read_text())["ratio"] == 34


def test_cli_errors_are_clear(tiny_world, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["experiment", "blind-domains", "--data", str(tiny_world), "--out", str(tmp_path),
                              "--methods", "erm,magic", "--quiet"])
    assert res.exit_code != 0 and "unknown method(s) magic" in res.output
    res = runner.invoke(cli, ["experiment", "blind-domains", "--data", str(tiny_world), "--out", str(tmp_path),
                              "--method-option", "jtt.upweight=3", "--methods", "erm", "--quiet"])
    assert res.exit_code != 0 and "not run: jtt" in res.output
    res = runner.invoke(cli, ["experiment", "blind-domains", "--data", str(tiny_world), "--shard", "2/2"])
    assert res.exit_code != 0 and "--shard" in res.output


def test_imbalance_on_an_imagefolder_with_domains_csv(tmp_path):
    import numpy as np
    from PIL import Image

    src = tmp_path / "writers"
    lines = ["path,domain"]
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for writer, n in (("w1", 30), ("w2", 10)):
            for i in range(n):
                rel = f"{cls}/{writer}_{i}.png"
                Image.fromarray(np.full((8, 8), i, np.uint8)).save(src / rel)
                lines.append(f"{rel},{writer}")
    (src / "domains.csv").write_text("\n".join(lines) + "\n")
    info = load_dataset(write_imbalanced_dataset(src, tmp_path / "imb", ratio=10, seed=0))
    train = info.split_table("train")
    n_w1 = int((train["domain"] == "w1").sum())
    assert n_w1 == 42  # 30 per class minus the 20 % test and 10 % val (make_split), both classes
    assert int((train["domain"] == "w2").sum()) == n_w1 // 10
    assert all(p.exists() for p in info.paths("train"))

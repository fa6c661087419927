"""`argus experiment blind-domains` end to end on a tiny world: files, resume, shards, --imbalance."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from argus.cli import cli
from training.datasets import load_dataset
from argus.pipelines.blind_domains import (plan_protocol, resolve_job, result_path, run_blind_domains, select_config,
                                          write_plan)
from training.experiments import write_imbalanced_dataset
from training.trainer import Trainer

TRAIN = {"batch_size": 32, "device": "cpu", "image_size": 32, "model_kwargs": {"widths": (8, 16, 16, 16)}}


@pytest.mark.slow
def test_blind_domains_writes_tables_and_resumes(tiny_world, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    methods = ["erm", "center-distance", "jtt", "domain-balanced-oracle"]
    # a time limit already past: the plan is written, nothing runs, no summary
    assert run_blind_domains(tiny_world, out, methods, seeds=2, epochs=2, train_options=TRAIN, progress=False,
                             equal_compute=["erm"], deadline=0.0) is None
    plan = json.loads((out / "plan.json").read_text())
    assert [j["key"] for j in plan[:4]] == [f"data/own/{m}/default/seed0" for m in
                                            ("erm", "center-distance", "jtt", "domain-balanced-oracle")]
    eq = [j for j in plan if j["extra"]["budget"] == "jtt-compute"]
    assert [j["key"] for j in eq] == ["data/jtt-compute/erm/default/seed0", "data/jtt-compute/erm/default/seed1"]
    assert eq[0]["deps"] == ["data/own/jtt/default/seed0", "data/own/jtt/default/seed1"]
    assert not (out / "summary.csv").exists()
    verdicts = run_blind_domains(tiny_world, out, methods, seeds=2, epochs=2, train_options=TRAIN, progress=False,
                                 equal_compute=["erm"])
    for name in ("summary.csv", "summary.md", "summary.json", "summary_per_seed.csv", "summary.png",
                 "summary_oracle_selection.csv", "summary_curves.png", "summary_equal_compute.csv",
                 "summary_verdicts.json"):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "summary.csv")
    assert list(table["method"]) == ["erm", "center-distance", "jtt", "domain-balanced-oracle (oracle)"]
    assert {"day", "night", "fog", "worst domain", "worst domain (oracle sel.)", "gap closure",
            "WDA gain vs ERM [95% CI]", "WDA - JTT [95% CI]"} <= set(table.columns)
    assert table.loc[0, "compute vs ERM"] == "1.00x"  # rows seen, relative to ERM
    per_seed = pd.read_csv(out / "summary_per_seed.csv")
    assert len(per_seed) == 8 and set(per_seed["seed"]) == {0, 1}
    result = json.loads((out / "runs" / "data/own/erm/default/seed1" / "result.json").read_text())
    saved = json.loads((out / "runs" / "data/own/erm/default/seed1" / "per_domain_epochs.json").read_text())
    best = result["selections"]["worst_class"]["epoch"]
    assert result["selections"]["worst_class"]["test"]["per_domain"] == saved[str(best)]["test_per_domain"]
    assert [c["epoch"] for c in result["curve"]] == [1, 2] and result["budget"] == "own"
    # equal compute: ERM trains as many epochs as make its sample visits JTT's mean
    jtt_rows = [json.loads((out / "runs" / f"data/own/jtt/default/seed{s}" / "result.json").read_text())["rows_seen"]
                for s in (0, 1)]
    eq = json.loads((out / "runs" / "data/jtt-compute/erm/default/seed0" / "result.json").read_text())
    assert eq["epochs"] == round(sum(jtt_rows) / 2 / eq["n_train"]) and eq["matched_rows"] == sum(jtt_rows) / 2
    equal = pd.read_csv(out / "summary_equal_compute.csv")
    assert list(equal["method"]) == ["erm", "jtt"]
    assert set(json.loads((out / "summary_verdicts.json").read_text())["data"]) >= {"erm_gap_ge_15_points", "equal_compute"}

    # rerun: every run is finished, nothing trains, the same tables come back
    before = (out / "summary_verdicts.json").read_text(), (out / "summary.csv").read_text()
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert run_blind_domains(tiny_world, out, methods, seeds=2, epochs=2, train_options=TRAIN, progress=False,
                             equal_compute=["erm"]) is not None
    assert ((out / "summary_verdicts.json").read_text(), (out / "summary.csv").read_text()) == before
    assert verdicts["data"]["runs"] == 10


def test_tuning_picks_the_best_worst_class_validation_config(tmp_path):
    grid = {"c0": {}, "c1": {"power": 2.0}, "c2": {"power": 3.0, "train": {"weight_decay": 1e-3}}}
    scores = {"c0": (0.5, 0.7), "c1": (0.6, 0.6), "c2": (0.9, 0.6)}
    keys = {}
    for name, vals in scores.items():
        keys[name] = []
        for seed, v in zip((1000, 1001), vals):
            key = f"d/tune/m/{name}/seed{seed}"
            path = result_path(tmp_path, key)
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"selections": {"worst_class": {"val_worst_class_accuracy": v}}}))
            keys[name].append(key)
    name, opts, got = select_config(tmp_path, grid, keys)
    assert name == "c2" and got == pytest.approx({"c0": 0.6, "c1": 0.6, "c2": 0.75})
    j = {"key": "d/own/m/tuned/seed0", "options": {"tuned": {"grid": grid, "keys": keys}}, "epochs": 3,
         "train": {"weight_decay": 5e-4, "lr": 0.1}, "extra": {}}
    options, epochs, train, extra = resolve_job(tmp_path, j, n_train=10)
    assert options == {"power": 3.0} and train == {"weight_decay": 1e-3, "lr": 0.1} and extra["chosen_config"] == "c2"
    del scores  # a tie goes to the first (default) configuration
    name, _, _ = select_config(tmp_path, {"c0": {}, "c1": {}}, {"c0": keys["c1"], "c1": keys["c0"]})
    assert name == "c0"


def test_claims_are_exclusive_and_dead_claims_are_taken_over(tmp_path):
    from argus.pipelines.blind_domains import _claim

    assert _claim(tmp_path, "a/b") and not _claim(tmp_path, "a/b")
    claim = tmp_path / "claims" / "a__b.claim"
    import socket

    claim.write_text(f"{socket.gethostname()} 999999999")  # a process that does not exist
    assert _claim(tmp_path, "a/b")
    claim.write_text("another-host 1")
    assert not _claim(tmp_path, "a/b")


def test_plan_protocol_orders_key_cells_first_and_tunes_on_request(tmp_path):
    ds = {"toy": {"data": "w", "epochs": 8, "train": {}}, "digits": {"data": "d", "epochs": 4, "train": {}}}
    jobs = plan_protocol(ds, seeds=range(2), tune=True)
    keys = [j["key"] for j in jobs]
    tune = [k for k in keys if "/tune/" in k]
    assert len(tune) == 2 * 8 * 4 * 2 and keys[:len(tune)] == tune  # 2 datasets x 8 methods x 4 configs x 2 seeds
    own = [k for k in keys if "/own/" in k]
    assert own[:4] == [f"toy/own/{m}/tuned/seed0" for m in ("erm", "center-distance", "jtt", "domain-balanced-oracle")]
    main = next(j for j in jobs if j["key"] == "toy/own/center-distance/tuned/seed0")
    assert len(main["deps"]) == 8 and all("/tune/center-distance/" in d for d in main["deps"])
    with pytest.raises(ValueError, match="duplicate job key"):
        write_plan(tmp_path, jobs + jobs[:1])


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
    res = runner.invoke(cli, ["experiment", "blind-domains", "--data", str(tiny_world), "--workers", "0"])
    assert res.exit_code != 0 and "--workers" in res.output


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

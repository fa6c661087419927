"""`argus data`, `argus train` and `argus eval` through click's runner and the installed script.

(`argus demo` belongs to the end-to-end pipeline and is tested with it.)
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
from click.testing import CliRunner

from argus.cli import cli


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_toyworld_command_writes_the_dataset(cli_world):
    table = pd.read_csv(cli_world / "samples.csv")
    assert list(table.columns[:5]) == ["sample_id", "path", "label", "domain", "split"]
    assert table.split.value_counts().to_dict() == {"train": 60, "test": 30, "val": 12}
    assert (cli_world / "parts.json").exists() and len(list((cli_world / "masks").glob("*.png"))) == 102


def test_toyworld_rejects_bad_domains(tmp_path):
    result = run_cli("data", "toyworld", "--out", tmp_path / "w", "--domains", "day=0.5,night=0.2")
    assert result.exit_code == 2 and "must sum to 1" in result.output
    result = run_cli("data", "toyworld", "--out", tmp_path / "w", "--spurious", "1.5")
    assert result.exit_code == 2 and "--spurious" in result.output


def test_toyworld_preset_hard_with_an_override(tmp_path):
    result = run_cli("data", "toyworld", "--out", tmp_path / "w", "--preset", "hard", "--n-train", "40", "--n-val", "0",
                     "--n-test", "6", "--quiet")
    assert result.exit_code == 0, result.output
    opts = json.loads((tmp_path / "w" / "toyworld.json").read_text())
    assert opts["n_train"] == 40 and opts["image_size"] == 32 and opts["shift"] == 1.0
    assert opts["domains"] == {"day": 0.95, "night": 0.035, "fog": 0.015}
    train = pd.read_csv(tmp_path / "w" / "samples.csv").query("split == 'train'")
    assert train.domain.value_counts().to_dict() == {"day": 38, "night": 1, "fog": 1}  # largest remainders of 40
    result = run_cli("data", "toyworld", "--out", tmp_path / "x", "--preset", "medium")
    assert result.exit_code == 2 and "'medium' is not one of 'easy', 'hard'" in result.output


def test_check_ok_prints_classes_by_domains(cli_world):
    result = run_cli("data", "check", cli_world)
    assert result.exit_code == 0, result.output
    assert "train/day" in result.output and "total" in result.output and "ERROR" not in result.output
    doc = json.loads(run_cli("data", "check", cli_world, "--json").output)
    assert doc["ok"] and doc["counts"]["total"]["total"] == 102


def test_check_fails_naming_the_bad_file(cli_world, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(cli_world, bad)
    victim = pd.read_csv(bad / "samples.csv").path[4]
    (bad / victim).write_bytes(b"\x89PNG broken")
    result = run_cli("data", "check", bad)
    assert result.exit_code == 1
    assert f"{victim}: unreadable image" in result.output


def test_train_then_eval_json_and_table(cli_world, cli_run):
    assert (cli_run / "model.pt").exists() and (cli_run / "model.json").exists() and (cli_run / "metrics.json").exists()
    result = run_cli("eval", "--model", cli_run, "--data", cli_world, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("overall_accuracy", "per_domain", "majority_domain", "minority_mean_accuracy", "worst_domain_accuracy", "per_class"):
        assert key in report
    assert report["majority_domain"] == "day"
    assert {d: v["n"] for d, v in report["per_domain"].items()} == {"day": 10, "fog": 10, "night": 10}
    table = run_cli("eval", "--model", cli_run, "--data", cli_world, "--split", "val", "--device", "cpu")
    assert table.exit_code == 0
    assert "domain" in table.output and "majority" in table.output and "yes" in table.output


def test_train_resume_extends_a_run(cli_world, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", cli_world, "--out", run, "--batch-size", "32", "--device", "cpu", "--quiet"]
    first = run_cli(*args, "--epochs", "1", "--augment", "shift")
    assert first.exit_code == 0, first.output
    # 60 rows at batch 32: 2 steps -- said once, plainly, not as a Python warning
    assert "warning: the run looks under-trained: only 2 optimisation steps (< 200)" in first.output
    assert json.loads((run / "model.json").read_text())["augment"] == ["shift"]
    result = run_cli(*args, "--epochs", "2", "--resume", "--augment", "shift")
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())["epochs"]] == [1, 2]


def test_train_errors_are_clear(cli_world, tmp_path):
    result = run_cli("train", "--data", cli_world, "--out", tmp_path / "r", "--method", "nope", "--quiet")
    assert result.exit_code == 2 and "Invalid value for '--method': unknown training method 'nope'" in result.output
    result = run_cli("train", "--data", cli_world, "--out", tmp_path / "r2", "--resume", "--quiet", "--device", "cpu")
    assert result.exit_code == 1 and "nothing to resume" in result.output
    result = run_cli("eval", "--model", tmp_path, "--data", cli_world)
    assert result.exit_code == 1 and "no model.json" in result.output
    result = run_cli("train", "--data", cli_world, "--out", tmp_path / "r3", "--augment", "flip,rotate")
    assert result.exit_code == 2 and "--augment" in result.output and "unknown augmentation 'rotate'" in result.output


def test_installed_script_end_to_end(argus_script, script_env, cli_world, cli_run, tmp_path):
    help_text = subprocess.run([argus_script, "--help"], capture_output=True, text=True, env=script_env, check=True).stdout
    for name in ("data", "train", "eval", "demo"):
        assert name in help_text
    world = tmp_path / "w"
    subprocess.run([argus_script, "data", "toyworld", "--out", world, "--n-train", "12", "--n-val", "0", "--n-test", "6",
                    "--image-size", "32", "--seed", "0", "--quiet"], check=True, env=script_env, capture_output=True)
    check = subprocess.run([argus_script, "data", "check", world], capture_output=True, text=True, env=script_env)
    assert check.returncode == 0 and "train/day" in check.stdout
    out = subprocess.run([argus_script, "eval", "--model", cli_run, "--data", cli_world, "--json", "--device", "cpu"],
                         capture_output=True, text=True, env=script_env, check=True).stdout
    assert json.loads(out)["per_domain"]["day"]["n"] == 10
    (world / "images" / "train-000003.png").unlink()
    bad = subprocess.run([argus_script, "data", "check", world], capture_output=True, text=True, env=script_env)
    assert bad.returncode == 1 and "train-000003.png: missing file" in bad.stdout

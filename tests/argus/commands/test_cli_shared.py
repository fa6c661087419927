"""The parameter types, error decorator and table printer every command shares
(argus/commands/shared.py), through click's runner; and click code only under argus/commands."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from argus.cli import cli
from argus.commands.shared import (KeyValue, LazyDefault, NameChoice, Seeds, cli_errors, config_default,
                                   format_table, list_option, options_dict)

ROOT = Path(__file__).resolve().parents[3]


@click.command()
@list_option("--strategies", names="active.strategies:STRATEGIES", default=LazyDefault(lambda: ("random", "margin")),
             show_default=True)
@list_option("--kind", "kinds", names="crowd.judgments:KINDS")
@list_option("--exclude", item=click.INT)
@click.option("--seeds", type=Seeds(), default="3", show_default=True)
@click.option("--opt", "opts", type=KeyValue(scope="METHOD"), multiple=True)
@click.option("--set", "sets", type=KeyValue(), multiple=True)
@click.option("--batch-size", default=config_default("training.trainer:TrainConfig", "batch_size"), show_default=True,
              type=int)
def probe(strategies, kinds, exclude, seeds, opts, sets, batch_size):
    click.echo(repr((strategies, kinds, exclude, seeds, options_dict(opts), options_dict(sets), batch_size)))


def _run(*args):
    return CliRunner().invoke(probe, list(args))


def test_lists_take_commas_repeats_or_both():
    out = _run("--strategies", "margin,K_center", "--strategies", "bald", "--kind", "label",
               "--kind", "rate_arguments, name_feature", "--exclude", "1,2", "--exclude", "3")
    assert out.exit_code == 0, out.output
    assert eval(out.output) == (("margin", "coreset", "bald"), ("label", "rate_arguments", "name_feature"), (1, 2, 3),
                                [0, 1, 2], {}, {}, 128)


def test_defaults_come_from_registries_and_config_and_show_in_help():
    assert eval(_run().output) == (("random", "margin"), (), (), [0, 1, 2], {}, {}, 128)
    text = _run("--help").output
    assert "[badge|bald|cluster-margin|coreset|entropy|least-confidence|margin|random][,...]" in text
    assert "[default: random, margin]" in text and "[default: 128]" in text
    assert "[rate_arguments|name_feature|mark_rationale|label][,...]" in text


@pytest.mark.parametrize("args, value", [
    (("--seeds", "5"), [0, 1, 2, 3, 4]),
    (("--seeds", "1,3, 7"), [1, 3, 7]),
    (("--opt", "jtt.up-weight=3", "--opt", "center-distance.power=0.5", "--opt", "jtt.mode=fast"),
     {"jtt": {"up_weight": 3, "mode": "fast"}, "center-distance": {"power": 0.5}}),
    (("--set", "gamma=2", "--set", "groups=[1, 2]", "--set", "name=a=b"), {"gamma": 2, "groups": [1, 2], "name": "a=b"}),
], ids=["seed-count", "seed-list", "scoped-options", "options"])
def test_seeds_and_key_values(args, value):
    out = _run(*args)
    assert out.exit_code == 0, out.output
    assert value in eval(out.output)


@pytest.mark.parametrize("args, message", [
    (("--strategies", "margin,nope"), "Invalid value for '--strategies': unknown strategy 'nope'; available: badge, "),
    (("--kind", "essay"), "Invalid value for '--kind': 'essay' is not one of rate_arguments, name_feature"),
    (("--exclude", "1,x"), "Invalid value for '--exclude': 'x' is not a valid integer"),
    (("--seeds", "three"), "Invalid value for '--seeds': expected a count or a comma-separated list of integers, "
                           "got 'three'"),
    (("--seeds", "0"), "need at least one seed"),
    (("--opt", "power=2"), "Invalid value for '--opt': expected METHOD.KEY=VALUE, got 'power=2'"),
    (("--set", "gamma"), "expected KEY=VALUE, got 'gamma'"),
], ids=["unknown-name", "bad-choice", "bad-int", "bad-seeds", "no-seeds", "unscoped", "no-equals"])
def test_bad_values_are_usage_errors_naming_option_and_value(args, message):
    out = _run(*args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_name_choice_without_validation_leaves_unknown_names_to_the_command():
    choice = NameChoice("training.methods:METHODS", validate=False)
    assert choice.convert("Center_Distance", None, None) == "center-distance"
    assert choice.convert("magic", None, None) == "magic"


def _failing(exc):
    @click.command()
    @cli_errors
    def cmd():
        raise exc

    return cmd


@pytest.mark.parametrize("exc, line", [
    (ValueError("samples.csv: column 'label' is missing"), "Error: samples.csv: column 'label' is missing"),
    (FileNotFoundError(2, "No such file or directory", "runs/x/model.json"),
     "Error: runs/x/model.json: No such file or directory"),
    (FileNotFoundError("--resume: runs/x/last.pt does not exist"), "Error: --resume: runs/x/last.pt does not exist"),
], ids=["value", "file", "file-message"])
def test_input_errors_become_one_line(exc, line):
    out = CliRunner().invoke(_failing(exc), [])
    assert out.exit_code == 1 and out.output.strip() == line


def test_service_and_mturk_errors_are_input_errors():
    from crowd.providers.mturk_client import MTurkError
    from crowd.service import NotFound

    out = CliRunner().invoke(_failing(NotFound("batch 9 not found", "batch")), [])
    assert out.exit_code == 1 and out.output.strip() == "Error: batch 9 not found"
    out = CliRunner().invoke(_failing(MTurkError("GetAccountBalance", "RequestError", "balance too low")), [])
    assert out.exit_code == 1 and out.output.strip() == "Error: MTurk GetAccountBalance failed: RequestError: balance too low"


def test_bugs_keep_their_traceback(monkeypatch):
    out = CliRunner().invoke(_failing(KeyError("oops")), [])
    assert out.exit_code == 1 and isinstance(out.exception, KeyError)
    monkeypatch.setenv("ARGUS_DEBUG", "1")
    out = CliRunner().invoke(_failing(ValueError("bad")), [])
    assert isinstance(out.exception, ValueError)


def test_format_table():
    rows = [{"id": 1, "worker": "ann", "gold": 0.8333, "note": None}, {"id": 12, "worker": "b", "gold": 1.0}]
    assert format_table(rows, ["id", "worker", "gold", "note"]).splitlines() == [
        "id  worker  gold    note",
        "--  ------  ------  ----",
        "1   ann     0.8333      ",
        "12  b       1.0         ",
    ]
    assert format_table(rows, ["worker", "gold"], float_format="{:.2f}").splitlines()[2:] == ["ann     0.83", "b       1.00"]
    assert format_table([("sandbox", "$10.00")], ["environment", "balance"]).splitlines()[2] == "sandbox      $10.00 "
    assert format_table([]) == "(none)"


def test_commands_list_registry_names_in_help():
    runner = CliRunner()
    train_help = runner.invoke(cli, ["train", "--help"]).output
    assert "--method [center|center-distance|class-balanced|" in train_help and "[default: erm]" in train_help
    active_help = runner.invoke(cli, ["active", "run", "--help"]).output
    assert "--strategy [badge|bald|cluster-margin|coreset|" in active_help
    exp_help = runner.invoke(cli, ["experiment", "blind-domains", "--help"]).output
    assert "[default: erm, class-balanced, focal, center, distance-sampling," in " ".join(exp_help.split())


def test_click_only_under_argus_commands():
    """Product packages never import click; the command line lives in argus/commands."""
    offenders = []
    for package in ("training", "explain", "crowd", "analysis", "active"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "click" or n.startswith("click.") for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []

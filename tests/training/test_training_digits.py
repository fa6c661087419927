"""`argus data digits`: scikit-learn's bundled handwriting as an ImageFolder tree with style domains."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from argus.cli import cli
from training.datasets import check_dataset, load_dataset
from training.digits import STYLES, generate_digits, parse_styles, render_digit

ONE = np.zeros((8, 8))
ONE[1:7, 3:5] = 16  # a vertical bar: a hand-made "1"


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory):
    return generate_digits(tmp_path_factory.mktemp("digits") / "d", limit=400, image_size=16, progress=False)


def test_styles_draw_the_strokes_as_described():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    stroke = np.asarray(Image.fromarray((ONE * 15).astype(np.uint8)).resize((32, 32), Image.BICUBIC)) > 120
    ink = np.asarray(render_digit(ONE, "ink", rng()), np.float32).mean(-1)
    inv = np.asarray(render_digit(ONE, "inverted", rng()), np.float32).mean(-1)
    tex = np.asarray(render_digit(ONE, "textured", rng()), np.float32)
    assert ink[stroke].mean() < 0.5 * ink[~stroke].mean()  # dark ink on light paper
    assert inv[stroke].mean() > 2.0 * inv[~stroke].mean()  # light strokes on a dark board
    assert tex[~stroke].std(axis=(0,)).mean() > 1.0  # the background is textured, not flat
    assert render_digit(ONE, "ink", rng()).size == (32, 32)
    with pytest.raises(ValueError, match="unknown digit style 'neon'"):
        render_digit(ONE, "neon", rng())


def test_tree_domains_and_designed_split(digits_tree):
    info = load_dataset(digits_tree)
    t = info.table
    assert info.kind == "imagefolder" and info.classes == [str(c) for c in range(10)]
    assert info.meta["augment"] == ("shift",)  # digits must never be mirrored
    train = t[t.split == "train"]["domain"].value_counts()
    n = int(train.sum())
    # 400 digits: 100 test, 60 val, 240 train; train styles by largest remainder at 90/7/3
    assert n == 240 and train.to_dict() == {"ink": 216, "inverted": 17, "textured": 7}
    test = t[t.split == "test"]
    assert test.groupby("domain").size().to_dict() == {s: 100 for s in STYLES}  # every test digit in every style
    digit_of = test["sample_id"].str.split("__").str[1].str.split("_").str[0]
    assert (digit_of.groupby(test["domain"]).apply(frozenset).nunique()) == 1  # the same digits in each style
    assert not set(digit_of) & set(t[t.split != "test"]["sample_id"].str.split("__").str[1].str.split("_").str[0])
    assert check_dataset(digits_tree).ok
    assert json.loads((digits_tree / "digits.json").read_text())["styles"] == {"ink": 0.9, "inverted": 0.07, "textured": 0.03}


def test_same_seed_same_tree_and_plain_mode(digits_tree, tmp_path):
    again = generate_digits(tmp_path / "again", limit=400, image_size=16, progress=False)
    a = pd.read_csv(digits_tree / "argus_split.csv")
    b = pd.read_csv(again / "argus_split.csv")
    assert a.equals(b)
    assert (digits_tree / a.path[5]).read_bytes() == (again / b.path[5]).read_bytes()
    plain = generate_digits(tmp_path / "plain", limit=50, image_size=16, plain=True, progress=False)
    assert not (plain / "domains.csv").exists() and not (plain / "argus_split.csv").exists()
    info = load_dataset(plain)  # Argus makes (and records) the split like for any user folder
    assert len(info.table) == 50 and set(info.table["split"]) == {"train", "val", "test"}
    assert (plain / "argus_split.csv").exists()


@pytest.mark.parametrize("text,message", [
    ("ink=0.5,inverted=0.4", "sum to 1"),
    ("ink=0.9,neon=0.1", "unknown style 'neon'"),
    ("ink", "expected name=proportion"),
], ids=["bad-sum", "unknown-style", "no-equals"])
def test_parse_styles_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_styles(text)


def test_cli_writes_the_tree_and_rejects_bad_styles(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "digits", "--out", str(tmp_path / "d"), "--styles", "ink=1", "--image-size", "12",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "domains.csv" in res.output and len(list((tmp_path / "d").rglob("*.png"))) > 1700
    res = runner.invoke(cli, ["data", "digits", "--out", str(tmp_path / "e"), "--styles", "ink=2"])
    assert res.exit_code != 0 and "--styles" in res.output and "sum to 1" in res.output

"""Dataset loaders (Argus format, ImageFolder + domains.csv) and `check_dataset`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from training.datasets import (SPLIT_SIDECAR, DatasetError, ImageDataset, check_dataset, load_dataset,
                               load_split_uint8, make_split)


def _png(path: Path, mode: str = "RGB", size=(20, 14), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.new("RGB", size, (value, 0, 0)).convert("P")
    else:
        im = Image.new(mode, size, value if mode in ("L", "1") else (value,) * len(mode))
    im.save(path)


def _imagefolder(root: Path, per_class: int = 10, classes=("cat", "dog"), modes=("RGB",)) -> Path:
    for c in classes:
        for i in range(per_class):
            _png(root / c / f"{i:02d}.png", mode=modes[i % len(modes)], value=40 + 10 * i)
    return root


def _argus(root: Path, rows) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for sid, path, label, domain, split in rows:
        if path.endswith(".png"):
            _png(root / path)
    pd.DataFrame(rows, columns=["sample_id", "path", "label", "domain", "split"]).to_csv(root / "samples.csv", index=False)
    return root


GOOD_ROWS = [
    ("a", "images/a.png", "cat", "day", "train"),
    ("b", "images/b.png", "dog", "night", "train"),
    ("c", "images/c.png", "cat", "", "val"),
    ("d", "images/d.png", "dog", "day", "test"),
]


def test_toyworld_loads_in_argus_format(tiny_world):
    info = load_dataset(tiny_world)
    assert info.kind == "argus" and len(info.classes) == 6 and info.classes == sorted(info.classes)
    assert len(info.split_table("train")) == 120 and len(info.split_table("test")) == 60
    assert info.labels("train").dtype == torch.long and int(info.labels("train").max()) == 5
    ds = ImageDataset(info, "val", image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x, y, i = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and i == 3
    assert y == info.class_to_index[info.split_table("val").label[3]]
    raw = np.asarray(Image.open(tiny_world / info.split_table("val").path[3]), dtype=np.float32) / 255.0
    assert torch.allclose(x, torch.from_numpy((raw - 0.5) / 0.5).permute(2, 0, 1), atol=1e-6)


def test_uint8_cache_matches_per_item_decoding_and_is_reused(tiny_world):
    info = load_dataset(tiny_world)
    first = load_split_uint8(info, "val", 24, progress=False)
    assert first.shape == (30, 3, 24, 24) and first.dtype == torch.uint8
    assert list((tiny_world / ".argus_cache").glob("val-24px-*/shard-00000.npy"))
    again = load_split_uint8(info, "val", 24, progress=False)
    assert torch.equal(first, again)
    per_item = ImageDataset(info, "val", image_size=24).uint8(7)
    assert torch.equal(per_item, first[7])


def test_imagefolder_split_is_deterministic_stratified_and_recorded(tmp_path):
    root = _imagefolder(tmp_path / "tree", per_class=20, modes=("RGB", "L", "RGBA", "P"))
    pd.DataFrame({"path": [f"cat/{i:02d}.png" for i in range(10)], "domain": ["night"] * 10}).to_csv(root / "domains.csv", index=False)
    info = load_dataset(root, seed=3)
    assert info.kind == "imagefolder" and info.classes == ["cat", "dog"]
    assert (root / SPLIT_SIDECAR).exists()
    t = info.table
    # per (label, domain) stratum of 10 or 20: 20% test, 10% val
    counts = t.groupby(["label", "domain", "split"]).size().to_dict()
    assert counts[("cat", "night", "test")] == 2 and counts[("cat", "night", "val")] == 1
    assert counts[("dog", "", "test")] == 4 and counts[("dog", "", "val")] == 2
    # a second load (even with another seed) reuses the recorded split
    again = load_dataset(root, seed=99)
    assert again.table["split"].tolist() == t["split"].tolist()
    # and a fresh split with the same seed is identical
    assert make_split(t, seed=3).tolist() == t["split"].tolist()
    # any mode and size -> RGB at the model size
    ds = ImageDataset(info, "train", image_size=16)
    assert all(ds[i][0].shape == (3, 16, 16) for i in range(len(ds)))
    with pytest.warns(UserWarning, match="mixes image modes L, P, RGB, RGBA: all converted to RGB"):
        cached = load_split_uint8(info, "train", 16, progress=False, cache=False)
    assert cached.shape == (len(ds), 3, 16, 16)
    gray = info.split_table("train").path.tolist().index(next(p for p in info.split_table("train").path if Image.open(root / p).mode == "L"))
    assert torch.equal(cached[gray][0], cached[gray][1])  # grey replicated into R, G, B


def test_check_reports_summary_and_mixed_mode_warning(tmp_path):
    root = _imagefolder(tmp_path / "tree", per_class=6, modes=("RGB", "L"))
    report = check_dataset(root)
    assert report.ok, report.errors
    assert any("mixed image modes" in w and "L (6)" in w and "RGB (6)" in w for w in report.warnings)
    assert report.summary.loc["total", "total"] == 12
    assert report.summary.loc["cat", "total"] == 6
    assert "class" in report.format()


def test_check_good_argus_folder(tmp_path):
    report = check_dataset(_argus(tmp_path / "ok", GOOD_ROWS))
    assert report.ok and report.kind == "argus"
    assert report.summary.loc["cat", "val/unknown"] == 1


def _corrupt(root: Path, case: str) -> str:
    """Make one kind of bad input in a good Argus folder; return the text the error must contain."""
    table = pd.read_csv(root / "samples.csv", dtype=str, keep_default_na=False)
    if case == "missing-file":
        (root / "images/b.png").unlink()
        return "images/b.png: missing file"
    if case == "unreadable-image":
        (root / "images/c.png").write_bytes(b"not a png at all")
        return "images/c.png: unreadable image"
    if case == "unknown-label":
        table.loc[3, "label"] = "cow"
        table.to_csv(root / "samples.csv", index=False)
        return "line 5: unknown label 'cow'"
    if case == "empty-label":
        table.loc[1, "label"] = ""
        table.to_csv(root / "samples.csv", index=False)
        return "line 3: unknown label (empty)"
    if case == "duplicate-id":
        table.loc[2, "sample_id"] = "a"
        table.to_csv(root / "samples.csv", index=False)
        return "line 4: duplicate sample id 'a' (first on line 2)"
    if case == "empty-class":
        (root / "classes.txt").write_text("cat\ndog\nbird\n")
        return "empty class 'bird'"
    if case == "bad-split":
        table.loc[0, "split"] = "training"
        table.to_csv(root / "samples.csv", index=False)
        return "line 2: split 'training'"
    if case == "missing-column":
        table.drop(columns=["label"]).to_csv(root / "samples.csv", index=False)
        return "missing column(s) label"
    raise AssertionError(case)


BAD_CASES = ["missing-file", "unreadable-image", "unknown-label", "empty-label", "duplicate-id", "empty-class", "bad-split", "missing-column"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_check_names_file_or_row_and_problem(tmp_path, case):
    root = _argus(tmp_path / case, GOOD_ROWS)
    expected = _corrupt(root, case)
    report = check_dataset(root)
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors
    assert any(str(root) in e for e in report.errors)


def test_imagefolder_bad_inputs(tmp_path):
    root = _imagefolder(tmp_path / "t1", per_class=3)
    (root / "bird").mkdir()
    with pytest.raises(DatasetError, match=r"bird: empty class 'bird'"):
        load_dataset(root)
    root = _imagefolder(tmp_path / "t2", per_class=3)
    pd.DataFrame({"path": ["cat/00.png", "cat/99.png"], "domain": ["day", "day"]}).to_csv(root / "domains.csv", index=False)
    with pytest.raises(DatasetError, match=r"domains.csv: line 3: missing file: 'cat/99.png'"):
        load_dataset(root)
    root = _imagefolder(tmp_path / "t3", per_class=3)
    _png(root / "cat" / "00.jpg")
    with pytest.raises(DatasetError, match="duplicate sample id 'cat__00'"):
        load_dataset(root)
    root = _imagefolder(tmp_path / "t4", per_class=3)
    (root / "cat" / "01.png").write_bytes(b"garbage")
    report = check_dataset(root)
    assert any("cat/01.png: unreadable image" in e for e in report.errors)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_recorded_split_missing_file_is_an_error(tmp_path):
    root = _imagefolder(tmp_path / "tree", per_class=5)
    load_dataset(root)
    (root / "dog" / "03.png").unlink()
    with pytest.raises(DatasetError, match=r"missing file 'dog/03.png' listed in the recorded split"):
        load_dataset(root)


def test_new_files_after_split_are_ignored_with_warning(tmp_path):
    root = _imagefolder(tmp_path / "tree", per_class=5)
    n = len(load_dataset(root).table)
    _png(root / "dog" / "new.png")
    with pytest.warns(UserWarning, match="1 image"):
        info = load_dataset(root)
    assert len(info.table) == n


def test_domains_never_needed_for_labels(tmp_path, tiny_world):
    # a copy without the domain column loads; every row counts as domain "unknown"
    copy = tmp_path / "nodomain"
    shutil.copytree(tiny_world, copy)
    t = pd.read_csv(copy / "samples.csv").drop(columns=["domain"])
    t.to_csv(copy / "samples.csv", index=False)
    info = load_dataset(copy)
    assert set(info.domains("test")) == {"unknown"}
    assert torch.equal(info.labels("train"), load_dataset(tiny_world).labels("train"))


@pytest.mark.parametrize("text,message", [
    ('{"augment": ["flip", "rotate"]}', "field 'augment': unknown augmentation 'rotate'; choose from flip, shift or none"),
    ('{"augment": 3}', "field 'augment': augment must be a list"),
    ('["flip"]', "expected a JSON object, got list"),
    ('{"augment": ', "not valid JSON"),
], ids=["unknown-name", "not-a-list", "not-an-object", "broken-json"])
def test_dataset_json_errors_name_the_file_and_field(tmp_path, text, message):
    root = _imagefolder(tmp_path / "tree", per_class=3)
    (root / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match=re.escape(str(root / "dataset.json")) + ".*" + re.escape(message)):
        load_dataset(root)


def test_dataset_json_augment_is_read_and_normalised(tmp_path):
    from training.datasets import parse_augment, write_dataset_meta

    root = _imagefolder(tmp_path / "tree", per_class=3)
    assert load_dataset(root).meta == {}
    write_dataset_meta(root, augment="shift,flip", note="faces")
    assert load_dataset(root).meta == {"augment": ("flip", "shift"), "note": "faces"}
    assert parse_augment("none") == () == parse_augment([])
    assert parse_augment(" Shift ") == ("shift",)


def test_record_split_keeps_a_designed_split(tmp_path):
    from training.datasets import record_split

    root = _imagefolder(tmp_path / "tree", per_class=4)
    (root / "domains.csv").write_text("path,domain\ncat/00.png,night\n")
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    chosen = {p: ("test" if p.endswith("00.png") else "train") for p in paths}
    sidecar = record_split(root, chosen)
    info = load_dataset(root)
    assert info.split_file == sidecar and dict(zip(info.table["path"], info.table["split"])) == chosen
    assert info.table.set_index("path").at["cat/00.png", "domain"] == "night"
    with pytest.raises(DatasetError, match="no split given for 'cat/01.png'"):
        record_split(root, {p: s for p, s in chosen.items() if p != "cat/01.png"})

"""The toy-world generator: determinism, masks, parts, domains, spurious cue."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from training import toyworld as tw
from training.datasets import read_part_mask, read_parts


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".argus_cache" not in p.parts}


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tmp_path, tiny_world):
    again = tw.generate_toyworld(tmp_path / "again", n_train=120, n_val=30, n_test=60, image_size=32, seed=0, workers=2, progress=False)
    a, b = _digest(tiny_world), _digest(again)
    assert len(a) == 2 * 210 + 4  # images + masks + samples.csv, parts.json, toyworld.json, dataset.json
    assert a == b


def test_other_seed_gives_other_images(tmp_path):
    one = tw.render_sample(5, seed=0)[0]
    two = tw.render_sample(5, seed=1)[0]
    assert np.asarray(one).tobytes() != np.asarray(two).tobytes()


def test_render_sample_is_pure_and_domain_only_changes_rendering():
    a = tw.render_sample(42, seed=3, label="bee", domain="day")
    b = tw.render_sample(42, seed=3, label="bee", domain="day")
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and np.array_equal(a[3], b[3])
    night = tw.render_sample(42, seed=3, label="bee", domain="night")
    fog = tw.render_sample(42, seed=3, label="bee", domain="fog")
    # same scene: identical part maps and poses, different pixels
    assert np.array_equal(a[3], night[3]) and np.array_equal(a[3], fog[3])
    assert a[4]["pose"] == night[4]["pose"] == fog[4]["pose"]
    day_px, night_px, fog_px = (np.asarray(x[0], dtype=np.float32) for x in (a, night, fog))
    assert night_px.mean() < 0.5 * day_px.mean()  # night is dark
    assert fog_px.std() < 0.75 * day_px.std()  # fog flattens contrast


@pytest.mark.parametrize("index", range(12))
def test_masks_are_aligned_with_the_parts_drawn(index):
    image, label, domain, mask, meta = tw.render_sample(index, seed=7, domain="day")
    px = np.asarray(image)
    present = set(meta["parts"])
    assert set(tw.CLASS_PARTS[label]) <= present
    assert {"body", "head", "eye"} <= present
    ids = {p.key: p.id for p in tw.PARTS}
    assert set(np.unique(mask)) - {0} == {ids[k] for k in meta["visible_parts"]}
    assert set(meta["visible_parts"]) <= present
    for key in meta["visible_parts"]:
        colours = np.array(meta["part_colours"][key], dtype=np.uint8)
        region = px[mask == ids[key]]
        # in the clean day domain every pixel of a part has one of the colours that part was painted with
        match = (region[:, None, :] == colours[None, :, :]).all(-1).any(1)
        assert match.all(), f"{key}: {int((~match).sum())} pixels do not have the part's colours"
    # and the discriminative parts are really visible (not fully occluded)
    for key in tw.CLASS_PARTS[label]:
        assert (mask == ids[key]).sum() >= 3, key


def test_saved_masks_equal_rendered_masks(tiny_world):
    table = pd.read_csv(tiny_world / "samples.csv")
    for row in table.head(5).itertuples():
        split_offset = {"train": 0, "val": tw.VAL_OFFSET, "test": tw.TEST_OFFSET}[row.split]
        index = split_offset + int(row.sample_id.split("-")[1])
        image, label, domain, mask, meta = tw.render_sample(index, seed=0, label=row.label, domain=row.domain, image_size=32)
        assert np.array_equal(read_part_mask(tiny_world, row.sample_id), mask)
        with Image.open(tiny_world / row.path) as saved:
            assert np.array_equal(np.asarray(saved), np.asarray(image))
        assert meta["background"] == row.background


def test_domain_proportions_are_exact_and_test_is_balanced(tiny_world):
    table = pd.read_csv(tiny_world / "samples.csv")
    counts = table.groupby(["split", "domain"]).size().to_dict()
    # 120 train at 0.85/0.10/0.05 -> 102/12/6; 30 val -> 25.5/3/1.5 -> largest remainder 26/3/1? (ties: first)
    assert counts[("train", "day")] == 102 and counts[("train", "night")] == 12 and counts[("train", "fog")] == 6
    assert sum(v for (s, _), v in counts.items() if s == "val") == 30
    assert counts[("test", "day")] == counts[("test", "night")] == counts[("test", "fog")] == 20
    # classes balanced within each split/domain (at most one apart)
    for (split, domain), group in table.groupby(["split", "domain"]):
        per_class = group["label"].value_counts().reindex(list(tw.CLASSES), fill_value=0)
        assert per_class.max() - per_class.min() <= 1, (split, domain)


def test_split_counts_largest_remainder():
    assert tw.largest_remainder_counts(30, {"day": 0.85, "night": 0.10, "fog": 0.05}) == {"day": 26, "night": 3, "fog": 1}
    assert tw.largest_remainder_counts(7, {"a": 0.5, "b": 0.5}) == {"a": 4, "b": 3}


def test_spurious_option_ties_background_to_class_in_majority_domain_only(tmp_path):
    root = tw.generate_toyworld(tmp_path / "sp", n_train=60, n_val=0, n_test=30, image_size=32, spurious=1.0, seed=2, workers=1, progress=False)
    t = pd.read_csv(root / "samples.csv")
    day_train = t[(t.split == "train") & (t.domain == "day")]
    assert (day_train.spurious == 1).all()
    assert (day_train.background == day_train.label.map(tw.SPURIOUS_BACKGROUNDS)).all()
    assert (t[(t.split == "train") & (t.domain != "day")].spurious == 0).all()
    assert (t[t.split == "test"].spurious == 0).all()
    # without the option the background is independent of the class
    plain = tw.generate_toyworld(tmp_path / "plain", n_train=60, n_val=0, n_test=0, image_size=32, seed=2, workers=1, progress=False)
    p = pd.read_csv(plain / "samples.csv")
    assert (p.spurious == 0).all()
    assert (p.background == p.label.map(tw.SPURIOUS_BACKGROUNDS)).mean() < 0.5


def test_spurious_probability_is_respected():
    hits = [tw.render_sample(i, seed=0, domain="day", image_size=16, spurious=0.3)[4]["spurious"] for i in range(300)]
    assert 0.22 < np.mean(hits) < 0.38


def test_parts_json_defines_classes_by_combinations_of_shared_parts(tiny_world):
    doc = read_parts(tiny_world)
    assert doc["image_size"] == 32
    ids = {p["id"] for p in doc["parts"]}
    assert ids == set(range(1, len(tw.PARTS) + 1))
    assert all(p["name"] and isinstance(p["synonyms"], list) for p in doc["parts"])
    disc = [frozenset(c["discriminative_parts"]) for c in doc["classes"]]
    assert len(doc["classes"]) == 6 and all(2 <= len(d) <= 3 for d in disc)
    for a, b in itertools.combinations(disc, 2):
        assert not a <= b and not b <= a  # distinct, and none contains another
    for part in set().union(*disc):
        assert sum(part in d for d in disc) >= 2  # no part identifies a class on its own
    assert not set(doc["distractor_parts"]) & set().union(*disc)
    assert set(doc["spurious_backgrounds"].values()) <= set(doc["backgrounds"])
    assert json.loads((tiny_world / "toyworld.json").read_text())["seed"] == 0


@pytest.mark.parametrize("text,message", [
    ("day=0.5,night=0.4", "sum to 1"),
    ("day=0.9,dusk=0.1", "unknown domain 'dusk'"),
    ("day", "expected name=proportion"),
    ("day=x,night=1", "not a number"),
], ids=["bad-sum", "unknown-name", "no-equals", "not-number"])
def test_parse_domains_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        tw.parse_domains(text)


def test_unknown_label_or_domain_is_an_error():
    with pytest.raises(ValueError, match="unknown toy-world class"):
        tw.render_sample(0, label="unicorn")
    with pytest.raises(ValueError, match="unknown domain"):
        tw.render_sample(0, domain="rain")


def test_shift_one_is_the_original_rendering_and_larger_shift_is_harsher():
    for domain in ("day", "night", "fog"):
        base = np.asarray(tw.render_sample(9, seed=4, domain=domain)[0])
        assert np.array_equal(base, np.asarray(tw.render_sample(9, seed=4, domain=domain, shift=1.0)[0]))
    day = np.asarray(tw.render_sample(9, seed=4, domain="day", shift=2.0)[0])
    assert np.array_equal(day, np.asarray(tw.render_sample(9, seed=4, domain="day")[0]))  # day is never shifted
    night1, night2 = (np.asarray(tw.render_sample(9, seed=4, domain="night", shift=s)[0], np.float32) for s in (1.0, 1.5))
    fog1, fog2 = (np.asarray(tw.render_sample(9, seed=4, domain="fog", shift=s)[0], np.float32) for s in (1.0, 1.5))
    assert night2.mean() < 0.8 * night1.mean()  # darker
    assert fog2.std() < 0.8 * fog1.std()  # flatter
    scene = [tw.render_sample(9, seed=4, domain="night", shift=s)[3] for s in (1.0, 1.5)]
    assert np.array_equal(*scene)  # the same creature, only its rendering changes


def test_presets_and_the_recorded_options(tmp_path):
    hard = tw.toyworld_preset("hard")
    assert hard["domains"] == {"day": 0.95, "night": 0.035, "fog": 0.015} and hard["image_size"] == 32
    hard["domains"]["day"] = 0.0  # a copy: the preset itself is untouched
    assert tw.toyworld_preset("hard")["domains"]["day"] == 0.95
    assert tw.toyworld_preset("easy")["domains"] == tw.DEFAULT_DOMAINS
    with pytest.raises(ValueError, match="unknown toy-world preset 'medium'; choose one of easy, hard"):
        tw.toyworld_preset("medium")
    root = tw.generate_toyworld(tmp_path / "w", n_train=20, n_val=0, n_test=6, image_size=16, shift=1.3, seed=1,
                                workers=1, progress=False)
    assert json.loads((root / "toyworld.json").read_text())["shift"] == 1.3
    assert json.loads((root / "dataset.json").read_text()) == {"augment": ["flip", "shift"]}
    with pytest.raises(ValueError, match="--shift must be > 0"):
        tw.generate_toyworld(tmp_path / "bad", n_train=1, n_val=0, n_test=0, shift=0, progress=False)

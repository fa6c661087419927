"""The uint8 fast path of pool scoring and training: the same numbers as the per-item path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from active.pool import ModelPredictor, ToyWorldPool, gather_uint8, pool_domains, pool_labels, predict_classes, score_pool
from active.strategies import get_strategy
from active.trainers import TrainerFn
from training.models import SmallCNN

NORM = ([0.4, 0.45, 0.5], [0.2, 0.25, 0.3])


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(6, widths=(4, 8, 8, 8)).eval()


def test_cached_pool_items_equal_rendered_items(tmp_path):
    lazy = ToyWorldPool(40, seed=3, image_size=16, cache_images=False, cache_size=0)
    cached = ToyWorldPool(40, seed=3, image_size=16, cache_dir=tmp_path, render_workers=2)
    images = cached.uint8_images(progress=False)
    assert (len(images), images.image_size) == (40, 16)
    for i in (0, 17, 39):
        x_lazy, y_lazy = lazy[i]
        x_cached, y_cached = cached[i]
        assert torch.equal(x_lazy, x_cached) and y_lazy == y_cached
        assert lazy.domain(i) == cached.domain(i)
    assert pool_labels(cached).tolist() == [lazy.label(i) for i in range(40)]
    assert pool_domains(cached) == [lazy.domain(i) for i in range(40)]
    # a second pool with the same parameters reuses the folder; other parameters get their own
    again = ToyWorldPool(40, seed=3, image_size=16, cache_dir=tmp_path)
    assert again.uint8_images(progress=False).folder == images.folder
    other = ToyWorldPool(40, seed=4, image_size=16, cache_dir=tmp_path)
    assert other.uint8_images(progress=False).folder != images.folder


def test_big_pools_stay_lazy_by_default(tmp_path):
    assert ToyWorldPool(10_000_000, image_size=64, cache_dir=tmp_path).uint8_images() is None
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["margin", "entropy", "coreset", "badge", "cluster-margin"])
def test_fast_scoring_equals_per_item_scoring(tmp_path, name):
    pool = ToyWorldPool(64, seed=0, image_size=16, cache_dir=tmp_path)
    lazy = ToyWorldPool(64, seed=0, image_size=16, cache_images=False)
    model = _model()
    slow_pred = ModelPredictor(model, "cpu", renormalize=((0.5,) * 3, (0.25,) * 3, *NORM))
    fast_pred = ModelPredictor(model, "cpu", uint8_normalization=NORM)
    strategy = get_strategy(name, device="cpu")
    cand, lab = np.arange(5, 64), np.arange(5)
    slow = score_pool(slow_pred, lazy, strategy, cand, labelled=lab, batch_size=16, progress=False)
    fast = score_pool(fast_pred, pool, strategy, cand, labelled=lab, batch_size=16, progress=False)
    assert slow.info.get("data_path") is None and fast.info["data_path"] == "uint8 device"
    for field in ("scores", "embeddings", "probs", "labelled_embeddings"):
        a, b = getattr(slow, field), getattr(fast, field)
        assert (a is None) == (b is None), field
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    picks = [strategy.select(o, 8, np.random.default_rng(1)).tolist() for o in (slow, fast)]
    assert picks[0] == picks[1]


def test_fast_class_predictions_equal_per_item(tmp_path):
    pool = ToyWorldPool(50, seed=1, image_size=16, cache_dir=tmp_path)
    lazy = ToyWorldPool(50, seed=1, image_size=16, cache_images=False)
    model = _model(2)
    slow = predict_classes(ModelPredictor(model, "cpu", renormalize=((0.5,) * 3, (0.25,) * 3, *NORM)), lazy, 16)
    fast = predict_classes(ModelPredictor(model, "cpu", uint8_normalization=NORM), pool, 16)
    assert slow.tolist() == fast.tolist()
    assert torch.equal(gather_uint8(pool, [3, 1], "cpu")[1], pool.uint8_images()[1])


def test_in_memory_training_equals_training_from_written_files(tmp_path):
    pool = ToyWorldPool(90, seed=0, image_size=16, cache_dir=tmp_path / "cache")
    val = ToyWorldPool(24, seed=0, image_size=16, offset=10_000_000, cache_dir=tmp_path / "cache")
    idx = np.arange(0, 90, 2)
    labels = pool_labels(pool)[idx]
    assert len(set(labels.tolist())) == 6  # every class present: both paths see the same class list
    opts = dict(epochs=3, batch_size=16, device="cpu", model_kwargs={"widths": [4, 8, 8, 8]}, val_pool=val)
    mem_pred, mem_state = TrainerFn(tmp_path / "mem", in_memory=True, **opts)(pool, idx, labels, round=0, seed=5)
    file_pred, file_state = TrainerFn(tmp_path / "files", in_memory=False, **opts)(pool, idx, labels, round=0, seed=5)
    assert all(torch.equal(mem_state[k], file_state[k]) for k in mem_state)
    # the predictor carries the epoch blind model selection kept (model.pt), not the last epoch
    selected = torch.load(tmp_path / "mem" / "run-round00" / "model.pt", weights_only=True)
    assert all(torch.equal(selected[k], mem_state[k]) for k in selected)
    assert not (tmp_path / "mem" / "labelled").exists()  # nothing written but the run folder


def test_min_steps_gives_small_sets_a_step_sized_schedule(tmp_path):
    import json

    pool = ToyWorldPool(40, seed=0, image_size=16, cache_dir=tmp_path / "cache")
    idx = np.arange(20)
    fn = TrainerFn(tmp_path / "r", epochs=2, min_steps=10, batch_size=8, device="cpu",
                   model_kwargs={"widths": [4, 8, 8, 8]})
    fn(pool, idx, pool_labels(pool)[idx], round=0, seed=0)
    epochs = json.loads((tmp_path / "r" / "run-round00" / "metrics.json").read_text())["epochs"]
    assert [e["train_rows"] for e in epochs] == [40, 40]  # 5 steps x 8 per epoch, 2 epochs = min_steps

"""Pool scoring: whole-pool coverage, what is kept, memmaps, MC dropout, the toy-world pool,
and sharded scoring over 2 gloo processes equal to one device."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from active.pool import DatasetPool, ModelPredictor, ToyWorldPool, score_pool, subsample_candidates
from active.strategies import get_strategy
from training.models import SmallCNN


def _model(dropout=0.0):
    torch.manual_seed(0)
    return SmallCNN(3, widths=(4, 8), dropout=dropout).eval()


def _pool(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DatasetPool(TensorDataset(x, y), classes=["a", "b", "c"], domains=["d"] * n)


def test_scores_cover_every_candidate_and_match_direct_inference():
    pool, model = _pool(), _model()
    pred = ModelPredictor(model, "cpu")
    out = score_pool(pred, pool, get_strategy("margin", device="cpu"), candidates=np.arange(39, -1, -1),
                     batch_size=7, progress=False)
    assert out.indices.tolist() == list(range(40))  # sorted, complete
    assert out.embeddings is None and out.probs is None  # margin keeps scores only
    with torch.no_grad():
        p = torch.softmax(model(pool.dataset.tensors[0]), 1)
    top2 = torch.topk(p, 2, 1).values
    np.testing.assert_allclose(out.scores, -(top2[:, 0] - top2[:, 1]).numpy(), rtol=1e-5, atol=1e-6)
    assert out.info["n_scored"] == 40


def test_embeddings_are_memmapped_when_large(tmp_path):
    pool, pred = _pool(), ModelPredictor(_model(), "cpu")
    out = score_pool(pred, pool, get_strategy("badge", device="cpu"), candidates=np.arange(10, 40),
                     work_dir=tmp_path, memmap_min_bytes=0, batch_size=8, progress=False)
    assert isinstance(out.embeddings, np.memmap) and out.embeddings.shape == (30, 8)
    assert (tmp_path / "embeddings.npy").exists() and (tmp_path / "probs.npy").exists()
    np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)
    out2 = score_pool(pred, pool, get_strategy("coreset", device="cpu"), candidates=np.arange(10, 40),
                      labelled=np.arange(10), progress=False)
    assert out2.labelled_embeddings.shape == (10, 8)


def test_bald_uses_mc_dropout_and_needs_dropout():
    pool = _pool(12)
    torch.manual_seed(0)
    out = score_pool(ModelPredictor(_model(dropout=0.5), "cpu"), pool, get_strategy("bald", mc_samples=8, device="cpu"),
                     progress=False)
    assert (out.scores >= -1e-6).all() and out.scores.max() > 0
    with pytest.raises(ValueError, match="BALD needs a model with dropout"):
        score_pool(ModelPredictor(_model(), "cpu"), pool, get_strategy("bald", device="cpu"), progress=False)


def test_explicit_subsample_is_seeded():
    c = np.arange(100)
    a = subsample_candidates(c, 0.1, 3)
    assert len(a) == 10 and a.tolist() == subsample_candidates(c, 10, 3).tolist()
    with pytest.raises(ValueError, match="pool-subsample"):
        subsample_candidates(c, 0.001, 0)


def test_toyworld_pool_is_lazy_deterministic_and_imbalanced():
    pool = ToyWorldPool(2_000_000, seed=0, image_size=16, cache_size=0)
    assert len(pool) == 2_000_000
    x1, y1 = pool[1_999_999]
    x2, y2 = ToyWorldPool(2_000_000, seed=0, image_size=16)[1_999_999]
    assert x1.shape == (3, 16, 16) and torch.equal(x1, x2) and y1 == y2
    doms = [pool.domain(i) for i in range(300)]
    assert doms.count("day") > doms.count("night") > 0  # 0.85 / 0.10 / 0.05 by default
    test = ToyWorldPool.balanced_test(30, seed=0, image_size=16)
    td = [test.domain(i) for i in range(30)]
    assert td.count("day") == td.count("night") == td.count("fog") == 10
    with pytest.raises(IndexError):
        pool[2_000_000]


def _worker(rank, world, init_file, strategy_name, work_dir, result_file):
    import torch.distributed as dist

    from active.distributed import sharded_select

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    strategy = get_strategy(strategy_name, device="cpu")
    sel = sharded_select(ModelPredictor(_model(), "cpu"), _pool(45), strategy, np.arange(3, 45), 6, 11,
                         labelled=np.arange(3), work_dir=work_dir, batch_size=5)
    if rank == 1:
        np.save(result_file, sel)
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["margin", "coreset", "cluster-margin"])
def test_sharded_selection_equals_single_device(tmp_path, name):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), name, str(tmp_path / "w"), str(tmp_path / "sel.npy")),
             nprocs=2, join=True)
    sharded = np.load(tmp_path / "sel.npy")
    strategy = get_strategy(name, device="cpu")
    out = score_pool(ModelPredictor(_model(), "cpu"), _pool(45), strategy, np.arange(3, 45), labelled=np.arange(3),
                     batch_size=5, progress=False)
    single = strategy.select(out, 6, np.random.default_rng(11))
    assert sharded.tolist() == single.tolist()


def test_dataset_folder_pool_and_test_split(tmp_path):
    from active.runner import build_pools
    from training.toyworld import generate_toyworld

    root = generate_toyworld(tmp_path / "w", n_train=40, n_val=4, n_test=12, image_size=16, workers=1, progress=False)
    pool, test, majority = build_pools(str(root), image_size=16)
    assert (len(pool), len(test), majority) == (40, 12, "day")
    x, y = pool[3]
    assert x.shape == (3, 16, 16) and 0 <= y < len(pool.classes)
    assert sorted({test.domain(i) for i in range(12)}) == ["day", "fog", "night"]

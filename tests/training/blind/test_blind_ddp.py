"""DDP on CPU: 2 gloo processes started by torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.losses import CenterLoss, GroupDROLoss
from training.samplers import DistanceWeightedSampler

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def torchrun(script, *args, nproc=2, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_ddp_center_updates_group_weights_and_sampler_match_one_process(tmp_path):
    torchrun(HERE / "ddp_units_worker.py", tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    sys.path.insert(0, str(HERE))
    try:
        from ddp_units_worker import global_batch
    finally:
        sys.path.remove(str(HERE))
    x, y, groups, logits = global_batch()
    cl = CenterLoss(3, 4, lam=1.0, alpha=0.5, init="first_batch")
    cl.update(x, y)
    cl.update(x * 2.0, y)
    dro = GroupDROLoss([6, 2, 2], eta=0.5)
    dro(logits, y, groups)
    sampler = DistanceWeightedSampler(y, seed=5, warmup_epochs=0)
    sampler.record(torch.arange(12), cl.distances(x, y))
    sampler.end_epoch()
    for r in (r0, r1):
        assert torch.allclose(r["centers"], cl.centers, atol=1e-6)
        assert torch.allclose(r["q"], dro.q, atol=1e-6)
        assert torch.allclose(r["distances"], sampler.distances, atol=1e-6)
        assert torch.equal(r["draw"], sampler.epoch_indices(1))
    # the two ranks' shares are the draw's even and odd positions: disjoint, covering it
    assert torch.equal(torch.stack([r0["share"], r1["share"]], 1).flatten(), r0["draw"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["center-distance", "jtt"])
def test_ddp_end_to_end_two_gloo_processes(method, tiny_world, tmp_path):
    torchrun(HERE / "ddp_train_worker.py", tiny_world, tmp_path, method)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    # DDP keeps the parameters in sync
    for k, v in r0["model"].items():
        if "running" in k or "num_batches" in k:
            continue  # BatchNorm statistics are per rank by design (no SyncBN)
        assert torch.allclose(v, r1["model"][k], atol=1e-6), k
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["complete"] and len(metrics["epochs"]) == 2
    if method == "center-distance":
        # the centers and the sampler's distances are all-reduced: the same on both ranks
        assert torch.allclose(r0["method"]["centers"]["centers"], r1["method"]["centers"]["centers"], atol=1e-6)
        d0, d1 = r0["method"]["sampler"]["distances"], r1["method"]["sampler"]["distances"]
        assert torch.equal(torch.isnan(d0), torch.isnan(d1)) and torch.allclose(d0.nan_to_num(), d1.nan_to_num())
        assert not torch.isnan(d0).all()
        # each rank drew half of the epoch: rows per rank = 160 // 2
        assert metrics["epochs"][-1]["train_rows"] == 80
    else:
        # one error set for both ranks (rank 0's), so their draws are shares of one upsampled list
        e0, e1 = r0["method"]["error_mask"], r1["method"]["error_mask"]
        assert torch.equal(e0, e1) and 0 < int(e0.sum()) < 160
        assert metrics["epochs"][-1]["train_rows"] == (160 + 4 * int(e0.sum())) // 2

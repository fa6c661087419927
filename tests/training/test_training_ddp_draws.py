"""DDP (2 gloo processes on CPU) against one process: the same rows per epoch, each with the
same augmentation, and the same sampler draw where the method promises it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.batches import Augment

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _run(args, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(HERE / "ddp_draws_worker.py"), *map(str, args)] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
         str(HERE / "ddp_draws_worker.py"), *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_rank_shares_of_a_global_batch_draw_are_its_columns():
    aug = Augment(3, True)
    whole = aug.draw(12, torch.Generator().manual_seed(4))
    shares = [aug.draw_share(6, torch.Generator().manual_seed(4), r, 2) for r in range(2)]
    assert torch.equal(torch.stack(shares, 2).reshape(3, 12), whole)  # interleaved back = the one-process draw
    assert torch.equal(aug.draw_share(12, torch.Generator().manual_seed(4)), whole)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["erm", "center-distance"])
def test_two_gloo_ranks_feed_the_rows_and_augmentations_of_one_process(method, tiny_world, tmp_path):
    _run([tiny_world, tmp_path, method], 1)
    _run([tiny_world, tmp_path, method], 2)
    one = torch.load(tmp_path / "draws-w1-r0.pt")
    ranks = [torch.load(tmp_path / f"draws-w2-r{r}.pt") for r in range(2)]
    for e in range(2):
        single = one["epochs"][e]
        n = len(ranks[0]["epochs"][e]["rows"])
        assert len(ranks[1]["epochs"][e]["rows"]) == n
        rows = torch.stack([r["epochs"][e]["rows"] for r in ranks], 1).reshape(-1)
        x_sum = torch.stack([r["epochs"][e]["x_sum"] for r in ranks], 1).reshape(-1)
        if method == "erm" or e == 0:  # uniform draws: the ranks deal out exactly the one-process draw
            assert torch.equal(rows, single["rows"][:2 * n])
            # every image carries exactly the augmentation it gets in one process
            assert torch.allclose(x_sum, single["x_sum"][:2 * n], rtol=0, atol=1e-9)
    if method == "center-distance":
        # distance-weighted draws depend on features (BatchNorm statistics are per rank), so they
        # are not one process's; but the distances are all-reduced: both ranks make one draw
        assert ranks[0]["draw_epoch1"] is not None
        assert torch.equal(ranks[0]["draw_epoch1"], ranks[1]["draw_epoch1"])

"""Run under `torchrun --nproc_per_node=2` (gloo, CPU): the DDP paths of losses and samplers.

Each rank handles its share of one fixed global batch and writes what it ends with to
`OUT/rank<r>.pt`; the test compares the ranks with each other and with one process that saw
the whole batch.
"""

import sys

import torch
import torch.distributed as dist

from training.losses import CenterLoss, GroupDROLoss
from training.samplers import DistanceWeightedSampler, rank_share


def global_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 0, 0, 2, 1, 0, 0, 1])
    groups = torch.tensor([0, 0, 1, 0, 2, 0, 1, 0, 0, 2, 0, 0])
    logits = torch.randn(12, 3, generator=g)
    return x, y, groups, logits


def main(out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y, groups, logits = global_batch()
    mine = rank_share(torch.arange(12), rank, world)
    cl = CenterLoss(3, 4, lam=1.0, alpha=0.5, init="first_batch")
    cl.update(x[mine], y[mine])  # first batch: global class means
    cl.update(x[mine] * 2.0, y[mine])  # then the alpha rule with global counts
    dro = GroupDROLoss([6, 2, 2], eta=0.5)
    dro(logits[mine], y[mine], groups[mine])
    sampler = DistanceWeightedSampler(y, seed=5, warmup_epochs=0)
    sampler.record(mine, cl.distances(x[mine], y[mine]))
    sampler.end_epoch()
    draw = sampler.epoch_indices(1)
    torch.save({"centers": cl.centers, "q": dro.q, "distances": sampler.distances, "draw": draw,
                "share": rank_share(draw, rank, world)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

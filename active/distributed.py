"""Sharded pool scoring across processes/GPUs (`torchrun`), merged exactly as on one device.

Each rank scores a contiguous shard of the (sorted) candidates. Merging:

- score strategies: each rank keeps its local top-B (ties: lowest index); rank 0 runs `top_b`
  over the concatenated local tops in rank order. The global top-B is a subset of the union of
  local top-Bs and position order equals pool-index order, so the result is identical.
- embedding strategies (coreset, BADGE, Cluster-Margin): each rank writes its rows into one
  shared memory-mapped file in `work_dir` (one host, or a shared filesystem); rank 0 selects
  on the merged outputs with the same generator as a single device would.
- random: rank 0 draws.

The selection is broadcast so every rank returns the same indices. Run for example:

    torchrun --nproc_per_node 2 -m active.distributed --checkpoint RUN --pool-size 1000000 \
        --strategy margin --budget 1000 --out selection.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from active.pool import score_pool
from active.strategies import PoolOutputs, ScoreStrategy, Strategy, top_b


def _shared_array(work_dir: Path, name: str, shape, rank: int):
    path = work_dir / f"{name}.npy"
    if rank == 0:
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=tuple(shape)).flush()
    dist.barrier()
    return np.load(path, mmap_mode="r+")


def sharded_select(predictor, pool, strategy: Strategy, candidates, budget: int, rng_seed,
                   labelled=None, work_dir=None, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Score `candidates` sharded over the initialised process group and select `budget` items.

    Every rank gets the same selection (pool indices), equal to a single-device
    `strategy.select(score_pool(...), budget, np.random.default_rng(rng_seed))`.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    cand = np.sort(np.asarray(candidates, dtype=np.int64))
    bounds = np.linspace(0, len(cand), world + 1).astype(int)
    lo, hi = bounds[rank], bounds[rank + 1]
    shard = cand[lo:hi]
    rng = np.random.default_rng(rng_seed)
    selection = None
    if not strategy.needs:
        if rank == 0:
            selection = strategy.select(PoolOutputs(indices=cand), budget, rng)
    elif strategy.needs == {"scores"} and isinstance(strategy, ScoreStrategy):
        out = score_pool(predictor, pool, strategy, shard, batch_size=batch_size, progress=progress,
                         desc=f"scoring shard {rank}")
        local = top_b(out.scores, budget, "cpu") if len(shard) else np.zeros(0, np.int64)
        parts = [None] * world
        dist.all_gather_object(parts, (shard[local], out.scores[local]))
        if rank == 0:
            idx = np.concatenate([p[0] for p in parts])
            sc = np.concatenate([p[1] for p in parts])
            order = np.argsort(idx, kind="stable")  # rank order is already index order; keep it explicit
            idx, sc = idx[order], sc[order]
            selection = idx[top_b(sc, budget, "cpu")]
    else:
        if work_dir is None:
            raise ValueError("sharded scoring of embedding strategies needs work_dir (a folder all ranks share)")
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        out = score_pool(predictor, pool, strategy, shard, labelled=labelled if rank == 0 else None,
                         batch_size=batch_size, progress=progress, desc=f"scoring shard {rank}")
        dims = [None] * world
        dist.all_gather_object(dims, {k: (None if getattr(out, k) is None else getattr(out, k).shape[1])
                                      for k in ("embeddings", "probs")})
        merged = PoolOutputs(indices=cand, labelled_embeddings=out.labelled_embeddings if rank == 0 else None)
        if "scores" in strategy.needs:
            parts = [None] * world
            dist.all_gather_object(parts, out.scores)
            merged.scores = np.concatenate(parts)
        for key in ("embeddings", "probs"):
            d = next((x[key] for x in dims if x[key] is not None), None)
            if d is None:
                continue
            arr = _shared_array(work_dir, key, (len(cand), d), rank)
            if len(shard):
                arr[lo:hi] = getattr(out, key)
            arr.flush()
            setattr(merged, key, arr)
        dist.barrier()
        if rank == 0:
            merged.embeddings = None if merged.embeddings is None else np.load(work_dir / "embeddings.npy", mmap_mode="r")
            merged.probs = None if merged.probs is None else np.load(work_dir / "probs.npy", mmap_mode="r")
            selection = strategy.select(merged, budget, rng)
    box = [selection]
    dist.broadcast_object_list(box, src=0)
    return np.asarray(box[0], dtype=np.int64)


def main(argv=None):
    """Entry point for `torchrun ... -m active.distributed` (see module docstring)."""
    from active.pool import ModelPredictor, ToyWorldPool
    from active.strategies import get_strategy

    ap = argparse.ArgumentParser(description="Sharded pool scoring + selection (run under torchrun).")
    ap.add_argument("--checkpoint", required=True, help="RUN folder with model.pt + model.json")
    ap.add_argument("--pool-size", type=int, required=True, help="items of the lazily rendered toy-world pool")
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--strategy", default="margin")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--work-dir", default="runs/active-shards")
    ap.add_argument("--out", required=True, help="JSON file for the selected pool indices")
    args = ap.parse_args(argv)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = "cpu"
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = f"cuda:{rank % torch.cuda.device_count()}"
    from training.checkpoint import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint, device=device)
    size = args.image_size or int(meta.get("input_size", 32))
    pool = ToyWorldPool(args.pool_size, seed=args.pool_seed, image_size=size, cache_size=0)
    strategy = get_strategy(args.strategy, device=device)
    sel = sharded_select(ModelPredictor(model, device), pool, strategy, np.arange(args.pool_size), args.budget,
                         args.seed, work_dir=args.work_dir, batch_size=args.batch_size, progress=rank == 0)
    if rank == 0:
        Path(args.out).write_text(json.dumps({"strategy": args.strategy, "budget": args.budget,
                                              "world_size": dist.get_world_size(), "indices": sel.tolist()}) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

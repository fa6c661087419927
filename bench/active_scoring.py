"""Pool scoring throughput on the uint8 pipeline vs plain inference on the same pipeline, same run.

A toy-world pool of `--n` items at `--image-size` px is rendered once into the uint8 shard cache
(the cold-start figure: images/s of rendering with every CPU), then, modes interleaved over
repetitions:

- `plain_inference`: index gather + normalisation + small-cnn forward (AMP on CUDA), logits
  written into a preallocated device buffer: the physical floor of this pipeline;
- `score_margin`: `active.pool.score_pool` with margin sampling (softmax, top-2, one score per
  item kept on the device, copied to the host once at the end);
- `score_badge`: the same keeping embeddings `[N, 128]` and probabilities `[N, K]`;

each on the GPU-resident source (the whole uint8 pool on the device) and on the streamed source
(memory-mapped cache, `--workers` loader processes, pinned memory, non-blocking copies).
Then top-B (B = 1000) from 10,000,000 scores, from host numpy (transfer included) and from a
device tensor, checked exact against a stable argsort. Memory: device bytes of the pool, peak
device memory of a scoring pass, pinned buffers of the streamed source, peak host RSS.

Targets (H200, 64 px, small-cnn): scoring >= 20,000 images/s; margin >= 90% of plain;
top-B from 10M < 1 s.

    python bench/active_scoring.py [--quick] [--device auto|cpu|cuda] [--n 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import numpy as np
    import torch

    from active.pool import ModelPredictor, ToyWorldPool, batch_source, score_pool
    from active.strategies import get_strategy, top_b
    from training.batches import prepare_batch
    from training.evaluate import resolve_device
    from training.models import SmallCNN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="loader processes of the streamed source")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default=None, help="result JSON (default: bench/results[/gpu]/active_scoring[_gpu].json)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    n = args.n or ((50_000 if not args.quick else 8192) if gpu else (2048 if not args.quick else 512))
    size = args.image_size or (64 if gpu else 32)
    bs = args.batch_size or (2048 if gpu else 256)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    reps = args.reps or (5 if gpu else 3)
    torch.backends.cudnn.benchmark = True
    cache_dir = Path(tempfile.mkdtemp(prefix="argus-bench-cache-"))

    t0 = time.perf_counter()
    pool = ToyWorldPool(n, seed=0, image_size=size, cache_dir=cache_dir, cache_images=True,
                        render_workers=os.cpu_count())
    pool.uint8_images(progress=False)
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ToyWorldPool(n, seed=0, image_size=size, cache_dir=cache_dir, cache_images=True).uint8_images(progress=False)
    reopen_s = time.perf_counter() - t0

    torch.manual_seed(0)
    model = SmallCNN(6).to(dev, memory_format=torch.channels_last).eval()
    norm = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    predictor = ModelPredictor(model, dev, uint8_normalization=norm)
    margin, badge = get_strategy("margin", device=str(dev)), get_strategy("badge", device=str(dev))
    cand = np.arange(n)
    logits_buf = torch.empty(n, 6, device=dev)

    def plain(source):
        def run():
            lo = 0
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=gpu):
                for _i, xb, _ in source.batches(torch.from_numpy(cand), bs):
                    out = model(prepare_batch(xb, *norm, channels_last=gpu))
                    logits_buf[lo:lo + len(xb)] = out.float()
                    lo += len(xb)
        return run

    def scoring(strategy, placement):
        return lambda: score_pool(predictor, pool, strategy, cand, batch_size=bs, progress=False,
                                  device_max_bytes=4 << 30)

    def sync():
        if gpu:
            torch.cuda.synchronize()

    results = []
    for placement, source_reps in (("device", reps), ("host", max(2, reps - 2))):
        pool.__dict__.pop("_batch_sources", None)  # score_pool uses the pool's source: rebuild it for this placement
        source = batch_source(pool, dev, progress=False, placement=placement, workers=workers)
        pool._batch_sources = {(str(dev), "auto"): source}
        modes = {"plain_inference": plain(source), "score_margin": scoring(margin, placement),
                 "score_badge": scoring(badge, placement)}
        for fn in modes.values():  # warm-up: cudnn autotune, allocator, loader start
            fn()
        times = {k: [] for k in modes}
        peak = {}
        for _ in range(source_reps):
            for name, fn in modes.items():
                sync()
                if gpu:
                    torch.cuda.reset_peak_memory_stats(dev)
                t0 = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t0)
                if gpu:
                    peak[name] = torch.cuda.max_memory_allocated(dev) / 2**30
        base = statistics.median(times["plain_inference"])
        for name, ts in times.items():
            med = statistics.median(ts)
            res = {"figure": f"{name}_images_per_s", "source": placement, "value": n / med, "best": n / min(ts),
                   "median_s": med, "runs_s": ts, "ratio_vs_plain": base / med, "n": n, "image_size": size,
                   "batch_size": bs, "peak_device_gib": peak.get(name),
                   "pool_device_gib": (n * 3 * size * size / 2**30) if placement == "device" else 0.0,
                   "pinned_host_mib": (workers * 4 * bs * 3 * size * size / 2**20) if placement == "host" and gpu else 0.0,
                   "loader_processes": workers if placement == "host" else 0}
            print(json.dumps(res), flush=True)
            results.append(res)

    scores_np = np.random.default_rng(0).random(10_000_000).astype(np.float32)
    scores_np[::1000] = 0.5  # many exact ties: the tie rule is exercised
    want = np.lexsort((np.arange(len(scores_np)), -scores_np))[:1000]
    topb = {}
    for where in ("host_numpy", "device_tensor"):
        data = scores_np if where == "host_numpy" else torch.from_numpy(scores_np).to(dev)
        ts = []
        for _ in range(5):
            sync()
            t0 = time.perf_counter()
            got = top_b(data, 1000, dev)
            sync()
            ts.append(time.perf_counter() - t0)
        topb[where] = {"median_s": statistics.median(ts), "best_s": min(ts), "exact": bool(np.array_equal(got, want))}
    res = {"figure": "top_b_10M_seconds", "value": topb["host_numpy"]["median_s"], "detail": topb, "n": 10_000_000,
           "budget": 1000}
    print(json.dumps(res), flush=True)
    results.append(res)

    get = {(r["figure"], r.get("source")): r for r in results}
    dev_margin = get[("score_margin_images_per_s", "device")]
    verdict = {
        "scoring_ge_20k_images_per_s": dev_margin["value"] >= 20_000,
        "margin_ge_90pct_of_plain": dev_margin["ratio_vs_plain"] >= 0.9,
        "margin_ge_90pct_of_plain_streamed": get[("score_margin_images_per_s", "host")]["ratio_vs_plain"] >= 0.9,
        "top_b_10M_under_1s": topb["host_numpy"]["median_s"] < 1.0 and topb["host_numpy"]["exact"],
    }
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "device": str(dev), "gpu": torch.cuda.get_device_name(0) if gpu else None}
    doc = {"bench": "active_scoring", "quick": args.quick, "machine": machine,
           "render": {"images": n, "image_size": size, "seconds": render_s, "images_per_s": n / render_s,
                      "processes": os.cpu_count(), "reopen_s": reopen_s,
                      "cache_gib": n * 3 * size * size / 2**30},
           "results": results, "verdict": verdict,
           "peak_host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "note": "modes interleaved in one run; value = images / median seconds; ratio = plain median / mode median. "
                   "Rendering (cold cache) is a one-off per pool; every later pass reads the cache."}
    print(json.dumps({"figure": "verdict", **verdict}), flush=True)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / ("gpu/active_scoring_gpu.json" if gpu else "active_scoring.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

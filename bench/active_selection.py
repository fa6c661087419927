"""Selection at scale: top-B from 10^7 scores; k-center greedy and Cluster-Margin over a 10^6-item pool.

Each case runs in its own subprocess so its peak RSS (ru_maxrss) is its own. Embeddings are a
memory-mapped `[N, 128]` float32 file (512 MB at N = 10^6), as the pool scorer writes them.

    python bench/active_selection.py [--quick] [--device auto|cpu|cuda]

Targets: top-B from 10,000,000 scores < 1 s on GPU; k-center and Cluster-Margin over
1,000,000 items within 16 GB of host memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine(device: str) -> dict:
    import torch

    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "device": dev,
            "gpu": torch.cuda.get_device_name(0) if dev.startswith("cuda") else None}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def _embeddings(path: Path, n: int, d: int):
    import numpy as np

    if not path.exists():
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        rng = np.random.default_rng(0)
        for lo in range(0, n, 100_000):
            hi = min(lo + 100_000, n)
            # clustered embeddings (64 centers) so k-center and clustering have structure
            centers = np.random.default_rng(1).standard_normal((64, d)).astype(np.float32) * 3
            mm[lo:hi] = centers[rng.integers(64, size=hi - lo)] + rng.standard_normal((hi - lo, d), dtype=np.float32)
        mm.flush()
        del mm
    return np.load(path, mmap_mode="r")


def case(name: str, n: int, budget: int, device: str, work: Path) -> dict:
    import numpy as np
    import torch

    from active.strategies import PoolOutputs, get_strategy, top_b
    from training.evaluate import resolve_device

    dev = resolve_device(device)
    rss0 = peak_rss_gb()
    if name == "topb":
        scores = torch.rand(n, generator=torch.Generator().manual_seed(0)).to(dev)
        top_b(scores, budget, dev)  # warm-up (CUDA context, kernels)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            sel = top_b(scores, budget, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        ref = np.argsort(-scores.cpu().numpy(), kind="stable")[:budget]
        return {"figure": "top_b_seconds", "n": n, "budget": budget, "seconds": min(times),
                "median_seconds": sorted(times)[2], "exact_vs_argsort": bool((sel == ref).all()),
                "peak_rss_gb": peak_rss_gb()}
    emb = _embeddings(work / f"emb_{n}.npy", n, 128)
    labelled = np.asarray(emb[:100])
    t0 = time.perf_counter()
    if name == "kcenter":
        out = PoolOutputs(indices=np.arange(n), embeddings=emb, labelled_embeddings=labelled)
        sel = get_strategy("coreset", device=str(dev)).select(out, budget, np.random.default_rng(0))
    elif name == "cluster-margin":
        scores = -np.random.default_rng(2).random(n).astype(np.float32)
        out = PoolOutputs(indices=np.arange(n), scores=scores, embeddings=emb)
        sel = get_strategy("cluster-margin", device=str(dev)).select(out, budget, np.random.default_rng(0))
    else:
        raise ValueError(name)
    secs = time.perf_counter() - t0
    return {"figure": f"{name}_select", "n": n, "dim": 128, "budget": budget, "seconds": secs,
            "selected": int(len(set(sel.tolist()))), "peak_rss_gb": peak_rss_gb(), "rss_before_gb": rss0,
            "embeddings_gb": n * 128 * 4 / 1024 ** 3, "within_16gb": peak_rss_gb() < 16.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10x smaller pools")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:  # child process: one case, one JSON line
        print(json.dumps(case(args.case, args.n, args.budget, args.device, Path(args.work))))
        return
    scale = 10 if args.quick else 1
    mach = machine(args.device)
    gpu = mach["device"].startswith("cuda")
    plan = [("topb", 10_000_000 // scale, 1000),
            # CPU: each k-center pick is a full pass over the pool, so fewer picks there
            ("kcenter", 1_000_000 // scale, 1000 if gpu else 100),
            ("cluster-margin", 1_000_000 // scale, 1000)]
    results = []
    with tempfile.TemporaryDirectory(prefix="argus-bench-") as work:
        for name, n, b in plan:
            cmd = [sys.executable, __file__, "--case", name, "--n", str(n), "--budget", str(b), "--device",
                   args.device, "--work", work]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"case {name} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["machine"] = mach
            print(json.dumps(res), flush=True)
            results.append(res)
    verdict = {
        "top_b_10M_under_1s_gpu": (results[0]["seconds"] < 1.0) if gpu and not args.quick else None,
        "top_b_seconds_this_device": results[0]["seconds"],
        "kcenter_1M_within_16GB": results[1]["within_16gb"] if not args.quick else None,
        "cluster_margin_1M_within_16GB": results[2]["within_16gb"] if not args.quick else None,
    }
    doc = {"bench": "active_selection", "quick": args.quick, "machine": mach, "results": results, "verdict": verdict,
           "note": "CPU run on a shared 2-core machine (other engineers' jobs running): times are upper bounds; "
                   "GPU figures come from the lead's device run. Peak RSS is per case (own subprocess)."}
    out = ROOT / "bench" / "results" / "active_selection.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"figure": "verdict", **verdict}))


if __name__ == "__main__":
    main()

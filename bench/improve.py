"""Closing the loop on the demo's shortcut world: does acting on the crowd's clue fix the model?

World: the demo's (`argus.pipelines.demo.DemoConfig`: 3000/600/600 images of 64 px, the
background cue on 90% of day images in every split, 6 epochs); `--quick`: 900/150/300 of 32 px,
5 epochs (the `--small` demo's scale), 2 seeds, 3 corrections. Per
seed (paired): the judged model (ERM, the demo's epochs), an ORACLE (ERM on the same world
rendered without the cue: the ceiling), and each correction of `argus improve`:

    counterfactual        background swap (p 0.75), from scratch, as many epochs as the judged model
                          (what the demo's improve stage runs)
    rrr-contribution      right-reasons penalty on the channel evidence (parts), from scratch
    rrr-gradient          right-reasons penalty on the input gradient (parts), from scratch
    rrr-contribution+cf   both, from scratch
    counterfactual-ft     background swap as a 2-epoch fine-tune of the judged model
    *-ft-long             fine-tunes as long as the judged model trained
    suppress-ft           channels "judged invalid" held at zero, fine-tune; the judgment is the
                          simulated crowd's truth: a channel is invalid when most of its positive
                          activation on validation images lies off the object
    *-x5, oracle-x5       five times the judged model's epochs (the demo's model has ~140 steps)

Each model is measured on the usual test split, on its cue-free twin (the same test rows, the
background at chance) and by the pointing game of its top argument (all test images, by domain).
Figures: means over seeds with 95% bootstrap intervals (`analysis.method_comparison.describe`),
paired differences vs the judged model (`paired_difference`), and the targets (cue-free gain >=
15 points, majority-domain pointing game >= 0.85, test loss <= 1 point).

    python bench/improve.py --quick                                  # CPU, 2 seeds
    python bench/improve.py --device cuda --processes 10             # GPU, 5 seeds

Writes bench/results/improve.json (cpu) or bench/results/gpu/improve.json (cuda), with .md and
.png beside it, and one JSON line per figure. Jobs run as separate processes (`--processes`);
each writes WORK/records/<model>-<seed>.json, so a rerun only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# model -> (correction, fine-tune, extra ImproveConfig options, epochs: a key of `settings`)
VARIANTS = {
    "counterfactual": ("counterfactual", False, {}, "epochs"),
    "rrr-contribution": ("rrr-contribution", False, {}, "epochs"),
    "rrr-gradient": ("rrr-gradient", False, {}, "epochs"),
    "rrr-contribution+cf": ("rrr-contribution", False, {"counterfactual": 0.75}, "epochs"),
    "counterfactual-ft": ("counterfactual", True, {}, "ft_epochs"),
    "counterfactual-ft-long": ("counterfactual", True, {}, "epochs"),
    "rrr-contribution+cf-ft-long": ("rrr-contribution", True, {"counterfactual": 0.75}, "epochs"),
    "suppress-ft": ("suppress", True, {}, "ft_epochs"),
    "counterfactual-x5": ("counterfactual", False, {}, "long_epochs"),
    "rrr-contribution+cf-x5": ("rrr-contribution", False, {"counterfactual": 0.75}, "long_epochs"),
    "rrr-gradient-x5": ("rrr-gradient", False, {}, "long_epochs"),
}
QUICK_VARIANTS = ("counterfactual", "counterfactual-ft", "counterfactual-x5")
FULL_VARIANTS = ("counterfactual", "rrr-contribution+cf", "counterfactual-ft", "counterfactual-x5",
                 "rrr-contribution+cf-x5", "suppress-ft", "rrr-contribution", "rrr-gradient")
TARGETS = {"cue_free_gain_points": 15.0, "majority_pointing_game": 0.85, "test_loss_points": 1.0}


def settings(quick: bool) -> dict:
    if quick:
        return {"n_train": 900, "n_val": 150, "n_test": 300, "image_size": 32, "epochs": 5, "ft_epochs": 2,
                "long_epochs": 25, "spurious": 0.9}
    from argus.pipelines.demo import DemoConfig

    d = DemoConfig()
    return {"n_train": d.n_train, "n_val": d.n_val, "n_test": d.n_test, "image_size": d.image_size,
            "epochs": d.epochs, "ft_epochs": 2, "long_epochs": 5 * d.epochs, "spurious": d.spurious}


def make_worlds(work: Path, s: dict) -> None:
    from training.toyworld import generate_toyworld, write_cue_free_test

    common = dict(n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"], image_size=s["image_size"], seed=0,
                  progress=False, workers=min(16, os.cpu_count() or 1))
    if not (work / "data" / "toyworld.json").exists():
        generate_toyworld(work / "data", spurious=s["spurious"], spurious_splits=("train", "val", "test"), **common)
    if not (work / "clean" / "toyworld.json").exists():
        generate_toyworld(work / "clean", spurious=0.0, **common)
    if not (work / "cue_free" / "toyworld.json").exists():
        write_cue_free_test(work / "data", work / "cue_free")


def background_channels(run, data, split: str = "val", device="auto") -> list[int]:
    """The simulated crowd's verdict: channels whose positive activation on `split` images falls
    on the object less than a uniform map would (share on the object < the object's share of
    the area): they fire on the background."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from training.checkpoint import load_checkpoint
    from training.corrections import load_part_maps
    from training.datasets import load_dataset, load_split_uint8, normalize_uint8
    from training.evaluate import resolve_device

    dev = resolve_device(device)
    model, meta = load_checkpoint(run, str(dev))
    model.eval()
    info = load_dataset(data)
    size = int(meta["input_size"])
    images = load_split_uint8(info, split, size, progress=False)
    obj = torch.from_numpy((load_part_maps(info, split, size) > 0).astype(np.float32))[:, None]
    layer = model.get_submodule(meta["explained_layer"])
    on = off = 0.0
    area = float(F.adaptive_avg_pool2d(obj, (1, 1)).mean())
    for lo in range(0, len(images), 256):
        x = normalize_uint8(torch.as_tensor(images[lo:lo + 256]).to(dev), meta["normalization"]["mean"],
                            meta["normalization"]["std"])
        keep = {}
        h = layer.register_forward_hook(lambda m, i, o: keep.setdefault("a", o.detach().float()))
        with torch.no_grad():
            model(x)
        h.remove()
        a = keep["a"].clamp_min(0)  # [B, C, h, w]
        cells = F.adaptive_avg_pool2d(obj[lo:lo + 256].to(dev), a.shape[-2:])  # object share per cell
        on = on + (a * cells).sum(dim=(0, 2, 3))
        off = off + (a * (1 - cells)).sum(dim=(0, 2, 3))
    on_share = (on / (on + off).clamp_min(1e-12)).cpu().numpy()
    return [int(c) for c in np.flatnonzero(on_share < area)]


def run_job(work: Path, model: str, seed: int, s: dict, device: str) -> dict:
    """Train one model of one seed and measure it -> WORK/records/<model>-<seed>.json."""
    from argus.pipelines.improve import Clues, ImproveConfig, measure, train_correction
    from training.trainer import TrainConfig, Trainer, UndertrainedWarning

    warnings.simplefilter("ignore", UndertrainedWarning)
    runs = work / "runs"
    out = runs / f"{model}-{seed}"
    before = runs / f"before-{seed}"
    t0 = time.perf_counter()
    extra = {}
    if model in ("before", "oracle", "oracle-x5"):
        data = work / ("data" if model == "before" else "clean")
        epochs = s["long_epochs"] if model == "oracle-x5" else s["epochs"]
        Trainer(data, out, TrainConfig(epochs=epochs, seed=seed, device=device), progress=False).fit()
    else:
        correction, fine_tune, options, epochs_key = VARIANTS[model]
        clues = Clues(cue="background", backgrounds=["sand"])
        if correction == "suppress":
            clues.invalid_channels = background_channels(before, work / "data", device=device)
            extra["invalid_channels"] = clues.invalid_channels
        cfg = ImproveConfig(epochs=s[epochs_key], fine_tune=fine_tune, seed=seed,
                            device=device, **options)
        train_correction(correction, clues, before, work / "data", out, cfg)
    train_s = time.perf_counter() - t0
    record = {"model": model, "seed": seed, "train_s": round(train_s, 2), **extra,
              **measure(out, work / "data", work / "cue_free", device=device, majority="day")}
    path = work / "records" / f"{model}-{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def launch(work: Path, jobs: list[tuple[str, int]], args, deadline: float | None = None) -> None:
    """Run the jobs not yet recorded, `args.processes` at a time, each in its own process; none
    starts after `deadline` (time.time())."""
    todo = [(m, s) for m, s in jobs if not (work / "records" / f"{m}-{s}.json").exists()]

    def one(job):
        m, s = job
        if deadline is not None and time.time() > deadline:
            print(json.dumps({"job": f"{m}:{s}", "skipped": "deadline"}), flush=True)
            return None
        cmd = [sys.executable, str(Path(__file__).resolve()), "--job", f"{m}:{s}", "--work", str(work),
               "--device", args.device] + (["--quick"] if args.quick else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // max(1, args.processes))))
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(json.dumps({"job": f"{m}:{s}", "failed": res.stderr[-1500:]}), flush=True)
        return res.returncode

    with ThreadPoolExecutor(max_workers=args.processes) as pool:
        list(pool.map(one, todo))


def summarise(records: list[dict], variants, seeds) -> dict:
    """Means with bootstrap intervals over seeds, paired differences vs the judged model, targets."""
    from analysis.method_comparison import describe, paired_difference

    by = {(r["model"], r["seed"]): r for r in records}
    metrics = {"test": lambda r: r["test"]["overall"], "cue_free": lambda r: r["cue_free"]["overall"],
               "majority_pointing_game": lambda r: r["majority_pointing_game"],
               "pointing_game": lambda r: r["pointing_game"]["overall"]}
    domains = sorted({d for r in records for d in r["test"]["per_domain"]})
    for d in domains:
        metrics[f"test_{d}"] = lambda r, d=d: r["test"]["per_domain"].get(d)
        metrics[f"cue_free_{d}"] = lambda r, d=d: r["cue_free"]["per_domain"].get(d)
    models = ["before", *variants, "oracle", "oracle-x5"]
    table = {}
    for m in models:
        got = [s for s in seeds if (m, s) in by]
        if not got:
            continue
        table[m] = {"seeds": got, **{k: describe([f(by[(m, s)]) for s in got]) for k, f in metrics.items()},
                    "train_s": describe([by[(m, s)]["train_s"] for s in got])}
        if m != "before":
            paired = [s for s in got if ("before", s) in by]
            table[m]["vs_before"] = {k: paired_difference([metrics[k](by[(m, s)]) for s in paired],
                                                          [metrics[k](by[("before", s)]) for s in paired])
                                     for k in ("test", "cue_free", "majority_pointing_game")}
    verdicts = {}
    for m in variants:
        if m not in table or "vs_before" not in table[m]:
            continue
        v = table[m]["vs_before"]
        checks = {"cue_free_gain_points": 100 * v["cue_free"]["mean"],
                  "majority_pointing_game": table[m]["majority_pointing_game"]["mean"],
                  "test_change_points": 100 * v["test"]["mean"]}
        # compared as printed (0.1 point, 0.001): a change of -1.0 points keeps the test
        checks["met"] = {"cue_free_gain": round(checks["cue_free_gain_points"], 1) >= TARGETS["cue_free_gain_points"],
                         "pointing_game": round(checks["majority_pointing_game"], 3) >= TARGETS["majority_pointing_game"],
                         "test_kept": round(checks["test_change_points"], 1) >= -TARGETS["test_loss_points"]}
        checks["all_met"] = all(checks["met"].values())
        verdicts[m] = checks
    return {"table": table, "verdicts": verdicts}


def markdown(summary: dict) -> str:
    def cell(st, pts=False):
        if st is None or st.get("n", 0) == 0 or st["mean"] != st["mean"]:
            return "–"
        k = 100 if pts else 1
        fmt = "{:+.1f}" if pts else "{:.3f}"
        return f"{fmt.format(k * st['mean'])} [{fmt.format(k * st['ci_low'])}, {fmt.format(k * st['ci_high'])}]"

    head = ("| model | test | cue-free | pointing game (day) | Δ test (pts) | Δ cue-free (pts) | Δ pointing (pts) "
            "| train s |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for m, r in summary["table"].items():
        v = r.get("vs_before") or {}
        lines.append(f"| {m} | {cell(r['test'])} | {cell(r['cue_free'])} | {cell(r['majority_pointing_game'])} | "
                     f"{cell(v.get('test'), True)} | {cell(v.get('cue_free'), True)} | "
                     f"{cell(v.get('majority_pointing_game'), True)} | {r['train_s']['mean']:.0f} |")
    lines.append("")
    lines.append("Targets (vs the judged model, paired by seed): cue-free gain >= +15 points, day pointing game >= "
                 "0.85, test change >= -1 point.")
    for m, c in summary["verdicts"].items():
        met = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in c["met"].items())
        lines.append(f"- {m}: cue-free {c['cue_free_gain_points']:+.1f} pts, pointing game "
                     f"{c['majority_pointing_game']:.3f}, test {c['test_change_points']:+.1f} pts: {met}")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t = summary["table"]
    names = list(t)
    keys = [("test", "test"), ("cue_free", "cue-free test"), ("majority_pointing_game", "pointing game (day)")]
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(names), 3.6))
    w = 0.8 / len(keys)
    for j, (k, label) in enumerate(keys):
        mean = np.array([t[n][k]["mean"] for n in names])
        lo = mean - np.array([t[n][k]["ci_low"] for n in names])
        hi = np.array([t[n][k]["ci_high"] for n in names]) - mean
        ax.bar(np.arange(len(names)) + (j - 1) * w, mean, w, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("judged model -> corrections -> oracle (mean over seeds, 95% CI)", fontsize=9)
    ax.legend(fontsize=7, ncols=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine(device: str) -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "device": device,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None,
            "load_average_at_start": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 px world, 2 seeds, 4 corrections (CPU)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--seeds", default=None, help="comma-separated [default: 0-4; --quick 0,1]")
    ap.add_argument("--variants", default=None, help=f"comma-separated of {', '.join(VARIANTS)}")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--deadline-s", type=float, default=None, help="start no job after this many seconds")
    ap.add_argument("--oracles", default="oracle,oracle-x5", help="which oracles to train (comma-separated)")
    ap.add_argument("--summary-only", action="store_true", help="start no job: summarise the records there are")
    ap.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    s = settings(args.quick)
    work = Path(args.work or ROOT / "runs" / "bench" / ("improve_quick" if args.quick else "improve"))
    if args.job:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        model, seed = args.job.split(":")
        run_job(work, model, int(seed), s, args.device)
        return
    t0 = time.time()
    seeds = [int(x) for x in (args.seeds or ("0,1" if args.quick else "0,1,2,3,4")).split(",")]
    variants = [v for v in (args.variants or ",".join(QUICK_VARIANTS if args.quick else FULL_VARIANTS)).split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    info = machine(args.device)
    work.mkdir(parents=True, exist_ok=True)
    make_worlds(work, s)
    worlds_s = time.time() - t0
    deadline = t0 + args.deadline_s if args.deadline_s else None
    if not args.summary_only:
        launch(work, [("before", sd) for sd in seeds], args)  # the corrections start from / are judged on it
        # variant-major: a deadline leaves whole variants out, not seeds of every variant
        oracles = [o for o in args.oracles.split(",") if o in ("oracle", "oracle-x5")]
        launch(work, [(m, sd) for m in (*variants, *oracles) for sd in seeds], args, deadline)
    records = [json.loads(p.read_text()) for p in sorted((work / "records").glob("*.json"))]
    summary = summarise([r for r in records if r["seed"] in seeds], variants, seeds)
    for m, r in summary["table"].items():
        print(json.dumps({"model": m, "test": r["test"]["mean"], "cue_free": r["cue_free"]["mean"],
                          "majority_pointing_game": r["majority_pointing_game"]["mean"]}), flush=True)
    doc = {"benchmark": "improve", "preset": "quick" if args.quick else "full", "machine": info, "settings": s,
           "seeds": seeds, "variants": variants, "targets": TARGETS, **summary,
           "records": [r for r in records if r["seed"] in seeds],
           "seconds": {"worlds": round(worlds_s, 1), "total": round(time.time() - t0, 1)}}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / ("gpu/improve.json" if args.device == "cuda"
                                                                        else "improve.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary) + "\n")
    plot(summary, out.with_suffix(".png"))
    print(json.dumps({"wrote": str(out), "seconds": doc["seconds"]}), flush=True)


if __name__ == "__main__":
    main()

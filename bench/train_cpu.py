"""Time for small-cnn (ERM, default settings) to reach >= 95% majority-domain test accuracy.

Renders the default toy world (6,000 train images, 64 px; reused if present), trains with the
default `argus train` settings on the CPU and, after every epoch, evaluates the test split per
domain (bench only: the trainer itself never reads domains). Reports the first epoch at which the
majority domain (day) reaches the target, with its wall time AND the process CPU time divided by
the thread count (with the default single thread, an upper bound of the run time on one idle core:
the machine may be shared),
plus the per-domain accuracies of the selected model.

    python bench/train_cpu.py [--quick] [--epochs E] [--threads T] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from training.datasets import load_dataset  # noqa: E402
from training.evaluate import evaluate_model, evaluate_run  # noqa: E402
from training.toyworld import generate_toyworld  # noqa: E402
from training.trainer import TrainConfig, Trainer  # noqa: E402

TARGET = 0.95


def machine(load_at_start: float) -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_avg_1m_at_start": load_at_start}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,200 training images and 3 epochs (a smoke run)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the trainer's default")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine the CPU time of one thread is an upper "
                         "bound of the run time on one idle core, while extra threads burn CPU spin-waiting)")
    ap.add_argument("--data", default=None, help="toy world folder (rendered if missing)")
    ap.add_argument("--out", default=None, help="run folder (default: a temp folder under /tmp)")
    ap.add_argument("--domains", default=None,
                    help="train/val domain mix, e.g. day=0.34,night=0.33,fog=0.33 (a learnability check: the test "
                         "split is the same as the default world's); results go to train_cpu_<mix>.json")
    args = ap.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    sizes = dict(n_train=1200, n_val=240, n_test=600) if args.quick else dict(n_train=6000, n_val=1200, n_test=1800)
    tag = "" if not args.domains else "_" + args.domains.replace("=", "").replace(",", "_").replace(".", "")
    data = Path(args.data or f"/tmp/argus-bench-toyworld-{'quick' if args.quick else 'default'}{tag}")
    if not (data / "samples.csv").exists():
        generate_toyworld(data, seed=0, progress=False, domains=args.domains, **sizes)
    info = load_dataset(data)
    cfg = TrainConfig(device="cpu", seed=0)
    if args.epochs:
        cfg.epochs = args.epochs
    elif args.quick:
        cfg.epochs = 3
    out = Path(args.out or f"/tmp/argus-bench-train-cpu-{os.getpid()}")
    curve = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()

    def per_epoch_test(trainer, epoch, record):
        # the test evaluation is not training: the trainer's wall clock covers only its epochs, and the
        # CPU time of these evaluations is subtracted
        c0 = time.process_time()
        rep = evaluate_model(trainer.model, info, "test", trainer._meta({}), device="cpu")
        curve.append({"epoch": epoch + 1, "train_wall_s": round(record["train_time_s"], 2),
                      "train_cpu_s": round(c0 - cpu0 - sum(c["_eval_cpu"] for c in curve), 2),
                      "majority_accuracy": rep["majority_accuracy"],
                      "per_domain": {d: v["accuracy"] for d, v in rep["per_domain"].items()},
                      "_eval_cpu": 0.0})
        curve[-1]["_eval_cpu"] = time.process_time() - c0
        print(json.dumps({k: v for k, v in curve[-1].items() if not k.startswith("_")}), flush=True)

    trainer = Trainer(info, out, cfg, callbacks=[per_epoch_test], progress=False)
    setup_wall = time.perf_counter() - wall0
    trainer.fit()
    for c in curve:
        c.pop("_eval_cpu")
    hit = next((c for c in curve if c["majority_accuracy"] >= TARGET), None)
    final = evaluate_run(out, data, "test", device="cpu")
    threads = torch.get_num_threads()
    figures = [
        {"figure": "time_to_95_majority", "target": TARGET, "reached": hit is not None,
         "epoch": hit and hit["epoch"], "train_wall_s": hit and hit["train_wall_s"],
         "train_cpu_s": hit and hit["train_cpu_s"], "idle_equivalent_s": hit and round(hit["train_cpu_s"] / threads, 1),
         "limit_s": 300},
        {"figure": "selected_model_test_accuracy", "epochs": cfg.epochs, "train_wall_s": curve[-1]["train_wall_s"],
         "idle_equivalent_s": round(curve[-1]["train_cpu_s"] / threads, 1),
         "majority_domain": final["majority_domain"], "majority_accuracy": final["majority_accuracy"],
         "per_domain": {d: v["accuracy"] for d, v in final["per_domain"].items()},
         "minority_mean_accuracy": final["minority_mean_accuracy"], "worst_domain_accuracy": final["worst_domain_accuracy"],
         "overall_accuracy": final["overall_accuracy"]},
    ]
    for f in figures:
        print(json.dumps(f), flush=True)
    result = {"bench": "train_cpu", "quick": args.quick, "machine": machine(load_at_start), "setup_wall_s": round(setup_wall, 2),
              "config": {"arch": cfg.arch, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer, **sizes},
              "figures": figures, "curve": curve,
              "note": ("Shared machine: other engineers' jobs ran at the same time (see load_avg_1m_at_start), so wall "
                       "times are inflated; idle_equivalent_s = process CPU time / threads. With one thread that is an "
                       "upper bound of the time on ONE idle core (2 idle cores are faster still).")}
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    (HERE / "results").mkdir(exist_ok=True)
    name = f"train_cpu{tag}{'_quick' if args.quick else ''}.json"
    result["domains"] = args.domains or "default"
    (HERE / "results" / name).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

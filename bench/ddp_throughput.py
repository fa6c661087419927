"""DDP training throughput: 1 process vs N processes (torchrun), resnet18, global batch 256.

    python bench/ddp_throughput.py [--quick] [--method center-distance] [--nproc 2] [--compile]

On a machine with >= 2 GPUs it measures one GPU against `--nproc` GPUs (nccl, AMP); on CPU it
runs a tiny version with gloo (resnet18 at 32 px, global batch 32) so the code path is checked
anywhere. Each worker trains on synthetic in-memory images through the same pieces the trainer
uses (`_FeaturesAndLogits` under DDP, the method's loss / after_step, so center updates are
all-reduced every step), times `--steps` steps after `--warmup` steps, and rank 0 reports
images/s. The figure is throughput(N) / throughput(1), target >= 1.7 for 2 GPUs.

To name the bottleneck it also times one process alone on one rank's share of the batch
(`share_alone`): when that step costs about what the full batch costs, the step is bound by the
host issuing kernels (the per-step cost does not shrink with the batch), and N processes can
only add throughput if each issues faster; when N processes cost more than `share_alone`, the
difference is communication. `--compile` runs the model through `torch.compile` (fused kernels,
fewer launches per step) before wrapping it in DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(args) -> None:
    """One rank (started by torchrun): time training steps, rank 0 writes images/s."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from training.methods import build_method
    from training.models import build_model
    from training.trainer import _FeaturesAndLogits

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    torch.manual_seed(0)
    classes, n_rows = 10, 4096
    model = build_model(args.arch, classes).to(device).to(memory_format=torch.channels_last if cuda else torch.contiguous_format)
    net = _FeaturesAndLogits(model)
    if args.compile:
        net = torch.compile(net)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[local] if cuda else None,
                                                  gradient_as_bucket_view=True)
        if args.comm_hook == "bf16":  # gradients travel as bf16: half the bytes per all-reduce
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

            net.register_comm_hook(None, default_hooks.bf16_compress_hook)
    labels = torch.randint(0, classes, (n_rows,))
    method = build_method(args.method)
    method.prepare(type("T", (), {"num_classes": classes, "num_train": n_rows, "train_labels": labels,
                                  "epochs": 1})())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    per_rank = args.batch // (args.share or world)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(per_rank, 3, args.size, args.size, generator=g).to(device)
    if cuda:
        x = x.to(memory_format=torch.channels_last)
    idx = torch.randint(0, n_rows, (per_rank,), generator=g)
    y = labels[idx].to(device)
    idx = idx.to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            logits, feats = net(x)
        loss = method.loss(logits.float(), feats.float(), y, idx)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        method.after_step()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - t0
    method.end_epoch(0)  # the sampler's all-reduce runs too
    if rank == 0:
        Path(args.result).write_text(json.dumps({"world": world, "images_per_s": args.steps * per_rank * world / elapsed,
                                                 "step_ms": 1000 * elapsed / args.steps, "elapsed_s": elapsed}))
    if world > 1:
        dist.destroy_process_group()


def launch(nproc: int, args, result: Path, share: int = 0) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           __file__, "--worker", "--result", str(result), "--device", args.device, "--arch", args.arch,
           "--method", args.method, "--batch", str(args.batch), "--size", str(args.size),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--share", str(share)]
    if args.compile:
        cmd.append("--compile")
    if args.comm_hook:
        cmd += ["--comm-hook", args.comm_hook]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--method", default="center-distance")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=None, help="global batch (256 on GPU, 32 on CPU)")
    ap.add_argument("--size", type=int, default=None, help="image side (224 on GPU, 32 on CPU)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (fewer kernel launches per step)")
    ap.add_argument("--comm-hook", default=None, choices=["bf16"], help="DDP gradient compression hook")
    ap.add_argument("--out", default=None, help="result file (default bench/results/ddp_throughput.json)")
    ap.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.device_count() >= args.nproc else "cpu"
    if args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        raise SystemExit(f"--device cuda: {args.nproc} GPUs needed, {torch.cuda.device_count()} found")
    gpu = args.device == "cuda"
    args.batch = args.batch or (256 if gpu else 32)
    args.size = args.size or (224 if gpu else 32)
    args.steps = args.steps or ((20 if args.quick else 50) if gpu else (3 if args.quick else 8))
    args.warmup = args.warmup or ((30 if args.compile else 5) if gpu else 2)
    with tempfile.TemporaryDirectory() as tmp:
        one = launch(1, args, Path(tmp) / "one.json")
        alone = launch(1, args, Path(tmp) / "alone.json", share=args.nproc)
        many = launch(args.nproc, args, Path(tmp) / "many.json")
    speedup = many["images_per_s"] / one["images_per_s"]
    lines = [
        {"bench": "ddp_throughput", "figure": "images_per_s/1", "value": round(one["images_per_s"], 1), "unit": "img/s"},
        {"bench": "ddp_throughput", "figure": f"images_per_s/{args.nproc}", "value": round(many["images_per_s"], 1), "unit": "img/s"},
        {"bench": "ddp_throughput", "figure": f"speedup_{args.nproc}_vs_1", "value": round(speedup, 3), "unit": "x",
         "target": ">= 1.7 on 2 GPUs" if gpu else "CPU smoke run (no target)"},
        {"bench": "ddp_throughput", "figure": "step_ms/full_batch_1_process", "value": round(one["step_ms"], 2), "unit": "ms"},
        {"bench": "ddp_throughput", "figure": "step_ms/share_alone", "value": round(alone["step_ms"], 2), "unit": "ms",
         "note": f"one process, batch {args.batch // args.nproc}: about the full batch's step = host-bound"},
        {"bench": "ddp_throughput", "figure": f"step_ms/{args.nproc}_processes", "value": round(many["step_ms"], 2), "unit": "ms",
         "note": "minus share_alone = communication"},
    ]
    for line in lines:
        print(json.dumps(line), flush=True)
    mach = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "device": args.device, "gpu": torch.cuda.get_device_name(0) if gpu else None,
            "gpu_count": torch.cuda.device_count()}
    doc = {"bench": "ddp_throughput", "machine": mach, "method": args.method, "arch": args.arch, "compile": args.compile, "comm_hook": args.comm_hook,
           "global_batch": args.batch, "image_size": args.size, "steps": args.steps, "nproc": args.nproc,
           "note": "" if gpu else ("CPU smoke run with gloo on a shared 2-core machine: the ratio says nothing about "
                                   "GPU scaling; the lead measures 1 vs 2 GPUs on the device machine"),
           "figures": lines}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "ddp_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

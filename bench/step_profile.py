"""Where one training step's time goes on one device, with the trainer's data path.

For each configuration (arch, image size, global batch, method, AMP dtype) the trainer's pieces
run on GPU-resident uint8 data (`training.batches.DeviceBatches`, on-device augmentation and
normalisation, `_FeaturesAndLogits`, the method's loss / after_step, SGD + GradScaler):

- `wall_ms`: wall time per step over `--steps` steps with one synchronisation at the end (what
  a user sees);
- `gpu_ms[phase]`: the device timeline per phase (CUDA events around data, forward, loss,
  backward, optimizer, after_step; no synchronisation inside the loop), idle gaps included;
- `host_ms[phase]`: host time to issue each phase (Python + launches; a phase that waits for the
  device, like GradScaler's inf check, shows it here);
- `per_epoch_ms`: the method's per-epoch work (`end_epoch` + the next `epoch_indices`: the
  sampler's weights; under DDP this is where its all-reduce runs) on an epoch of `--rows` rows.

The bottleneck is named by comparing them (`name_bottleneck`): a device timeline that equals the
host's issue time phase by phase means the device waits for the host (launch/Python bound); a
device slower than the host through forward/backward, with the host waiting in a synchronising
phase, means the device is the bottleneck. On one GPU there are no collectives; measuring them
needs a machine with several GPUs.

    python bench/step_profile.py [--quick] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("data", "forward", "loss", "backward", "optimizer", "after_step")


def name_bottleneck(gpu_ms: dict | None, host_ms: dict, wall_ms: float) -> str:
    """Name what bounds the step from the per-phase device timeline and host issue times.

    The events measure the device's timeline between phase boundaries, idle gaps included. When
    every phase's device time equals its host issue time (within 10%), the device only ran as
    fast as the host issued work: the step is host-bound (Python + kernel launches). When the
    device takes longer than the host to get through the compute phases (the host then waits in
    a synchronising phase such as GradScaler's inf check), the device is the bottleneck.
    """
    if gpu_ms is None:
        return "cpu compute (no device)"
    compute = ("forward", "backward")
    dev = sum(gpu_ms[p] for p in compute)
    host = sum(host_ms[p] for p in compute)
    if dev > 1.1 * host:
        top = max(gpu_ms, key=gpu_ms.get)
        waits = max(host_ms, key=lambda p: host_ms[p] - gpu_ms[p])
        return (f"device: forward+backward take {dev:.2f} ms on the device vs {host:.2f} ms to issue; "
                f"largest phase '{top}'; the host waits in '{waits}'")
    top = max(host_ms, key=host_ms.get)
    return (f"host (Python + launches): the device timeline follows the host phase by phase "
            f"({sum(gpu_ms.values()):.2f} vs {sum(host_ms.values()):.2f} ms per step, wall {wall_ms:.2f}); "
            f"largest host phase '{top}'")


def profile(arch: str, size: int, batch: int, method_name: str, amp_dtype: str, steps: int, rows: int, device) -> dict:
    import torch

    from training.batches import Augment, DeviceBatches, prepare_batch
    from training.methods import build_method
    from training.models import build_model
    from training.trainer import _FeaturesAndLogits

    gpu = device.type == "cuda"
    torch.manual_seed(0)
    classes = 6
    images = torch.randint(0, 256, (rows, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, classes, (rows,))
    source = DeviceBatches(images, labels, device)
    model = build_model(arch, classes).to(device, memory_format=torch.channels_last)
    net = _FeaturesAndLogits(model)
    method = build_method(method_name)
    method.prepare(type("T", (), {"num_classes": classes, "num_train": rows, "train_labels": labels, "epochs": 2})())
    params = list(net.parameters()) + list(method.extra_parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    dtype = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=gpu and amp_dtype == "float16")
    aug = Augment(4, True)
    gen = torch.Generator().manual_seed(0)
    mean, std = [0.5] * 3, [0.25] * 3

    def batches():
        while True:
            yield from source.batches(torch.randperm(rows, generator=gen), batch)

    it = batches()
    host = {p: 0.0 for p in PHASES}
    events = []

    def step(timed: bool):
        marks = []

        def mark(phase):
            if timed:
                if gpu:
                    e = torch.cuda.Event(enable_timing=True)
                    e.record()
                    marks.append(e)
                host[phase] += time.perf_counter() - mark.t
                mark.t = time.perf_counter()

        mark.t = time.perf_counter()
        if gpu and timed:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            marks.append(e)
        idx, xb, y = next(it)
        x = prepare_batch(xb, mean, std, aug.draw(len(idx), gen))
        mark("data")
        with torch.autocast(device.type, dtype=dtype, enabled=gpu):
            logits, feats = net(x)
        mark("forward")
        loss = method.loss(logits.float(), feats.float(), y, idx)
        mark("loss")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        mark("backward")
        scaler.step(opt)
        scaler.update()
        mark("optimizer")
        method.after_step()
        mark("after_step")
        if timed and gpu:
            events.append(marks)

    for _ in range(10):
        step(False)
    if gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(False)
    if gpu:
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / steps
    host = {p: 0.0 for p in PHASES}
    for _ in range(steps):
        step(True)
    if gpu:
        torch.cuda.synchronize()
    gpu_ms = {p: 0.0 for p in PHASES}
    for marks in events:
        for p, a, b in zip(PHASES, marks[:-1], marks[1:]):
            gpu_ms[p] += a.elapsed_time(b) / steps
    t0 = time.perf_counter()
    method.end_epoch(0)
    method.epoch_indices(1, torch.Generator().manual_seed(1))
    if gpu:
        torch.cuda.synchronize()
    per_epoch = (time.perf_counter() - t0) * 1000
    host_ms = {p: 1000 * v / steps for p, v in host.items()}
    busy = sum(gpu_ms.values()) if gpu else None
    wall_ms = wall * 1000
    bottleneck = name_bottleneck(gpu_ms if gpu else None, host_ms, wall_ms)
    return {"arch": arch, "image_size": size, "batch": batch, "method": method_name, "amp_dtype": amp_dtype if gpu else None,
            "steps": steps, "wall_ms": wall_ms, "images_per_s": batch / wall, "gpu_ms": gpu_ms if gpu else None,
            "gpu_busy_ms": busy, "host_ms": host_ms, "host_total_ms": sum(host_ms.values()),
            "per_epoch_ms": per_epoch, "epoch_rows": rows, "bottleneck": bottleneck}


def main():
    import torch

    from training.evaluate import resolve_device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-log", default=None, help="rebuild the result file from a run's printed JSON lines")
    args = ap.parse_args()
    if args.from_log:
        results = [json.loads(line) for line in Path(args.from_log).read_text().splitlines() if line.startswith("{")]
        for r in results:
            r["bottleneck"] = name_bottleneck(r["gpu_ms"], r["host_ms"], r["wall_ms"])
        doc = {"bench": "step_profile", "from_log": str(args.from_log), "results": results}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        return
    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    steps = (30 if args.quick else 100) if gpu else 3
    if gpu:
        configs = [("resnet18", 224, 256, m, d) for m in ("erm", "center-distance") for d in ("float16", "bfloat16")]
        configs += [("small-cnn", 64, 128, m, d) for m in ("erm", "center-distance") for d in ("float16", "bfloat16")]
        configs += [("small-cnn", 32, 128, "center-distance", "bfloat16")]
        rows = 4096
    else:
        configs = [("small-cnn", 32, 32, m, "float16") for m in ("erm", "center-distance")]
        rows = 256
    results = []
    for arch, size, batch, method, dtype in configs:
        res = profile(arch, size, batch, method, dtype, steps, rows, dev)
        print(json.dumps(res), flush=True)
        results.append(res)
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "device": str(dev), "gpu": torch.cuda.get_device_name(0) if gpu else None}
    doc = {"bench": "step_profile", "quick": args.quick, "machine": machine, "results": results}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / ("gpu/step_profile_gpu.json" if gpu else "step_profile.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

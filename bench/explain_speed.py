"""Explanation-engine speed, side by side in one run.

Figures (one JSON line each; all in bench/results/explain_speed.json):
- plain inference vs Argus all-class per-channel decomposition (+ contrast) of one batch, the
  decomposition kept factored (pooled features x head weights); beside it, what the sheets need on
  the device (top arguments, peaks, class map, faithfulness curves), the dense [B, C, K] tensor
  built, and Grad-CAM from the decomposition;
- Captum LayerGradCam and pytorch-grad-cam GradCAM for 1 and 10 classes per image, on the same
  model and batch (a 1000-class head by default);
- exemplar mining (one streaming pass with top-N merges) vs a plain inference pass over the same data;
- end-to-end sheets per second (explain + JSON + HTML + PNGs, rendering on all cores) on a toy world, with
  the current renderer and the frozen one from before (bench/render_before.py) in the same run; rendering
  CPU per sheet before vs after; legibility of the evidence (outline contrast, night luminance).

CPU default: small-cnn 64x64, batch 64. GPU (the lead's run):
    python bench/explain_speed.py --device cuda --arch resnet50 --image-size 224 --batch 64
Sheets per second alone (what the GPU host's >= 300/s target is about; all cores render):
    python bench/explain_speed.py --device cuda --sheets-only --sheets 400 --out bench/results/gpu/explain_sheets_gpu.json
(`--sheets 2000 --no-before` for the steady state, fixed per-run costs amortised.)
Timings are medians over repeats after warm-up, with CUDA synchronisation around each call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # render_before.py, the frozen renderer

from explain.contributions import LayerContributions  # noqa: E402
from explain.exemplars import stream_top_activations  # noqa: E402
from explain.sheets import faithfulness, peak_locations  # noqa: E402
from training.evaluate import resolve_device  # noqa: E402
from training.models import build_model  # noqa: E402

FIGURES: list[dict] = []


def emit(figure: str, value, unit: str, **extra):
    row = {"figure": figure, "value": value, "unit": unit, **extra}
    FIGURES.append(row)
    print(json.dumps(row), flush=True)


def interleaved(fns: dict, device: torch.device, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median ms per call of each function, calling them in turn every round (rotating the
    order), so that all arms see the same background load on a shared machine."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def machine(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def bench_decomposition(model, layer_module, x, device, repeats, warmup, classes_multi: int):
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    explainer = LayerContributions(model)
    explainer.explain(x[:2])  # structure detection once (not part of the steady state)

    def plain():
        with torch.no_grad():
            model(x)

    def argus():
        e = explainer.explain(x)
        return e.contrast_contributions

    def argus_sheet_numbers():
        # Everything `analyse_batch` computes on the device: top arguments, their maps and peaks,
        # the contrastive class map and the faithfulness curves over all classes.
        e = explainer.explain(x)
        vals, chans = e.top_channels(3)
        rows = torch.arange(x.shape[0], device=x.device)
        peak_locations(e.maps[rows[:, None], chans].float().clamp_min(0), tuple(x.shape[-2:]))
        e.class_map()
        return faithfulness(explainer, x, e, 3)

    def argus_dense():
        return explainer.explain(x).contributions  # the [B, C, K] tensor itself

    def argus_grad_cam():
        return explainer.grad_cam(x)

    # The Argus arms first, on their own: the reference tools' backward passes churn the
    # allocator, which would land on whichever arm runs next.
    own = interleaved({"plain": plain, "argus": argus, "sheet": argus_sheet_numbers, "dense": argus_dense,
                       "gradcam": argus_grad_cam}, device, repeats, warmup)
    t_plain, t_argus = own["plain"], own["argus"]
    k = int(model.fc.out_features)
    emit("plain_inference", round(t_plain, 3), "ms/batch")
    emit("argus_all_class_decomposition", round(t_argus, 3), "ms/batch", ratio_to_plain=round(t_argus / t_plain, 3),
         classes_explained=k, note="explain(): logits, maps, runner-up contrast, per-channel contrast contributions and "
                                   "the all-class decomposition kept factored (pooled x head weights; any class on demand)")
    emit("argus_sheet_numbers", round(own["sheet"], 3), "ms/batch", ratio_to_plain=round(own["sheet"] / t_plain, 3),
         note="explain + top-3 arguments, peaks, contrastive class map, faithfulness curves over all classes "
              "(one product on pooled features): what the sheets need, on the device")
    emit("argus_dense_all_class_tensor", round(own["dense"], 3), "ms/batch", ratio_to_plain=round(own["dense"] / t_plain, 3),
         note=f"explain + the dense [B, C, K] tensor built ({x.shape[0]}x{model.fc.in_features}x{k} floats)")
    emit("argus_grad_cam", round(own["gradcam"], 3), "ms/batch", ratio_to_plain=round(own["gradcam"] / t_plain, 3),
         note="Grad-CAM of the predicted class from the decomposition's maps (GAP-linear head: no backward pass)")
    with torch.no_grad():
        top = torch.topk(model(x), classes_multi, dim=1).indices  # [B, 10]
    gradcam = LayerGradCam(model, layer_module)

    def captum(n):
        def run():
            for i in range(n):
                gradcam.attribute(x, target=top[:, i])
        return run

    cam = GradCAM(model=model, target_layers=[layer_module])

    def pgc(n):
        def run():
            for i in range(n):
                cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in top[:, i]])
        return run

    one = interleaved({"argus": argus, "captum": captum(1), "pgc": pgc(1)}, device, repeats, warmup)
    t_argus = one["argus"]
    emit("captum_layergradcam_1_class", round(one["captum"], 3), "ms/batch", argus_speedup=round(one["captum"] / t_argus, 2),
         argus_ms_same_rounds=round(t_argus, 3))
    emit("pytorch_grad_cam_1_class", round(one["pgc"], 3), "ms/batch", argus_speedup=round(one["pgc"] / t_argus, 2),
         argus_ms_same_rounds=round(t_argus, 3))
    n = classes_multi
    multi = interleaved({"argus": argus, "captum": captum(n), "pgc": pgc(n)}, device, max(2, repeats // 3), 0 if device.type == "cpu" else 1)
    emit(f"captum_layergradcam_{n}_class", round(multi["captum"], 3), "ms/batch",
         argus_speedup=round(multi["captum"] / multi["argus"], 2), argus_ms_same_rounds=round(multi["argus"], 3))
    emit(f"pytorch_grad_cam_{n}_class", round(multi["pgc"], 3), "ms/batch",
         argus_speedup=round(multi["pgc"] / multi["argus"], 2), argus_ms_same_rounds=round(multi["argus"], 3))
    cam.activations_and_grads.release()


def bench_small_head(arch, x, device, repeats, classes: int = 6):
    """The decomposition overhead with the toy world's head (6 classes) instead of 1000."""
    torch.manual_seed(0)
    model = build_model(arch, classes).to(device).eval()
    explainer = LayerContributions(model)
    explainer.explain(x[:2])

    def plain():
        with torch.no_grad():
            model(x)

    t = interleaved({"plain": plain, "argus": lambda: explainer.explain(x)}, device, repeats, 2)
    emit(f"argus_all_class_decomposition_{classes}_classes", round(t["argus"], 3), "ms/batch",
         ratio_to_plain=round(t["argus"] / t["plain"], 3), plain_ms=round(t["plain"], 3))


def bench_mining(model, layer, size, device, n_images, batch, repeats):
    data = torch.utils.data.TensorDataset(torch.randn(n_images, 3, size, size))
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    if device.type == "cuda":  # data resident on the GPU in both arms, so the ratio is compute vs compute
        loader = [b[0].to(device) for b in loader]

    def plain():
        with torch.no_grad():
            for b in loader:
                model(b.to(device) if isinstance(b, torch.Tensor) else b[0].to(device))

    def mine(amp):
        def run():
            stream_top_activations(model, layer, loader, 9, device, amp=amp, progress=False)
        return run

    both = interleaved({"plain": plain, "mine": mine(False)}, device, repeats, 1)
    t_plain, t_mine = both["plain"], both["mine"]
    emit("plain_inference_pass", round(t_plain, 2), "ms", images=n_images)
    emit("exemplar_mining_pass", round(t_mine, 2), "ms", images=n_images, ratio_to_plain=round(t_mine / t_plain, 3),
         note="same precision (fp32) as the plain pass; top-9 per channel merged on the device")
    if device.type == "cuda":
        t_amp = interleaved({"amp": mine(True)}, device, repeats, 1)["amp"]
        emit("exemplar_mining_pass_amp", round(t_amp, 2), "ms", images=n_images, ratio_to_plain_fp32=round(t_amp / t_plain, 3))


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its joined children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_sheets(device, n_sheets, workers, image_size=64, rounds=1, compare=True):
    """End-to-end sheets/s (explain + faithfulness + JSON + HTML + PNGs) on a toy world, with the
    current renderer and, when `compare`, the frozen one from before (bench/render_before.py),
    alternating in one run; then render CPU per sheet and legibility, before vs after."""
    import explain.pipeline as pipeline
    from explain.pipeline import explain_dataset
    from training.datasets import load_dataset
    from training.models import SmallCNN
    from training.toyworld import generate_toyworld

    import render_before

    arms = {"after": pipeline.render_sheets, "before": render_before.render_sheets} if compare else {"after": pipeline.render_sheets}
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_toyworld(Path(tmp) / "data", n_train=200, n_val=0, n_test=n_sheets, image_size=image_size, progress=False)
        info = load_dataset(data)
        torch.manual_seed(0)
        model = SmallCNN(len(info.classes))
        meta = {"classes": info.classes, "input_size": image_size, "arch": "small-cnn", "explained_layer": "features",
                "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
        runs = {arm: [] for arm in arms}
        for r in range(rounds):
            order = list(arms) if r % 2 == 0 else list(arms)[::-1]
            for arm in order:
                out = Path(tmp) / f"sheets_{arm}_{r}"
                pipeline.render_sheets = arms[arm]
                try:
                    explain_dataset(model, meta, data, out, limit=8, device=device, workers=workers, progress=False)  # warm
                    cpu0 = _cpu_s()
                    summary = explain_dataset(model, meta, data, out, device=device, workers=workers, progress=False)
                    cpu_s = _cpu_s() - cpu0
                finally:
                    pipeline.render_sheets = arms["after"]
                t = summary["timing_s"]
                runs[arm].append({"n": summary["n_sheets"], "wall_s": t["explain"] + t["render"], "explain_s": t["explain"],
                                  "render_s": t["render"], "cpu_s": cpu_s, "out": out})
        cores = os.cpu_count() or 1
        for arm in arms:
            n = runs[arm][0]["n"]
            best = min(runs[arm], key=lambda x: x["wall_s"])
            cpu_each = statistics.median(x["cpu_s"] for x in runs[arm]) / n
            emit("sheets_per_second_end_to_end" + ("" if arm == "after" else "_before"), round(n / best["wall_s"], 1),
                 "sheets/s", renderer=arm, sheets=n, workers=workers, rounds=rounds, explain_s=round(best["explain_s"], 3),
                 render_s=round(best["render_s"], 3), arch="small-cnn", image_size=image_size,
                 note="wall clock (best round): explain + faithfulness + JSON + HTML + PNG composite + evidence PNGs; "
                      "exemplars mined beforehand (once per checkpoint)")
            emit("sheets_cpu_seconds_each" + ("" if arm == "after" else "_before"), round(cpu_each, 4), "cpu-s/sheet",
                 renderer=arm, sheets=n, projected_sheets_per_s_on_idle_cores=round(cores / cpu_each, 1), cores=cores,
                 note="CPU seconds (user+sys, this process + rendering workers; median over rounds) per sheet; the "
                      "projection divides the core count by it (what the same work gives on idle cores)")
        if compare:
            bench_render(runs["after"][0]["out"], Path(tmp) / "render_cmp", max(3, rounds))
            bench_legibility(runs["after"][0]["out"])


def sheet_jobs(root: Path, limit: int | None = None) -> list[tuple]:
    """`render_one` jobs `(sheet, image, maps)` from a written sheets folder."""
    import numpy as np
    from PIL import Image

    jobs = []
    for path in sorted((root / "sheets").glob("*.json"))[:limit]:
        sheet = json.loads(path.read_text())
        sheet.pop("image_brightened", None)
        image = np.asarray(Image.open(root / sheet["image"]).convert("RGB"))
        maps = np.array([a["heatmap_grid"] for a in sheet["arguments"]], dtype=np.float32)
        jobs.append((sheet, image, maps))
    return jobs


def bench_render(sheets_root: Path, tmp: Path, rounds: int, n: int = 100):
    """Rendering alone, one process, CPU ms per sheet: the current renderer vs the frozen one,
    alternating per round on the same jobs (strip caches warm in both)."""
    import shutil

    import explain.render as after
    import render_before as before

    jobs = sheet_jobs(sheets_root, n)
    scale = jobs[0][0]["heatmap_scale"]
    arms = {"after": after, "before": before}
    for arm, mod in arms.items():
        out = tmp / arm
        for sub in ("sheets", "images", "heatmaps"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree(sheets_root / "exemplars", out / "exemplars", dirs_exist_ok=True)
        if arm == "after":
            mod._init_worker(str(out), scale, after.colormap_lut())
        else:
            mod._init_worker(str(out), scale)
    times = {arm: [] for arm in arms}
    for r in range(rounds + 1):
        for arm in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            c0 = time.process_time()
            for job in jobs:
                arms[arm].render_one((dict(job[0]), job[1], job[2]))
            if r:  # round 0 warms the caches
                times[arm].append((time.process_time() - c0) * 1000 / len(jobs))
    a, b = statistics.median(times["after"]), statistics.median(times["before"])
    emit("render_cpu_ms_per_sheet", round(a, 2), "cpu-ms/sheet", before=round(b, 2), speedup=round(b / a, 2), sheets=len(jobs),
         rounds=rounds, note="one process; JSON + HTML + input PNG + evidence PNGs + composite PNG per sheet; before = "
                             "bench/render_before.py (64 px tint, Pillow PNG, FreeType per string)")


def bench_legibility(sheets_root: Path):
    """Legibility of the evidence on the run's sheets: outline contrast (WCAG) and the mean
    luminance of the top region on night images, current pictures vs the old tint."""
    import numpy as np

    import render_before as before
    from explain.evidence import (EVIDENCE_PX, TOP_FRACTION, colormap_lut, evidence_panels, mean_luminance,
                                  outline_contrast, upsample_maps)

    lut = colormap_lut()
    rows = {"night": [], "fog": [], "day": []}
    contrasts = []
    for sheet, image, maps in sheet_jobs(sheets_root):
        ev = evidence_panels(image, maps, sheet["heatmap_scale"], lut)
        for k in range(len(maps)):
            if not ev.regions[k].any():
                continue
            c = outline_contrast(ev.panels[k], ev.regions[k], ev.core[k], ev.casing[k])
            if c["min"] is not None:
                contrasts.append(c["min"])
            old = before.heatmap_overlay(image, maps[k], sheet["heatmap_scale"], lut)
            up = upsample_maps(maps[k:k + 1], image.shape[0])[0]
            old_region = up >= TOP_FRACTION * up.max()
            if sheet.get("domain") in rows:
                rows[sheet["domain"]].append((mean_luminance(old, old_region), mean_luminance(ev.panels[k], ev.regions[k])))
    if contrasts:
        emit("evidence_outline_contrast_min", round(float(np.min(contrasts)), 2), "WCAG ratio", panels=len(contrasts),
             median=round(float(np.median(contrasts)), 2), threshold=3.0,
             note=f"per panel, the weakest point of the outline against the pixels beside it; {EVIDENCE_PX} px panels")
    for domain, vals in rows.items():
        if vals:
            v = np.array(vals)
            emit(f"evidence_top_region_luminance_{domain}", round(float(v[:, 1].mean()), 3), "relative luminance",
                 before=round(float(v[:, 0].mean()), 3), panels=len(v),
                 note="mean WCAG relative luminance inside the top region as shown (after: brightened when dark)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fewer repeats and images (a smoke run).")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--arch", default=None, help="small-cnn (default on CPU) | resnet18 | resnet50 (default on CUDA)")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=1000, help="Head size (an ImageNet-size head by default).")
    ap.add_argument("--multi", type=int, default=10, help="Classes per image for the multi-class comparison.")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--mining-images", type=int, default=None)
    ap.add_argument("--sheets", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="Rendering processes [default: all cores].")
    ap.add_argument("--skip-sheets", action="store_true")
    ap.add_argument("--sheets-only", action="store_true",
                    help="Only the sheets figures (end to end before vs after, render CPU, legibility); no decomposition or mining.")
    ap.add_argument("--sheet-rounds", type=int, default=None, help="End-to-end runs per renderer [1 quick, 2 otherwise].")
    ap.add_argument("--no-before", action="store_true", help="Skip the frozen renderer from before (bench/render_before.py).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain_speed.json"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    device = resolve_device(args.device)
    arch = args.arch or ("resnet50" if device.type == "cuda" else "small-cnn")
    size = args.image_size or (224 if arch.startswith("resnet") else 64)
    repeats = args.repeats or (5 if args.quick else (30 if device.type == "cuda" else 10))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(arch, args.classes).to(device).eval()
    layer_module = dict(model.named_modules())[model.explained_layer]
    x = torch.randn(args.batch, 3, size, size, device=device)
    emit("config", None, "", arch=arch, image_size=size, batch=args.batch, classes=args.classes, device=str(device),
         repeats=repeats, load_average_before=[round(v, 2) for v in os.getloadavg()])
    if not args.sheets_only:
        bench_decomposition(model, layer_module, x, device, repeats, 2, args.multi)
        bench_small_head(arch, x, device, repeats)
        n_mine = args.mining_images or (512 if args.quick else (8192 if device.type == "cuda" else 2048))
        bench_mining(model, model.explained_layer, size, device, n_mine, args.batch, max(1, repeats // 5))
    if not args.skip_sheets:
        workers = args.workers or os.cpu_count() or 1
        bench_sheets(device, args.sheets or (100 if args.quick else 400), workers,
                     rounds=args.sheet_rounds or (1 if args.quick else 2), compare=not args.no_before)
    emit("load_average_after", [round(v, 2) for v in os.getloadavg()], "1/5/15-min load")
    result = {"benchmark": "explain_speed", "machine": machine(device), "arch": arch, "image_size": size, "batch": args.batch,
              "classes": args.classes, "quick": args.quick, "figures": FIGURES,
              "note": ("CPU run on a 2-core machine shared with other engineers' jobs (load varies); ratios are side by side "
                       "in one run" if device.type == "cpu" else "GPU run; CUDA-synchronised medians after warm-up")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

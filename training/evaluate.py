"""Per-domain evaluation. The only place in `training` that reads the `domain` column.

`evaluate_predictions` turns predictions into the report `argus eval --json` prints:
`overall_accuracy, n, per_domain {domain: {accuracy, n}}, majority_domain,
minority_mean_accuracy, worst_domain_accuracy, per_class {class: {accuracy, n}},
worst_class_accuracy, mean_class_accuracy, confusion` (rows = true class, columns = predicted).
The majority domain is the one with the most *training* samples (the test split is usually
balanced), falling back to the evaluated split's own counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from training.progress import progress_bar as tqdm

from training.datasets import UNKNOWN_DOMAIN, DatasetInfo, load_dataset, load_split_uint8, normalize_uint8


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None) -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device not in ("cpu",) and not str(device).startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


@torch.no_grad()
def predict_uint8(model: torch.nn.Module, images: torch.Tensor, mean, std, device="cpu", batch_size: int = 512,
                  progress: bool = False, features: bool = False):
    """Logits `[N, K]` float32 (and pooled features `[N, D]` if `features`) for uint8 images
    `[N, 3, H, W]`, computed in eval mode in batches (AMP on CUDA)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits, feats = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", disable=not progress, leave=False):
        x = normalize_uint8(images[start:start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            if features:
                f = model.forward_features(x)
                out = model.fc(f)
                feats.append(f.float().cpu())
            else:
                out = model(x)
        logits.append(out.float().cpu())
    model.train(was_training)
    k = getattr(getattr(model, "fc", None), "out_features", 0)
    lg = torch.cat(logits) if logits else torch.zeros(0, k)
    if features:
        return lg, (torch.cat(feats) if feats else torch.zeros(0, getattr(model, "feature_dim", 0)))
    return lg


def class_report(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy overall and per class (labels only; no domains)."""
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    per_class = {}
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            per_class[name] = {"accuracy": float((pred[sel] == k).mean()), "n": int(sel.sum())}
    accs = [v["accuracy"] for v in per_class.values()]
    k = len(classes)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k) if len(labels) else np.zeros((k, k), int)
    return {
        "overall_accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "n": int(len(labels)),
        "per_class": per_class,
        "worst_class_accuracy": float(min(accs)) if accs else float("nan"),
        "mean_class_accuracy": float(np.mean(accs)) if accs else float("nan"),
        "confusion": confusion.tolist(),
    }


def evaluate_predictions(pred, labels, domains: list[str], classes: list[str], majority_domain: str | None = None) -> dict:
    """The per-domain report for predicted class ids `pred [N]`, true `labels [N]` and domain
    names `domains [N]` (see module doc). `majority_domain` defaults to the most frequent one."""
    pred = np.asarray(pred, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if not (len(pred) == len(labels) == len(domains)):
        raise ValueError(f"evaluate_predictions: lengths differ (pred {len(pred)}, labels {len(labels)}, domains {len(domains)})")
    report = class_report(pred, labels, classes)
    doms = np.asarray([d if d else UNKNOWN_DOMAIN for d in domains], dtype=object)
    counts = Counter(doms.tolist())
    per_domain = {}
    for d in sorted(counts, key=lambda d: (-counts[d], d)):
        sel = doms == d
        per_domain[d] = {"accuracy": float((pred[sel] == labels[sel]).mean()), "n": int(sel.sum())}
    if majority_domain is None or majority_domain not in per_domain:
        majority_domain = max(per_domain, key=lambda d: (per_domain[d]["n"], d == majority_domain)) if per_domain else None
    minority = [v["accuracy"] for d, v in per_domain.items() if d != majority_domain]
    for d, v in per_domain.items():
        v["majority"] = d == majority_domain
    out = {
        "overall_accuracy": report["overall_accuracy"],
        "n": report["n"],
        "per_domain": per_domain,
        "majority_domain": majority_domain,
        "majority_accuracy": per_domain[majority_domain]["accuracy"] if majority_domain else None,
        "minority_mean_accuracy": float(np.mean(minority)) if minority else None,
        "worst_domain_accuracy": float(min(v["accuracy"] for v in per_domain.values())) if per_domain else None,
    }
    out.update({k: report[k] for k in ("per_class", "worst_class_accuracy", "mean_class_accuracy", "confusion")})
    out["classes"] = list(classes)
    return out


def training_majority_domain(info: DatasetInfo) -> str | None:
    """The domain with the most training samples (None when the train split has no domains)."""
    doms = [d for d in info.domains("train") if d != UNKNOWN_DOMAIN]
    if not doms:
        return None
    counts = Counter(doms)
    return max(sorted(counts), key=lambda d: counts[d])


def evaluate_model(model: torch.nn.Module, info: DatasetInfo, split: str = "test", meta: dict | None = None,
                   device="cpu", batch_size: int = 512, workers: int = 0, progress: bool = False) -> dict:
    """Evaluate `model` on one split of `info` per domain. `meta` (model.json) gives the input
    size, normalisation and class order; the dataset's classes must match the model's."""
    meta = meta or {}
    classes = list(meta.get("classes", info.classes))
    unknown = sorted(set(info.split_table(split)["label"]) - set(classes))
    if unknown:
        raise ValueError(f"{info.root}: split {split!r} has label(s) the model does not know: {', '.join(unknown[:5])} (model classes: {', '.join(classes)})")
    size = int(meta.get("input_size", 64))
    norm = meta.get("normalization", {"mean": [0.5] * 3, "std": [0.25] * 3})
    images = load_split_uint8(info, split, size, workers=workers, progress=progress)
    c2i = {c: i for i, c in enumerate(classes)}
    labels = np.array([c2i[v] for v in info.split_table(split)["label"]], dtype=np.int64)
    logits = predict_uint8(model, images, norm["mean"], norm["std"], device=device, batch_size=batch_size, progress=progress)
    report = evaluate_predictions(logits.argmax(1).numpy(), labels, info.domains(split), classes, training_majority_domain(info))
    report["split"] = split
    report["dataset"] = str(info.root)
    return report


def evaluate_run(run_dir, data_root, split: str = "test", device="auto", batch_size: int = 512, workers: int = 0, progress: bool = False) -> dict:
    """Load `RUN` (model.pt + model.json) and evaluate it on `data_root`'s split per domain."""
    from training.checkpoint import load_checkpoint

    dev = resolve_device(device)
    model, meta = load_checkpoint(run_dir, dev)
    report = evaluate_model(model, load_dataset(data_root), split, meta, dev, batch_size, workers, progress)
    report["model"] = str(Path(run_dir))
    report["arch"] = meta["arch"]
    report["method"] = meta.get("method")
    return report


def format_domain_table(report: dict) -> str:
    """Plain-text table: domain, n, accuracy, majority flag (+ overall and summary lines)."""
    rows = [("domain", "n", "accuracy", "majority")]
    for d, v in report["per_domain"].items():
        rows.append((d, str(v["n"]), f"{v['accuracy']:.4f}", "yes" if v.get("majority") else ""))
    rows.append(("(all)", str(report["n"]), f"{report['overall_accuracy']:.4f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    extra = []
    if report.get("minority_mean_accuracy") is not None:
        extra.append(f"minority mean accuracy {report['minority_mean_accuracy']:.4f}")
    if report.get("worst_domain_accuracy") is not None:
        extra.append(f"worst domain accuracy {report['worst_domain_accuracy']:.4f}")
    extra.append(f"worst class accuracy {report['worst_class_accuracy']:.4f}")
    return "\n".join(lines + ["", "; ".join(extra)])

"""Checkpoints: `RUN/model.pt` (state dict) + `RUN/model.json` (what the model is).

`model.json` fields (docs/contracts.md): `arch, classes, num_classes, explained_layer,
input_size, normalization {mean, std}, method, config, metrics, dataset` (+ `model_kwargs`,
`feature_dim`, `format_version`). Files are written atomically (temp file + rename) so a crash
never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from training.models import build_model

MODEL_FILE = "model.pt"
META_FILE = "model.json"
REQUIRED_META = ("arch", "classes", "num_classes", "explained_layer", "input_size", "normalization")


def _atomic_write_bytes(path: Path, save) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save(tmp)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    path = Path(path)
    _atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"))


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(run_dir, model: torch.nn.Module, meta: dict, filename: str = MODEL_FILE) -> Path:
    """Save `model`'s state dict as `RUN/filename` and `meta` as `RUN/model.json`.

    `meta` must hold at least `REQUIRED_META`; `explained_layer` defaults to the model's own.
    Returns the path of the weights file.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = _unwrap(model)
    meta = dict(meta)
    meta.setdefault("explained_layer", getattr(model, "explained_layer", None))
    meta.setdefault("feature_dim", getattr(model, "feature_dim", None))
    meta.setdefault("format_version", 1)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"save_checkpoint: meta lacks {', '.join(missing)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    target = run_dir / filename
    _atomic_write_bytes(target, lambda tmp: torch.save(state, tmp))
    write_json(run_dir / META_FILE, meta)
    return target


def read_meta(run_dir) -> dict:
    """Read and check `RUN/model.json`."""
    path = Path(run_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model.json (is {run_dir} a training run folder?)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return meta


def load_checkpoint(run_dir, device="cpu", filename: str = MODEL_FILE):
    """Load a run: returns `(model in eval mode on device, meta dict)`."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    weights = run_dir / filename
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no weights file")
    model = build_model(meta["arch"], int(meta["num_classes"]), **meta.get("model_kwargs", {}))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not fit arch {meta['arch']!r} with {meta['num_classes']} classes ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta

"""`argus improve`: from the crowd's clues to a corrected model, measured before and after.

    clues     the report's improvement clues (`tables/clues.csv`: a `background` cue, the
              background kinds it names), channels the crowd judged invalid (judgments + sheets)
              and how many rationale marks people drew -> `Clues`
    correct   one training run per correction (methods of `training.corrections`, registered in
              `training.methods.METHODS`): `rrr-contribution`, `rrr-gradient`, `counterfactual`
              (background swap), `suppress` (channels judged invalid; a fine-tune of the judged
              model), each from scratch or as a fine-tune of the judged model (`init`)
    measure   the before model and each corrected one on the usual test split, on its cue-free
              twin (`training.toyworld.write_cue_free_test`: the same test rows with the cue at
              chance) and on where the top argument points (pointing game by domain, against the
              part masks, explained with the same engine as the sheets)
    report    OUT/improve.json, OUT/improve.md (before/after table) and OUT/improve.png

`run_improve` does one model; `bench/improve.py` repeats it over paired seeds with an oracle.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: correction name -> (training method, options filled from the clues by `correction_config`)
CORRECTIONS = {
    "rrr-contribution": "rrr-contribution",
    "rrr-gradient": "rrr-gradient",
    "counterfactual": "counterfactual-bg",
    "suppress": "suppress-channels",
}
DEFAULT_CORRECTIONS = ("rrr-contribution", "counterfactual", "suppress")


@dataclass
class Clues:
    """What the crowd's report says to fix.

    `cue`: "background" when a clue says the arguments fire on the background, else None;
    `backgrounds`: the background kinds the clues name; `invalid_channels`: channels judged
    invalid (invalid share >= the threshold over >= `min_judgments` yes/no answers);
    `n_marks`: rationale marks people drew; `suggestions`: the clue sentences."""

    cue: str | None = None
    backgrounds: list = field(default_factory=list)
    invalid_channels: list = field(default_factory=list)
    n_marks: int = 0
    suggestions: list = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.cue:
            parts.append(f"shortcut cue: {self.cue}" + (f" ({', '.join(self.backgrounds)})" if self.backgrounds else ""))
        if self.invalid_channels:
            parts.append(f"{len(self.invalid_channels)} channels judged invalid")
        if self.n_marks:
            parts.append(f"{self.n_marks} rationale marks")
        return "; ".join(parts) or "no clue"


def read_clues(report_dir, judgments=None, sheets_dir=None, *, invalid_share: float = 0.5,
               min_judgments: int = 3) -> Clues:
    """`Clues` from a report folder (`tables/clues.csv`) and, when given, the judgments file and
    sheets folder (channels judged invalid, rationale marks). FileNotFoundError names a missing
    file."""
    import pandas as pd

    report_dir = Path(report_dir)
    path = report_dir / "tables" / "clues.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no clues table (run `argus report` first)")
    table = pd.read_csv(path, dtype={"group": str, "top_background": str}, keep_default_na=False)
    clues = Clues()
    for _, c in table.iterrows():
        clues.suggestions.append(str(c.get("suggestion", "")))
        if str(c.get("cue")) != "background":
            continue
        clues.cue = "background"
        bg = str(c["group"]) if c["group_type"] == "background" else str(c.get("top_background") or "")
        if bg and bg not in clues.backgrounds and c["group_type"] != "domain":
            clues.backgrounds.append(bg)
    if judgments is not None and sheets_dir is not None:
        from analysis.model_human import channel_validity
        from analysis.validation import prepare_judgments
        from crowd.judgments import read_judgments
        from explain.sheet_files import load_sheets

        frame = prepare_judgments(read_judgments(judgments), dropna=True, duplicates="first")
        validity = channel_validity(frame, load_sheets(sheets_dir))
        bad = validity[(validity["n_judgments"] >= min_judgments) & (validity["invalid"] >= invalid_share)]
        clues.invalid_channels = sorted(int(c) for c in bad["channel"])
        if "kind" in frame.columns:
            clues.n_marks = int((frame["kind"].astype(str) == "mark_rationale").sum())
    return clues


def correction_config(name: str, clues: Clues, *, init=None, region: str = "parts", weight: float | None = None,
                      p: float | None = None, counterfactual: float = 0.0) -> tuple[str, dict]:
    """(training method, its options) of correction `name` for these clues. `init`: the judged
    model's run folder (fine-tune); `suppress` needs it and channels judged invalid."""
    if name not in CORRECTIONS:
        raise ValueError(f"unknown correction {name!r}; choose from {', '.join(CORRECTIONS)}")
    method = CORRECTIONS[name]
    opts: dict = {}
    if init is not None:
        opts["init"] = str(init)
    if name in ("rrr-contribution", "rrr-gradient"):
        opts["region"] = region
        if weight is not None:
            opts["weight"] = float(weight)
        if counterfactual:
            opts["counterfactual"] = float(counterfactual)
    elif name == "counterfactual":
        if clues.cue not in (None, "background"):
            raise ValueError(f"correction 'counterfactual' swaps backgrounds; the clue names {clues.cue!r}")
        if p is not None:
            opts["p"] = float(p)
    elif name == "suppress":
        if init is None:
            raise ValueError("correction 'suppress' zeroes channels of the judged model: give its run folder (init)")
        if not clues.invalid_channels:
            raise ValueError("correction 'suppress': the crowd judged no channel invalid (no judgments given, or "
                             "none reached the threshold)")
        opts["channels"] = list(clues.invalid_channels)
    return method, opts


# ----------------------------------------------------------------------------- measuring

def pointing_game(run_dir, data_dir, split: str = "test", *, limit: int | None = None, device="auto",
                  tolerance_px: int | None = None, batch_size: int = 128) -> dict:
    """Where the top argument points, measured like the sheets (same explainer, peak and
    tolerance) but without mining exemplars or rendering: `{"overall", "by_domain", "n"}`
    pointing-game shares against the predicted class's discriminative parts."""
    import torch

    from explain.contributions import LayerContributions
    from explain.pipeline import evenly_spaced, pointing_tolerance_px
    from explain.sheets import analyse_batch, ground_truth
    from training.checkpoint import load_checkpoint
    from training.datasets import load_dataset, load_split_uint8, normalize_uint8, read_part_mask, read_parts
    from training.evaluate import resolve_device

    dev = resolve_device(device)
    model, meta = load_checkpoint(run_dir, str(dev))
    model.eval()
    info = load_dataset(data_dir)
    size = int(meta["input_size"])
    tol = pointing_tolerance_px(size) if tolerance_px is None else int(tolerance_px)
    parts = read_parts(data_dir)
    disc = {c["name"]: [int(i) for i in c["discriminative_parts"]] for c in parts["classes"]}
    classes = list(meta["classes"])
    table = info.split_table(split)
    rows = evenly_spaced(len(table), limit)
    images = load_split_uint8(info, split, size, progress=False)
    explainer = LayerContributions(model, meta.get("explained_layer") or model.explained_layer)
    hits: dict[str, list[float]] = {}
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        x = normalize_uint8(torch.as_tensor(images[chunk]).to(dev), meta["normalization"]["mean"],
                            meta["normalization"]["std"])
        e = explainer.explain(x, contrast="runner_up")
        for r, i in zip(analyse_batch(explainer, x, e, 1), chunk):
            row = table.iloc[i]
            gt = ground_truth(r, read_part_mask(data_dir, str(row["sample_id"])), disc[classes[r["target"]]],
                              tolerance_px=tol)
            hits.setdefault(str(row.get("domain") or "unknown"), []).append(float(gt["pointing_hit"]))
    every = [h for v in hits.values() for h in v]
    return {"overall": float(np.mean(every)) if every else None, "n": len(every), "tolerance_px": tol,
            "by_domain": {d: float(np.mean(v)) for d, v in sorted(hits.items())}}


def measure(run_dir, data_dir, cue_free_dir=None, *, device="auto", majority: str | None = None,
            pointing_limit: int | None = None) -> dict:
    """Accuracy on the test split (and its cue-free twin), per domain, and the pointing game."""
    from training.evaluate import evaluate_run

    test = evaluate_run(run_dir, data_dir, "test", device=device)
    majority = majority or test.get("majority_domain")
    out = {"test": _acc(test), "majority_domain": majority}
    if cue_free_dir is not None:
        out["cue_free"] = _acc(evaluate_run(run_dir, cue_free_dir, "test", device=device))
    pg = pointing_game(run_dir, data_dir, device=device, limit=pointing_limit)
    out["pointing_game"] = pg
    out["majority_pointing_game"] = pg["by_domain"].get(majority) if majority else None
    return out


def _acc(report: dict) -> dict:
    return {"overall": report["overall_accuracy"],
            "per_domain": {d: v["accuracy"] for d, v in report["per_domain"].items()}}


# ----------------------------------------------------------------------------- the run

@dataclass
class ImproveConfig:
    """Options of one improvement run. `fine_tune`: start each correction from the judged model
    (`epochs` more epochs) instead of a fresh model trained for `epochs`; `pointing_limit`: test
    images whose top argument is checked (None: all)."""

    corrections: tuple = DEFAULT_CORRECTIONS
    epochs: int = 6
    fine_tune: bool = False
    seed: int = 0
    device: str = "auto"
    region: str = "parts"
    weight: float | None = None
    counterfactual: float = 0.0
    lr: float | None = None
    pointing_limit: int | None = None


def train_correction(name: str, clues: Clues, before_run, data_dir, out, cfg: ImproveConfig) -> Path:
    """Train correction `name` into `out` (a run folder); returns it."""
    from training.checkpoint import read_meta
    from training.trainer import TrainConfig, Trainer

    meta = read_meta(before_run)
    judged = meta.get("config") or {}
    init = before_run if cfg.fine_tune or name == "suppress" else None
    method, opts = correction_config(name, clues, init=init, region=cfg.region, weight=cfg.weight,
                                     counterfactual=cfg.counterfactual)
    tc = TrainConfig(arch=meta["arch"], method=method, method_options=opts, epochs=cfg.epochs, seed=cfg.seed,
                     device=cfg.device, model_kwargs=dict(meta.get("model_kwargs") or {}),
                     batch_size=int(judged.get("batch_size", 128)))
    lr = cfg.lr if cfg.lr is not None else (float(judged.get("lr", 0.05)) * (0.2 if init else 1.0))
    tc.lr = lr
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    Trainer(data_dir, out, tc, progress=False).fit()
    return out


def run_improve(before_run, data_dir, out, clues: Clues, cfg: ImproveConfig | None = None, *, echo=print) -> dict:
    """Correct the model in `before_run` with each of `cfg.corrections`, measure before and
    after, and write OUT/improve.json, OUT/improve.md and OUT/improve.png. Returns the document."""
    import warnings

    from training.toyworld import write_cue_free_test
    from training.trainer import UndertrainedWarning

    cfg = cfg or ImproveConfig()
    for name in cfg.corrections:
        if name not in CORRECTIONS:
            raise ValueError(f"unknown correction {name!r}; choose from {', '.join(CORRECTIONS)}")
    out, data_dir = Path(out), Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    cue_free = None
    if (data_dir / "toyworld.json").exists():
        cue_free = write_cue_free_test(data_dir, out / "cue_free")
    t0 = time.perf_counter()
    results = {"before": measure(before_run, data_dir, cue_free, device=cfg.device, pointing_limit=cfg.pointing_limit)}
    majority = results["before"]["majority_domain"]
    seconds = {"measure_before": round(time.perf_counter() - t0, 2)}
    skipped = {}
    for name in cfg.corrections:
        try:
            correction_config(name, clues, init=before_run)
        except ValueError as exc:
            skipped[name] = str(exc)
            echo(f"    {name}: skipped ({exc})")
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndertrainedWarning)
            run = train_correction(name, clues, before_run, data_dir, out / "runs" / name, cfg)
        seconds[name] = round(time.perf_counter() - t0, 2)
        results[name] = measure(run, data_dir, cue_free, device=cfg.device, majority=majority,
                                pointing_limit=cfg.pointing_limit)
        echo(f"    {name}: {_line(results['before'], results[name])}")
    doc = {"clues": asdict(clues), "config": {**asdict(cfg), "corrections": list(cfg.corrections)},
           "before_run": str(before_run), "data": str(data_dir), "cue_free": str(cue_free) if cue_free else None,
           "results": results, "skipped": skipped, "best": best_correction(results), "seconds": seconds}
    (out / "improve.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "improve.md").write_text(markdown_table(results) + "\n")
    plot_before_after(results, out / "improve.png")
    return doc


def best_correction(results: dict) -> str | None:
    """The correction with the highest cue-free accuracy (test accuracy when there is no cue-free split)."""
    names = [k for k in results if k != "before"]
    if not names:
        return None
    key = "cue_free" if "cue_free" in results["before"] else "test"
    return max(names, key=lambda k: results[k][key]["overall"])


def _line(before: dict, after: dict) -> str:
    def pts(a, b):
        return "n/a" if a is None or b is None else f"{a:.3f} -> {b:.3f} ({100 * (b - a):+.1f} pts)"

    parts = [f"test {pts(before['test']['overall'], after['test']['overall'])}"]
    if "cue_free" in before:
        parts.append(f"cue-free {pts(before['cue_free']['overall'], after['cue_free']['overall'])}")
    parts.append(f"pointing game ({before.get('majority_domain')}) "
                 f"{pts(before.get('majority_pointing_game'), after.get('majority_pointing_game'))}")
    return "; ".join(parts)


def _f(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown_table(results: dict) -> str:
    """Before/after table: accuracy on test and cue-free test (overall and per domain) and the
    majority-domain pointing game, one row per model."""
    before = results["before"]
    domains = list(before["test"]["per_domain"])
    head = ["model", "test"] + [f"test {d}" for d in domains]
    if "cue_free" in before:
        head += ["cue-free"] + [f"cue-free {d}" for d in domains]
    head += [f"pointing game ({before.get('majority_domain')})", "pointing game"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        row = [name, _f(r["test"]["overall"])] + [_f(r["test"]["per_domain"].get(d)) for d in domains]
        if "cue_free" in before:
            row += [_f(r["cue_free"]["overall"])] + [_f(r["cue_free"]["per_domain"].get(d)) for d in domains]
        row += [_f(r.get("majority_pointing_game")), _f(r["pointing_game"]["overall"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_before_after(results: dict, path, title: str = "before -> after the correction") -> Path:
    """Grouped bars: test, cue-free test and majority-domain pointing game for each model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    metrics = [("test", lambda r: r["test"]["overall"])]
    if "cue_free" in results["before"]:
        metrics.append(("cue-free test", lambda r: r["cue_free"]["overall"]))
    metrics.append((f"pointing game ({results['before'].get('majority_domain')})",
                    lambda r: r.get("majority_pointing_game")))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.4))
    width = 0.8 / len(metrics)
    for j, (label, get) in enumerate(metrics):
        vals = [get(results[n]) or 0.0 for n in names]
        xs = np.arange(len(names)) + (j - (len(metrics) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, label=label)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=len(metrics))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

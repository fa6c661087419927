"""How far the model's arguments agree with human reasoning.

- `argument_validity`: share of arguments judged relevant ("yes" among yes/no), by rank, class,
  domain or background, with bootstrap CIs over sheets.
- `localisation_table` / `localisation_by`: pointing game, relevance mass, relevance-rank
  accuracy and IoU at matched area between argument heatmaps (upsampled `heatmap_grid`) and
  human rationale marks or ground-truth masks.
- `naming_agreement`: agreement among workers' names for a feature and between crowd names and
  reference names.
- `rank_agreement`: Kendall tau-b / Spearman between model contributions and human votes.
- `model_vs_human`: the model as a worker against the human ceiling (each human's leave-one-out
  agreement with the others), as a ratio with a CI.
- `improvement_clues`: groups whose arguments are judged invalid or fall off the object, with
  example sheets and a suggestion.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from crowd.judgments import MODEL_PREFIX, RATINGS, is_model_worker, parse_geometry

from ._bootstrap import Estimate, bootstrap
from .agreement import krippendorff_alpha, percent_agreement
from .frames import attach_sheet_info, humans_only
from .validation import prepare_judgments

YES, NO, CANT_TELL = RATINGS


def _ratio_ci(num: np.ndarray, den: np.ndarray, *, n_boot, seed, confidence):
    """Ratio of sums over clusters with a bootstrap CI: (value, lo, hi)."""
    if len(num) == 0 or den.sum() == 0:
        return np.nan, np.nan, np.nan
    v, lo, hi, _ = bootstrap(lambda s: s["a"] / s["b"], {"a": num.astype(float), "b": den.astype(float)},
                             n_boot=n_boot, seed=seed, confidence=confidence)
    return v, lo, hi


def _mean_ci(values: np.ndarray, *, n_boot, seed, confidence):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return _ratio_ci(values, np.ones_like(values), n_boot=n_boot, seed=seed, confidence=confidence)


# ----------------------------------------------------------------------------- validity

def argument_rows(frame: pd.DataFrame, *, include_models: bool = False) -> pd.DataFrame:
    """The `rate_arguments` answers (`item = "arg:<rank>"`) with integer `rank` and a `valid`
    column: 1.0 for yes, 0.0 for no, NaN for cant_tell."""
    items = frame["item"].astype(str) if "item" in frame.columns else pd.Series("", index=frame.index)
    rows = frame[items.str.startswith("arg:")].copy()
    if not include_models:
        rows = humans_only(rows)
    parsed = pd.to_numeric(rows["item"].str.split(":", n=1).str[1], errors="coerce")
    if "rank" in rows.columns:
        rows["rank"] = rows["rank"].astype("Float64").fillna(pd.Series(parsed, index=rows.index)).astype("Int64")
    else:
        rows["rank"] = parsed.astype("Int64")
    label = rows["label"].astype(str).str.strip().str.lower()
    unknown = ~label.isin([YES, NO, CANT_TELL])
    if unknown.any():
        raise ValueError(f"rate_arguments label {rows['label'][unknown].iloc[0]!r} is not yes|no|cant_tell")
    rows["valid"] = label.map({YES: 1.0, NO: 0.0, CANT_TELL: np.nan})
    return rows


def argument_validity(frame: pd.DataFrame, sheets: dict | None = None, by="rank", *, samples=None,
                      n_boot: int = 1000, seed=0, confidence: float = 0.95, dropna: bool = False,
                      duplicates: str = "error") -> pd.DataFrame:
    """Share of arguments judged relevant, per group, with a bootstrap CI over sheets.

    Args:
        frame: judgment frame (only `item = "arg:<rank>"` rows of human workers are used).
        sheets: {sample_id: sheet} for `class`/`domain` groups; `samples` (a dataset's
            samples.csv table) adds `background`.
        by: column(s) to group by ("rank", "class", "domain", "background", "batch") or None
            for one overall row.
    Returns:
        DataFrame: group column(s), n_sheets, n_arguments, n_judgments, n_cant_tell, validity,
        ci_low, ci_high. validity = yes / (yes + no).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    rows = argument_rows(frame)
    if rows.empty:
        raise ValueError("the frame has no rate_arguments answers (item 'arg:<rank>')")
    if sheets is not None or samples is not None:
        rows = attach_sheet_info(rows, sheets, samples)
    by = [] if by is None else ([by] if isinstance(by, str) else list(by))
    for b in by:
        if b not in rows.columns:
            raise ValueError(f"cannot group validity by {b!r}: not a column (pass sheets= for class/domain)")
    out = []
    groups = rows.groupby(by, sort=True) if by else [((), rows)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        judged = g[g["valid"].notna()]
        per_task = judged.groupby("task")["valid"].agg(["sum", "count"])
        v, lo, hi = _ratio_ci(per_task["sum"].to_numpy(), per_task["count"].to_numpy(), n_boot=n_boot,
                              seed=seed, confidence=confidence)
        out.append({**dict(zip(by, key)), "n_sheets": g["task"].nunique(),
                    "n_arguments": len(g.drop_duplicates(["task", "item"])), "n_judgments": len(g),
                    "n_cant_tell": int(g["valid"].isna().sum()), "validity": v, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- localisation

def upsample(grid, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a heatmap grid `[h, w]` to `size = (H, W)` pixels with
    half-pixel centres (as `torch.nn.functional.interpolate(..., align_corners=False)`)."""
    g = np.asarray(grid, dtype=float)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"heatmap_grid must be a non-empty 2-D list, got shape {g.shape}")
    H, W = size

    def axis_weights(n_in, n_out):
        x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, x - i0

    r0, r1, fr = axis_weights(g.shape[0], H)
    c0, c1, fc = axis_weights(g.shape[1], W)
    rows = g[r0] * (1 - fr)[:, None] + g[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]


def rationale_mask(points, boxes, size: tuple[int, int], point_radius: float = 0.06) -> np.ndarray:
    """Rasterise human marks (normalised [0,1] coords) to a bool mask `[H, W]`: boxes are filled
    rectangles `[x0,y0,x1,y1]`, points are discs of radius `point_radius` (share of the image
    side), so a click counts as "this region"."""
    H, W = size
    mask = np.zeros((H, W), dtype=bool)
    yy, xx = (np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W
    for b in boxes or []:
        if len(b) != 4:
            raise ValueError(f"box {b} must be [x0, y0, x1, y1]")
        x0, x1 = sorted((b[0], b[2]))
        y0, y1 = sorted((b[1], b[3]))
        mask |= ((yy >= y0) & (yy <= y1))[:, None] & ((xx >= x0) & (xx <= x1))[None, :]
    for p in points or []:
        if len(p) != 2:
            raise ValueError(f"point {p} must be [x, y]")
        mask |= (yy[:, None] - p[1]) ** 2 + (xx[None, :] - p[0]) ** 2 <= point_radius ** 2
    return mask


def localisation_scores(heatmap: np.ndarray, target: np.ndarray) -> dict:
    """Compare one heatmap `[H, W]` (>= 0) with a target mask `[H, W]` bool.

    Returns:
        pointing_hit: the heatmap's maximum lies in the target;
        relevance_mass: share of the heatmap's mass inside the target (Arras et al. 2022);
        relevance_rank: share of the top-|target| pixels that are inside the target;
        iou: IoU between the target and the top-|target| pixels (IoU at matched area).
        NaN everywhere when the target is empty.
    """
    h = np.clip(np.asarray(heatmap, dtype=float), 0, None)
    t = np.asarray(target, dtype=bool)
    if h.shape != t.shape:
        raise ValueError(f"heatmap {h.shape} and target {t.shape} differ in size")
    k = int(t.sum())
    if k == 0:
        return {"pointing_hit": np.nan, "relevance_mass": np.nan, "relevance_rank": np.nan, "iou": np.nan}
    flat, tf = h.ravel(), t.ravel()
    total = flat.sum()
    top = np.argsort(-flat, kind="stable")[:k]
    inter = int(tf[top].sum())
    return {"pointing_hit": float(tf[int(np.argmax(flat))]),
            "relevance_mass": float(flat[tf].sum() / total) if total > 0 else np.nan,
            "relevance_rank": inter / k, "iou": inter / (2 * k - inter)}


def _image_size(root, sheet: dict, default: int) -> tuple[int, int]:
    if root and sheet.get("image"):
        path = Path(root) / sheet["image"]
        if path.exists():
            from PIL import Image
            with Image.open(path) as im:
                return im.size[1], im.size[0]
    return default, default


def localisation_table(sheets: dict, frame: pd.DataFrame | None = None, data_dir=None, *,
                       point_radius: float = 0.06, image_size: int = 64) -> pd.DataFrame:
    """Localisation of every argument of every sheet against each available target.

    `sheets` is `{sample_id: sheet}` as `explain.sheet_files.load_sheets` returns it (its `root`
    locates the images, for their size, when a sheet has no mask). Targets: `human` (union of the human workers' `mark_rationale` points/boxes for the sheet),
    `object` (mask > 0 from `DATA/masks/<sample_id>.png`) and `parts` (the true class's
    discriminative parts from `DATA/parts.json`).

    Returns:
        DataFrame: sheet, rank, channel, class, domain, target, pointing_hit, relevance_mass,
        relevance_rank, iou.
    """
    marks: dict[str, list] = {}
    if frame is not None and "item" in frame.columns:
        rat = humans_only(frame[frame["item"].astype(str) == "rationale"])
        for _, r in rat.iterrows():
            sid = str(r.get("sheet") or r["task"])
            marks.setdefault(sid, []).append((parse_geometry(r.get("points")), parse_geometry(r.get("boxes"))))
    parts = None
    if data_dir is not None:
        from training.datasets import read_part_mask, read_parts  # loads torch: only with a dataset folder

        parts = read_parts(data_dir, missing_ok=True)
    disc_by_class = {}
    if parts:
        disc_by_class = {c["name"]: c.get("discriminative_parts", []) for c in parts.get("classes", [])}
    rows = []
    for sid, sheet in sheets.items():
        mask = None if data_dir is None else read_part_mask(data_dir, sid, missing_ok=True)
        size = mask.shape if mask is not None else _image_size(getattr(sheets, "root", None), sheet, image_size)
        targets = {}
        if sid in marks:
            m = np.zeros(size, dtype=bool)
            for pts, bxs in marks[sid]:
                m |= rationale_mask(pts, bxs, size, point_radius)
            targets["human"] = m
        if mask is not None:
            targets["object"] = mask > 0
            true = sheet.get("label")
            if true in disc_by_class:
                targets["parts"] = np.isin(mask, disc_by_class[true])
        if not targets:
            continue
        pred = (sheet.get("prediction") or {}).get("class")
        for arg in sheet["arguments"]:
            if not arg.get("heatmap_grid"):
                continue
            heat = upsample(arg["heatmap_grid"], size)
            for name, t in targets.items():
                rows.append({"sheet": sid, "rank": int(arg["rank"]), "channel": int(arg["channel"]),
                             "class": pred, "domain": sheet.get("domain") or "", "target": name,
                             **localisation_scores(heat, t)})
    cols = ["sheet", "rank", "channel", "class", "domain", "target", "pointing_hit", "relevance_mass",
            "relevance_rank", "iou"]
    return pd.DataFrame(rows, columns=cols)


LOC_METRICS = ("pointing_hit", "relevance_mass", "relevance_rank", "iou")


def localisation_by(table: pd.DataFrame, by="domain", *, n_boot: int = 1000, seed=0,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Mean of each localisation metric per group and target, with a bootstrap CI over sheets.

    Returns:
        DataFrame: group column(s), target, metric, value, ci_low, ci_high, n_sheets, n_arguments.
    """
    by = [by] if isinstance(by, str) else list(by)
    out = []
    for key, g in table.groupby(by + ["target"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for metric in LOC_METRICS:
            per = g.groupby("sheet")[metric].agg(["sum", "count"])
            v, lo, hi = _ratio_ci(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot=n_boot, seed=seed,
                                  confidence=confidence)
            out.append({**dict(zip(by + ["target"], key)), "metric": metric, "value": v, "ci_low": lo,
                        "ci_high": hi, "n_sheets": len(per), "n_arguments": int(per["count"].sum())})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- naming

_ARTICLES = {"a", "an", "the"}


def canonical_name(text, synonyms: dict[str, str] | None = None) -> str:
    """Canonical form of a feature name for comparing names (coarser than the stored form,
    `crowd.kinds.normalise_name`): lower case, punctuation to spaces, articles dropped,
    a plural 's' stripped from each word (not 'ss'), then mapped through `synonyms`
    (normalised synonym -> canonical name)."""
    s = re.sub(r"[^a-z0-9]+", " ", str(text).lower()).strip()
    words = []
    for w in s.split():
        if w in _ARTICLES:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        words.append(w)
    s = " ".join(words)
    if synonyms:
        s = synonyms.get(s, s)
    return s


def synonyms_from_parts(parts: dict | None) -> dict[str, str]:
    """{normalised synonym or name: canonical part name} from a toy-world `parts.json`."""
    out = {}
    for p in (parts or {}).get("parts", []):
        canon = canonical_name(p["name"])
        out[canon] = canon
        out[canonical_name(p.get("key", p["name"]))] = canon
        for syn in p.get("synonyms", []):
            out[canonical_name(syn)] = canon
    return out


def naming_agreement(frame: pd.DataFrame, *, reference: dict | None = None, synonyms: dict | None = None,
                     n_boot: int = 1000, seed=0, confidence: float = 0.95, dropna: bool = False,
                     duplicates: str = "error") -> dict:
    """Agreement of `name_feature` names, per feature (`channel`, else `task`).

    Args:
        frame: judgment frame; rows with `item = "name"` are used (raw text in `text` when the
            label is empty). Human workers only.
        reference: {channel: reference name} (e.g. toy-world part names); None skips the
            crowd-vs-reference comparison.
        synonyms: normalised synonym -> canonical name (`synonyms_from_parts`).
    Returns:
        dict with `among_workers` (percent agreement Estimate), `alpha` (nominal Krippendorff
        Estimate or None), `crowd_vs_reference` (Estimate of the share of features whose modal
        crowd name equals the reference, or None) and `table` (per feature: unit, n_workers,
        modal_name, modal_share, reference, match).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    if "item" not in frame.columns:
        raise ValueError("naming agreement needs the 'item' column (item = 'name')")
    rows = humans_only(frame[frame["item"].astype(str) == "name"]).copy()
    if rows.empty:
        raise ValueError("the frame has no name_feature answers (item 'name')")
    raw = rows["label"].astype(str)
    if "text" in rows.columns:
        raw = raw.where(raw.str.strip() != "", rows["text"].astype(str))
    rows["name"] = raw.map(lambda s: canonical_name(s, synonyms))
    unit = "channel" if "channel" in rows.columns and rows["channel"].notna().all() else "task"
    rows["unit"] = rows[unit].astype(str)
    # one name per (feature, worker): the worker's most frequent one
    per_worker = (rows.groupby(["unit", "worker"])["name"].agg(lambda s: s.value_counts().index[0])
                  .reset_index())
    long = per_worker.rename(columns={"unit": "task", "name": "label"})
    result = {"unit": unit}
    try:
        result["among_workers"] = percent_agreement(long, n_boot=n_boot, seed=seed, confidence=confidence,
                                                    cluster=None)
    except ValueError:
        result["among_workers"] = None
    try:
        result["alpha"] = krippendorff_alpha(long, "nominal", n_boot=n_boot, seed=seed, confidence=confidence,
                                             cluster=None)
    except ValueError:
        result["alpha"] = None
    table = []
    for u, g in long.groupby("task", sort=True):
        counts = g["label"].value_counts()
        table.append({"unit": u, "n_workers": len(g), "modal_name": counts.index[0],
                      "modal_share": counts.iloc[0] / len(g)})
    table = pd.DataFrame(table)
    result["crowd_vs_reference"] = None
    if reference:
        ref = {str(k): canonical_name(v, synonyms) for k, v in reference.items()}
        table["reference"] = table["unit"].map(ref)
        table["match"] = np.where(table["reference"].notna(), (table["modal_name"] == table["reference"]).astype(float),
                                  np.nan)
        m = table["match"].dropna().to_numpy()
        if len(m):
            v, lo, hi = _mean_ci(m, n_boot=n_boot, seed=seed, confidence=confidence)
            result["crowd_vs_reference"] = Estimate("crowd_vs_reference", v, lo, hi, n_units=len(m),
                                                    confidence=confidence, n_boot=n_boot, level="nominal")
    result["table"] = table
    return result


def reference_names(sheets: dict) -> dict:
    """{channel: name} from sheet arguments whose `name_source` is "reference"."""
    out = {}
    for s in sheets.values():
        for a in s["arguments"]:
            if a.get("name_source") == "reference" and a.get("name"):
                out[str(a["channel"])] = a["name"]
    return out


# ----------------------------------------------------------------------------- ranks

def rank_agreement(frame: pd.DataFrame, sheets: dict, *, min_arguments: int = 3, n_boot: int = 1000,
                   seed=0, confidence: float = 0.95, dropna: bool = False, duplicates: str = "error") -> dict:
    """Kendall tau-b and Spearman rho between the model's contributions and the human
    relevance votes (share of "yes" among yes/no) of one sheet's arguments, averaged over
    sheets with >= `min_arguments` judged arguments and non-constant votes.

    Returns:
        dict with `kendall_tau`, `spearman_rho` (Estimates over sheets) and `table` (per sheet:
        sheet, n_arguments, kendall_tau, spearman_rho).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    rows = argument_rows(frame)
    sheet_col = rows["sheet"].astype(str) if "sheet" in rows.columns else rows["task"].astype(str)
    votes = rows.assign(sheet=sheet_col).groupby(["sheet", "rank"])["valid"].mean()
    table = []
    for sid, sheet in sheets.items():
        if sid not in votes.index.get_level_values(0):
            continue
        v = votes.loc[sid]
        contrib = {int(a["rank"]): float(a["contribution"]) for a in sheet["arguments"]}
        ranks = [r for r in v.index if int(r) in contrib and np.isfinite(v.loc[r])]
        if len(ranks) < min_arguments:
            continue
        x = np.array([contrib[int(r)] for r in ranks])
        y = np.array([v.loc[r] for r in ranks], dtype=float)
        if np.ptp(y) == 0 or np.ptp(x) == 0:
            continue
        tau = sps.kendalltau(x, y).statistic
        rho = sps.spearmanr(x, y).statistic
        table.append({"sheet": sid, "n_arguments": len(ranks), "kendall_tau": tau, "spearman_rho": rho})
    table = pd.DataFrame(table, columns=["sheet", "n_arguments", "kendall_tau", "spearman_rho"])
    out = {"table": table}
    for col in ("kendall_tau", "spearman_rho"):
        if len(table):
            v, lo, hi = _mean_ci(table[col].to_numpy(), n_boot=n_boot, seed=seed, confidence=confidence)
            out[col] = Estimate(col, v, lo, hi, n_units=len(table), confidence=confidence, n_boot=n_boot)
        else:
            out[col] = None
    return out


# ----------------------------------------------------------------------------- model as a worker

def model_answers_from_sheets(sheets: dict, frame: pd.DataFrame, name: str | None = None) -> pd.DataFrame:
    """Rows in which the model answers the frame's questions it can answer itself, as worker
    `model:<name>`: `label` items get the predicted class, `name` items get the sheet's name
    for that channel. Tasks are matched through `sheet` (or `task` = sample_id)."""
    rows = []
    for _, r in frame.drop_duplicates(["task", "item"] if "item" in frame.columns else ["task"]).iterrows():
        sid = str(r.get("sheet") or r["task"])
        sheet = sheets.get(sid)
        if sheet is None:
            continue
        model_name = name or (sheet.get("model") or {}).get("name") or "model"
        item = str(r.get("item", "label"))
        label = None
        if item == "label":
            label = (sheet.get("prediction") or {}).get("class")
        elif item == "name" and pd.notna(r.get("channel")):
            for a in sheet["arguments"]:
                if int(a["channel"]) == int(r["channel"]) and a.get("name"):
                    label = a["name"]
        if label is None:
            continue
        row = {c: r[c] for c in frame.columns if c not in ("worker", "label", "text", "points", "boxes",
                                                             "duration_s", "assignment", "submitted_at")}
        row.update({"worker": MODEL_PREFIX + model_name, "label": label, "is_gold": False})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(dict.fromkeys(list(frame.columns) + ["worker", "label"])))


def model_vs_human(frame: pd.DataFrame, model: str | None = None, *, chance_corrected: bool = False,
                   n_boot: int = 1000, seed=0, confidence: float = 0.95, dropna: bool = False,
                   duplicates: str = "error") -> dict:
    """The model's agreement with the crowd against the human ceiling.

    Per unit (`task`[, `item`]) with the model's answer and >= 2 human answers:
    model agreement = share of humans giving the model's label; human ceiling = each human's
    leave-one-out agreement (share of the *other* humans giving their label), averaged over
    the unit's humans. Both are averaged over units; `ratio = model / ceiling` (1 = the model
    agrees with people as well as people agree with each other). With `chance_corrected`,
    both are turned into kappas with the chance agreement sum_k pi_k^2 of the pooled human
    labels before the ratio. CIs: bootstrap over tasks.

    Args:
        model: worker id ("model:<name>"); None picks the only model worker in the frame.
    Returns:
        dict: `model_agreement`, `human_ceiling`, `ratio` (Estimates), `workers` (DataFrame:
        worker, n_units, loo_agreement, is_model; the model's place among people) and `model`.
        `dropna`, `duplicates`: the validation step (`analysis.validation.prepare_judgments`).
    """
    frame = prepare_judgments(frame, dropna=dropna, duplicates=duplicates)
    models = sorted(frame.loc[is_model_worker(frame["worker"]), "worker"].unique())
    if model is None:
        if len(models) != 1:
            raise ValueError(f"pass model=: the frame has {len(models)} model workers {models}")
        model = models[0]
    elif model not in models:
        raise ValueError(f"model worker {model!r} not in the frame (model workers: {models})")
    ucols = ["task", "item"] if "item" in frame.columns else ["task"]
    key = frame[ucols].astype(str).agg("\x1f".join, axis=1)
    df = pd.DataFrame({"unit": key, "task": frame["task"].astype(str), "worker": frame["worker"].astype(str),
                       "label": frame["label"].astype(str)})
    df = df[(~is_model_worker(df["worker"])) | (df["worker"] == model)]
    mod = df[df["worker"] == model].drop_duplicates("unit").set_index("unit")["label"]
    hum = df[df["worker"] != model]
    h_n = hum.groupby("unit").size()
    units = mod.index.intersection(h_n.index[h_n >= 2])
    if len(units) == 0:
        raise ValueError(f"no unit has an answer from {model!r} and two or more human answers")
    hum = hum[hum["unit"].isin(units)]
    counts = hum.groupby(["unit", "label"]).size()
    h = h_n.reindex(units).to_numpy(float)
    same_as_model = counts.reindex(list(zip(units, mod.reindex(units)))).fillna(0).to_numpy(float)
    a_model = same_as_model / h
    c_u = counts.groupby(level=0).apply(lambda s: float((s * (s - 1)).sum())).reindex(units).to_numpy()
    a_human = c_u / (h * (h - 1))
    task_of = hum.drop_duplicates("unit").set_index("unit")["task"].reindex(units).to_numpy()
    per_task = pd.DataFrame({"task": task_of, "m": a_model, "h": a_human, "one": 1.0}).groupby("task").sum()
    pooled = hum["label"].value_counts(normalize=True)
    p_e = float((pooled ** 2).sum()) if chance_corrected else 0.0

    def kap(x):
        return (x - p_e) / (1 - p_e)

    stat_sets = {"m": per_task["m"].to_numpy(), "h": per_task["h"].to_numpy(), "one": per_task["one"].to_numpy()}
    res = {}
    for name, fn in (("model_agreement", lambda s: kap(s["m"] / s["one"])),
                     ("human_ceiling", lambda s: kap(s["h"] / s["one"])),
                     ("ratio", lambda s: kap(s["m"] / s["one"]) / kap(s["h"] / s["one"]))):
        v, lo, hi, _ = bootstrap(fn, stat_sets, n_boot=n_boot, seed=seed, confidence=confidence)
        res[name] = Estimate(name, v, lo, hi, n_units=len(units), n_raters=int(hum["worker"].nunique()) + 1,
                             n_judgments=len(hum) + len(units), confidence=confidence, n_boot=n_boot,
                             extra={"chance_corrected": chance_corrected, "model": model})
    # each worker's leave-one-out agreement with the humans (the model against all humans)
    hum_c = hum.merge(counts.rename("n_same").reset_index(), on=["unit", "label"])
    hum_c["loo"] = (hum_c["n_same"] - 1) / (hum_c["unit"].map(h_n) - 1)
    workers = hum_c.groupby("worker")["loo"].agg(["count", "mean"]).rename(
        columns={"count": "n_units", "mean": "loo_agreement"}).reset_index()
    workers["loo_agreement"] = kap(workers["loo_agreement"])
    workers["is_model"] = False
    workers = pd.concat([workers, pd.DataFrame([{"worker": model, "n_units": len(units),
                                                 "loo_agreement": kap(a_model.mean()), "is_model": True}])],
                        ignore_index=True).sort_values("loo_agreement", ascending=False).reset_index(drop=True)
    res["workers"] = workers
    res["model"] = model
    return res


# ----------------------------------------------------------------------------- clues

def improvement_clues(frame: pd.DataFrame, sheets: dict, loc: pd.DataFrame | None = None, *, samples=None,
                      min_sheets: int = 3, margin: float = 0.10, off_threshold: float = 0.5,
                      n_boot: int = 500, seed=0, confidence: float = 0.95, max_examples: int = 3) -> pd.DataFrame:
    """Classes, domains and background kinds whose arguments are judged invalid or fall off the
    object, with example sheets and a suggestion sentence.

    A group is flagged when it has >= `min_sheets` sheets and either its invalid share exceeds
    the overall share by `margin`, or the share of its arguments' heatmap mass off the object
    (`1 - relevance_mass` against the `object` mask, else the human rationale marks) is above
    `off_threshold` and exceeds the overall share by `margin`. Background kinds come from the
    dataset's `samples.csv` (`samples=`) or the sheets. The suggestion says "background" when
    the arguments fall off the object, and names the background kind its sheets concentrate on.

    Returns:
        DataFrame sorted by severity: group_type, group, n_sheets, invalid_rate, invalid_ci_low,
        invalid_ci_high, overall_invalid, off_object, overall_off_object, cue ("background" |
        "invalid"), top_background, top_background_share, examples (sample ids), suggestion.
    """
    rows = argument_rows(frame) if "item" in frame.columns else pd.DataFrame()
    info = attach_sheet_info(pd.DataFrame({"task": list(sheets), "sheet": list(sheets)}), sheets, samples)
    info = info.set_index("sheet")
    per_sheet = pd.DataFrame(index=info.index)
    if len(rows):
        sheet_col = rows["sheet"].astype(str) if "sheet" in rows.columns else rows["task"].astype(str)
        judged = rows.assign(sheet=sheet_col)[rows["valid"].notna()]
        agg = judged.groupby("sheet")["valid"].agg(["sum", "count"])
        per_sheet["yes"] = agg["sum"]
        per_sheet["n"] = agg["count"]
    else:
        per_sheet["yes"], per_sheet["n"] = np.nan, np.nan
    target_used = None
    if loc is not None and len(loc):
        for target in ("object", "human"):
            sub = loc[loc["target"] == target]
            if len(sub):
                per_sheet["off"] = 1 - sub.groupby("sheet")["relevance_mass"].mean()
                target_used = target
                break
    if "off" not in per_sheet.columns:
        per_sheet["off"] = np.nan
    per_sheet = per_sheet.join(info[["class", "domain", "background"]])
    per_sheet["invalid"] = 1 - per_sheet["yes"] / per_sheet["n"]
    overall_invalid = 1 - per_sheet["yes"].sum() / per_sheet["n"].sum() if per_sheet["n"].sum() > 0 else np.nan
    overall_off = per_sheet["off"].mean()
    where = {"object": "off the object", "human": "outside the regions people marked", None: ""}[target_used]
    out = []
    for group_type in ("domain", "class", "background"):
        col = per_sheet[group_type].fillna("").astype(str)
        for g, sub in per_sheet[col != ""].groupby(col[col != ""]):
            if len(sub) < min_sheets:
                continue
            n = sub["n"].fillna(0).to_numpy()
            inv, lo, hi = (np.nan, np.nan, np.nan)
            if n.sum() > 0:
                v, lo_v, hi_v = _ratio_ci(sub["yes"].fillna(0).to_numpy(), n, n_boot=n_boot, seed=seed,
                                          confidence=confidence)
                inv, lo, hi = 1 - v, 1 - hi_v, 1 - lo_v
            off = sub["off"].mean()
            bg = sub["background"].fillna("").astype(str)
            bg_counts = bg[bg != ""].value_counts()
            top_bg = bg_counts.index[0] if len(bg_counts) else ""
            top_share = bg_counts.iloc[0] / len(sub) if len(bg_counts) else np.nan
            off_flag = np.isfinite(off) and off > off_threshold and (not np.isfinite(overall_off) or
                                                                    off >= overall_off + margin or
                                                                    group_type == "background" and off > off_threshold)
            inv_flag = np.isfinite(inv) and np.isfinite(overall_invalid) and inv >= overall_invalid + margin
            if not (off_flag or inv_flag):
                continue
            order = sub.assign(score=sub["invalid"].fillna(0) + sub["off"].fillna(0)).sort_values(
                "score", ascending=False)
            examples = [str(s) for s in order.index[:max_examples]]
            cue = "background" if off_flag else "invalid"
            out.append({"group_type": group_type, "group": g, "n_sheets": len(sub), "invalid_rate": inv,
                        "invalid_ci_low": lo, "invalid_ci_high": hi, "overall_invalid": overall_invalid,
                        "off_object": off, "overall_off_object": overall_off, "cue": cue,
                        "top_background": top_bg, "top_background_share": top_share,
                        "examples": " ".join(examples),
                        "suggestion": _suggestion(group_type, g, cue, inv, off, where, top_bg, top_share),
                        "severity": (inv if np.isfinite(inv) else 0) + (off if np.isfinite(off) else 0)})
    cols = ["group_type", "group", "n_sheets", "invalid_rate", "invalid_ci_low", "invalid_ci_high",
            "overall_invalid", "off_object", "overall_off_object", "cue", "top_background",
            "top_background_share", "examples", "suggestion"]
    res = pd.DataFrame(out)
    if res.empty:
        return pd.DataFrame(columns=cols)
    return res.sort_values("severity", ascending=False)[cols].reset_index(drop=True)


def _suggestion(group_type, g, cue, inv, off, where, top_bg, top_share) -> str:
    inv_txt = f"{inv:.0%} judged invalid" if np.isfinite(inv) else ""
    if cue == "background":
        facts = [f"{off:.0%} of heatmap mass {where}".strip()]
        if inv_txt:
            facts.append(inv_txt)
        if top_bg and np.isfinite(top_share) and top_share >= 0.5 and group_type != "background":
            facts.append(f"{top_share:.0%} of its sheets on the `{top_bg}` background")
        detail = "; ".join(facts)
        if group_type == "domain":
            return (f"in `{g}`, arguments fire on the background ({detail}): check for a shortcut, "
                    f"add {g} training data")
        if group_type == "class":
            bg = f" `{top_bg}`" if top_bg and np.isfinite(top_share) and top_share >= 0.5 else ""
            return (f"for class `{g}`, arguments fire on the background ({detail}): check for a shortcut "
                    f"through the{bg} background, add `{g}` examples on other backgrounds")
        return (f"on the `{g}` background, arguments fire on the background itself ({detail}): the model "
                f"may use the `{g}` texture as a shortcut; add training data that shows `{g}` with other classes")
    scope = {"domain": f"in `{g}`", "class": f"for class `{g}`", "background": f"on the `{g}` background"}[group_type]
    on_obj = f" although their heatmaps sit on the object ({1 - off:.0%} of mass)" if np.isfinite(off) else ""
    data = {"domain": f"add {g} training data", "class": f"add `{g}` training data",
            "background": f"add training data on the `{g}` background"}[group_type]
    return (f"{scope}, {inv:.0%} of arguments are judged invalid{on_obj}: the features may not be the parts "
            f"people use; review the example sheets, {data}")


def channel_validity(frame: pd.DataFrame, sheets: dict) -> pd.DataFrame:
    """How often the crowd judged each explained channel a valid argument, over all sheets.

    `frame`: judgments (`rate_arguments` rows, `item = "arg:<rank>"`, human workers only);
    `sheets`: {sample_id: sheet}, whose `arguments[*].rank/channel` say which channel an item
    showed. A task's sheet is its `sheet` column when present, else the task id.

    Returns:
        DataFrame sorted by channel: channel, n_sheets, n_judgments (yes + no; can't-tell left
        out), validity (yes share), invalid (1 - validity).
    """
    rows = argument_rows(frame)
    cols = ["channel", "n_sheets", "n_judgments", "validity", "invalid"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    sheet_col = rows["sheet"].astype(str) if "sheet" in rows.columns else rows["task"].astype(str)
    lookup = {(str(sid), int(a["rank"])): int(a["channel"]) for sid, s in sheets.items()
              for a in (s.get("arguments") or [])}
    rows = rows.assign(sheet=sheet_col)
    rows["channel"] = [lookup.get((s, int(r))) if pd.notna(r) else None for s, r in zip(rows["sheet"], rows["rank"])]
    judged = rows[rows["valid"].notna() & rows["channel"].notna()]
    if judged.empty:
        return pd.DataFrame(columns=cols)
    g = judged.groupby(judged["channel"].astype(int))
    out = pd.DataFrame({"n_sheets": g["sheet"].nunique(), "n_judgments": g["valid"].count(), "validity": g["valid"].mean()})
    out["invalid"] = 1.0 - out["validity"]
    return out.reset_index().rename(columns={"index": "channel"})[cols].sort_values("channel").reset_index(drop=True)

"""`argus report`: judgments + sheets -> a self-contained `report.html`, PNG figures and one CSV
per table. Works offline from files (figures are embedded in the HTML as data URIs)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from crowd.judgments import is_model_worker, read_judgments
from explain.sheet_files import load_sheets, read_summary

from . import agreement as agr
from .aggregate import DawidSkene, MajorityVote, confusion_table, item_uncertainty, worker_table
from .frames import humans_only
from .quality import worker_flags, worker_quality
from .validation import prepare_judgments
from .model_human import (argument_rows, argument_validity, improvement_clues, localisation_by,
                          localisation_table, model_answers_from_sheets, model_vs_human, naming_agreement, canonical_name,
                          rank_agreement, reference_names, synonyms_from_parts)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "report"


def _find_data_dir(sheets_dir, data_dir):
    """`--data` wins; else `SHEETS/summary.json["dataset"]` when it names an existing folder."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(f"--data {data_dir}: dataset folder not found")
        return Path(data_dir)
    ds = read_summary(sheets_dir, optional=True).get("dataset")
    if isinstance(ds, str) and ds and Path(ds).is_dir():
        return Path(ds)
    return None


class _Figures:
    def __init__(self, out: Path):
        self.dir = out / "figures"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.items: dict[str, dict] = {}

    def add(self, key, fig, title, caption=""):
        import matplotlib.pyplot as plt
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        data = buf.getvalue()
        (self.dir / f"{key}.png").write_bytes(data)
        self.items[key] = {"title": title, "caption": caption, "file": f"figures/{key}.png",
                           "src": "data:image/png;base64," + base64.b64encode(data).decode()}


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return str(v)


def _html_table(df: pd.DataFrame, columns=None, max_rows=60) -> dict:
    df = df if columns is None else df[[c for c in columns if c in df.columns]]
    counts = [str(c).startswith("n_") for c in df.columns]  # counts print as integers

    def cell(v, is_count):
        if is_count and isinstance(v, (float, np.floating)) and np.isfinite(v):
            return str(int(v))
        return _fmt(v)
    rows = [[cell(v, k) for v, k in zip(r, counts)] for r in df.head(max_rows).itertuples(index=False)]
    return {"columns": list(df.columns), "rows": rows, "truncated": max(0, len(df) - max_rows)}


def build_report(judgments, sheets_dir, out_dir, *, data_dir=None, n_boot: int = 1000, seed=0,
                 confidence: float = 0.95, title: str = "Argus report", dropna: bool = False,
                 duplicates: str = "error") -> Path:
    """Analyse a judgment export against its sheets and write the report.

    Args:
        judgments: path to the CSV/Parquet export (or a DataFrame).
        sheets_dir: the SHEETS folder written by `argus explain`.
        out_dir: output folder: `report.html`, `figures/*.png`, `tables/*.csv`.
        data_dir: dataset folder (masks, parts.json, samples.csv) for ground-truth localisation
            and background kinds; optional.
        dropna, duplicates: the validation step (`analysis.validation.prepare_judgments`):
            answers without a label and repeated answers are errors unless dropped / chosen.
    Returns:
        Path of `report.html`.
    """
    import matplotlib
    matplotlib.use("Agg")
    from training.progress import progress_bar as tqdm

    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    frame = prepare_judgments(read_judgments(judgments), dropna=dropna, duplicates=duplicates,
                              where=str(judgments) if not isinstance(judgments, pd.DataFrame) else "judgments")
    dropped_note = None
    if frame.attrs.get("dropped_labels") or frame.attrs.get("dropped_duplicates"):
        dropped_note = (f"validation: left out {frame.attrs['dropped_labels']} answer(s) without a label and "
                     f"{frame.attrs['dropped_duplicates']} repeated answer(s) (duplicates={duplicates!r})")
    sheets = load_sheets(sheets_dir)
    data_dir = _find_data_dir(sheets_dir, data_dir)
    samples = parts = None
    if data_dir is not None:
        from training.datasets import read_parts, read_samples_table  # loads torch: only with a dataset folder

        samples = read_samples_table(data_dir, missing_ok=True)
        parts = read_parts(data_dir, missing_ok=True)
    figs = _Figures(out)
    tables: dict[str, pd.DataFrame] = {}
    sections: dict[str, dict] = {}
    notes: list[str] = [dropped_note] if dropped_note else []
    kw = dict(n_boot=n_boot, seed=seed, confidence=confidence)
    humans = humans_only(frame)
    steps = ["agreement", "aggregation", "validity", "localisation", "naming", "ranks", "model", "clues", "render"]
    bar = tqdm(steps, desc="report", unit="step", leave=False)

    def step(name):
        bar.set_postfix_str(name)
        bar.update(1)

    # 1. agreement among people, per task kind
    agree = agr.agreement_table(humans, **kw)
    tables["agreement"] = agree
    if len(agree):
        _plot_agreement(figs, agree)
    step("agreement")

    # 2. aggregation and worker reliability
    label_rows = humans[humans["item"].astype(str) == "label"] if "item" in humans.columns else humans
    arg_rows = argument_rows(frame) if "item" in frame.columns else pd.DataFrame()
    agg_source, agg_frame = None, None
    if len(label_rows) and label_rows["task"].nunique() >= 2:
        agg_source, agg_frame = "label", label_rows
    elif len(arg_rows):
        agg_source = "rate_arguments"
        agg_frame = arg_rows.assign(task=arg_rows["task"].astype(str) + ":" + arg_rows["item"].astype(str))
    if agg_frame is not None and agg_frame["label"].nunique() >= 2:
        ds = DawidSkene().fit(agg_frame)
        mv = MajorityVote().fit(agg_frame)
        quality = worker_quality(humans)
        tables["worker_quality"] = quality
        workers = worker_flags(quality).merge(
            worker_table(agg_frame, ds)[["worker", "skill", "agreement_with_aggregate", "spammer_score"]],
            on="worker", how="left")
        tables["workers"] = workers
        tables["worker_confusions"] = confusion_table(ds)
        unc = item_uncertainty(ds.probas_)
        labels = pd.DataFrame({"task": ds.labels_.index, "ds_label": ds.labels_.to_numpy(),
                               "mv_label": mv.labels_.reindex(ds.labels_.index).to_numpy(),
                               "ds_probability": unc["max_proba"].to_numpy(), "entropy": unc["entropy"].to_numpy(),
                               "mv_tie": mv.ties_.reindex(ds.labels_.index).to_numpy()})
        tables["aggregated_labels"] = labels
        _plot_workers(figs, workers, agg_source)
        _plot_confusions(figs, ds, agg_frame, sheets, agg_source)
        sections["aggregation"] = {"source": agg_source, "n_tasks": len(labels),
                                   "agree_mv_ds": float((labels["ds_label"] == labels["mv_label"]).mean()),
                                   "n_flagged": int(workers["flagged"].sum()),
                                   "flagged": ", ".join(workers.loc[workers["flagged"], "worker"].astype(str)[:20])}
    step("aggregation")

    # 3. argument validity by rank / class / domain
    if len(arg_rows):
        for by in ("rank", "class", "domain"):
            try:
                tables[f"validity_by_{by}"] = argument_validity(frame, sheets, by=by, samples=samples, **kw)
            except ValueError as exc:
                notes.append(f"validity by {by}: {exc}")
        if "validity_by_rank" in tables:
            _plot_validity(figs, tables["validity_by_rank"])
    step("validity")

    # 4. localisation
    loc = localisation_table(sheets, frame, data_dir)
    if len(loc):
        tables["localisation"] = loc
        tables["localisation_by_domain"] = localisation_by(loc, "domain", **kw)
        _plot_localisation(figs, tables["localisation_by_domain"])
    step("localisation")

    # 5. naming
    if "item" in frame.columns and (frame["item"].astype(str) == "name").any():
        ref = reference_names(sheets)
        naming = naming_agreement(frame, reference=ref or None, synonyms=synonyms_from_parts(parts), **kw)
        tables["naming"] = naming["table"]
        sections["naming"] = {k: (v.as_dict() if hasattr(v, "as_dict") else None)
                              for k, v in naming.items() if k in ("among_workers", "alpha", "crowd_vs_reference")}
    step("naming")

    # 6. rank agreement
    if len(arg_rows):
        ranks = rank_agreement(frame, sheets, **kw)
        tables["rank_agreement"] = ranks["table"]
        sections["ranks"] = {k: (ranks[k].as_dict() if ranks[k] is not None else None)
                             for k in ("kendall_tau", "spearman_rho")}
    step("ranks")

    # 7. model as a worker vs the human ceiling
    with_model = frame
    if not is_model_worker(frame["worker"]).any():
        extra = model_answers_from_sheets(sheets, frame)
        if len(extra):
            with_model = pd.concat([frame, extra.dropna(axis=1, how="all")], ignore_index=True)
            notes.append("the model's answers (predicted class, feature names) were added from the sheets "
                         f"as worker {extra['worker'].iloc[0]!r}")
    if "item" in with_model.columns and parts:
        # compare names in canonical form (synonyms of a part count as the same name)
        syn = synonyms_from_parts(parts)
        is_name = with_model["item"].astype(str) == "name"
        with_model = with_model.copy()
        with_model.loc[is_name, "label"] = with_model.loc[is_name, "label"].map(lambda s: canonical_name(s, syn))
    mvh_rows = []
    models = sorted(with_model.loc[is_model_worker(with_model["worker"]), "worker"].unique())
    if models:
        groups = with_model.assign(_g=with_model["item"].map(agr.item_group) if "item" in with_model else "label")
        for model in models:
            for g, sub in groups.groupby("_g"):
                try:
                    res = model_vs_human(sub.drop(columns="_g"), model, **kw)
                    res_k = model_vs_human(sub.drop(columns="_g"), model, chance_corrected=True, **kw)
                except ValueError:
                    continue
                for r, corrected in ((res, False), (res_k, True)):
                    mvh_rows.append({"model": model, "item": g, "chance_corrected": corrected,
                                     "model_agreement": r["model_agreement"].value,
                                     "human_ceiling": r["human_ceiling"].value, "ratio": r["ratio"].value,
                                     "ratio_ci_low": r["ratio"].ci_low, "ratio_ci_high": r["ratio"].ci_high,
                                     "n_units": r["ratio"].n_units,
                                     "model_place": int(np.flatnonzero(r["workers"]["is_model"])[0]) + 1,
                                     "n_workers": len(r["workers"])})
    if mvh_rows:
        tables["model_vs_human"] = pd.DataFrame(mvh_rows)
    step("model")

    # 8. improvement clues
    clues = improvement_clues(frame, sheets, loc if len(loc) else None, samples=samples, seed=seed)
    tables["clues"] = clues
    step("clues")

    for name, df in tables.items():
        df.to_csv(out / "tables" / f"{name}.csv", index=False)

    sheets_rel = os.path.relpath(Path(sheets_dir).resolve(), out.resolve())
    clue_rows = []
    for _, c in clues.iterrows():
        ex = [{"id": e, "href": f"{sheets_rel}/sheets/{e}.html"} for e in str(c["examples"]).split() if e]
        clue_rows.append({**{k: _fmt(v) for k, v in c.items()}, "examples": ex, "suggestion": c["suggestion"]})
    context = {
        "title": title,
        "overview": {"judgments": len(frame), "human_workers": int(humans["worker"].nunique()),
                     "model_workers": ", ".join(models) or "none", "tasks": int(frame["task"].nunique()),
                     "sheets": len(sheets), "kinds": ", ".join(sorted(frame["kind"].astype(str).unique()))
                     if "kind" in frame.columns else "–",
                     "data": str(data_dir) if data_dir else "not given (no ground-truth masks)",
                     "n_boot": n_boot, "confidence": f"{confidence:.0%}"},
        "figures": figs.items, "sections": sections, "notes": notes, "clues": clue_rows,
        "tables": {
            "agreement": _html_table(agree, ["kind", "item", "statistic", "level", "value", "ci_low", "ci_high",
                                             "n_units", "n_raters", "n_judgments", "note"]) if len(agree) else None,
            "workers": _html_table(tables["workers"], ["worker", "action", "reasons", "n_answers", "gold_n",
                                                       "gold_accuracy", "min_kappa", "skill", "agreement_with_aggregate"])
            if "workers" in tables else None,
            **{k: _html_table(tables[k]) for k in ("validity_by_rank", "validity_by_class", "validity_by_domain",
                                                  "model_vs_human", "rank_agreement", "naming")
               if k in tables and len(tables[k])},
            "localisation_by_domain": _html_table(tables["localisation_by_domain"])
            if "localisation_by_domain" in tables else None,
        },
        "csvs": sorted(f"tables/{n}.csv" for n in tables),
    }
    html = _render(context)
    path = out / "report.html"
    path.write_text(html)
    step("render")
    bar.close()
    return path


def _render(context: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    return env.get_template("report.html").render(**context)


# ----------------------------------------------------------------------------- figures

def _plot_agreement(figs, agree):
    import matplotlib.pyplot as plt
    df = agree[np.isfinite(agree["value"].astype(float))].copy()
    if df.empty:
        return
    df["unit"] = df["kind"] + " / " + df["item"]
    units = list(dict.fromkeys(df["unit"]))
    statistics = list(dict.fromkeys(df["statistic"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(units) + 2), 3.6))
    width = 0.8 / len(statistics)
    for i, st in enumerate(statistics):
        sub = df[df["statistic"] == st].set_index("unit").reindex(units)
        x = np.arange(len(units)) + (i - (len(statistics) - 1) / 2) * width
        v = sub["value"].to_numpy(float)
        err = np.vstack([v - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - v])
        ax.bar(x, v, width, yerr=np.nan_to_num(err), capsize=3, label=st.replace("_", " "))
    ax.set_xticks(np.arange(len(units)), units, rotation=15, ha="right")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("agreement")
    ax.set_ylim(min(0, np.nanmin(df["value"]) - 0.1), 1.05)
    ax.legend(fontsize=8, ncol=2, frameon=False)
    ax.set_title("Agreement among workers per task kind (95% bootstrap CI over tasks)")
    figs.add("agreement", fig, "Agreement per task kind",
             "Percent agreement and chance-corrected coefficients; level of measurement inferred per item.")


def _plot_workers(figs, workers, source):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 4))
    has_gold = workers["gold_accuracy"].notna().any()
    x = workers["gold_accuracy"] if has_gold else workers["agreement_with_aggregate"]
    colors = np.where(workers["flagged"], "#d62728", "#1f77b4")
    ax.scatter(x, workers["skill"], s=12 + 3 * np.sqrt(workers["n_answers"]), c=colors, alpha=0.75)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("gold accuracy" if has_gold else "agreement with the aggregate")
    ax.set_ylabel("estimated skill (Dawid-Skene)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Worker reliability ({source}); red = flagged (see reasons)")
    figs.add("workers", fig, "Worker reliability",
             "Each dot is a worker (size ~ judgments). Skill = expected accuracy from the Dawid-Skene confusion matrix.")


def _plot_confusions(figs, ds, frame, sheets, source):
    import matplotlib.pyplot as plt
    labels = list(ds.probas_.columns)
    mats, titles = [], []
    mean_conf = np.einsum("wkc,c->kc", ds.confusions_, np.ones(len(labels))) / len(ds.confusions_)
    mats.append(mean_conf)
    titles.append("mean worker confusion P(answer | true)")
    if source == "label" and sheets:
        truth = {}
        for t, s in frame.drop_duplicates("task")[["task", "sheet"]].itertuples(index=False) if "sheet" in frame else []:
            if s in sheets and sheets[s].get("label") in labels:
                truth[t] = sheets[s]["label"]
        if truth:
            tr = pd.Series(truth)
            agg = ds.labels_.reindex(tr.index)
            m = pd.crosstab(agg, tr).reindex(index=labels, columns=labels, fill_value=0).to_numpy(float)
            mats.append(m / np.maximum(m.sum(0, keepdims=True), 1))
            titles.append("crowd label (DS) vs true class")
    fig, axes = plt.subplots(1, len(mats), figsize=(4.4 * len(mats), 4))
    axes = np.atleast_1d(axes)
    for ax, m, t in zip(axes, mats, titles):
        im = ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("true")
        ax.set_ylabel("answered" if "worker" in t else "crowd")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.6 else "black")
        ax.set_title(t, fontsize=9)
    fig.subplots_adjust(wspace=0.45)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8)
    figs.add("confusions", fig, "Confusion matrices", "Columns sum to 1 (per true label).")


def _plot_validity(figs, table):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    t = table.sort_values("rank")
    r = t["rank"].astype(int).to_numpy()
    v = t["validity"].to_numpy(float)
    ax.errorbar(r, v, yerr=np.nan_to_num(np.vstack([v - t["ci_low"], t["ci_high"] - v])), marker="o", capsize=3)
    ax.set_xticks(r)
    ax.set_xlabel("argument rank (1 = largest contribution)")
    ax.set_ylabel("share judged relevant")
    ax.set_ylim(0, 1.02)
    ax.set_title("Argument validity by rank (95% CI over sheets)")
    figs.add("validity_by_rank", fig, "Validity by argument rank",
             "Share of 'yes' among yes/no answers; 'can't tell' excluded.")


def _plot_localisation(figs, table):
    import matplotlib.pyplot as plt
    targets = list(dict.fromkeys(table["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = table[table["target"] == target]
        domains = list(dict.fromkeys(sub["domain"]))
        metrics = list(dict.fromkeys(sub["metric"]))
        width = 0.8 / len(metrics)
        for i, m in enumerate(metrics):
            s = sub[sub["metric"] == m].set_index("domain").reindex(domains)
            x = np.arange(len(domains)) + (i - (len(metrics) - 1) / 2) * width
            v = s["value"].to_numpy(float)
            err = np.vstack([v - s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float) - v])
            ax.bar(x, v, width, yerr=np.nan_to_num(err), capsize=2, label=m.replace("_", " "))
        ax.set_xticks(np.arange(len(domains)), [d or "(none)" for d in domains])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"target: {target}")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Localisation of argument heatmaps by domain (95% CI over sheets)")
    figs.add("localisation_by_domain", fig, "Localisation by domain",
             "object = ground-truth object mask, parts = discriminative parts, human = union of people's marks.")


# ----------------------------------------------------------------------------- after the fix

IMPROVEMENT_ANCHOR = '<h2 id="agreement">'


def add_improvement(report_dir, improve_doc: dict, figure_png, table_md=None) -> Path:
    """Put an "After the fix" section (`argus improve`'s before/after figure and headline
    numbers) into an existing `report_dir/report.html`, after the improvement clues; a section
    put there before is replaced. `improve_doc`: the `improve.json` document."""
    import re

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    report_dir = Path(report_dir)
    path = report_dir / "report.html"
    html = path.read_text()
    if IMPROVEMENT_ANCHOR not in html:
        raise ValueError(f"{path}: no {IMPROVEMENT_ANCHOR!r} heading to put the section before (not an Argus report?)")
    data = Path(figure_png).read_bytes()
    (report_dir / "figures").mkdir(parents=True, exist_ok=True)
    (report_dir / "figures" / "improvement.png").write_bytes(data)
    results, best = improve_doc["results"], improve_doc.get("best")
    before, after = results["before"], results.get(best) or {}
    cards = []

    def card(label, get):
        try:
            b, a = get(before), get(after)
        except (KeyError, TypeError):
            return
        if b is None or a is None:
            return
        cards.append({"label": label, "before": f"{b:.2f}", "after": f"{a:.2f}", "gain": f"{100 * (a - b):+.1f} points"})

    card("cue-free test accuracy", lambda r: r["cue_free"]["overall"])
    card(f"pointing game, {before.get('majority_domain')}", lambda r: r["majority_pointing_game"])
    card("test accuracy", lambda r: r["test"]["overall"])
    clues = improve_doc.get("clues") or {}
    kinds = list(clues.get("backgrounds") or [])
    clue_text = (f"shortcut through the {', '.join(kinds)} background{'s' if len(kinds) > 1 else ''}"
                 if clues.get("cue") == "background" else "channels judged invalid")
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    section = env.get_template("_improvement.html").render(
        clues=" ".join(clue_text.split()), best_label=best or "–", cards=cards, majority=before.get("majority_domain"),
        src="data:image/png;base64," + base64.b64encode(data).decode(), file="figures/improvement.png",
        table=os.path.relpath(Path(table_md).resolve(), report_dir.resolve()) if table_md else "figures/improvement.png")
    html = re.sub(r'<section id="improvement">.*?</section>\n?', "", html, flags=re.S)
    html = html.replace(IMPROVEMENT_ANCHOR, section + "\n" + IMPROVEMENT_ANCHOR, 1)
    path.write_text(html)
    return path

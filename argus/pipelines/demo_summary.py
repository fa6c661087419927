"""What `argus demo` prints: the summary collected from the stages' results and files
(`collect_summary`, also `OUT/summary.json`) and its text (`format_summary`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from explain.sheet_files import read_summary

if TYPE_CHECKING:
    from argus.pipelines.demo import DemoRun


def collect_summary(run: DemoRun, server_url: str | None) -> dict:
    """The figures the demo prints, from the stages' results and files (also `OUT/summary.json`)."""
    import pandas as pd

    cfg, out, progress, eval_report, batch = run.cfg, run.out, run.progress, run["eval"], run["batch"]
    rep = out / "report" / "tables"

    def table(name):
        return pd.read_csv(rep / f"{name}.csv") if (rep / f"{name}.csv").exists() else None

    agree = table("agreement")
    alpha = []
    if agree is not None and len(agree):
        a = agree[(agree["statistic"].astype(str) == "krippendorff_alpha")]
        for _, r in a.iterrows():
            alpha.append({"kind": str(r["kind"]), "item": str(r.get("item", "")), "value": float(r["value"]),
                          "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n_units": int(r["n_units"])})
    mvh = table("model_vs_human")
    validity = table("validity_by_rank")
    gt = read_summary(run["explain"]).get("ground_truth") or {}
    summary = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "accuracy": {"overall": eval_report.get("overall_accuracy"),
                     "per_domain": eval_report.get("per_domain"),
                     "majority_domain": eval_report.get("majority_domain"),
                     "minority_mean": eval_report.get("minority_mean_accuracy")},
        "worker_agreement_alpha": alpha,
        "model_vs_human": None if mvh is None else mvh.to_dict("records"),
        "argument_validity_by_rank": None if validity is None else validity.to_dict("records"),
        "pointing_game": {"overall": (gt.get("overall") or {}).get("pointing_game"),
                          "by_domain": {d: v.get("pointing_game") for d, v in (gt.get("by_domain") or {}).items()}},
        "checks": run["checks"],
        "improvement": improvement_summary(run.results.get("improve")),
        "stage_seconds": dict(progress.times), "reused": dict(progress.reused), "total_seconds": progress.total,
        "batch": batch and {k: batch.get(k) for k in ("id", "tasks", "gold_tasks", "redundancy", "tasks_by_kind")},
        "paths": {"out": str(out), "data": str(out / "data"), "model": str(out / "run"),
                  "sheets": str(out / "sheets" / "index.html"), "judgments": str(out / "crowd" / "judgments.csv"),
                  "report": str(out / "report" / "report.html"), "roster": str(out / "crowd" / "roster.csv"),
                  "summary": str(out / "summary.json")},
        "server": server_url,
    }
    return summary


def improvement_summary(doc: dict | None) -> dict | None:
    """Before -> after of the demo's correction: test and cue-free accuracy, majority-domain
    pointing game, each with the gain in points."""
    if not doc or not doc.get("best"):
        return None
    before, after = doc["results"]["before"], doc["results"][doc["best"]]

    def pair(get):
        try:
            b, a = get(before), get(after)
        except (KeyError, TypeError):
            return None
        if b is None or a is None:
            return None
        return {"before": b, "after": a, "gain_points": round(100 * (a - b), 1)}

    return {"correction": doc["best"], "epochs": doc["config"]["epochs"], "fine_tune": doc["config"]["fine_tune"],
            "clues": doc["clues"], "majority_domain": before.get("majority_domain"),
            "cue_free_accuracy": pair(lambda r: r["cue_free"]["overall"]),
            "test_accuracy": pair(lambda r: r["test"]["overall"]),
            "majority_pointing_game": pair(lambda r: r["majority_pointing_game"]),
            "cue_free_per_domain": {d: pair(lambda r, d=d: r["cue_free"]["per_domain"][d])
                                    for d in (before.get("cue_free") or {}).get("per_domain", {})},
            "seconds": doc.get("seconds")}


def _f(v, d=3):
    return "n/a" if v is None or v != v else f"{v:.{d}f}"


def format_summary(s: dict) -> str:
    """The printed summary: accuracy per domain, agreement, spammers, validity, pointing game,
    the improvement clue, the checks and the paths."""
    lines = ["", "=" * 72, "Argus demo summary  (the crowd is SIMULATED; see docs/demo.md)", "=" * 72]
    acc = s["accuracy"]
    lines.append(f"test accuracy: {_f(acc['overall'])} overall; by domain:")
    for d, v in (acc.get("per_domain") or {}).items():
        mark = " (majority)" if d == acc.get("majority_domain") else ""
        lines.append(f"    {d:<8} {_f(v.get('accuracy'))}  (n={v.get('n')}){mark}")
    for a in s.get("worker_agreement_alpha") or []:
        lines.append(f"worker agreement, Krippendorff's alpha, {a['kind']} {a['item']}: {_f(a['value'])} "
                     f"[{_f(a['ci_low'])}, {_f(a['ci_high'])}] over {a['n_units']} units")
    c = s["checks"]
    if "ds_vs_true_accuracy_pearson" in c:
        lines.append(f"Dawid-Skene worker accuracy ({c['aggregation_source']}) vs simulated truth: Pearson r = "
                     f"{_f(c['ds_vs_true_accuracy_pearson'])} ({c['n_workers_compared']} workers)")
        lines.append(f"spammers flagged: {c['spammers_caught']}/{len(c['true_spammers'])} true spammers caught"
                     + (f"; missed {', '.join(c['spammers_missed'])}" if c["spammers_missed"] else "")
                     + (f"; also flagged {', '.join(w + ' (' + c['kind_of'][w] + ')' for w in c['false_flags'])}"
                        if c["false_flags"] else "; no other worker flagged")
                     + " [by the worker-quality model]")
    ranks = s.get("argument_validity_by_rank") or []
    if ranks:
        lines.append("arguments judged valid by the crowd: " + ", ".join(
            f"rank {r['rank']} {_f(r.get('validity'))} [{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]" for r in ranks))
    for r in s.get("model_vs_human") or []:
        if not r.get("chance_corrected"):
            lines.append(f"model vs human ({r['item']}): model agreement {_f(r['model_agreement'])}, human ceiling "
                         f"{_f(r['human_ceiling'])}, ratio {_f(r['ratio'])} [{_f(r['ratio_ci_low'])}, {_f(r['ratio_ci_high'])}]")
    pg = s["pointing_game"]
    lines.append(f"pointing game (arguments on discriminative parts): {_f(pg['overall'])} overall; "
                 + ", ".join(f"{d} {_f(v)}" for d, v in pg["by_domain"].items()))
    clue = c.get("clue")
    if clue:
        lines.append(f"improvement clue found: {clue['suggestion']}")
    else:
        lines.append(f"improvement clue: none names the spurious background cue ({c.get('n_clues', 0)} clues in the report)")
    imp = s.get("improvement")
    if imp:
        how = f"{imp['correction']}, " + (f"fine-tuned {imp['epochs']} epochs" if imp["fine_tune"]
                                           else f"retrained {imp['epochs']} epochs")
        lines.append(f"after the fix ({how}), before -> after:")
        for label, key in (("cue-free test accuracy", "cue_free_accuracy"), ("test accuracy", "test_accuracy"),
                           (f"pointing game ({imp['majority_domain']})", "majority_pointing_game")):
            p = imp.get(key)
            if p:
                lines.append(f"    {label:<26} {_f(p['before'])} -> {_f(p['after'])}  ({p['gain_points']:+.1f} points)")
    verdict = [("DS vs truth r >= 0.9", (c.get("ds_vs_true_accuracy_pearson") or 0) >= 0.9),
               ("every spammer flagged", bool(c.get("all_spammers_flagged"))),
               ("clue names the spurious cue", bool(c.get("clue_names_spurious_background")))]
    lines.append("checks: " + "; ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in verdict))
    lines.append("stage times: " + ", ".join(f"{k} {v:.0f}s" + (" (reused)" if s['reused'].get(k) else "")
                                             for k, v in s["stage_seconds"].items()) + f"; total {s['total_seconds']:.0f}s")
    lines.append("outputs:")
    for k, v in s["paths"].items():
        lines.append(f"    {k:<10} {v}")
    return "\n".join(lines)

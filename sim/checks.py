"""Checks of an analysis against a simulated crowd's known truth (the demo's self-checks):
Dawid-Skene's worker accuracies vs the simulated ones, workers flagged vs the true spammers,
and whether an improvement clue names the toy world's spurious background cue.
"""

from __future__ import annotations

from pathlib import Path


def aggregation_source(kinds) -> str:
    """The question the report aggregates with Dawid-Skene: labels when asked, else argument ratings."""
    return "label" if "label" in kinds else "rate_arguments"


def clue_names_cue(clues, spurious_backgrounds: dict, majority_domain: str | None) -> dict | None:
    """The first improvement clue that names the spurious background cue, or None.

    A clue names it when it says the arguments fire on the background (`cue == "background"`)
    and points at the cue: a background kind the shortcut uses, a class whose sheets sit mostly
    on that class's spurious background, or the majority domain (the only one with the cue).
    """
    for _, c in clues.iterrows():
        if str(c.get("cue")) != "background":
            continue
        g, gt = str(c["group"]), str(c["group_type"])
        if (gt == "background" and g in set(spurious_backgrounds.values())) or \
                (gt == "class" and str(c.get("top_background")) == spurious_backgrounds.get(g)) or \
                (gt == "domain" and g == majority_domain):
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in c.items()}
    return None


def check_against_truth(result, kinds, report_dir: Path, crowd_dir: Path, data_dir: Path,
                        majority_domain: str | None, server_workers: list[dict] | None = None) -> dict:
    """What shows an analysis gets the right answers where the truth is known.

    - Pearson r between Dawid-Skene's estimated worker accuracy (`skill` in the report's
      `tables/workers.csv`) and each simulated worker's true accuracy (`result`, a
      `sim.crowd.CrowdResult`, on the question `aggregation_source(kinds)`);
    - workers flagged vs the simulated spammers: a worker is flagged when the report's worker
      quality model flags it (`tables/workers.csv` `flagged`, analysis/quality.py); the server's
      own gold flags (`server_workers`: `GET /api/batches/<id>/workers`) are listed apart;
    - whether an improvement clue (`tables/clues.csv`) names the spurious background cue of
      the dataset's `parts.json`.

    Writes `crowd_dir/roster.csv` (who is what, true accuracy) and `workers_vs_truth.csv`.
    """
    import numpy as np
    import pandas as pd

    from training.datasets import read_parts

    rep = Path(report_dir) / "tables"
    crowd_dir = Path(crowd_dir)
    source = aggregation_source(kinds)
    roster = result.roster(source)
    roster.to_csv(crowd_dir / "roster.csv", index=False)
    checks: dict = {"aggregation_source": source}
    workers = pd.read_csv(rep / "workers.csv") if (rep / "workers.csv").exists() else pd.DataFrame()
    if len(workers):
        workers["worker"] = workers["worker"].astype(str)
        m = roster.merge(workers[["worker", "skill", "flagged", "reasons"]], on="worker", how="left")
        m["flagged"] = m["flagged"].fillna(False).astype(bool)  # the report's worker-quality verdict
        gold_flag = {w["worker"]: w["status"] == "flagged" for w in server_workers or []}
        m["flagged_server"] = m["worker"].map(gold_flag).fillna(False).astype(bool)
        ok = m["skill"].notna() & m["accuracy"].notna()
        r = float(np.corrcoef(m.loc[ok, "skill"], m.loc[ok, "accuracy"])[0, 1]) if ok.sum() >= 3 else float("nan")
        true_spam = set(m.loc[m["is_spammer"], "worker"])
        flagged = set(m.loc[m["flagged"], "worker"])
        checks.update({
            "ds_vs_true_accuracy_pearson": round(r, 4), "n_workers_compared": int(ok.sum()),
            "true_spammers": sorted(true_spam), "flagged_spammers": sorted(flagged),
            "spammers_caught": len(true_spam & flagged), "spammers_missed": sorted(true_spam - flagged),
            "false_flags": sorted(flagged - true_spam),
            "flagged_by": {w: r for w, f, r in zip(m["worker"], m["flagged"], m["reasons"].fillna("")) if f},
            # the crowd server's live gold rule (P(accuracy < 0.7) >= 0.95 after 3 gold answers) marks workers
            # for review; it is not the analysis verdict and is reported apart
            "server_gold_flags": sorted(m.loc[m["flagged_server"], "worker"]),
            "kind_of": dict(zip(m["worker"], m["kind"])),
            "all_spammers_flagged": bool(true_spam) and true_spam <= flagged,
        })
        m.to_csv(crowd_dir / "workers_vs_truth.csv", index=False)
    clues = pd.read_csv(rep / "clues.csv") if (rep / "clues.csv").exists() else pd.DataFrame()
    parts = read_parts(data_dir)
    found = clue_names_cue(clues, parts.get("spurious_backgrounds", {}), majority_domain) if len(clues) else None
    checks["n_clues"] = int(len(clues))
    checks["clue"] = found
    checks["clue_names_spurious_background"] = found is not None
    return checks

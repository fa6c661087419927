"""Worker quality a researcher can act on: posteriors per worker and task kind, flags only on
evidence, and the reason for every flag.

Three signals per (worker, task kind), combined in one table (`worker_quality`):

- **gold**: every gold *part* is one trial (each argument of a `rate_arguments` gold task, its
  match rating, a feature name, a label), scored as the crowd server scores it. With `k` right
  of `n` parts and a Beta(a, b) prior, accuracy ~ Beta(a + k, b + n - k); the worker is flagged
  when `n >= min_gold` and P(accuracy < `gold_threshold`) >= `confidence`.
- **consensus** (Dawid-Skene): every nominal answer (gold or not) is compared with the
  Dawid-Skene posterior of its unit computed *without that worker's own answer* (leave one
  out; gold units use the gold label). The soft counts give a Dirichlet posterior of the
  worker's confusion matrix (prior: `prior_strength` answers per true class spread like the
  crowd's average confusion), and from samples of it the posterior of the worker's **kappa
  against the truth**, (accuracy - chance) / (1 - chance), with chance the accuracy of a worker
  who answers with the same label frequencies but ignores the item. A spammer, random or
  always answering "yes", has kappa 0; a perfect worker 1; an adversarial one < 0. Flagged
  when `n >= min_answers` and P(kappa < `kappa_threshold`) >= `confidence`.
- **speed**: the worker's median seconds per task over the median of all workers' medians in
  the kind; below `fast_ratio` the worker is flagged for review (never rejected on speed alone:
  fast, careful people exist).

`action` is "reject" when the gold or consensus flag holds, "review" for speed alone, else
"approve"; a worker without enough answers for any test is approved with that note (no
statistic here says more than the data can).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from crowd.judgments import parse_geometry

from .aggregate import DawidSkene
from .frames import humans_only
from .validation import prepare_judgments

# The columns of `worker_quality` (one row per worker and task kind); `argus mturk review` and the
# dashboard read these names.
QUALITY_COLUMNS = [
    "worker", "kind", "n_tasks", "n_answers",
    "gold_n", "gold_correct", "gold_accuracy", "gold_low", "gold_high", "gold_threshold", "p_gold_below",
    "consensus_n", "kappa", "kappa_low", "kappa_high", "kappa_threshold", "p_kappa_below", "ds_skill",
    "median_duration_s", "speed_ratio",
    "flag_gold", "flag_consensus", "flag_fast", "flagged", "action", "reasons",
]
ALL_KINDS = "all kinds"  # the `kind` of the pooled row of a worker who did several kinds
# One row per worker (`worker_flags`).
FLAG_COLUMNS = ["worker", "flagged", "action", "kinds_flagged", "reasons", "n_answers", "gold_n",
                "gold_accuracy", "min_kappa"]

# Items whose gold answer is a Likert rating scored within +-1, as the crowd server does.
_LIKERT_ITEMS = ("match", "coherence")
# Items that are not nominal answers with a small label set (no consensus model for them).
_NOT_CONSENSUS_ITEMS = ("match", "coherence", "rationale", "name")


def _kinds(frame: pd.DataFrame) -> pd.Series:
    if "kind" in frame.columns:
        return frame["kind"].astype(str)
    return pd.Series("label", index=frame.index)


def _item_groups(frame: pd.DataFrame) -> pd.Series:
    if "item" in frame.columns:
        return frame["item"].astype(str).str.split(":", n=1).str[0]
    return pd.Series("label", index=frame.index)


def _gold_mask(frame: pd.DataFrame) -> np.ndarray:
    if "gold_label" not in frame.columns:
        return np.zeros(len(frame), bool)
    has = frame["gold_label"].fillna("").astype(str).str.len().to_numpy() > 0
    if "is_gold" in frame.columns:
        has &= frame["is_gold"].fillna(False).astype(bool).to_numpy()
    return has


def _score_rationale(points, boxes, gold) -> float:
    gold_boxes = parse_geometry(gold)
    centres = [tuple(p) for p in parse_geometry(points)] + \
              [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in parse_geometry(boxes)]
    if not centres:
        return 0.0  # no mark at all says nothing right
    hits = sum(any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in gold_boxes) for x, y in centres)
    return 1.0 if hits * 2 >= len(centres) else 0.0


def gold_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per scored gold part: `worker, kind, task, item, label, gold_label, correct`.

    A part is one answer row with a gold label: each argument of a `rate_arguments` gold task
    (exact), its `match` rating (right within +-1), a `name` (right when it is one of the gold
    names, `|`-separated), a `rationale` (right when at least half the marks fall in a gold
    box; no mark is wrong), a `label` (exact). Rows without a gold label are not parts.
    """
    if "gold_label" not in frame.columns:
        frame = frame.assign(gold_label="")
    mask = _gold_mask(frame)
    g = frame[mask]
    out = pd.DataFrame({"worker": g["worker"].to_numpy(), "kind": _kinds(g).to_numpy(),
                        "task": g["task"].to_numpy(),
                        "item": g["item"].astype(str).to_numpy() if "item" in g.columns else "label",
                        "label": g["label"].astype(str).to_numpy(), "gold_label": g["gold_label"].astype(str).to_numpy()})
    group = _item_groups(g).to_numpy()
    correct = (out["label"] == out["gold_label"]).to_numpy(float)
    likert = np.isin(group, _LIKERT_ITEMS)
    if likert.any():
        a = pd.to_numeric(out["label"][likert], errors="coerce").to_numpy(float)
        b = pd.to_numeric(out["gold_label"][likert], errors="coerce").to_numpy(float)
        correct[likert] = (np.abs(a - b) <= 1).astype(float)
    names = group == "name"
    if names.any():
        correct[names] = [float(lab in gold.split("|")) for lab, gold in
                          zip(out["label"][names], out["gold_label"][names])]
    marks = group == "rationale"
    if marks.any():
        pts = g["points"].to_numpy()[marks] if "points" in g.columns else [""] * int(marks.sum())
        bxs = g["boxes"].to_numpy()[marks] if "boxes" in g.columns else [""] * int(marks.sum())
        correct[marks] = [_score_rationale(p, b, gold) for p, b, gold in
                          zip(pts, bxs, out["gold_label"][marks])]
    out["correct"] = correct
    return out


def _consensus_rows(sub: pd.DataFrame, max_labels: int) -> pd.DataFrame:
    """The rows of one task kind the consensus model uses: nominal items with few labels, one
    unit per (task, item)."""
    group = _item_groups(sub)
    keep = ~group.isin(_NOT_CONSENSUS_ITEMS).to_numpy()
    rows = sub[keep]
    if rows.empty or rows["label"].nunique() > max_labels:
        return rows.iloc[:0]
    unit = rows["task"].astype(str)
    if "item" in rows.columns:
        unit = unit + "\x1f" + rows["item"].astype(str)
    return pd.DataFrame({"task": unit.to_numpy(), "worker": rows["worker"].to_numpy(),
                         "label": rows["label"].astype(str).to_numpy(),
                         "gold": np.where(_gold_mask(rows), rows.get("gold_label", pd.Series("", index=rows.index))
                                          .fillna("").astype(str), "")})


def _leave_one_out(ds: DawidSkene, rows: pd.DataFrame, gold: pd.Series):
    """Per answer: the probability that it is right under the consensus of the *other* workers
    (leave one out; gold units use the gold label), and the answer's label code.

    Returns (hit `[n]`, worker codes `[n]`, label codes `[n]`)."""
    tasks, workers, labels = ds.probas_.index, ds.skills_.index, ds.probas_.columns
    t = tasks.get_indexer(rows["task"])
    w = workers.get_indexer(rows["worker"])
    l = labels.get_indexer(rows["label"])
    K = len(labels)
    log_e = np.log(np.maximum(ds.confusions_, 1e-300))
    ll = np.tile(np.log(ds.priors_.to_numpy()), (len(tasks), 1))
    np.add.at(ll, t, log_e[w, l])
    loo = ll[t] - log_e[w, l]
    q = np.exp(loo - loo.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    g = labels.get_indexer(gold.reindex(tasks).fillna("").to_numpy())[t]
    known = g >= 0
    q[known] = np.eye(K)[g[known]]
    return q[np.arange(len(t)), l], w, l


def crowd_prior(loglik: np.ndarray, *, pseudo_workers: float = 2.0, n_iter: int = 500,
                tol: float = 1e-10) -> np.ndarray:
    """The crowd's own distribution of a worker parameter on a grid (empirical Bayes, the
    Kiefer-Wolfowitz NPMLE fitted by EM), smoothed by `pseudo_workers` spread evenly over the
    grid so that a handful of workers cannot make it spiky.

    Args:
        loglik: `[W, G]` log-likelihood of each worker's data at each grid value.
    Returns:
        `[G]` prior weights (sum 1).
    """
    W, G = loglik.shape
    lik = np.exp(loglik - loglik.max(1, keepdims=True))
    weights = np.full(G, 1.0 / G)
    for _ in range(n_iter):
        post = lik * weights
        post /= post.sum(1, keepdims=True)
        new = (post.sum(0) + pseudo_workers / G) / (W + pseudo_workers)
        if np.abs(new - weights).max() < tol:
            weights = new
            break
        weights = new
    return weights


def _grid_posterior(loglik: np.ndarray, prior: np.ndarray) -> np.ndarray:
    post = np.exp(loglik - loglik.max(1, keepdims=True)) * prior
    return post / post.sum(1, keepdims=True)


def _grid_summary(post: np.ndarray, grid: np.ndarray, threshold: float, tail: float):
    """Posterior mean, equal-tailed interval and P(value < threshold) per row of `post`."""
    cdf = np.cumsum(post, axis=1)
    low = grid[np.minimum((cdf < tail).sum(1), len(grid) - 1)]
    high = grid[np.minimum((cdf < 1 - tail).sum(1), len(grid) - 1)]
    return post @ grid, low, high, post[:, grid < threshold].sum(1)


def _binomial_loglik(hits: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """`[W, G]` log-likelihood of (soft) `hits` of `n` at success probabilities `p` (`[G]` or `[W, G]`)."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return hits[:, None] * np.log(p) + (n - hits)[:, None] * np.log1p(-p)


def _threshold_for(value, kind: str, default: float) -> float:
    if isinstance(value, dict):
        return float(value.get(kind, default))
    return float(value)


_ACC_GRID = (np.arange(200) + 0.5) / 200          # gold accuracy
_KAPPA_GRID = np.linspace(-1.0, 1.0, 401)          # kappa against the consensus


def worker_quality(frame: pd.DataFrame, *, gold_threshold: float | dict = 0.6, kappa_threshold: float | dict = 0.35,
                   confidence: float = 0.95, min_gold: int = 5, min_answers: int = 10,
                   prior: str | tuple[float, float] = "crowd", fast_ratio: float = 0.2,
                   max_labels: int = 10, dropna: bool = False, duplicates: str = "error") -> pd.DataFrame:
    """One row per (worker, task kind) with the gold posterior, the consensus kappa posterior,
    speed, and whether/why the worker is flagged (see the module docstring).

    Args:
        frame: judgment frame (`task, worker, label` [+ `kind, item, is_gold, gold_label,
            duration_s, points, boxes`]); `model:<name>` workers are left out.
        gold_threshold: accuracy on gold parts below which a worker is not acceptable (a float,
            or {kind: float} with 0.6 for kinds not named).
        kappa_threshold: kappa against the consensus below which the answers are taken to
            ignore the item (float or {kind: float}, 0.35 for kinds not named).
        confidence: posterior probability a flag needs (0.95).
        min_gold / min_answers: fewest gold parts / consensus answers a test needs.
        prior: "crowd" (default): the prior of each worker's accuracy and kappa is the crowd's
            own distribution in that kind (`crowd_prior`), so a few answers from a worker are
            read against what workers here are like; or `(a, b)`: a fixed Beta(a, b) prior on
            accuracy and a flat one on kappa ((1, 1): uniform).
        fast_ratio: flag for review below this share of the crowd's median seconds per task.
        max_labels: kinds whose nominal items have more distinct labels get no consensus test.
        dropna, duplicates: the validation step (`analysis.validation.prepare_judgments`).

    Returns:
        DataFrame with `QUALITY_COLUMNS`; intervals are equal-tailed at `confidence`;
        `kappa` is the posterior mean.
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if not (prior == "crowd" or (isinstance(prior, tuple) and len(prior) == 2 and min(prior) > 0)):
        raise ValueError(f"prior must be 'crowd' or a Beta (a, b) with a, b > 0, got {prior!r}")
    frame = humans_only(prepare_judgments(frame, dropna=dropna, duplicates=duplicates))
    tail = (1 - confidence) / 2
    kinds = _kinds(frame)
    parts = gold_parts(frame)
    tables, pooled = [], []
    for kind in sorted(kinds.unique()):
        sub = frame[(kinds == kind).to_numpy()]
        workers = pd.Index(sorted(sub["worker"].astype(str).unique()), name="worker")
        t = pd.DataFrame(index=workers)
        t["kind"] = kind
        t["n_tasks"] = sub.groupby("worker")["task"].nunique().reindex(workers).fillna(0).astype(int)
        t["n_answers"] = sub.groupby("worker").size().reindex(workers).fillna(0).astype(int)
        # gold: binomial over parts, prior = the crowd's gold accuracies (or a fixed Beta)
        gp = parts[parts["kind"] == kind]
        _gold_columns(t, gp, _threshold_for(gold_threshold, kind, 0.6), prior, tail, min_gold, confidence)
        # consensus: leave-one-out Dawid-Skene, posterior of kappa on a grid
        kthr = _threshold_for(kappa_threshold, kind, 0.35)
        t["kappa_threshold"] = kthr
        for col in ("consensus_n", "kappa", "kappa_low", "kappa_high", "p_kappa_below", "ds_skill"):
            t[col] = np.nan
        rows = _consensus_rows(sub, max_labels)
        note = ""
        if len(rows) and rows["label"].nunique() >= 2:
            gold = rows[rows["gold"] != ""].groupby("task")["gold"].first()
            gold = gold[gold.isin(set(rows["label"]))]
            # "can't tell" stays a label here: a worker who always abstains must show up as one
            # who does not agree with the others, not vanish from the model
            ds = DawidSkene(alpha=0.01, abstain=()).fit(rows[["task", "worker", "label"]], true_labels=gold)
            hit, w, l = _leave_one_out(ds, rows, gold)
            cw = ds.skills_.index
            K = len(ds.priors_)
            hits = np.bincount(w, weights=hit, minlength=len(cw))
            n_w = np.bincount(w, minlength=len(cw)).astype(float)
            answers = np.bincount(w * K + l, minlength=len(cw) * K).reshape(len(cw), K).astype(float)
            # chance: the accuracy of answering with the worker's own label frequencies (shrunk
            # by Jeffreys' 1/2 per label) whatever the item
            freq = (answers + 0.5) / (answers + 0.5).sum(1, keepdims=True)
            chance = freq @ ds.priors_.to_numpy()
            acc = chance[:, None] + _KAPPA_GRID[None, :] * (1 - chance[:, None])
            ll = _binomial_loglik(hits, n_w, acc)
            _kappa_columns(t, cw, ll, n_w, prior, kthr, tail)
            t.loc[cw, "ds_skill"] = ds.skills_.to_numpy()
            pooled.append((pd.DataFrame(ll, index=cw), pd.Series(n_w, index=cw)))
        elif len(rows):
            note = "consensus test skipped: every answer has the same label"
        t["flag_consensus"] = (t["consensus_n"].fillna(0).to_numpy() >= min_answers) & \
                              (t["p_kappa_below"].fillna(0).to_numpy() >= confidence)
        # speed: median seconds per task against the crowd's
        t["median_duration_s"] = np.nan
        t["speed_ratio"] = np.nan
        if "duration_s" in sub.columns:
            per_task = sub.drop_duplicates(["worker", "task"])
            med = pd.to_numeric(per_task["duration_s"], errors="coerce").groupby(per_task["worker"]).median()
            med = med.reindex(workers)
            crowd_med = float(np.nanmedian(med.to_numpy(float))) if med.notna().any() else np.nan
            t["median_duration_s"] = med.to_numpy(float)
            t["speed_ratio"] = med.to_numpy(float) / crowd_med if crowd_med and crowd_med > 0 else np.nan
        t["flag_fast"] = t["speed_ratio"].fillna(np.inf).to_numpy() < fast_ratio
        t["flagged"] = t["flag_gold"] | t["flag_consensus"] | t["flag_fast"]
        t["action"] = np.where(t["flag_gold"] | t["flag_consensus"], "reject",
                               np.where(t["flag_fast"], "review", "approve"))
        t["reasons"] = [_reasons(r, confidence, min_gold, min_answers, fast_ratio, note)
                        for r in t.itertuples()]
        tables.append(t.reset_index())
    if not tables:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    if len(tables) > 1:
        tables.append(_all_kinds(frame, parts, pooled, gold_threshold, kappa_threshold, prior, tail, min_gold,
                                 min_answers, confidence, fast_ratio))
    out = pd.concat(tables, ignore_index=True)
    return out[QUALITY_COLUMNS]


def _gold_columns(t, gp, thr, prior, tail, min_gold, confidence):
    workers = t.index
    n = gp.groupby("worker").size().reindex(workers).fillna(0).to_numpy(float)
    k = gp.groupby("worker")["correct"].sum().reindex(workers).fillna(0).to_numpy(float)
    t["gold_n"], t["gold_correct"] = n.astype(int), k
    with np.errstate(invalid="ignore", divide="ignore"):
        t["gold_accuracy"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    for col in ("gold_low", "gold_high", "p_gold_below"):
        t[col] = np.nan
    t["gold_threshold"] = thr
    has = n > 0
    if has.any():
        if prior == "crowd":
            ll = _binomial_loglik(k[has], n[has], _ACC_GRID)
            _, lo, hi, below = _grid_summary(_grid_posterior(ll, crowd_prior(ll)), _ACC_GRID, thr, tail)
        else:
            a, b = prior[0] + k[has], prior[1] + n[has] - k[has]
            lo, hi, below = stats.beta.ppf(tail, a, b), stats.beta.ppf(1 - tail, a, b), stats.beta.cdf(thr, a, b)
        t.loc[has, "gold_low"], t.loc[has, "gold_high"], t.loc[has, "p_gold_below"] = lo, hi, below
    t["flag_gold"] = (n >= min_gold) & (t["p_gold_below"].fillna(0).to_numpy() >= confidence)


def _kappa_columns(t, workers, ll, n, prior, kthr, tail):
    weights = crowd_prior(ll) if prior == "crowd" else np.full(ll.shape[1], 1 / ll.shape[1])
    mean, lo, hi, below = _grid_summary(_grid_posterior(ll, weights), _KAPPA_GRID, kthr, tail)
    t.loc[workers, "consensus_n"] = n
    t.loc[workers, "kappa"], t.loc[workers, "kappa_low"], t.loc[workers, "kappa_high"] = mean, lo, hi
    t.loc[workers, "p_kappa_below"] = below


def _all_kinds(frame, parts, pooled, gold_threshold, kappa_threshold, prior, tail, min_gold, min_answers,
               confidence, fast_ratio) -> pd.DataFrame:
    """The row `kind = "all kinds"` per worker: gold parts and consensus answers of every kind
    pooled under one accuracy / one kappa per worker. A spammer who ignores every kind shows it
    sooner here than in any one kind."""
    workers = pd.Index(sorted(frame["worker"].astype(str).unique()), name="worker")
    t = pd.DataFrame(index=workers)
    t["kind"] = ALL_KINDS
    t["n_tasks"] = frame.groupby("worker")["task"].nunique().reindex(workers).fillna(0).astype(int)
    t["n_answers"] = frame.groupby("worker").size().reindex(workers).fillna(0).astype(int)
    scalar = lambda v, d: d if isinstance(v, dict) else float(v)  # noqa: E731
    _gold_columns(t, parts, scalar(gold_threshold, 0.6), prior, tail, min_gold, confidence)
    kthr = scalar(kappa_threshold, 0.35)
    t["kappa_threshold"] = kthr
    for col in ("consensus_n", "kappa", "kappa_low", "kappa_high", "p_kappa_below", "ds_skill"):
        t[col] = np.nan
    if pooled:
        ll = pd.concat([p[0] for p in pooled]).groupby(level=0).sum()
        n = pd.concat([p[1] for p in pooled]).groupby(level=0).sum()
        _kappa_columns(t, ll.index, ll.to_numpy(), n.reindex(ll.index).to_numpy(), prior, kthr, tail)
    t["flag_consensus"] = (t["consensus_n"].fillna(0).to_numpy() >= min_answers) & \
                          (t["p_kappa_below"].fillna(0).to_numpy() >= confidence)
    t["median_duration_s"] = np.nan
    t["speed_ratio"] = np.nan
    t["flag_fast"] = False
    t["flagged"] = t["flag_gold"] | t["flag_consensus"]
    t["action"] = np.where(t["flagged"], "reject", "approve")
    t["reasons"] = [_reasons(r, confidence, min_gold, min_answers, fast_ratio, "") for r in t.itertuples()]
    return t.reset_index()


def _reasons(r, confidence, min_gold, min_answers, fast_ratio, note) -> str:
    why = []
    if r.flag_gold:
        why.append(f"gold accuracy {r.gold_accuracy:.2f} ({int(r.gold_correct)} of {r.gold_n} parts); "
                   f"P(accuracy < {r.gold_threshold:.2f}) = {r.p_gold_below:.3f}")
    if r.flag_consensus:
        what = "answers against the consensus" if r.kappa_high < 0 else "answers barely depend on the item"
        why.append(f"{what}: kappa {r.kappa:.2f} [{r.kappa_low:.2f}, {r.kappa_high:.2f}] over "
                   f"{int(r.consensus_n)} answers; P(kappa < {r.kappa_threshold:.2f}) = {r.p_kappa_below:.3f}")
    if r.flag_fast:
        why.append(f"fast: median {r.median_duration_s:.1f} s per task, {r.speed_ratio:.2f}x the crowd's median "
                   f"(< {fast_ratio:.2f}x)")
    if why:
        return "; ".join(why)
    if r.gold_n < min_gold and (np.isnan(r.consensus_n) or r.consensus_n < min_answers):
        return f"not enough answers to judge ({r.gold_n} gold parts < {min_gold}, " \
               f"{0 if np.isnan(r.consensus_n) else int(r.consensus_n)} consensus answers < {min_answers})"
    return note


def worker_flags(quality: pd.DataFrame) -> pd.DataFrame:
    """One row per worker from `worker_quality`: flagged in any kind, the strictest action
    (reject > review > approve), the kinds flagged and their reasons (`kind: reason | ...`)."""
    rank = {"approve": 0, "review": 1, "reject": 2}
    rows = []
    for worker, g in quality.groupby("worker", sort=True):
        flagged = g[g["flagged"]]
        action = max(g["action"], key=rank.__getitem__)
        gold_n = int(g["gold_n"].sum())
        rows.append({"worker": worker, "flagged": bool(len(flagged)), "action": action,
                     "kinds_flagged": ",".join(flagged["kind"]),
                     "reasons": " | ".join(f"{k}: {r}" for k, r in zip(flagged["kind"], flagged["reasons"])),
                     "n_answers": int(g["n_answers"].sum()), "gold_n": gold_n,
                     "gold_accuracy": float(g["gold_correct"].sum() / gold_n) if gold_n else np.nan,
                     "min_kappa": float(g["kappa"].min()) if g["kappa"].notna().any() else np.nan})
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)

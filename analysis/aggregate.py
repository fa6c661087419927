"""Label aggregation: crowd-kit-style estimators over a judgment frame (`task, worker, label`).

"Can't tell" (`crowd.judgments.ABSTAIN`) is an abstention, not a label: every aggregator drops
those answers before fitting (`abstain=()` counts them as a label), so a task everyone abstained
on gets no aggregated label and an abstaining worker is neither right nor wrong.

Conventions (as crowd-kit, carried by the base class `Aggregator`): hyperparameters in the
constructor, `fit(data)` returns self, fitted state ends in `_` (`labels_`, `probas_`, `skills_`,
`errors_`, ...), plus `fit_predict` and `fit_predict_proba`. `labels_` is a Series indexed by
task; `probas_` a DataFrame indexed by task with one column per label (labels sorted). Every
aggregator is registered by name in `AGGREGATORS` (`AGGREGATORS.build("ds", n_iter=50)`).

The EM estimators follow crowd-kit 1.4's algorithms step for step (initialisation by majority
vote, epsilon clipping, ELBO-based stopping rule) so their outputs match crowd-kit's, but every
step is a sparse matrix product over integer codes instead of pandas joins and groupbys: on
1,000,000 judgments Dawid-Skene runs an EM iteration in tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize
from scipy.special import expit, logsumexp

from crowd.judgments import ABSTAIN, JudgmentFrameError
from training.registry import Registry

from .validation import prepare_judgments

_EPS = 1e-10  # crowd-kit's clipping constant


@dataclass
class _Codes:
    """Integer codes of a judgment frame. `tasks`/`workers` in order of first appearance,
    `labels` sorted (the column order of every `probas_`)."""

    t: np.ndarray
    w: np.ndarray
    l: np.ndarray
    tasks: pd.Index
    workers: pd.Index
    labels: pd.Index

    @property
    def T(self):
        return len(self.tasks)

    @property
    def W(self):
        return len(self.workers)

    @property
    def K(self):
        return len(self.labels)


def _without_abstentions(data: pd.DataFrame, abstain) -> pd.DataFrame:
    """The frame without "can't tell" answers: an abstention is no vote for any label (a task
    only abstained on gets no aggregated label). A frame of abstentions only is an error."""
    abstain = tuple(abstain or ())
    if not abstain or not isinstance(data, pd.DataFrame) or "label" not in data.columns:
        return data
    keep = ~data["label"].isin(abstain).to_numpy()
    if keep.all():
        return data
    if not keep.any():
        raise JudgmentFrameError(f"judgment frame: every answer is an abstention ({', '.join(abstain)}); "
                                 "nothing to aggregate")
    return data[keep]


def _codes(data: pd.DataFrame, dropna: bool = False, duplicates: str = "error", abstain=ABSTAIN) -> _Codes:
    data = prepare_judgments(_without_abstentions(data, abstain), dropna=dropna, duplicates=duplicates)
    t, tasks = pd.factorize(data["task"], sort=False)
    w, workers = pd.factorize(data["worker"], sort=False)
    l, labels = pd.factorize(data["label"], sort=True)
    return _Codes(t.astype(np.int64), w.astype(np.int64), l.astype(np.int64),
                  pd.Index(tasks, name="task"), pd.Index(workers, name="worker"),
                  pd.Index(labels, name="label"))


def _unanimous(c: _Codes) -> str:
    return f"every answer is {c.labels[0]!r}: the label is unanimous, no model was fitted"


def _vote_matrix(c: _Codes, weights: np.ndarray | None = None) -> np.ndarray:
    """`[T, K]` sum of (weighted) votes per task and label."""
    wts = np.ones(len(c.t)) if weights is None else weights
    return np.bincount(c.t * c.K + c.l, weights=wts, minlength=c.T * c.K).reshape(c.T, c.K)


def _tied(scores: np.ndarray) -> np.ndarray:
    """`[T, K]` True where a label's score ties the best (equal up to rounding: 0.1 + 0.2 ties 0.3)."""
    return np.isclose(scores, scores.max(axis=1, keepdims=True), rtol=1e-12, atol=0)


def _pick(scores: np.ndarray, c: _Codes, ties: str, seed) -> pd.Series:
    """Label of the highest score per task with the tie policy."""
    tied = _tied(scores)
    idx = tied.argmax(axis=1)  # the first label among those tied with the best (isclose)
    if ties == "random":
        rng = np.random.default_rng(seed)
        noise = rng.random(scores.shape) * tied
        idx = noise.argmax(axis=1)
        labels = c.labels.to_numpy(dtype=object)[idx]
    elif ties == "none":
        labels = c.labels.to_numpy(dtype=object)[idx]
        labels[tied.sum(1) > 1] = None
    elif ties == "first":
        labels = c.labels.to_numpy()[idx]
    else:
        raise ValueError(f"ties must be 'first', 'random' or 'none', got {ties!r}")
    return pd.Series(labels, index=c.tasks, name="agg_label")


def _proba_frame(p: np.ndarray, c: _Codes) -> pd.DataFrame:
    return pd.DataFrame(p, index=c.tasks, columns=c.labels)


def _accuracy(c: _Codes, labels_idx: np.ndarray) -> pd.Series:
    """Per-worker share of judgments equal to `labels_idx[task]` (a `[T]` code array; -1 = no
    label); duplicate (task, worker, label) rows count once, as in crowd-kit."""
    key = pd.DataFrame({"t": c.t, "w": c.w, "l": c.l}).drop_duplicates()
    ref = labels_idx[key["t"].to_numpy()]
    ok = ref >= 0
    hits = np.bincount(key["w"].to_numpy()[ok], weights=(key["l"].to_numpy()[ok] == ref[ok]).astype(float),
                       minlength=c.W)
    n = np.bincount(key["w"].to_numpy()[ok], minlength=c.W)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(hits / n, index=c.workers, name="skill")


class Aggregator:
    """Base of the label aggregators. A subclass takes its hyperparameters in `__init__`
    (stored under their own names, nothing fitted there) and implements `fit(data, ...)`, which
    sets at least `labels_` (Series by task) and `probas_` (DataFrame task x label) and returns
    self; fitted attributes end in `_`."""

    def fit(self, data: pd.DataFrame, *args, **kwargs) -> "Aggregator":
        raise NotImplementedError

    def fit_predict(self, data: pd.DataFrame, *args, **kwargs) -> pd.Series:
        """`fit(data, ...)`, then the aggregated label of each task (Series by task)."""
        return self.fit(data, *args, **kwargs).labels_

    def fit_predict_proba(self, data: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
        """`fit(data, ...)`, then each task's label probabilities (DataFrame task x label)."""
        return self.fit(data, *args, **kwargs).probas_


AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", base=Aggregator)


@AGGREGATORS.register("mv")
class MajorityVote(Aggregator):
    """Majority vote (optionally weighted by worker skills).

    Tie policy (`ties`): `"first"` (default) picks the tied label that sorts first, exactly as
    crowd-kit does, so results are reproducible; `"random"` picks one of the tied labels with a
    seeded generator; `"none"` leaves the task unlabelled (None) so ties can be sent out again.

    Fitted: `labels_` (Series by task), `probas_` (vote shares, DataFrame task x label),
    `skills_` (each worker's agreement with the majority), `ties_` (bool Series: was it a tie).
    """

    def __init__(self, ties: str = "first", seed=0, default_skill: float | None = None, dropna: bool = False,
                 duplicates: str = "error", abstain=ABSTAIN):
        self.abstain = abstain
        self.ties = ties
        self.seed = seed
        self.default_skill = default_skill
        self.dropna = dropna
        self.duplicates = duplicates

    def fit(self, data: pd.DataFrame, skills: pd.Series | None = None) -> "MajorityVote":
        c = _codes(data, self.dropna, self.duplicates, self.abstain)
        self.degenerate_ = _unanimous(c) if c.K == 1 else ""
        weights = None
        if skills is not None:
            sk = skills.reindex(c.workers)
            if sk.isna().any():
                if self.default_skill is None:
                    raise ValueError(f"no skill for worker(s) {list(c.workers[sk.isna().to_numpy()][:5])}; "
                                     "pass default_skill=")
                sk = sk.fillna(self.default_skill)
            weights = sk.to_numpy(dtype=float)[c.w]
        scores = _vote_matrix(c, weights)
        self.probas_ = _proba_frame(scores / scores.sum(1, keepdims=True), c)
        self.labels_ = _pick(scores, c, self.ties, self.seed)
        tied = _tied(scores).sum(1) > 1
        self.ties_ = pd.Series(tied, index=c.tasks, name="tie")
        lab_idx = c.labels.get_indexer(self.labels_.to_numpy())
        self.skills_ = _accuracy(c, lab_idx)
        return self


@AGGREGATORS.register("wawa")
class Wawa(Aggregator):
    """Worker Agreement With Aggregate: skills = each worker's agreement with the majority vote,
    then a majority vote weighted by those skills. Fitted: `skills_`, `labels_`, `probas_`."""

    def __init__(self, ties: str = "first", seed=0, dropna: bool = False, duplicates: str = "error",
                 abstain=ABSTAIN):
        self.abstain = abstain
        self.ties = ties
        self.seed = seed
        self.dropna = dropna
        self.duplicates = duplicates

    def fit(self, data: pd.DataFrame) -> "Wawa":
        data = prepare_judgments(_without_abstentions(data, self.abstain), dropna=self.dropna,
                                 duplicates=self.duplicates)
        mv = MajorityVote(ties="first", abstain=()).fit(data)
        self.skills_ = mv.skills_
        weighted = MajorityVote(ties=self.ties, seed=self.seed, abstain=()).fit(data, skills=self.skills_)
        self.labels_, self.probas_ = weighted.labels_, weighted.probas_
        self.degenerate_ = mv.degenerate_
        return self


@AGGREGATORS.register("ds")
class DawidSkene(Aggregator):
    """Dawid & Skene (1979) EM with a full confusion matrix per worker.

    Same algorithm as crowd-kit's `DawidSkene`: initial posteriors from the majority-vote
    shares, M-step `errors[w, observed, true] = sum of posteriors` (clipped at 1e-10 for labels
    the worker used, normalised over observed labels), E-step in log space, priors = mean
    posterior, stop when the per-judgment ELBO gains less than `tol`. Gold labels (optional)
    clamp the posteriors of their tasks at every step.

    Args:
        n_iter: maximum number of EM iterations.
        tol: stopping tolerance on the ELBO per judgment.
        alpha: Dirichlet smoothing: pseudo-counts added to every cell of each worker's
            confusion counts in the M-step (a MAP estimate under a symmetric Dirichlet(1 + alpha)
            prior), so a worker with few judgments gets a confusion matrix pulled towards uniform
            instead of zeros and ones. 0 (default) is crowd-kit's estimator exactly.

    Fitted: `labels_`, `probas_` (task x label), `priors_` (label), `errors_` (DataFrame
    indexed by (worker, observed label), columns = true label), `confusions_` (`[W, K, K]`
    array P(observed | true)), `skills_` (expected accuracy sum_c prior_c P(c | c)),
    `loss_history_`, `n_iter_`.
    """

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, alpha: float = 0.0, dropna: bool = False,
                 duplicates: str = "error", abstain=ABSTAIN):
        if alpha < 0:
            raise ValueError(f"alpha (Dirichlet pseudo-counts) must be >= 0, got {alpha}")
        self.n_iter = n_iter
        self.tol = tol
        self.alpha = alpha
        self.abstain = abstain
        self.dropna = dropna
        self.duplicates = duplicates

    # -- building blocks shared with OneCoinDawidSkene
    def _prepare(self, data):
        c = _codes(data, self.dropna, self.duplicates, self.abstain)
        if c.K < 2:
            return c, None, None, None
        wl = c.w * c.K + c.l
        # St[t, (w, l)] = number of times worker w gave label l on task t. The E-step is St @ log E
        # (CSR, rows = tasks); the M-step is St.T @ p, a CSC product that walks tasks in order and
        # scatters into the small [W*K, K] result, so both stay cache-friendly.
        St = sparse.csr_matrix((np.ones(len(c.t)), (c.t, wl)), shape=(c.T, c.W * c.K))
        present = (np.bincount(wl, minlength=c.W * c.K) > 0).reshape(c.W, c.K)
        return c, St.T, St, present

    @staticmethod
    def _gold(c: _Codes, true_labels):
        if true_labels is None:
            return None
        gold = pd.Series(true_labels)
        gold = gold[gold.index.isin(c.tasks)]
        codes = c.labels.get_indexer(gold.to_numpy())
        if (codes < 0).any():
            bad = gold.to_numpy()[codes < 0][0]
            raise ValueError(f"gold label {bad!r} is not among the judged labels {list(c.labels)}")
        return c.tasks.get_indexer(gold.index), codes

    @staticmethod
    def _clamp(p, gold):
        if gold is not None:
            rows, codes = gold
            p[rows] = 0.0
            p[rows, codes] = 1.0
        return p

    def _errors(self, C_raw, present, c):
        """Full confusion M-step: `[W, K_obs, K_true]`."""
        if self.alpha > 0:  # smoothed: every observed label keeps some mass for every true label
            E = C_raw + self.alpha
        else:
            E = np.where(present[:, :, None], np.maximum(C_raw, _EPS), 0.0)
        return E / E.sum(axis=1, keepdims=True)

    def fit(self, data: pd.DataFrame, true_labels: pd.Series | None = None) -> "DawidSkene":
        """Fit by EM. `true_labels`: optional gold Series indexed by task."""
        c, S, St, present = self._prepare(data)
        gold = self._gold(c, true_labels)
        if S is None:  # one label in all: crowd-kit returns it; so do we, with the reason
            ones = np.ones((c.W, 1, 1))
            self._store(c, np.ones((c.T, 1)), np.ones(1), ones, np.ones((c.W, 1), bool), [])
            self.degenerate_ = _unanimous(c)
            return self
        self.degenerate_ = ""
        votes = _vote_matrix(c)
        p = self._clamp(votes / votes.sum(1, keepdims=True), gold)
        priors = p.mean(0)
        C_raw = (S @ p).reshape(c.W, c.K, c.K)
        errors = self._m_step(C_raw, present, c, p, S)
        n = len(c.t)
        loss, history = -np.inf, []
        task_n = np.bincount(c.t, minlength=c.T).astype(float)
        for _ in range(self.n_iter):
            priors = np.maximum(priors, _EPS)
            with np.errstate(divide="ignore"):
                log_e = np.where(present[:, :, None], np.log2(errors), 0.0).reshape(c.W * c.K, c.K)
            ll = np.log2(priors) + St @ log_e
            p = np.exp2(ll - ll.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p = self._clamp(p, gold)
            priors = p.mean(0)
            C_raw = (S @ p).reshape(c.W, c.K, c.K)
            errors = self._m_step(C_raw, present, c, p, S)
            new_loss = self._elbo(C_raw, errors, present, p, priors, task_n) / n
            history.append(new_loss)
            if new_loss - loss < self.tol:
                break
            loss = new_loss
        p = np.maximum(p, _EPS)  # crowd-kit clips the stored posteriors in its ELBO
        priors = np.maximum(priors, _EPS)
        self._store(c, p, priors, errors, present, history)
        return self

    def _m_step(self, C_raw, present, c, p, S):
        return self._errors(C_raw, present, c)

    @staticmethod
    def _elbo(C_raw, errors, present, p, priors, task_n):
        with np.errstate(divide="ignore", invalid="ignore"):
            joint = np.where(present[:, :, None], C_raw * np.log(np.where(present[:, :, None], errors, 1.0)), 0.0).sum()
        joint += (task_n @ p) @ np.log(np.maximum(priors, _EPS))
        pc = np.maximum(p, _EPS)
        return float(joint - (pc * np.log(pc)).sum())

    def _store(self, c, p, priors, errors, present, history):
        self.probas_ = _proba_frame(p, c)
        self.labels_ = pd.Series(c.labels.to_numpy()[p.argmax(1)], index=c.tasks, name="agg_label")
        self.priors_ = pd.Series(priors, index=c.labels, name="prior")
        self.confusions_ = errors
        idx = pd.MultiIndex.from_product([c.workers, c.labels], names=["worker", "label"])
        self.errors_ = pd.DataFrame(errors.reshape(c.W * c.K, c.K), index=idx, columns=c.labels)
        diag = np.einsum("wkk->wk", errors)
        self.skills_ = pd.Series(diag @ priors, index=c.workers, name="skill")
        self.loss_history_ = history
        self.n_iter_ = len(history)

    def predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        """Posteriors of (new) tasks from the fitted confusions and priors, without refitting.

        Judgments by workers the model has not seen carry no fitted skill and are ignored; a
        task answered only by such workers gets the priors. A label the model never saw raises.

        Returns:
            DataFrame task x label (the fitted label order).
        """
        if not hasattr(self, "confusions_"):
            raise ValueError("fit the model before predict_proba")
        c = _codes(data, self.dropna, self.duplicates, self.abstain)
        labels = self.priors_.index
        l = labels.get_indexer(c.labels)[c.l]
        if (l < 0).any():
            bad = c.labels[c.l[np.flatnonzero(l < 0)[0]]]
            raise ValueError(f"label {bad!r} was not seen when the model was fitted (labels {list(labels)})")
        w = self.skills_.index.get_indexer(c.workers)[c.w]
        known = w >= 0
        K = len(labels)
        with np.errstate(divide="ignore"):
            log_e = np.log(np.maximum(self.confusions_, 1e-300))
        ll = np.tile(np.log(self.priors_.to_numpy()), (c.T, 1))
        np.add.at(ll, c.t[known], log_e[w[known], l[known]])
        p = np.exp(ll - ll.max(1, keepdims=True))
        return pd.DataFrame(p / p.sum(1, keepdims=True), index=c.tasks, columns=labels[:K])

    def predict(self, data: pd.DataFrame) -> pd.Series:
        """Most probable label of each (new) task under the fitted model (see `predict_proba`)."""
        p = self.predict_proba(data)
        return pd.Series(p.columns.to_numpy()[p.to_numpy().argmax(1)], index=p.index, name="agg_label")


@AGGREGATORS.register("onecoin")
class OneCoinDawidSkene(DawidSkene):
    """Dawid-Skene with one accuracy per worker ("one coin"; Zhang et al. 2016): P(observed = c
    | true = c) = s_w, every wrong label (1 - s_w)/(K - 1). The M-step sets s_w to the mean
    posterior of the label the worker gave (as crowd-kit's `OneCoinDawidSkene`). Fitted as
    `DawidSkene`, `skills_` = s_w."""

    def _m_step(self, C_raw, present, c, p, S):
        n_w = np.bincount(c.w, minlength=c.W).astype(float)
        hit = np.einsum("wkk->w", C_raw)  # sum_j p[t_j, l_j] per worker
        s = hit / n_w
        self._skills = s
        E = np.empty((c.W, c.K, c.K))
        E[:] = ((1 - s) / (c.K - 1))[:, None, None]
        E[:, np.arange(c.K), np.arange(c.K)] = s[:, None]
        return np.clip(E, _EPS, 1 - _EPS)

    def fit(self, data: pd.DataFrame, true_labels: pd.Series | None = None) -> "OneCoinDawidSkene":
        super().fit(data, true_labels)
        if not self.degenerate_:
            self.skills_ = pd.Series(self._skills, index=self.skills_.index, name="skill")
        return self


@AGGREGATORS.register("glad")
class GLAD(Aggregator):
    """GLAD (Whitehill et al. 2009): worker ability alpha_w, task inverse difficulty exp(beta_t),
    P(correct) = sigmoid(alpha_w * exp(beta_t)), wrong labels share the rest uniformly.

    EM as crowd-kit's `GLAD`: uniform (or given) fixed label priors, alpha and beta start at 1
    with N(1, 1) priors, M-step by conjugate gradient (`m_step_max_iter`, `m_step_tol`), stop
    when the per-row expected log-likelihood gains less than `tol`. Vectorised over integer codes.

    Fitted: `labels_`, `probas_`, `alphas_` (worker), `betas_` (task), `skills_` (= alphas_),
    `loss_history_`.
    """

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, labels_priors: pd.Series | None = None,
                 alphas_priors_mean: pd.Series | None = None, betas_priors_mean: pd.Series | None = None,
                 m_step_max_iter: int = 25, m_step_tol: float = 1e-2, dropna: bool = False,
                 duplicates: str = "error", abstain=ABSTAIN):
        self.abstain = abstain
        self.dropna = dropna
        self.duplicates = duplicates
        self.n_iter = n_iter
        self.tol = tol
        self.labels_priors = labels_priors
        self.alphas_priors_mean = alphas_priors_mean
        self.betas_priors_mean = betas_priors_mean
        self.m_step_max_iter = m_step_max_iter
        self.m_step_tol = m_step_tol

    @staticmethod
    def _softplus(x, limit=30):
        mask = (x > limit) | (x < -limit)
        return np.log1p(np.exp(x * (1 - mask))) * (1 - mask) + x * (x > limit)

    def fit(self, data: pd.DataFrame) -> "GLAD":
        c = _codes(data, self.dropna, self.duplicates, self.abstain)
        self.degenerate_ = _unanimous(c) if c.K < 2 else ""
        if c.K < 2:  # one label in all: return it, as crowd-kit does
            self.probas_ = _proba_frame(np.ones((c.T, 1)), c)
            self.labels_ = pd.Series(c.labels.to_numpy()[np.zeros(c.T, int)], index=c.tasks, name="agg_label")
            self.alphas_ = pd.Series(np.ones(c.W), index=c.workers, name="alpha")
            self.betas_ = pd.Series(np.ones(c.T), index=c.tasks, name="beta")
            self.skills_ = self.alphas_.rename("skill")
            self.priors_ = pd.Series([1.0], index=c.labels, name="prior")
            self.loss_history_, self.n_iter_ = [], 0
            return self
        K, W, T = c.K, c.W, c.T
        log_k1 = np.log(K - 1)
        if self.labels_priors is None:
            log_prior = np.full(K, -np.log(K))
        else:
            log_prior = np.log(self.labels_priors.reindex(c.labels).to_numpy(dtype=float))
        mu_a = np.ones(W) if self.alphas_priors_mean is None else \
            self.alphas_priors_mean.reindex(c.workers).to_numpy(dtype=float)
        mu_b = np.ones(T) if self.betas_priors_mean is None else \
            self.betas_priors_mean.reindex(c.tasks).to_numpy(dtype=float)
        alpha, beta = np.ones(W), np.ones(T)
        t, w, lab = c.t, c.w, c.l
        n_rows = len(t) * K  # crowd-kit normalises Q by its melted (judgment x label) rows
        norm_const = -0.5 * np.log(2 * np.pi)

        def e_step(alpha, beta):
            x = alpha[w] * np.exp(beta[t])
            ls, l1s = -self._softplus(-x), -self._softplus(x) - log_k1
            base = np.bincount(t, weights=l1s, minlength=T)
            post = base[:, None] + np.bincount(t * K + lab, weights=ls - l1s, minlength=T * K).reshape(T, K)
            post = post + log_prior
            return np.exp(post - logsumexp(post, axis=1, keepdims=True))

        def q_value(alpha, beta, p):
            x = alpha[w] * np.exp(beta[t])
            ls, l1s = -self._softplus(-x), -self._softplus(x) - log_k1
            pl = p[t, lab]
            rows_sum = p[t].sum(1)
            q = (pl * ls + (rows_sum - pl) * l1s).sum()
            q += (norm_const - 0.5 * (alpha - mu_a) ** 2).sum() + (norm_const - 0.5 * (beta - mu_b) ** 2).sum()
            return -np.inf if np.isnan(q) else float(q)

        def neg_q_and_grad(p):
            # posteriors are fixed during the M-step: gather them once per step
            pl, rows_sum = p[t, lab], p[t].sum(1)

            def f(x):
                return -q_value(x[:W], x[W:], p)

            def g(x):
                a, b = x[:W], x[W:]
                eb = np.exp(b[t])
                r = pl - expit(a[w] * eb) * rows_sum  # sum_c p_c (delta_c - sigma)
                d_a = np.bincount(w, weights=r * eb, minlength=W) - (a - mu_a)
                d_b = np.bincount(t, weights=r * a[w] * eb, minlength=T) - (b - mu_b)
                return -np.concatenate([d_a, d_b])
            return f, g

        p = e_step(alpha, beta)
        q = q_value(alpha, beta, p)
        history = []
        for _ in range(self.n_iter):
            last_q = q
            p = e_step(alpha, beta)
            f, g = neg_q_and_grad(p)
            res = minimize(f, np.concatenate([alpha, beta]), method="CG", jac=g, tol=self.m_step_tol,
                           options={"disp": False, "maxiter": self.m_step_max_iter})
            alpha, beta = res.x[:W], res.x[W:]
            q = q_value(alpha, beta, p) / n_rows
            history.append(q)
            if q - last_q < self.tol:
                break
        self.probas_ = _proba_frame(p, c)
        self.labels_ = pd.Series(c.labels.to_numpy()[p.argmax(1)], index=c.tasks, name="agg_label")
        self.alphas_ = pd.Series(alpha, index=c.workers, name="alpha")
        self.betas_ = pd.Series(beta, index=c.tasks, name="beta")
        self.skills_ = self.alphas_.rename("skill")
        self.priors_ = pd.Series(np.exp(log_prior), index=c.labels, name="prior")
        self.loss_history_ = history
        self.n_iter_ = len(history)
        return self


# ----------------------------------------------------------------------------- diagnostics

def item_uncertainty(probas: pd.DataFrame) -> pd.DataFrame:
    """Per task: `entropy` (nats), `margin` (top-1 minus top-2 posterior), `max_proba`.

    Args:
        probas: `[T, K]` posteriors (an estimator's `probas_`).
    """
    p = probas.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    srt = np.sort(p, axis=1)
    margin = srt[:, -1] - (srt[:, -2] if p.shape[1] > 1 else 0.0)
    return pd.DataFrame({"entropy": ent, "margin": margin, "max_proba": srt[:, -1]}, index=probas.index)


def spammer_scores(confusions: np.ndarray) -> np.ndarray:
    """Spammer score per worker (after Raykar & Yu 2011) from confusion matrices
    `[W, K_obs, K_true]` holding P(observed | true).

    score_w = sum_{c != c'} ||e_w[:, c] - e_w[:, c']||^2 / (2 K (K - 1)), in [0, 1]: 0 when the
    answer distribution does not depend on the true label (a spammer, whatever labels it
    favours), 1 for a perfect worker (e_w = I).
    """
    E = np.asarray(confusions, dtype=float)
    K = E.shape[1]
    diff = E[:, :, :, None] - E[:, :, None, :]  # [W, obs, c, c']
    sq = (diff ** 2).sum(1)  # [W, c, c']
    return sq.sum((1, 2)) / (2 * K * (K - 1))


def worker_table(data: pd.DataFrame, model: DawidSkene | None = None, *, spammer_threshold: float = 0.1,
                 min_judgments: int = 5) -> pd.DataFrame:
    """One row per worker: `n_judgments`, `gold_n`, `gold_accuracy` (where the frame has
    `is_gold`/`gold_label`), `skill` (Dawid-Skene expected accuracy), `agreement_with_aggregate`,
    `spammer_score` and `is_spammer` (score below `spammer_threshold` with >= `min_judgments`).

    Args:
        data: judgment frame of one labelling question (task, worker, label[, is_gold, gold_label]).
        model: a fitted DawidSkene (fitted here when None).
    """
    if model is None:
        model = DawidSkene().fit(data)
    workers = model.skills_.index
    n = data.groupby("worker").size().reindex(workers).fillna(0).astype(int)
    agg = model.labels_.reindex(data["task"]).to_numpy()
    agree = pd.Series(data["label"].to_numpy() == agg, index=data.index).groupby(data["worker"]).mean()
    out = pd.DataFrame({"worker": workers, "n_judgments": n.to_numpy(),
                        "skill": model.skills_.to_numpy(),
                        "agreement_with_aggregate": agree.reindex(workers).to_numpy(),
                        "spammer_score": spammer_scores(model.confusions_)})
    if "gold_label" in data.columns:
        g = data[data["gold_label"].astype(str).str.len() > 0]
        if "is_gold" in g.columns:
            g = g[g["is_gold"].astype(bool)]
        if len(g):
            hit = (g["label"].astype(str) == g["gold_label"].astype(str)).groupby(g["worker"])
            out["gold_n"] = hit.size().reindex(workers).fillna(0).astype(int).to_numpy()
            out["gold_accuracy"] = hit.mean().reindex(workers).to_numpy()
    if "gold_accuracy" not in out.columns:
        out["gold_n"] = 0
        out["gold_accuracy"] = np.nan
    out["is_spammer"] = (out["spammer_score"] < spammer_threshold) & (out["n_judgments"] >= min_judgments)
    return out.sort_values("skill").reset_index(drop=True)


def confusion_table(model: DawidSkene) -> pd.DataFrame:
    """A fitted Dawid-Skene model's worker confusion matrices as a tidy table (one row per
    worker, true label and observed label), ready for CSV: `worker, true_label,
    observed_label, probability` = P(worker answers observed | truth is true)."""
    E = np.asarray(model.confusions_)
    W, K, _ = E.shape
    labels = model.priors_.index.to_numpy()
    w, obs, true = np.meshgrid(np.arange(W), np.arange(K), np.arange(K), indexing="ij")
    return pd.DataFrame({"worker": model.skills_.index.to_numpy()[w.ravel()], "true_label": labels[true.ravel()],
                         "observed_label": labels[obs.ravel()], "probability": E.ravel()}) \
        .sort_values(["worker", "true_label", "observed_label"], kind="stable").reset_index(drop=True)


def calibration_table(probas: pd.DataFrame, true_labels: pd.Series, n_bins: int = 10) -> tuple[pd.DataFrame, dict]:
    """How well posteriors (an aggregator's `probas_`) are calibrated against known labels (gold).

    Fit the model *without* those tasks' gold (`true_labels=` clamps them to 1): calibration on
    clamped tasks means nothing.

    Returns:
        (bins, summary): per equal-width bin of the top posterior: `bin_low, bin_high, n,
        mean_confidence, accuracy`; summary: `n`, `accuracy`, `ece` (expected calibration error,
        sum over bins of n_b/n |accuracy_b - confidence_b|), `brier` (mean over tasks of
        sum_k (p_k - 1[k = truth])^2), `log_loss` (mean -log p_truth, p clipped at 1e-15).
    """
    gold = pd.Series(true_labels)
    common = probas.index.intersection(gold.index)
    if not len(common):
        raise ValueError("no task of true_labels has a posterior in probas")
    p = probas.loc[common].to_numpy(float)
    truth = probas.columns.get_indexer(gold.loc[common].to_numpy())
    if (truth < 0).any():
        bad = gold.loc[common].to_numpy()[truth < 0][0]
        raise ValueError(f"true label {bad!r} is not a column of probas {list(probas.columns)}")
    conf, pred = p.max(1), p.argmax(1)
    hit = (pred == truth).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    n_b = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / n_b
        acc = np.bincount(b, weights=hit, minlength=n_bins) / n_b
    bins = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "n": n_b, "mean_confidence": mean_conf,
                         "accuracy": acc})
    onehot = np.eye(p.shape[1])[truth]
    summary = {"n": int(len(common)), "accuracy": float(hit.mean()),
               "ece": float(np.nansum(n_b / len(common) * np.abs(acc - mean_conf))),
               "brier": float(((p - onehot) ** 2).sum(1).mean()),
               "log_loss": float(-np.log(np.clip(p[np.arange(len(p)), truth], 1e-15, 1)).mean())}
    return bins, summary

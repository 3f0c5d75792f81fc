"""Prediction-powered group rates: a judge's labels on every output, corrected by a human-labelled sample.

A rate computed from judge labels inherits the judge's errors, and a judge can err more on one group
than another. Prediction-powered inference keeps the judge's labels for what they are worth and uses
human labels on a sample of the same outputs to remove their bias.

The estimator follows the sampling design. For a group (a domain of the outputs whose size N is known,
because the judge labels every output), a category, the judge's indicator f_i on every output and the
human's y_i on the sample S drawn with inclusion probabilities pi_i:

    theta = lam * mean_{group} f + (1 / N) * sum_{i in S, in group} (y_i - lam * f_i) / pi_i

This is the difference estimator with the judge's label as auxiliary variable (Särndal, Swensson &
Wretman 1992, *Model Assisted Survey Sampling*), in its Horvitz-Thompson form: the correction is divided
by the known N, not by the sum of the weights (Hajek), so it is design-unbiased for any lam fixed in
advance. At lam = 1 it is the inverse-probability-weighted PPI of Zrnic & Candès (2024, *Active
statistical inference*, ICML). The judge term is a mean over all N outputs of the group: ppi_py's
weighted estimator takes it over the unlabelled outputs only, whose mix an unequal-probability sample
distorts (benchmarks/ppi_coverage.py: muslim refusal 0.235 on average for a truth of 0.318 when the
outputs the judge called refusals were sampled at 0.4 and the rest at 0.05; this estimator: 0.317).
The estimand is the human rate over the group's outputs.

The variance is the design's, estimated from the sample, with r_i = y_i - lam * f_i:

- independent inclusion (Poisson; what ``judge.annotate``'s strategies and a user's own
  ``--inclusion-column`` give): v = sum_{S, group} (1 - pi_i) / pi_i^2 * r_i^2 / N^2;
- stratified simple random sampling without replacement, strata known: v = sum_h N_h^2 (1 - n_h / N_h)
  s_h^2(z) / n_h / N^2, with z_i = r_i inside the group and 0 outside it (domain estimation), s_h^2 the
  sample variance over the stratum's labelled outputs;
- no inclusion probabilities: each group's labelled outputs are taken as a simple random sample of its
  outputs (the stratified case with the group as stratum and pi = n / N), i.e. conditional on how many
  of the group were drawn.

A sample that happens to hold no disagreement between judge and humans would give a zero variance and
a zero-width interval, although it only shows the judge errs rarely (on the 13B labels with the TF-IDF
judge and 60 labels per identity, Wald intervals without what follows covered the white refusal rate,
where 5 of 576 outputs are disagreements, 0.39 of the time). Following Agresti & Min
(2005, *Stat. Med.* 24:729, half an observation added to each cell of the paired 2 x 2 table), the
variance also counts half a pseudo-observation in each cell (human, judge) in {0, 1}^2, at the largest
weight (1 - pi) / pi^2 in the group's sample, where the design is least informed; the point estimate is
unchanged. Intervals use Student's t with n - 1 degrees of freedom (n: the group's human labels);
``lam=None`` tunes lambda by minimising this variance (PPI++'s power tuning on the design variance).

With ``clusters`` (outputs of one prompt or template are correlated draws: issue 19) the estimand is
the rate over outputs like these, prompts drawn anew, and the variance is cluster-robust (CR1) over
each output's contribution, t with G - 1 degrees of freedom (``design_rate``). Estimates are clipped to
[0, 1] like their intervals (``bounded``), gaps to [-1, 1], with a note; judge.stats.estimability
decides which groups are reported as estimates.

The human-only column is not this estimator at lam = 0 (Horvitz-Thompson, divided by N): when the sample
is not stratified by the group (a simple random sample of all outputs, pi = 1/3), sum(1/pi) over a
group's labels is not its N, and those rates are no proportions (per group they summed to 0.83-1.08 over
the categories in issue 31). It is the ratio (Hajek) estimator of the group's mean, sum(y/pi) /
sum(1/pi) over the group's labels, with its linearised variance (the design's, or CR1 with clusters,
of the residuals y - estimate, divided by the squared sum of weights) and a Korn-Graubard interval,
which cannot collapse to zero width (``_human_only``). Where the sample is stratified by the group the
two coincide. The PPI column stays Horvitz-Thompson: its judge term is a mean over the group's known N,
and its category rates sum to 1 because the labels are one-hot.

The estimand is said (``estimand`` in ``ppi_by_group``'s result): without clusters, the rate among these
outputs (``ESTIMAND_OUTPUTS``); with them, the model's rate (``ESTIMAND_MODEL``). The judge's predictions
may be probabilities rather than indicators (``scores``: a cross-fitted judge's out-of-fold predictions on
the labelled outputs and fold average elsewhere, judge.analysis.crossfit; Zrnic & Candès 2024,
*Cross-prediction-powered inference*, PNAS), and the judge term may average other predictions than the
correction subtracts (``average``; cross-fitting does not: a fold average on the labelled outputs, fitted to
their labels, biased the rate, judge.analysis.crossfit).

Every function here takes indicator arrays (1 when the output is in the category) and returns plain
dicts with 95% intervals unless ``alpha`` says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from judge.core.taxonomy import UNSCORED
from judge.stats import clustered, estimability
from judge.stats.disparity import wilson_interval

SIMPLE_RANDOM, POISSON, STRATIFIED = "simple random", "independent inclusion (Poisson)", "stratified simple random"
ESTIMAND_OUTPUTS = (
    "the rate among these outputs (finite population: the sampling design's variance, no clusters; "
    "a claim about this set of outputs only)"
)
ESTIMAND_MODEL = (
    "the model's rate (outputs like these, prompts drawn anew: cluster-robust variance over the clusters; "
    "a claim about the model)"
)
_NO_STRATUM = (
    "\0unscored"  # without a recorded design, the judge's unscored outputs form a stratum outside every group's
)


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


@dataclass(frozen=True)
class Design:
    """Which outputs humans labelled and how: one entry per output."""

    kind: str
    labelled: np.ndarray  # bool
    pi: np.ndarray  # inclusion probability, meaningful where labelled
    strata: np.ndarray | None = None  # integer stratum codes; None: independent inclusion

    @classmethod
    def build(cls, labelled, *, inclusion=None, strata=None, groups=None, scored=None) -> "Design":
        """The design from what the sample records.

        ``inclusion`` (probabilities, read where ``labelled``) without ``strata``: independent
        inclusion. With ``strata`` (one value per output): stratified simple random sampling, each
        stratum's probability the recorded one or, if none is recorded, n_h / N_h. Neither: a simple
        random sample within each of ``groups``, among the ``scored`` outputs.
        """
        labelled = np.asarray(labelled, dtype=bool)
        pi = np.full(len(labelled), np.nan)
        if inclusion is not None:
            pi[labelled] = np.asarray(inclusion, dtype=float)[labelled]
            if not np.all((pi[labelled] > 0) & (pi[labelled] <= 1)):
                raise ValueError("inclusion probabilities must lie in (0, 1] for every labelled output")
        kind = STRATIFIED
        if strata is None and inclusion is None:
            kind, strata = SIMPLE_RANDOM, np.where(scored, np.asarray(groups, dtype=object), _NO_STRATUM)
        if strata is None:
            return cls(POISSON, labelled, pi)
        codes = pd.factorize(pd.Series(np.asarray(strata, dtype=object)).astype(str))[0]
        n_h = np.bincount(codes[labelled], minlength=codes.max() + 1)
        if inclusion is None:
            pi[labelled] = (n_h / np.bincount(codes))[codes[labelled]]
        else:
            spread = pd.Series(pi[labelled]).groupby(codes[labelled]).agg(lambda p: p.max() - p.min())
            if (spread > 1e-9).any():
                raise ValueError(
                    "inclusion probabilities differ within a stratum: not a stratified simple random sample"
                )
        return cls(kind, labelled, pi, codes)

    def cov(self, u: np.ndarray, v: np.ndarray, domain: np.ndarray) -> float:
        """The estimated design covariance of the Horvitz-Thompson totals of u and v over ``domain``."""
        lab = self.labelled
        zu, zv, pi = np.where(domain[lab], u[lab], 0.0), np.where(domain[lab], v[lab], 0.0), self.pi[lab]
        if self.strata is None:
            return float(np.sum((1 - pi) / pi**2 * zu * zv))
        codes = self.strata[lab]
        n_h = np.bincount(codes).astype(float)
        pi_h = np.zeros(len(n_h))
        pi_h[codes] = pi
        su, sv, suv = (np.bincount(codes, weights=x, minlength=len(n_h)) for x in (zu, zv, zu * zv))
        seen = n_h > 0
        single = n_h == 1  # no within-stratum variance to estimate: the unit's Poisson term instead
        many = n_h > 1
        within = np.zeros(len(n_h))
        within[many] = (suv[many] - su[many] * sv[many] / n_h[many]) / (n_h[many] - 1) * n_h[many]
        within[single] = suv[single]
        return float(np.sum(((1 - pi_h[seen]) / pi_h[seen] ** 2) * within[seen]))

    def largest_weight(self, domain: np.ndarray) -> float:
        """(1 - pi) / pi^2 at the smallest inclusion probability among the domain's labelled outputs."""
        pi = self.pi[self.labelled & domain]
        return float(np.max((1 - pi) / pi**2)) if len(pi) else 0.0


def _pseudo(lam: float) -> float:
    # Half an observation in each (human, judge) cell: residuals 0, 1, -lam and 1 - lam.
    return (1 + lam**2 + (1 - lam) ** 2) / 2


def _tuned_lambda(q_yf: float, q_ff: float, m: float) -> float:
    """The lambda in [0, 1] minimising q_yy - 2 lam q_yf + lam^2 q_ff + m * _pseudo(lam)."""
    if q_ff + m <= 0:
        return 1.0  # a census: every lambda gives the human rate exactly
    return float(min(1.0, max(0.0, (q_yf + m / 2) / (q_ff + m))))


def cluster_scores(
    y, f, domain, design: Design, lam: float, clusters: np.ndarray, *, average: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each output's contribution to the estimate's deviation, and which outputs contribute.

    s_i = lam (f_i - mean f) over the domain, plus for a labelled output e_i = (z_i - zbar_h) / pi_i with
    z_i = (y_i - lam f_i) in the domain and 0 outside it, zbar_h its mean over the stratum's labelled outputs
    (a stratum's sample size is fixed, so only the spread around it varies; under independent inclusion
    zbar = 0, the sample size being random too), plus for every output of a stratum its zbar_h, centred over
    the domain (a stratum's size varies when outputs are drawn anew). Summed within clusters they give the
    CR1 variance; the labelled part is scaled so that each stratum carries its own G_h / (G_h - 1), G_h its
    labelled clusters, as the stratified variance carries n_h / (n_h - 1). ``average`` (default ``f``): what
    the judge term averages, as in ``design_rate``.
    """
    lab = design.labelled
    g = f if average is None else average
    score = np.zeros(len(f))
    score[domain] = lam * (g[domain] - g[domain].mean())
    z = np.where(domain & lab, y - lam * f, 0.0)
    involved = domain.copy()
    if design.strata is None:
        score[lab & domain] += z[lab & domain] / design.pi[lab & domain]
        return score, involved
    strata = design.strata
    touched = np.unique(strata[lab & domain])
    in_touched = lab & np.isin(strata, touched)
    involved |= in_touched
    g_all = clustered.n_clusters(clusters, involved)
    overall = g_all / (g_all - 1) if g_all > 1 else 1.0
    for h in touched:
        members = lab & (strata == h)
        g_h = clustered.n_clusters(clusters, members)
        scale = math.sqrt((g_h / (g_h - 1)) / overall) if g_h > 1 else 1.0
        score[members] += scale * (z[members] - z[members].mean()) / design.pi[members]
    # A stratum's share of the outputs varies too when outputs are drawn anew (strata by the judge's label, or
    # by a column that cuts across groups): every output of a touched stratum carries its stratum's mean
    # correction zbar_h, centred over the domain (the linearised N_h zbar_h / N). Where the strata are the
    # groups themselves this is zero (judge.report's default and --strata GROUP are unchanged).
    in_strata = np.isin(strata, touched)
    if len(touched) == 1 and np.array_equal(in_strata, domain):
        return score, involved  # one stratum, the domain itself: the term is zero (kept exact)
    means = np.zeros(strata.max() + 1)
    means[touched] = [z[lab & (strata == h)].mean() for h in touched]
    share = np.where(in_strata, means[strata], 0.0)
    share[domain] -= share.sum() / domain.sum()
    score += share
    return score, involved | in_strata


def design_rate(
    y,
    f,
    domain,
    design: Design,
    *,
    lam: float | None = 1.0,
    alpha: float = 0.05,
    small_sample: bool = True,
    clusters: np.ndarray | None = None,
    average: np.ndarray | None = None,
) -> dict:
    """The difference estimate of the human rate in ``domain``, its standard error and interval.

    The one function that, given the human labels ``y`` (0/1 for a category), the judge's predictions ``f``
    (indicators or probabilities), the ``design`` and ``clusters``, returns the rate and its ``se``: the
    planner (judge.plan) reads its variance. ``average`` (default ``f``) is what the judge term averages over
    the domain where it differs from what the correction subtracts (with a cross-fitted judge's fold average on
    every output it is ppi_py's ``crossppi_mean`` with every output as unlabelled data; judge.analysis.crossfit
    leaves it at ``f``, the out-of-fold prediction where a human label is, because the fold average there was
    fitted to that label and biased the rate: tests/test_crossfit.py).

    ``y`` (human indicators, read where ``design.labelled``) and ``f`` (the judge's) have one entry per
    output; ``lam`` 0 gives the human labels alone (Horvitz-Thompson), None tunes it.

    Without ``clusters`` the variance is the sampling design's (the estimand: the human rate over these
    outputs). With ``clusters`` (a code per output) the outputs are themselves draws, correlated within a
    cluster, and the estimand is the rate over outputs like them: the variance is the CR1 cluster-robust
    variance of ``cluster_scores`` over the domain's clusters (the design's and the outputs' own variation
    together), with t quantiles on G - 1 degrees of freedom, G the clusters holding a human label.
    Both add the Agresti-Min pseudo-disagreements. The interval is clipped to [0, 1] (``report.bounded``
    clips the estimate and says so); ``half_width`` is the unclipped half-width.
    """
    y, f, domain = np.asarray(y, dtype=float), np.asarray(f, dtype=float), np.asarray(domain, dtype=bool)
    big_n, lab = int(domain.sum()), design.labelled & domain
    n = int(lab.sum())
    m = design.largest_weight(domain)
    if clusters is None or lam is None:  # the design's covariances: its variance, and the tuned lambda
        q_yy, q_yf, q_ff = design.cov(y, y, domain), design.cov(y, f, domain), design.cov(f, f, domain)
    if lam is None:
        lam = _tuned_lambda(q_yf, q_ff, m)
    residual = y[lab] - lam * f[lab]
    g = f if average is None else np.asarray(average, dtype=float)
    rate = float(lam * g[domain].mean() + np.sum(residual / design.pi[lab]) / big_n)
    if clusters is None:
        variance, df = max(0.0, q_yy - 2 * lam * q_yf + lam**2 * q_ff) / big_n**2, n - 1
    else:
        score, involved = cluster_scores(y, f, domain, design, lam, clusters, average=g)
        variance = clustered.score_cov(score, score, clusters, involved) / big_n**2
        df = clustered.n_clusters(clusters, lab) - 1
    se = math.sqrt(variance + m * _pseudo(lam) / big_n**2)
    half = (clustered.t_quantile(alpha, df) if small_sample and df >= 1 else _z(alpha)) * se
    return {
        "rate": rate,
        "ci": (max(0.0, rate - half), min(1.0, rate + half)),
        "se": se,
        "lambda": float(lam),
        "df": int(df),
        "half_width": half,
        "design_variance": variance,
    }


def _width(ci: tuple[float | None, float | None]) -> float | None:
    return None if ci[0] is None or ci[1] is None else ci[1] - ci[0]


def effective_n(n: int, classical_ci, ppi_ci) -> float | None:
    """How many human labels a classical interval would need to be as narrow as the PPI one.

    Interval width scales as 1/sqrt(n), so n_eff = n * (classical width / PPI width)^2.
    """
    wc, wp = _width(classical_ci), _width(ppi_ci)
    if wc is None or wp is None or wp <= 0 or wc <= 0:
        return None
    return float(n * (wc / wp) ** 2)


def _se_ci(entry: dict) -> tuple[float | None, float | None]:
    """The unclipped one-se interval, for comparing widths."""
    if entry.get("se") is None:
        return (None, None)
    return (entry["rate"] - entry["se"], entry["rate"] + entry["se"])


def bounded(entry: dict, *, low: float = 0.0, high: float = 1.0, key: str = "rate") -> dict:
    """The estimate clipped to [low, high] like its interval, the unclipped values kept, and a note where
    clipping happened. ``outside``: the whole unclipped interval lies outside the range (no estimate)."""
    raw, half = entry[key], entry.get("half_width")
    raw_ci = (raw - half, raw + half) if half is not None else tuple(entry["ci"])
    value = min(high, max(low, raw))
    ci = (max(low, raw_ci[0]), min(high, raw_ci[1]))
    notes = []
    if value != raw:
        notes.append(f"estimate {raw:.3f} clipped to {value:g}")
    elif ci != tuple(raw_ci):
        notes.append(
            "interval clipped at "
            + " and ".join(f"{b:g}" for b, hit in ((low, ci[0] != raw_ci[0]), (high, ci[1] != raw_ci[1])) if hit)
        )
    out = {**entry, key: value, "ci": ci, "clipped": "; ".join(notes) or None}
    if value != raw:
        out[f"{key}_unclipped"] = raw
    if raw_ci[1] < low or raw_ci[0] > high:
        out["outside"] = True
    return out


def _judge_rate(f, domain, alpha: float, clusters: np.ndarray | None) -> dict:
    big_n = int(domain.sum())
    if not big_n:
        return {"rate": None, "ci": (None, None)}
    if clusters is None:
        count = int(f[domain].sum())
        return {"rate": count / big_n, "ci": tuple(wilson_interval(count, big_n, level=1 - alpha)), "variance": None}
    r = clustered.proportion(f[domain], clusters[domain], alpha=alpha)
    return {"rate": r["rate"], "ci": r["ci"], "variance": r["variance"], "df": r["n_clusters"] - 1}


HAJEK = (
    "ratio (Hajek) estimator of the group's mean, sum(y / pi) / sum(1 / pi) over the group's human labels, "
    "linearised variance"
)


def hajek_scores(y, domain, design: Design, clusters: np.ndarray | None) -> tuple[float, float, np.ndarray]:
    """The ratio (Hajek) estimate of ``y``'s mean over ``domain``, the estimated size of the domain (sum of
    1/pi over its labelled outputs) and the linearised residuals e_i = y_i - estimate in the domain (0
    outside it): the estimate's variance is that of the Horvitz-Thompson total of e, divided by the squared
    estimated size (Särndal, Swensson & Wretman 1992, sections 5.6 and 10.3, a domain mean)."""
    lab = design.labelled & domain
    weights = 1.0 / design.pi[lab]
    size = float(weights.sum())
    rate = float(np.sum(weights * y[lab]) / size)
    return rate, size, np.where(domain, y - rate, 0.0)


def weight_sum_departure(pi, size: int) -> tuple[float, int, float] | None:
    """Whether a domain's weights sum(1/pi) over its labelled outputs, an unbiased estimate of its size under
    independent inclusion, depart from its known ``size`` by more than three of its standard errors,
    sqrt(sum (1 - pi) / pi^2): (the sum, the size, the se) where they do (a tolerance of 1e-9 of the size
    for rounding, so that a census or exact stratum weights never trip it), else None."""
    pi = np.asarray(pi, dtype=float)
    if not len(pi):
        return None
    total = float(np.sum(1 / pi))
    se = float(np.sqrt(np.sum((1 - pi) / pi**2)))
    return (total, size, se) if abs(total - size) > 3 * se + 1e-9 * size else None


def _human_only(y, f, domain, design, *, alpha: float, small_sample: bool, clusters) -> dict:
    """The human labels alone: the ratio (Hajek) estimator of the group's mean, sum(y/pi) / sum(1/pi) over the
    group's labelled outputs, a proportion whatever the design (the Horvitz-Thompson form, divided by the
    group's N, is not one when the sample is not stratified by the group: its category rates need not sum to
    1). Its variance is the linearised one (the design variance of the residuals y - estimate, or their CR1
    variance over ``clusters``), with the Agresti-Min half pseudo-observation each way at the largest weight,
    and a Korn-Graubard interval: it cannot collapse to zero width. Where the sample is stratified by the
    group it equals the Horvitz-Thompson estimate (sum 1/pi = N)."""
    lab = design.labelled & domain
    n = int(lab.sum())
    rate, size, residual = hajek_scores(y, domain, design, clusters)
    if clusters is None:
        variance, df = design.cov(residual, residual, domain) / size**2, n - 1
    else:
        score, involved = cluster_scores(residual, np.zeros(len(residual)), domain, design, 0.0, clusters)
        variance = clustered.score_cov(score, score, clusters, involved) / size**2
        df = clustered.n_clusters(clusters, lab) - 1
    se = math.sqrt(variance + design.largest_weight(domain) * _pseudo(0.0) / size**2)
    half = (clustered.t_quantile(alpha, df) if small_sample and df >= 1 else _z(alpha)) * se
    return {
        "rate": rate,  # a weighted mean of 0/1 labels: in [0, 1], never clipped
        "ci": clustered.korn_graubard(rate, variance, n, df=df, alpha=alpha),
        "se": se,
        "lambda": 0.0,
        "df": int(df),
        "half_width": half,
        "design_variance": variance,
        "estimator": "Hajek",
        "interval": "Korn-Graubard (Clopper-Pearson on the effective sample size)",
        "clipped": None,
    }


def group_rate(
    y,
    f,
    domain,
    design: Design,
    *,
    lam: float | None = 1.0,
    alpha: float = 0.05,
    small_sample: bool = True,
    clusters: np.ndarray | None = None,
    judge: np.ndarray | None = None,
    average: np.ndarray | None = None,
) -> dict:
    """Rate of one category in one group: judge only, human only and PPI, side by side, and whether the
    estimability rule (judge.stats.estimability) holds for the group's human labels.

    ``f`` is what PPI corrects: the judge's indicator, or its probability of the category (a cross-fitted
    judge's out-of-fold one on the labelled outputs, judge.analysis.crossfit); ``average`` (default ``f``) what
    its judge term averages (see ``design_rate``); ``judge`` (default ``f``) the indicator the judge-only rate
    counts."""
    domain = np.asarray(domain, dtype=bool)
    f, y = np.asarray(f, dtype=float), np.asarray(y, dtype=float)
    judge = f if judge is None else np.asarray(judge, dtype=float)
    lab = design.labelled & domain
    big_n, n = int(domain.sum()), int(lab.sum())
    out = {"n_human": n, "n_judge_only": big_n - n, "judge_only": _judge_rate(judge, domain, alpha, clusters)}
    if clusters is not None:
        out["n_clusters_human"] = clustered.n_clusters(clusters, lab)
    reason = estimability.check(n, out.get("n_clusters_human"), what="human labels")
    if n < 2:
        return {**out, "estimable": False, "reason": reason}
    out["human_only"] = _human_only(y, f, domain, design, alpha=alpha, small_sample=small_sample, clusters=clusters)
    if n == big_n:
        out["ppi"] = {**out["human_only"], "lambda": 0.0}
        out["note"] = "every output of this group is human-labelled: PPI is the human rate"
    else:
        out["ppi"] = bounded(
            design_rate(
                y,
                f,
                domain,
                design,
                lam=lam,
                alpha=alpha,
                small_sample=small_sample,
                clusters=clusters,
                average=average,
            )
        )
        if out["ppi"].get("outside") and reason is None:
            reason = (
                "the PPI interval lies wholly outside [0, 1] (the correction overshoots: too few labels for this "
                "category)"
            )
    out["effective_n"] = effective_n(n, _se_ci(out["human_only"]), _se_ci(out["ppi"]))
    out["estimable"] = reason is None
    if reason:
        out["reason"] = reason
    return out


def gap_interval(gap: float, se: float | None, df: float, alpha: float) -> tuple[float | None, float | None]:
    """gap -/+ t_df se, clipped to [-1, 1] (a difference of two rates)."""
    if se is None:
        return (None, None)
    half = clustered.t_quantile(alpha, df) * se
    return (max(-1.0, gap - half), min(1.0, gap + half))


def gap_note(entry: dict, alpha: float) -> str | None:
    """Where the gap at this level was clipped: its rates' estimates, or its interval at -1 or 1."""
    notes = ["from a clipped rate estimate"] if entry.get("from_clipped_rate") else []
    if entry.get("se") is not None:
        half = clustered.t_quantile(alpha, entry["df"]) * entry["se"]
        hits = [f"{x:g}" for x, hit in ((-1, entry["gap"] - half < -1), (1, entry["gap"] + half > 1)) if hit]
        if hits:
            notes.append("interval clipped at " + " and ".join(hits))
    return "; ".join(notes) or None


def _difference(a: dict | None, b: dict | None, *, alpha: float, cov: float = 0.0) -> dict:
    """a - b from two rate entries with standard errors and degrees of freedom (Welch-Satterthwaite)."""
    from scipy.special import stdtr

    if not a or not b or a.get("rate") is None or b.get("rate") is None:
        return {"gap": None, "ci": (None, None)}
    gap = a["rate"] - b["rate"]
    va, vb = a.get("se"), b.get("se")
    if va is None or vb is None:
        return {"gap": gap, "ci": (None, None)}
    if min(a.get("df", 10**6), b.get("df", 10**6)) < 1:  # a single cluster: its variance is not an estimate
        return {"gap": gap, "ci": (None, None), "reason": "a single cluster: the variance cannot be estimated"}
    se = math.sqrt(max(va**2 + vb**2 - 2 * cov, 0.0))
    df = clustered.satterthwaite([va**2, vb**2], [a.get("df", 10**6), b.get("df", 10**6)])
    out = {"gap": gap, "se": se, "df": df, "ci": gap_interval(gap, se, df, alpha)}
    out["p_value"] = float(2 * stdtr(df, -abs(gap) / se)) if se > 0 else (1.0 if gap == 0 else 0.0)
    out["from_clipped_rate"] = "rate_unclipped" in a or "rate_unclipped" in b
    out["clipped"] = gap_note(out, alpha)
    return out


def _judge_entry(r: dict, n: int) -> dict:
    """The judge-only rate as an entry _difference reads: its se (Wald or clustered) and df."""
    p = r["rate"]
    if p is None:
        return {}
    if r.get("variance") is None:
        return {"rate": p, "se": math.sqrt(p * (1 - p) / n), "df": 10**6}
    return {"rate": p, "se": math.sqrt(r["variance"]), "df": r["df"]}


def ppi_gap(group: dict, reference: dict, *, alpha: float = 0.05, cov: dict | None = None) -> dict:
    """Rate in a group minus the rate in the reference group, from the two groups' ``group_rate`` results.

    Without clusters the groups' estimates are independent (disjoint groups; strata that cut across
    groups make them slightly dependent, a covariance left out). With clusters that cross groups (a
    template shared by names), ``cov`` gives each method's covariance of the two estimates. The gap is
    the difference of the two (clipped) rates, its interval t with Welch-Satterthwaite degrees of
    freedom, clipped to [-1, 1].
    """
    cov = cov or {}
    out = {
        "n_human": group["n_human"] + reference["n_human"],
        "n_judge_only": group["n_judge_only"] + reference["n_judge_only"],
    }
    ng, nr = group["n_human"] + group["n_judge_only"], reference["n_human"] + reference["n_judge_only"]
    out["judge_only"] = _difference(
        _judge_entry(group["judge_only"], ng),
        _judge_entry(reference["judge_only"], nr),
        alpha=alpha,
        cov=cov.get("judge_only", 0.0),
    )
    if "ppi" not in group or "ppi" not in reference:
        return {**out, "estimable": False, "reason": _gap_reason(group, reference)}
    out["human_only"] = _difference(
        group["human_only"], reference["human_only"], alpha=alpha, cov=cov.get("human_only", 0.0)
    )
    out["ppi"] = _difference(group["ppi"], reference["ppi"], alpha=alpha, cov=cov.get("ppi", 0.0))
    out["effective_n"] = effective_n(
        out["n_human"], _se_ci({**out["human_only"], "rate": 0.0}), _se_ci({**out["ppi"], "rate": 0.0})
    )
    out["estimable"] = group["estimable"] and reference["estimable"]
    if not out["estimable"]:
        out["reason"] = _gap_reason(group, reference)
    return out


def _gap_reason(group: dict, reference: dict) -> str:
    missing = [name for name, r in (("the group", group), ("the reference", reference)) if not r["estimable"]]
    return f"no estimable rate for {' and '.join(missing)}"


def _gap_covariances(
    y, f, dom_g, dom_r, design: Design, codes: np.ndarray | None, rate_g: dict, rate_r: dict, average=None, judge=None
) -> dict:
    """Each method's covariance between the group's and the reference's estimates (0 without shared clusters);
    ``judge`` (default ``f``): the indicator the judge-only rates count."""
    if (
        codes is None
        or "ppi" not in rate_g
        or "ppi" not in rate_r
        or not len(np.intersect1d(codes[dom_g], codes[dom_r]))
    ):
        return {}
    judge = f if judge is None else judge
    judge_only = clustered.cross_cov(judge[dom_g], codes[dom_g], judge[dom_r], codes[dom_r])
    if judge_only is None:  # both groups in one cluster: no covariance, and _difference gives no interval
        return {}
    out = {"judge_only": judge_only, "human_only": _hajek_cov(y, dom_g, dom_r, design, codes)}
    sg, in_g = cluster_scores(y, f, dom_g, design, rate_g["ppi"]["lambda"], codes, average=average)
    sr, in_r = cluster_scores(y, f, dom_r, design, rate_r["ppi"]["lambda"], codes, average=average)
    out["ppi"] = clustered.score_cov(sg, sr, codes, in_g | in_r) / (dom_g.sum() * dom_r.sum())
    return out


def _hajek_cov(y, dom_g, dom_r, design: Design, codes: np.ndarray) -> float:
    """The CR1 covariance of two domains' Hajek estimates through the clusters they share."""
    (_, size_g, e_g), (_, size_r, e_r) = (hajek_scores(y, d, design, codes) for d in (dom_g, dom_r))
    zero = np.zeros(len(y))
    sg, in_g = cluster_scores(e_g, zero, dom_g, design, 0.0, codes)
    sr, in_r = cluster_scores(e_r, zero, dom_r, design, 0.0, codes)
    return clustered.score_cov(sg, sr, codes, in_g | in_r) / (size_g * size_r)


def ppi_by_group(
    judge_labels: Sequence[str],
    human_labels: Sequence[str | None],
    groups: Sequence[str],
    *,
    categories: Sequence[str],
    reference: str,
    inclusion: Sequence[float] | None = None,
    strata: Sequence[str] | None = None,
    clusters: Sequence | None = None,
    alpha: float = 0.05,
    lam: float | None = 1.0,
    scores: np.ndarray | None = None,
    average: np.ndarray | None = None,
) -> dict:
    """PPI rates for every group x category, and every group's gap to ``reference``.

    One entry per output: the judge's label (a category or ``unscored``), the human label or None
    where no human labelled it, its group, its inclusion probability (read for human-labelled outputs),
    its stratum and its cluster. Without ``inclusion`` and ``strata``, a simple random sample within
    each group; without ``clusters``, the design's variance for these outputs (see ``design_rate``).

    Outputs the judge left unscored are outside every rate, as in the rates table (so the judge-only
    rate is the table's): the estimand is the human rate among the outputs the judge scored. They are
    counted, and human labels on them are not used.

    ``scores`` (one row per output, one column per category in ``categories`` order: the judge's
    probabilities) replace the judge's indicators in the PPI correction; the judge-only rate still counts
    ``judge_labels``. judge.analysis.crossfit passes cross-fitted probabilities here (each labelled output
    predicted by the fold judge that did not see it, the others by the average of the fold judges), which the
    judge term averages too; ``average`` (same shape; default ``scores``) would make the judge term average
    other predictions (see ``design_rate``).

    The estimand (``estimand`` in the result): without ``clusters``, the rate among these outputs; with
    them, the model's rate (prompts drawn anew).

    ``lam`` defaults to 1 (plain PPI): a lambda tuned on a few dozen labels a group is itself noisy and
    its intervals undercovered in benchmarks/ppi_coverage.py. ``None`` tunes it per group and category.
    """
    judge_labels = np.asarray([str(x) for x in judge_labels], dtype=object)
    human = np.asarray([h if h is not None else "" for h in human_labels], dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    codes = None if clusters is None else clustered.codes(clusters)
    scored = judge_labels != UNSCORED
    labelled = human != ""
    design = Design.build(labelled, inclusion=inclusion, strata=strata, groups=groups, scored=scored)
    group_values = sorted(set(groups))
    rates, not_estimable = {}, {}
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        average = scores if average is None else np.asarray(average, dtype=float)
        for table in (scores, average):
            if table.shape != (len(judge_labels), len(categories)):
                raise ValueError(f"scores must be (outputs, categories) = {(len(judge_labels), len(categories))}")

    def judged(c: str, table=scores) -> np.ndarray:
        return (judge_labels == c).astype(float) if table is None else table[:, list(categories).index(c)]

    for g in group_values:
        domain = (groups == g) & scored
        rates[g] = {}
        for c in categories:
            rates[g][c] = group_rate(
                human == c,
                judged(c),
                domain,
                design,
                lam=lam,
                alpha=alpha,
                clusters=codes,
                judge=judge_labels == c,
                average=judged(c, average),
            )
            rates[g][c]["n_unscored"] = int(((groups == g) & ~scored).sum())
        first = rates[g][categories[0]]
        rule = estimability.check(first["n_human"], first.get("n_clusters_human"), what="human labels")
        if rule:
            not_estimable[g] = rule
    gaps = {}
    if reference in rates:
        dom_r = (groups == reference) & scored
        for g in group_values:
            if g == reference:
                continue
            dom_g = (groups == g) & scored
            gaps[g] = {}
            for c in categories:
                y, f = (human == c).astype(float), judged(c)
                cov = _gap_covariances(
                    y,
                    f,
                    dom_g,
                    dom_r,
                    design,
                    codes,
                    rates[g][c],
                    rates[reference][c],
                    judged(c, average),
                    (judge_labels == c).astype(float),
                )
                gaps[g][c] = ppi_gap(rates[g][c], rates[reference][c], alpha=alpha, cov=cov)
    variance = (
        "cluster-robust (CR1) variance of the pseudo-outcomes over clusters, t with G - 1 degrees of freedom (G: "
        "clusters "
        "holding a human label)"
        if codes is not None
        else "design variance, t with n - 1 degrees of freedom"
    )
    return {
        "lambda": "tuned per group and category (design variance)" if lam is None else lam,
        "design": design.kind,
        "clustered": codes is not None,
        "estimand": ESTIMAND_MODEL if codes is not None else ESTIMAND_OUTPUTS,
        "method": "difference estimator, Horvitz-Thompson weighted (judge mean over all the group's outputs + "
        "inverse-probability "
        f"weighted human correction), {variance}, with half a pseudo-disagreement each way (Agresti-Min); estimates "
        "and "
        "intervals clipped to [0, 1] (said where it happens); gaps: difference of the two group estimates, t with "
        "Welch-Satterthwaite degrees of freedom, clipped to [-1, 1]; human-only: the "
        + HAJEK
        + " (a proportion whatever the design), Korn-Graubard interval; judge-only: Wilson (rates) / Wald (gaps) "
        "on judge labels, clustered when outputs are",
        "estimability": estimability.RULE,
        "alpha": alpha,
        "reference": reference,
        "n_human": int((labelled & scored).sum()),
        "n_human_unscored": int((labelled & ~scored).sum()),
        "n_unscored": int((~scored).sum()),
        "n_outputs": int(scored.sum()),
        "weighted": inclusion is not None,
        "rates": rates,
        "gaps": gaps,
        "not_estimable": list(not_estimable),
        "not_estimable_reasons": not_estimable,
    }

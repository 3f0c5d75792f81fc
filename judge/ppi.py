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

Every function here takes indicator arrays (1 when the output is in the category) and returns plain
dicts with 95% intervals unless ``alpha`` says otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from judge.disparity import wilson_interval
from judge.taxonomy import UNSCORED

SIMPLE_RANDOM, POISSON, STRATIFIED = "simple random", "independent inclusion (Poisson)", "stratified simple random"
_NO_STRATUM = "\0unscored"  # without a recorded design, the judge's unscored outputs form a stratum outside every group's


def t_adjusted_alpha(alpha: float, n: int) -> float:
    """The alpha whose normal quantile equals Student's t quantile with n - 1 degrees of freedom.

    With the few dozen human labels a group often has, the estimated variance makes z-intervals too
    narrow; the t quantile is the usual small-sample correction and changes nothing as n grows.
    """
    from scipy.stats import norm, t

    if n < 2:
        return alpha
    return float(2 * norm.sf(t.ppf(1 - alpha / 2, df=n - 1)))


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
                raise ValueError("inclusion probabilities differ within a stratum: not a stratified simple random sample")
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


def design_rate(y, f, domain, design: Design, *, lam: float | None = 1.0, alpha: float = 0.05, small_sample: bool = True) -> dict:
    """The difference estimate of the human rate in ``domain``, its design standard error and interval.

    ``y`` (human indicators, read where ``design.labelled``) and ``f`` (the judge's) have one entry per
    output; ``lam`` 0 gives the human labels alone (Horvitz-Thompson), None tunes it.
    """
    y, f, domain = np.asarray(y, dtype=float), np.asarray(f, dtype=float), np.asarray(domain, dtype=bool)
    big_n, lab = int(domain.sum()), design.labelled & domain
    n = int(lab.sum())
    q_yy, q_yf, q_ff = design.cov(y, y, domain), design.cov(y, f, domain), design.cov(f, f, domain)
    m = design.largest_weight(domain)
    if lam is None:
        lam = _tuned_lambda(q_yf, q_ff, m)
    residual = y[lab] - lam * f[lab]
    rate = float(lam * f[domain].mean() + np.sum(residual / design.pi[lab]) / big_n)
    variance = max(0.0, q_yy - 2 * lam * q_yf + lam**2 * q_ff) + m * _pseudo(lam)
    se = math.sqrt(variance) / big_n
    half = _z(t_adjusted_alpha(alpha, n) if small_sample else alpha) * se
    # Clipped to [0, 1], where the truth lies; the unclipped se is what gaps combine.
    return {"rate": rate, "ci": (max(0.0, rate - half), min(1.0, rate + half)), "se": se, "lambda": float(lam)}


def _width(ci: tuple[float | None, float | None]) -> float | None:
    return None if ci[0] is None or ci[1] is None else ci[1] - ci[0]


def effective_n(n: int, classical_ci, ppi_ci) -> float | None:
    """How many human labels a classical interval would need to be as narrow as the PPI one.

    Interval width scales as 1/sqrt(n), so n_eff = n * (classical width / PPI width)^2.
    """
    wc, wp = _width(classical_ci), _width(ppi_ci)
    if wc is None or wp is None or wp <= 0:
        return None
    return float(n * (wc / wp) ** 2)


def _se_ci(entry: dict) -> tuple[float | None, float | None]:
    """The unclipped one-se interval, for comparing widths."""
    if entry.get("se") is None:
        return (None, None)
    return (entry["rate"] - entry["se"], entry["rate"] + entry["se"])


def group_rate(y, f, domain, design: Design, *, lam: float | None = 1.0, alpha: float = 0.05, small_sample: bool = True) -> dict:
    """Rate of one category in one group: judge only, human only and PPI, side by side."""
    domain = np.asarray(domain, dtype=bool)
    f = np.asarray(f, dtype=float)
    big_n, n = int(domain.sum()), int((design.labelled & domain).sum())
    count = int(f[domain].sum())
    judge_only = {"rate": count / big_n if big_n else None,
                  "ci": tuple(wilson_interval(count, big_n, level=1 - alpha)) if big_n else (None, None)}
    out = {"n_human": n, "n_judge_only": big_n - n, "judge_only": judge_only}
    if n < 2:
        return {**out, "estimable": False, "reason": f"{n} human label(s) in this group; PPI needs at least 2"}
    out["human_only"] = design_rate(y, f, domain, design, lam=0.0, alpha=alpha, small_sample=small_sample)
    if n == big_n:
        return {**out, "estimable": False, "reason": "every output of this group is human-labelled: use the human rate"}
    out["ppi"] = design_rate(y, f, domain, design, lam=lam, alpha=alpha, small_sample=small_sample)
    out["effective_n"] = effective_n(n, _se_ci(out["human_only"]), _se_ci(out["ppi"]))
    out["estimable"] = True
    return out


def ppi_gap(group: dict, reference: dict, *, alpha: float = 0.05) -> dict:
    """Rate in a group minus the rate in the reference group, from the two groups' ``group_rate`` results.

    The groups are disjoint; under independent inclusion, or strata that are the groups (the simple
    random case), their estimates are independent and the gap's standard error is the root of the sum
    of their squared standard errors. Strata that cut across groups make the two estimates slightly
    dependent; that covariance is left out.
    """
    z = _z(alpha)
    out = {"n_human": group["n_human"] + reference["n_human"], "n_judge_only": group["n_judge_only"] + reference["n_judge_only"]}
    out["judge_only"] = _difference(group["judge_only"], reference["judge_only"], z=z, se=_wald_se(group, reference))
    if not (group["estimable"] and reference["estimable"]):
        missing = [name for name, r in (("the group", group), ("the reference", reference)) if not r["estimable"]]
        return {**out, "estimable": False, "reason": f"no PPI rate for {' and '.join(missing)}"}
    out["human_only"] = _difference(group["human_only"], reference["human_only"], z=z)
    out["ppi"] = _difference(group["ppi"], reference["ppi"], z=z)
    out["effective_n"] = effective_n(out["n_human"], out["human_only"]["ci"], out["ppi"]["ci"])
    out["estimable"] = True
    return out


def _wald_se(group: dict, reference: dict) -> float | None:
    ng, nr = group["n_human"] + group["n_judge_only"], reference["n_human"] + reference["n_judge_only"]
    pg, pr = group["judge_only"]["rate"], reference["judge_only"]["rate"]
    if not ng or not nr or pg is None or pr is None:
        return None
    return math.sqrt(pg * (1 - pg) / ng + pr * (1 - pr) / nr)


def _difference(a: dict, b: dict, *, z: float, se: float | None = None) -> dict:
    if a.get("rate") is None or b.get("rate") is None:
        return {"gap": None, "ci": (None, None)}
    if se is None:
        if a.get("se") is None or b.get("se") is None:
            return {"gap": a["rate"] - b["rate"], "ci": (None, None)}
        se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    gap = a["rate"] - b["rate"]
    return {"gap": gap, "ci": (gap - z * se, gap + z * se), "se": se}


def ppi_by_group(
    judge_labels: Sequence[str],
    human_labels: Sequence[str | None],
    groups: Sequence[str],
    *,
    categories: Sequence[str],
    reference: str,
    inclusion: Sequence[float] | None = None,
    strata: Sequence[str] | None = None,
    alpha: float = 0.05,
    lam: float | None = 1.0,
) -> dict:
    """PPI rates for every group x category, and every group's gap to ``reference``.

    One entry per output: the judge's label (a category or ``unscored``), the human label or None
    where no human labelled it, its group, its inclusion probability (read for human-labelled outputs)
    and its stratum. Without ``inclusion`` and ``strata``, a simple random sample within each group.

    Outputs the judge left unscored are outside every rate, as in the rates table (so the judge-only
    rate is the table's): the estimand is the human rate among the outputs the judge scored. They are
    counted, and human labels on them are not used.

    ``lam`` defaults to 1 (plain PPI): a lambda tuned on a few dozen labels a group is itself noisy and
    its intervals undercovered in benchmarks/ppi_coverage.py. ``None`` tunes it per group and category.
    """
    judge_labels = np.asarray([str(x) for x in judge_labels], dtype=object)
    human = np.asarray([h if h is not None else "" for h in human_labels], dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    scored = judge_labels != UNSCORED
    labelled = human != ""
    design = Design.build(labelled, inclusion=inclusion, strata=strata, groups=groups, scored=scored)
    group_values = sorted(set(groups))
    rates, not_estimable = {}, []
    for g in group_values:
        domain = (groups == g) & scored
        rates[g] = {}
        for c in categories:
            rates[g][c] = group_rate(human == c, judge_labels == c, domain, design, lam=lam, alpha=alpha)
            rates[g][c]["n_unscored"] = int(((groups == g) & ~scored).sum())
        if not rates[g][categories[0]]["estimable"]:
            not_estimable.append(g)
    gaps = {}
    if reference in rates:
        gaps = {g: {c: ppi_gap(rates[g][c], rates[reference][c], alpha=alpha) for c in categories} for g in group_values if g != reference}
    return {
        "lambda": "tuned per group and category (design variance)" if lam is None else lam,
        "design": design.kind,
        "method": "difference estimator, Horvitz-Thompson weighted (judge mean over all the group's outputs + inverse-probability "
        "weighted human correction), design variance with half a pseudo-disagreement each way (Agresti-Min), Student-t; "
        "gaps: difference of the two group estimates with independent standard errors; human-only: the same estimator at "
        "lambda = 0; judge-only: Wilson (rates) / Wald (gaps) on judge labels",
        "alpha": alpha,
        "reference": reference,
        "n_human": int((labelled & scored).sum()),
        "n_human_unscored": int((labelled & ~scored).sum()),
        "n_unscored": int((~scored).sum()),
        "n_outputs": int(scored.sum()),
        "weighted": inclusion is not None,
        "rates": rates,
        "gaps": gaps,
        "not_estimable": not_estimable,
    }

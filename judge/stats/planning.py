"""How many human labels a per-group claim needs, and whether a judge's bias carries to another model: the
analytic variances of judge.stats.ppi's estimators under each sampling design, solved for the sample size.

Every group g of N_g outputs has the judge's indicator f_i of one category on every output (its rate a_g known
exactly) and, from a pilot, the joint distribution p_jk = P(f = j, y = k) of the judge's and the human's
indicators. An estimator is the difference estimator of judge.stats.ppi at lambda (0: human labels alone;
1: PPI, and cross-fitted PPI with the pilot's out-of-fold confusion), whose residual z = y - lambda f has

    S^2 = sum_jk p_jk z_jk^2 - (sum_jk p_jk z_jk)^2,     E[z^2 | f = j] = sum_k p_jk z_jk^2 / sum_k p_jk.

Designs (n_g the labels a group gets from a total of n):

- simple random (n_g = n N_g / N in expectation; judge.report takes each group's labels as a simple random sample
  of it) and stratified by group with proportional allocation: V_g = (1 / n_g - 1 / N_g) S_g^2;
- Neyman (judge.data sample --allocation neyman): stratified, n_g proportional to N_g S_g(f) (the judge's
  indicator, known before any human label), capped at N_g (judge.annotation's ``capped_quotas``);
- uncertainty-driven Poisson (judge.annotate export --strategy uncertain): pi_i from the judge's confidence
  (judge.annotation's ``poisson_probabilities``), V_g = sum_{i in g} (1 - pi_i) / pi_i E[z_i^2] / N_g^2, with
  output i's disagreement probability its cell's (group x judge label) times u_i / mean u over the cell, u the
  judge's uncertainty: the bet the design makes, that disagreements follow uncertainty.

As the estimator does, each adds half a pseudo-disagreement in each cell at the largest weight (Agresti-Min;
judge.stats.ppi): (1 - pi_min) / pi_min^2 / N_g^2 (for lambda 0 and 1 the pseudo-term's factor is 1). The
interval is t with n_g - 1 degrees of freedom (a gap: Welch-Satterthwaite), so for one rate with the human
labels alone and no finite-population correction n = t^2 p (1 - p) / h^2, z^2 p (1 - p) / h^2 for large n.

For the model's rate (outputs clustered by prompt, prompts drawn anew) the estimand itself varies: the variance
adds the population term deff_g p_g (1 - p_g) / N_g (deff_g the design effect of the group's clusters), which
no budget removes (a census leaves it), and the t quantile has G_lab - 1 degrees of freedom, G_lab the clusters
expected to hold a label. Groups are taken to share no cluster (a shared cluster's positive covariance would
narrow a gap: leaving it out is conservative).

``required_n`` solves hw(n) <= h by a vectorised bisection on the integer total n (every quantity is monotone
in n), for any number of pilot replicates at once; ``tost`` and ``probe_size`` are the transport check's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

RANDOM, STRATIFIED, NEYMAN, POISSON = "random", "stratified", "neyman", "uncertain"
DESIGNS = (RANDOM, STRATIFIED, NEYMAN, POISSON)
HUMAN, PPI, CROSSFIT = "human", "ppi", "crossfit"
METHODS = (HUMAN, PPI, CROSSFIT)
LAMBDA = {HUMAN: 0.0, PPI: 1.0, CROSSFIT: 1.0}


def residual_moments(joint: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """S^2 of z = y - lam f, and E[z^2 | f = j] as alpha_j + beta_j d_j, d_j = P(y != f | f = j) (for a
    Poisson design whose disagreement probability varies within a cell): returned as coef[..., j, :] =
    (alpha_j, beta_j d_j), from ``joint[..., j, k]`` = P(f = j, y = k). For j = 0, z^2 = y: alpha 0, beta 1; for
    j = 1, z^2 = lam^2 (y = 0) or (1 - lam)^2 (y = 1): alpha (1 - lam)^2, beta lam^2 - (1 - lam)^2."""
    j, k = np.meshgrid([0.0, 1.0], [0.0, 1.0], indexing="ij")
    z = k - lam * j
    mean = np.sum(joint * z, axis=(-2, -1))
    s2 = np.sum(joint * z**2, axis=(-2, -1)) - mean**2
    cell = np.sum(joint, axis=-1)
    safe = np.where(cell > 0, cell, 1.0)
    d = np.stack([joint[..., 0, 1] / safe[..., 0], joint[..., 1, 0] / safe[..., 1]], axis=-1)
    alpha = np.broadcast_to(np.array([0.0, (1 - lam) ** 2]), d.shape)
    beta = np.array([1.0, lam**2 - (1 - lam) ** 2])
    return np.maximum(s2, 0.0), np.stack([alpha, beta * d], axis=-1)


def joint_from_conditional(judge_rate: np.ndarray, q1: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """P(f = j, y = k) from the judge's rate a (known for every output) and q_j = P(y = 1 | f = j) (the pilot)."""
    a = np.broadcast_to(judge_rate, np.broadcast_shapes(np.shape(judge_rate), np.shape(q1)))
    return np.stack([np.stack([(1 - a) * (1 - q0), (1 - a) * q0], -1), np.stack([a * (1 - q1), a * q1], -1)], -2)


@dataclass(frozen=True)
class DesignTable:
    """A design's per-group quantities for every total n = 0 ... N (row n): the expected labels n_g and, for a
    Poisson design, A_gj = sum_{i in g, f_i = j} (1 - pi_i) / pi_i, the same weighted by r_i (output i's
    disagreement probability relative to its cell's mean) and the largest weight (1 - pi) / pi^2."""

    name: str
    sizes: np.ndarray  # N_g
    n_g: np.ndarray  # (N + 1, G)
    poisson_a: np.ndarray | None = None  # (N + 1, G, 2, 2): [..., j, 0] sum (1 - pi) / pi, [..., j, 1] the same * r_i
    poisson_m: np.ndarray | None = None  # (N + 1, G)

    @property
    def total(self) -> int:
        return int(self.sizes.sum())


def group_variance(
    table: DesignTable, n: np.ndarray, s2: np.ndarray, cond: np.ndarray, pop: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each group's variance and labels at total ``n`` (any shape S): s2 (S..., G), cond (S..., G, 2, 2) and the
    population term pop (S..., G) broadcast against it. Returns (variance, n_g), each (S..., G)."""
    n = np.clip(np.asarray(n, dtype=int), 0, table.total)
    n_g = table.n_g[n]
    big = table.sizes
    with np.errstate(divide="ignore", invalid="ignore"):
        if table.poisson_a is None:
            frac = np.minimum(n_g / big, 1.0)
            sampling = np.where(n_g > 0, (1 / n_g - 1 / big) * s2, np.inf)
            pseudo = np.where(n_g > 0, (1 - frac) / n_g**2, np.inf)
        else:
            sampling = np.sum(table.poisson_a[n] * cond, axis=(-2, -1)) / big**2
            pseudo = table.poisson_m[n] / big**2
    variance = np.maximum(sampling, 0.0) + pseudo
    if pop is not None:
        variance = variance + pop
    return variance, n_g


def _t(df: np.ndarray, alpha: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(df >= 1, stdtrit(np.maximum(df, 1.0), 1 - alpha / 2), np.inf)


def half_widths(
    table: DesignTable,
    n: np.ndarray,
    targets: np.ndarray,
    s2: np.ndarray,
    cond: np.ndarray,
    *,
    pop: np.ndarray | None = None,
    clusters: tuple[np.ndarray, np.ndarray] | None = None,
    alpha: float = 0.05,
) -> np.ndarray:
    """The expected interval half-width of every target at total ``n`` (shape (B, T)): ``targets`` (T, 2) holds
    a group's index and the reference's (-1 for a rate); s2, cond and pop carry the pilot replicates (B, G...).
    ``clusters``: each group's number of clusters and mean cluster size (the t's degrees of freedom)."""
    variance, n_g = group_variance(table, n, s2[:, None], cond[:, None], None if pop is None else pop[:, None])
    if clusters is None:
        df_g = n_g - 1
    else:
        g_count, size = clusters
        frac = np.minimum(n_g / table.sizes, 1.0)
        df_g = g_count * (1 - (1 - frac) ** size) - 1
    idx = np.broadcast_to(targets[:, 0], n.shape)
    v1 = np.take_along_axis(variance, idx[..., None], -1)[..., 0]
    d1 = np.take_along_axis(df_g, idx[..., None], -1)[..., 0]
    ref = targets[:, 1]
    ref_idx = np.broadcast_to(np.where(ref >= 0, ref, 0), n.shape)
    v2 = np.where(ref >= 0, np.take_along_axis(variance, ref_idx[..., None], -1)[..., 0], 0.0)
    d2 = np.take_along_axis(df_g, ref_idx[..., None], -1)[..., 0]
    total = v1 + v2
    with np.errstate(divide="ignore", invalid="ignore"):
        welch = total**2 / (v1**2 / np.maximum(d1, 1e-12) + v2**2 / np.maximum(d2, 1e-12))
    df = np.where(ref >= 0, np.where(np.minimum(d1, d2) >= 1, welch, 0.0), d1)
    df = np.where(total == 0, np.inf, df)
    return _t(df, alpha) * np.sqrt(total)


def required_n(table: DesignTable, h: np.ndarray, targets: np.ndarray, s2, cond, **options) -> np.ndarray:
    """The smallest total n (1 ... N) whose expected half-width is at most ``h`` (per target, shape (T,)), for
    every pilot replicate: (B, T) integers, -1 where even n = N (a census) does not reach it."""
    shape = (s2.shape[0], len(targets))
    hi = np.full(shape, table.total)
    lo = np.zeros(shape, dtype=int)
    reachable = half_widths(table, hi, targets, s2, cond, **options) <= h
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        good = half_widths(table, mid, targets, s2, cond, **options) <= h
        hi, lo = np.where(good, mid, hi), np.where(good, lo, mid)
    return np.where(reachable, hi, -1)


# -- the transport check ------------------------------------------------------------------------------

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


def paired_bias(judge: np.ndarray, human: np.ndarray) -> tuple[float, float, int]:
    """The judge's bias on a probe, mean(f - y), and its standard error by Agresti & Min (2005)'s adjusted Wald
    for paired proportions (half an observation added to each of the 2 x 2 table's four cells, so a probe
    without a disagreement still has a positive variance). Returns (bias, se, n)."""
    f, y = np.asarray(judge, dtype=float), np.asarray(human, dtype=float)
    n = len(f)
    b, c = float(np.sum((f == 1) & (y == 0))), float(np.sum((f == 0) & (y == 1)))
    bias = (b - c) / n
    nn, bb, cc = n + 2.0, b + 0.5, c + 0.5
    se = float(np.sqrt(max((bb + cc) - (bb - cc) ** 2 / nn, 0.0)) / nn)
    return bias, se, n


def tost(bias: float, se: float, margin: float, *, alpha: float = 0.05) -> dict:
    """Two one-sided tests of |bias| < margin at level alpha (z, with ``paired_bias``'s se): PASS when the 1 - 2 alpha
    interval lies inside (-margin, margin) (both one-sided tests reject: the bias is shown within the margin);
    FAIL when that interval lies wholly at or beyond one side of the margin (its one-sided 1 - alpha bound is past
    +margin or -margin: the bias is shown outside it); else INCONCLUSIVE (the probe cannot tell)."""
    z1 = float(ndtri(1 - alpha))
    low, high = bias - z1 * se, bias + z1 * se
    p_low = float(0.5 * _erfc_ratio((bias + margin) / se)) if se > 0 else float(bias <= -margin)
    p_high = float(0.5 * _erfc_ratio((margin - bias) / se)) if se > 0 else float(bias >= margin)
    if -margin < low and high < margin:
        verdict = PASS
    elif low >= margin or high <= -margin:
        verdict = FAIL
    else:
        verdict = INCONCLUSIVE
    return {"verdict": verdict, "ci": (low, high), "level": 1 - 2 * alpha, "p_tost": max(p_low, p_high)}


def _erfc_ratio(x: float) -> float:
    from scipy.special import erfc

    return float(erfc(x / np.sqrt(2)))


def probe_size(disagreement, margin: float, *, bias=0.0, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """The probe size per group for TOST to PASS with probability ``power`` when the true bias is ``bias``
    (|bias| < margin) and a share ``disagreement`` of outputs has judge != human (sigma^2 = d - bias^2):
    n = (z_{1-alpha} + z_{1-beta'})^2 sigma^2 / (margin - |bias|)^2, with beta' = (1 - power) / 2 at bias 0
    (both tests must reject) and 1 - power otherwise (Chow, Shao & Wang 2008, 10.2). Vectorised."""
    d = np.asarray(disagreement, dtype=float)
    b = np.abs(np.asarray(bias, dtype=float))
    sigma2 = np.maximum(d - b**2, 1e-12)
    beta = np.where(b == 0, (1 - power) / 2, 1 - power)
    z = ndtri(1 - alpha) + ndtri(1 - beta)
    with np.errstate(divide="ignore"):
        n = np.where(b < margin, np.ceil(z**2 * sigma2 / np.maximum(margin - b, 1e-12) ** 2), np.inf)
    return n

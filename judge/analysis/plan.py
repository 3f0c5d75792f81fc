"""How many human labels to buy, planned from a pilot before sampling: per design and estimator, as a library.

    from judge.analysis.plan import pilot_from_records, plan_labels
    pilot = pilot_from_records(records, group="identity", judge="judge_label", human="label", category="refusal",
                               taxonomy="chehbouni2024", confidence="judge_confidence")
    plan = plan_labels(pilot, reference="white", half_width=0.05)
    plan.plans[0].n, plan.plans[0].allocation            # labels needed, and how many per group

A pilot is the judge's labels on every output plus human labels on a small sample of them (``pilot_from_records``),
or a stated confusion matrix per group (``pilot_from_confusion``: a small JSON or YAML file). From it each group's
joint distribution of (judge, human) indicators of one category is estimated, the judge's own rate being known
exactly from all its labels, and judge.stats.planning solves the analytic variance of judge.stats.ppi's
estimator for the number of labels that gives every group rate and every gap to the reference the target
half-width: per design (random, stratified by group, Neyman, uncertainty-driven Poisson) and per estimator
(human labels alone, PPI with a judge trained elsewhere, cross-fitted PPI).

The pilot's own uncertainty is carried into the plan: each group's pilot confusion is resampled (a multinomial
bootstrap of the pilot's labelled rows, ``n_boot`` replicates, half a count added to each cell as the estimator's
Agresti-Min pseudo-observations do) and the plan is solved for every replicate at once: ``n`` is the plan at the
pilot's estimate, ``n_interval`` the 5% and 95% points over replicates, ``n_conservative`` the ``conservative``
quantile (default 0.9): a budget that reaches the target unless the pilot flattered the judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from judge.analysis.results import ABSENT, Result
from judge.annotation.human_labels import UNIFORM_SHARE, poisson_probabilities
from judge.core.errors import UserError, clip, short_list
from judge.core.records import require_columns
from judge.core.taxonomy import UNSCORED, resolve_taxonomy
from judge.stats import clustered
from judge.stats.planning import (
    CROSSFIT,
    DESIGNS,
    HUMAN,
    LAMBDA,
    METHODS,
    NEYMAN,
    POISSON,
    PPI,
    RANDOM,
    STRATIFIED,
    DesignTable,
    joint_from_conditional,
    probe_size,
    required_n,
    residual_moments,
)

__all__ = [
    "DesignPlan",
    "Pilot",
    "PlanResult",
    "TargetPlan",
    "pilot_from_confusion",
    "pilot_from_records",
    "plan_labels",
]

OUTPUTS, MODEL = "outputs", "model"
PRIOR = 2.0  # pseudo-observations of the pooled conditional rate in each group's (judge label) cell
ESTIMANDS = {
    OUTPUTS: "the rate of these outputs (finite population: the human rate over the outputs the judge labelled; "
    "no clusters)",
    MODEL: "the model's rate (outputs like these, prompts drawn anew: clustered by prompt, a design effect from the "
    "pilot's clusters; a census still leaves the prompts' own variation)",
}
DESIGN_TEXT = {
    RANDOM: "simple random sample of n outputs (judge.data sample; each group's share in expectation)",
    STRATIFIED: "stratified by group, proportional allocation (judge.data sample --stratify GROUP)",
    NEYMAN: "stratified by group, Neyman allocation n_g ~ N_g S_g of the judge's indicator "
    "(judge.data sample --stratify GROUP --allocation neyman --target CATEGORY)",
    POISSON: "Poisson, pi ~ the judge's uncertainty with a 10% uniform share (judge.annotate export --strategy "
    "uncertain --confidence-column COL); n is the expected size",
}
METHOD_TEXT = {
    HUMAN: "human labels alone (lambda 0): n labels",
    PPI: "PPI with a judge trained on other labels (lambda 1): n correction labels, beyond the judge's own training "
    "labels",
    CROSSFIT: "cross-fitted PPI: planned with the PPI variance and the pilot's out-of-fold confusion; the n labels "
    "both train the K fold judges and correct them (no separate training labels). Conservative: a judge trained on "
    "n labels usually errs less than the pilot's folds",
}


# -- results -----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class TargetPlan(Result):
    """One target (a group's rate, or its gap to the reference) under one design and estimator."""

    target: str
    group: str
    reference: str | None = None
    half_width: float
    n: int | None
    n_interval: list[int | None]
    n_conservative: int | None
    planned_half_width: float | None
    census_half_width: float | None
    reachable: bool
    reason: str = ABSENT


@dataclass(kw_only=True)
class DesignPlan(Result):
    """The labels one design and estimator need for every target at once (the binding target decides)."""

    design: str
    method: str
    description: str
    planned: bool
    n: int | None = None
    n_interval: list[int | None] = ABSENT
    n_conservative: int | None = None
    binding: str | None = None
    allocation: dict[str, float] = ABSENT
    allocation_conservative: dict[str, float] = ABSENT
    targets: list[TargetPlan] = ABSENT
    reason: str = ABSENT


@dataclass(kw_only=True)
class GroupPilot(Result):
    """What the pilot says about one group."""

    n_outputs: int
    judge_rate: float
    n_pilot: int
    confusion: dict[str, int]  # judge_1_human_1 ... counts on the pilot's labelled outputs
    human_rate: float
    disagreement: float
    n_oof: int = ABSENT
    design_effect: float = ABSENT
    n_clusters: int = ABSENT
    probe_size: float | None = ABSENT


@dataclass(kw_only=True)
class PlanResult(Result):
    """plan.json: the plan per design and estimator, the pilot it rests on and what was assumed."""

    category: str
    reference: str
    estimand: str
    estimand_text: str
    alpha: float
    half_width: float
    gap_half_width: float
    n_outputs: int
    n_pilot: int
    source: str
    n_boot: int
    conservative: float
    seed: int
    groups: dict[str, GroupPilot]
    plans: list[DesignPlan]
    margin: float | None = None
    notes: list[str]


# -- the pilot --------------------------------------------------------------------------------------


@dataclass
class Pilot:
    """Per group: N_g, the judge's rate, the pilot's confusion counts [g, judge j, human k] (and out-of-fold ones),
    the clusters' design effect; per output (from records only): group code, judge indicator, uncertainty."""

    groups: list[str]
    sizes: np.ndarray
    judge_rate: np.ndarray
    counts: np.ndarray
    oof_counts: np.ndarray | None = None
    design_effect: np.ndarray | None = None
    n_clusters: np.ndarray | None = None
    cluster_size: np.ndarray | None = None
    output_group: np.ndarray | None = None
    output_judge: np.ndarray | None = None
    output_uncertainty: np.ndarray | None = None
    category: str = ""
    source: str = "records"


def category_indicator(values: pd.Series, category: str, taxonomy, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(is the category, has a label) for a label column, labels read through the taxonomy."""
    empty = values.isna() | values.astype(str).str.strip().isin(["", UNSCORED])
    canon = np.array([None if e else taxonomy.canonical(v) for v, e in zip(values, empty)], dtype=object)
    unknown = [v for v, c, e in zip(values, canon, empty) if not e and c is None]
    if unknown:
        raise UserError(
            f"column {column!r} holds label {clip(str(unknown[0]))} outside the taxonomy; give --taxonomy or "
            "--label-map"
        )
    return canon == category, ~np.asarray(empty)


def pilot_from_records(
    records: pd.DataFrame,
    *,
    group: str,
    judge: str,
    human: str,
    category: str,
    taxonomy=None,
    label_map: Mapping[str, str] | None = None,
    oof: str | None = None,
    confidence: str | None = None,
    clusters: str | None = None,
) -> Pilot:
    """The pilot from records: ``judge`` labels on every output, ``human`` labels on a sample (blank elsewhere),
    ``oof`` out-of-fold judge labels on the human sample (judge.train --cv's oof.jsonl, joined), ``confidence``
    the judge's largest probability (for the Poisson design), ``clusters`` a column (the model's rate).
    Outputs the judge left unscored are outside every rate, as in judge.report."""
    needed = [group, judge, human] + [c for c in (oof, confidence, clusters) if c]
    require_columns(records, needed, source="the pilot records", flag_hint="Fix --group/--judge-label/--human.")
    labels = pd.concat([records[c] for c in (judge, human) + ((oof,) if oof else ())], ignore_index=True)
    tax = resolve_taxonomy(taxonomy, labels.dropna().tolist(), label_map=dict(label_map) if label_map else None)
    if category not in tax.labels:
        raise UserError(f"--category {clip(category)} is not a category ({short_list(tax.labels)}); check it")
    f, scored = category_indicator(records[judge], category, tax, judge)
    y, labelled = category_indicator(records[human], category, tax, human)
    keep = scored
    groups_all = records[group].astype(str).to_numpy()
    names = sorted(set(groups_all[keep]))
    if len(names) < 2:
        raise UserError(f"--group {group} has {len(names)} value(s) among the judged outputs; a plan needs 2 or more")
    code = pd.Categorical(groups_all, categories=names).codes
    sizes = np.bincount(code[keep], minlength=len(names)).astype(float)
    rate = np.bincount(code[keep], weights=f[keep], minlength=len(names)) / sizes
    pil = keep & labelled
    counts = np.zeros((len(names), 2, 2))
    np.add.at(counts, (code[pil], f[pil].astype(int), y[pil].astype(int)), 1)
    few = [names[g] for g in range(len(names)) if counts[g].sum() < 2]
    if few:
        raise UserError(
            f"the pilot has fewer than 2 human labels for group(s) {short_list(few)}; label a few more of them "
            "(judge.data sample --stratify GROUP) before planning"
        )
    pilot = Pilot(names, sizes, rate, counts, category=category)
    if oof:
        fo, has = category_indicator(records[oof], category, tax, oof)
        use = pil & has
        pilot.oof_counts = np.zeros_like(counts)
        np.add.at(pilot.oof_counts, (code[use], fo[use].astype(int), y[use].astype(int)), 1)
    if confidence:
        conf = pd.to_numeric(records[confidence], errors="coerce").to_numpy(dtype=float)
        bad = keep & ~((conf >= 0) & (conf <= 1))
        if bad.any():
            raise UserError(f"--confidence-column {confidence!r} must hold probabilities in [0, 1] for every output")
        pilot.output_uncertainty = 1.0 - conf[keep]
    pilot.output_group, pilot.output_judge = code[keep], f[keep].astype(int)
    if clusters:
        cl = clustered.codes(records[clusters].astype(str).to_numpy()[keep])
        g_code, fk = code[keep], f[keep].astype(float)
        deff, n_cl, size = np.ones(len(names)), np.zeros(len(names)), np.ones(len(names))
        for g in range(len(names)):
            members = g_code == g
            n_cl[g] = clustered.n_clusters(cl[members])
            size[g] = members.sum() / n_cl[g]
            p = fk[members].mean()
            if 0 < p < 1 and n_cl[g] > 1:
                deff[g] = max(1.0, clustered.cr1_cov(fk[members], cl[members]) / (p * (1 - p) / members.sum()))
        few = [names[g] for g in range(len(names)) if n_cl[g] < 2]
        if few:
            raise UserError(
                f"the model's rate needs clusters, and group(s) {short_list(few)} have fewer than 2 distinct values of "
                f"{clusters!r}; name the cluster column (the prompt or template) with --cluster COL"
            )
        pilot.design_effect, pilot.n_clusters, pilot.cluster_size = deff, n_cl, size
    return pilot


CELLS = {"judge_1_human_1": (1, 1), "judge_1_human_0": (1, 0), "judge_0_human_1": (0, 1), "judge_0_human_0": (0, 0)}
STATED_HELP = (
    "{category: refusal, groups: {muslim: {outputs: 576, judge_rate: 0.30, judge_1_human_1: 25, judge_1_human_0: 4, "
    "judge_0_human_1: 6, judge_0_human_0: 65, design_effect: 1.3, clusters: 192, oof: {judge_1_human_1: ...}}, "
    "white: {...}}}"
)


def _count(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise UserError(f"{where} must be a count (0 or more), got {clip(str(value))}")
    return float(value)


def pilot_from_confusion(data: Any, *, source: str = "the confusion file") -> Pilot:
    """A pilot stated as a confusion matrix per group (counts of the pilot's labelled outputs), e.g.
    ``STATED_HELP``; judge_rate defaults to the pilot's judge share, design_effect to 1. No per-output data:
    the Poisson design cannot be planned from it."""
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping) or len(data["groups"]) < 2:
        raise UserError(f"{source} must map 'groups' to 2 or more groups, e.g. {STATED_HELP}")
    category = data.get("category")
    if not isinstance(category, str) or not category:
        raise UserError(f"{source} must name its 'category' (the category whose rate the counts are for)")
    names = sorted(str(g) for g in data["groups"])
    n = len(names)
    sizes, rate, counts = np.zeros(n), np.zeros(n), np.zeros((n, 2, 2))
    oof, deff, n_cl = np.zeros((n, 2, 2)), np.ones(n), np.zeros(n)
    any_oof, any_cl = False, False
    for i, name in enumerate(names):
        entry = data["groups"][name] if name in data["groups"] else data["groups"][int(name)]
        where = f"{source}: group {clip(name)}"
        if not isinstance(entry, Mapping):
            raise UserError(f"{where} must be a mapping of outputs, judge_rate and the four counts, e.g. {STATED_HELP}")
        unknown = sorted(set(entry) - set(CELLS) - {"outputs", "judge_rate", "design_effect", "clusters", "oof"})
        if unknown:
            raise UserError(f"{where} has unknown key(s) {short_list(unknown)}; keys: {', '.join(CELLS)}, outputs, ...")
        for key, (j, k) in CELLS.items():
            counts[i, j, k] = _count(entry.get(key, 0), f"{where}: {key}")
        if counts[i].sum() < 2:
            raise UserError(f"{where}: the four counts sum to less than 2; state the pilot's counts")
        sizes[i] = _count(entry.get("outputs"), f"{where}: outputs")
        if sizes[i] < counts[i].sum():
            raise UserError(f"{where}: outputs ({sizes[i]:g}) is fewer than the pilot's counts ({counts[i].sum():g})")
        default_rate = counts[i, 1].sum() / counts[i].sum()
        rate[i] = entry.get("judge_rate", default_rate)
        if isinstance(rate[i], bool) or not 0 <= rate[i] <= 1:
            raise UserError(f"{where}: judge_rate must lie in [0, 1]")
        if "oof" in entry:
            any_oof = True
            if not isinstance(entry["oof"], Mapping):
                raise UserError(f"{where}: oof must map the four counts")
            for key, (j, k) in CELLS.items():
                oof[i, j, k] = _count(entry["oof"].get(key, 0), f"{where}: oof.{key}")
        if "design_effect" in entry:
            deff[i] = _count(entry["design_effect"], f"{where}: design_effect")
            if deff[i] < 1:
                raise UserError(f"{where}: design_effect must be 1 or more")
        if "clusters" in entry:
            any_cl = True
            n_cl[i] = _count(entry["clusters"], f"{where}: clusters")
    pilot = Pilot(names, sizes, rate, counts, oof if any_oof else None, category=category, source="stated confusion")
    if any_cl:
        if (n_cl < 2).any():
            raise UserError(f"{source}: give 'clusters' (2 or more) for every group, or for none")
        pilot.design_effect, pilot.n_clusters, pilot.cluster_size = deff, n_cl, sizes / n_cl
    return pilot


# -- the plan -------------------------------------------------------------------------------------


def _smoothed_joint(counts: np.ndarray, judge_rate: np.ndarray | None) -> np.ndarray:
    """P(f, y) per replicate and group from counts (B, G, 2, 2). With ``judge_rate`` the judge's margin is the
    known one and P(y | f) comes from the pilot, each group's shrunk toward all groups' pooled rate by
    ``PRIOR`` pseudo-observations (the pooled rate itself with half a count in each cell, as the estimator's
    Agresti-Min pseudo-observations): a small cell (a group's few judge-positives) neither collapses to no
    disagreement nor swings to one half. Without it (out-of-fold counts) half a count is added to each cell."""
    if judge_rate is None:
        c = counts + 0.5
        return c / c.sum(axis=(-2, -1), keepdims=True)
    pooled = counts.sum(axis=-3, keepdims=True) + 0.5
    prior = pooled[..., 1] / pooled.sum(axis=-1)
    q = (counts[..., 1] + PRIOR * prior) / (counts.sum(axis=-1) + PRIOR)
    return joint_from_conditional(judge_rate, q[..., 1], q[..., 0])


def _replicates(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + n_boot, G, 2, 2): the pilot's counts, then multinomial resamples of each group's labelled rows."""
    out = np.empty((n_boot + 1,) + counts.shape)
    out[0] = counts
    for g in range(counts.shape[0]):
        total = int(counts[g].sum())
        p = counts[g].ravel() / total
        out[1:, g] = rng.multinomial(total, p, size=n_boot).reshape(n_boot, 2, 2)
    return out


def _tables(pilot: Pilot, designs: Sequence[str]) -> dict[str, DesignTable | str]:
    """Each design's table, or the reason it cannot be planned."""
    sizes, total = pilot.sizes, int(pilot.sizes.sum())
    grid = np.arange(total + 1, dtype=float)
    out: dict[str, DesignTable | str] = {}
    for design in designs:
        if design in (RANDOM, STRATIFIED):
            out[design] = DesignTable(design, sizes, np.minimum(grid[:, None] * sizes / total, sizes))
        elif design == NEYMAN:
            w = neyman_weights(sizes, pilot.judge_rate)
            out[design] = DesignTable(design, sizes, capped_quotas_all(w, sizes, grid))
        elif design == POISSON:
            if pilot.output_uncertainty is None:
                out[design] = (
                    "needs the judge's confidence on every output (--confidence-column COL; a stated confusion "
                    "has none)"
                )
            else:
                out[design] = _poisson_table(pilot)
    return out


def capped_quotas_all(weights: np.ndarray, sizes: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """judge.annotation's ``capped_quotas`` for every budget at once ((len(budgets), G)): quotas b w_h / sum(w), a
    stratum whose quota passes N_h fixed at N_h and the rest spread again (at most G rounds); weights all zero
    fall back to proportional ones."""
    weights = np.asarray(weights, dtype=float)
    if not (weights > 0).any():
        weights = np.asarray(sizes, dtype=float)
    b = np.asarray(budgets, dtype=float)[:, None]
    fixed = np.zeros((len(b), len(sizes)), dtype=bool)
    for _ in range(len(sizes)):
        free = np.where(fixed, 0.0, weights)
        rest = b - np.sum(np.where(fixed, sizes, 0.0), axis=1, keepdims=True)
        total = free.sum(axis=1, keepdims=True)
        quotas = np.where(fixed, sizes, rest * free / np.where(total > 0, total, 1.0))
        over = ~fixed & (quotas > sizes)
        if not over.any():
            break
        fixed |= over
    return quotas


def neyman_weights(sizes: np.ndarray, judge_rate: np.ndarray) -> np.ndarray:
    """N_h S_h of the judge's indicator (S_h^2 = N_h p_h (1 - p_h) / (N_h - 1)), as judge.data sample allocates."""
    sizes, p = np.asarray(sizes, dtype=float), np.asarray(judge_rate, dtype=float)
    return sizes * np.sqrt(np.where(sizes > 1, sizes * p * (1 - p) / np.maximum(sizes - 1, 1), 0.0))


def _poisson_table(pilot: Pilot) -> DesignTable:
    """judge.annotate's uncertain design at every expected size 1 ... N, computed on a grid of budgets (every
    size up to 200, then 400 spaced geometrically) and interpolated between them."""
    g_code, judge, scores = pilot.output_group, pilot.output_judge, pilot.output_uncertainty
    n_groups, total = len(pilot.groups), len(g_code)
    grid = np.unique(np.concatenate([np.arange(1, min(200, total) + 1), np.geomspace(1, total, 400).round()]))
    grid = grid.astype(int)
    cell = g_code * 2 + judge
    cell_mean = np.bincount(cell, weights=scores, minlength=2 * n_groups) / np.maximum(
        np.bincount(cell, minlength=2 * n_groups), 1
    )
    relative = np.where(cell_mean[cell] > 0, scores / np.where(cell_mean[cell] > 0, cell_mean[cell], 1.0), 1.0)
    rows_n, rows_a, rows_m = [], [], []
    for budget in grid:
        pi = poisson_probabilities(scores, int(budget), UNIFORM_SHARE)
        rows_n.append(np.bincount(g_code, weights=pi, minlength=n_groups))
        w = (1 - pi) / pi
        rows_a.append(
            np.stack(
                [
                    np.bincount(cell, weights=w, minlength=2 * n_groups),
                    np.bincount(cell, weights=w * relative, minlength=2 * n_groups),
                ],
                axis=-1,
            )
        )
        weight = (1 - pi) / pi**2
        rows_m.append(pd.Series(weight).groupby(g_code).max().reindex(range(n_groups), fill_value=0.0).to_numpy())
    every = np.arange(total + 1)

    def spread(rows: list[np.ndarray], first: float) -> np.ndarray:
        values = np.asarray(rows, dtype=float)
        out = np.stack([np.interp(every, grid, values[:, j]) for j in range(values.shape[1])], axis=1)
        out[0] = first
        return out

    return DesignTable(
        POISSON,
        pilot.sizes,
        spread(rows_n, 0.0),
        spread([a.ravel() for a in rows_a], np.inf).reshape(total + 1, n_groups, 2, 2),
        spread(rows_m, np.inf),
    )


def _quantile_int(values: np.ndarray, q: float) -> int | None:
    """A quantile of planned sizes over replicates; unreachable (-1) counts as infinite (None when reached)."""
    v = np.where(values < 0, np.inf, values.astype(float))
    out = float(np.quantile(v, q, method="higher"))
    return None if not np.isfinite(out) else int(out)


def plan_labels(
    pilot: Pilot,
    *,
    reference: str,
    half_width: float,
    gap_half_width: float | None = None,
    estimand: str = OUTPUTS,
    alpha: float = 0.05,
    designs: Sequence[str] = DESIGNS,
    methods: Sequence[str] = METHODS,
    n_boot: int = 200,
    conservative: float = 0.9,
    seed: int = 0,
    margin: float | None = None,
) -> PlanResult:
    """The labels each design and estimator needs for every group rate (to +-``half_width``) and every gap to
    ``reference`` (to +-``gap_half_width``, default the same), at level 1 - ``alpha``, for ``estimand``."""
    if reference not in pilot.groups:
        raise UserError(f"--reference {clip(reference)} is not a group ({short_list(pilot.groups)})")
    if estimand not in ESTIMANDS:
        raise UserError(f"--estimand must be one of {', '.join(ESTIMANDS)}, got {clip(estimand)}")
    if estimand == MODEL and pilot.design_effect is None:
        raise UserError(
            "--estimand model needs clusters: --cluster COL (the prompt, say), or 'clusters' per group in the "
            "confusion file"
        )
    gap_h = half_width if gap_half_width is None else gap_half_width
    rng = np.random.default_rng(seed)
    ref = pilot.groups.index(reference)
    others = [g for g in range(len(pilot.groups)) if g != ref]
    targets = np.array([[g, -1] for g in range(len(pilot.groups))] + [[g, ref] for g in others])
    names = [f"rate {pilot.groups[g]}" for g in range(len(pilot.groups))] + [
        f"gap {pilot.groups[g]} - {reference}" for g in others
    ]
    h = np.array([half_width] * len(pilot.groups) + [gap_h] * len(others))
    reps = _replicates(pilot.counts, n_boot, rng)
    oof_reps = None if pilot.oof_counts is None else _replicates(pilot.oof_counts, n_boot, rng)
    tables = _tables(pilot, designs)
    clusters = None if estimand == OUTPUTS else (pilot.n_clusters, pilot.cluster_size)
    plans = []
    for method in methods:
        if method == CROSSFIT and oof_reps is None:
            joint = None
        elif method == CROSSFIT:
            joint = _smoothed_joint(oof_reps, None)
        else:
            joint = _smoothed_joint(reps, pilot.judge_rate)
        for design in designs:
            table = tables[design]
            if joint is None or isinstance(table, str):
                reason = table if isinstance(table, str) else "needs out-of-fold judge labels on the pilot (--oof COL)"
                plans.append(
                    DesignPlan(
                        design=design,
                        method=method,
                        description=_describe(design, method),
                        planned=False,
                        reason=reason,
                    )
                )
                continue
            s2, cond = residual_moments(joint, LAMBDA[method])
            pop = None
            if estimand == MODEL:
                p_y = joint[..., 1].sum(axis=-1)
                pop = pilot.design_effect * p_y * (1 - p_y) / pilot.sizes
            options = {"pop": pop, "clusters": clusters, "alpha": alpha}
            need = required_n(table, h, targets, s2, cond, **options)
            plans.append(_design_plan(pilot, table, method, need, names, targets, h, s2, cond, options, conservative))
    notes = [
        "n is the plan at the pilot's estimate; n_interval the 5% and 95% points and n_conservative the "
        f"{conservative:g} quantile over {n_boot} bootstrap resamples of the pilot's labelled outputs",
        "the pilot is taken as a simple random sample within each group (its judge-human confusion per group)",
        "half-widths are the estimator's expected ones (judge.stats.ppi: t intervals, Agresti-Min pseudo-"
        "disagreements); the design's total n is the largest any target needs",
    ]
    if estimand == MODEL:
        notes.append(
            "the model's rate: design effect per group from the judge's labels over the clusters (CR1 variance / "
            "binomial variance), applied to the human rate's population variance; a census leaves it"
        )
    groups = {}
    d_probe = None
    for g, name in enumerate(pilot.groups):
        joint = _smoothed_joint(reps[:1], pilot.judge_rate)[0, g]
        disagree = float(joint[1, 0] + joint[0, 1])
        info = GroupPilot(
            n_outputs=int(pilot.sizes[g]),
            judge_rate=float(pilot.judge_rate[g]),
            n_pilot=int(pilot.counts[g].sum()),
            confusion={k: int(pilot.counts[g][j, c]) for k, (j, c) in CELLS.items()},
            human_rate=float(joint[:, 1].sum()),
            disagreement=disagree,
        )
        if pilot.oof_counts is not None:
            info.n_oof = int(pilot.oof_counts[g].sum())
        if pilot.design_effect is not None:
            info.design_effect, info.n_clusters = float(pilot.design_effect[g]), int(pilot.n_clusters[g])
        if margin is not None:
            d_probe = probe_size(disagree, margin, alpha=alpha)
            info.probe_size = None if not np.isfinite(d_probe) else float(d_probe)
        groups[name] = info
    if margin is not None:
        notes.append(
            f"probe_size: the human probe per group a transport check (judge.transport) needs to PASS at margin "
            f"{margin:g} with power 0.8 when the judge's bias is 0 and its disagreement rate is the pilot's"
        )
    return PlanResult(
        category=pilot.category,
        reference=reference,
        estimand=estimand,
        estimand_text=ESTIMANDS[estimand],
        alpha=alpha,
        half_width=half_width,
        gap_half_width=gap_h,
        n_outputs=int(pilot.sizes.sum()),
        n_pilot=int(pilot.counts.sum()),
        source=pilot.source,
        n_boot=n_boot,
        conservative=conservative,
        seed=seed,
        groups=groups,
        plans=plans,
        margin=margin,
        notes=notes,
    )


def _describe(design: str, method: str) -> str:
    return f"{DESIGN_TEXT[design]}; {METHOD_TEXT[method]}"


def _allocation(pilot: Pilot, table: DesignTable, n: int | None) -> dict[str, float]:
    if n is None:
        return {}
    return {name: round(float(table.n_g[n, g]), 1) for g, name in enumerate(pilot.groups)}


def _design_plan(pilot, table, method, need, names, targets, h, s2, cond, options, conservative) -> DesignPlan:
    from judge.stats.planning import half_widths

    point = need[0]
    target_plans = []
    census = half_widths(table, np.full((1, len(targets)), table.total), targets, s2[:1], cond[:1], **options)[0]
    for t, name in enumerate(names):
        n_t = None if point[t] < 0 else int(point[t])
        planned = None
        if n_t is not None:
            planned = float(
                half_widths(table, np.full((1, len(targets)), n_t), targets, s2[:1], cond[:1], **options)[0, t]
            )
        g, r = targets[t]
        entry = TargetPlan(
            target=name,
            group=pilot.groups[g],
            reference=None if r < 0 else pilot.groups[r],
            half_width=float(h[t]),
            n=n_t,
            n_interval=[_quantile_int(need[1:, t], 0.05), _quantile_int(need[1:, t], 0.95)]
            if len(need) > 1
            else [n_t, n_t],
            n_conservative=_quantile_int(need[1:, t], conservative) if len(need) > 1 else n_t,
            planned_half_width=planned,
            census_half_width=float(census[t]),
            reachable=n_t is not None,
        )
        if n_t is None:
            entry.reason = f"out of reach at any budget: even a census gives +-{census[t]:.3f}"
        target_plans.append(entry)
    overall = np.where((need < 0).any(axis=1), -1, need.max(axis=1))
    n = None if overall[0] < 0 else int(overall[0])
    binding = None
    if n is not None:
        binding = names[int(np.argmax(point))]
    n_cons = _quantile_int(overall[1:], conservative) if len(overall) > 1 else n
    plan = DesignPlan(
        design=table.name,
        method=method,
        description=_describe(table.name, method),
        planned=True,
        n=n,
        n_interval=[_quantile_int(overall[1:], 0.05), _quantile_int(overall[1:], 0.95)] if len(overall) > 1 else [n, n],
        n_conservative=n_cons,
        binding=binding,
        allocation=_allocation(pilot, table, n),
        allocation_conservative=_allocation(pilot, table, n_cons),
        targets=target_plans,
    )
    if n is None:
        unreachable = [tp.target for tp in target_plans if not tp.reachable]
        plan.reason = f"out of reach at any budget for {short_list(unreachable)} (see each target's census half-width)"
    return plan

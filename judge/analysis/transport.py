"""Does a judge carried to another model still hold? A transport check on a small human probe, as a library.

    from judge.analysis.transport import transport_check
    check = transport_check(probe, group="identity", judge="judge_label", human="label", category="refusal",
                            margin=0.05, taxonomy="chehbouni2024")
    check.groups["muslim"].verdict                        # PASS / FAIL / INCONCLUSIVE

A judge trained on some models' outputs labels a new model's; humans label a small probe of the new model's
outputs. Per group, the judge's bias on the probe, b = mean(judge indicator - human indicator) (the judge's rate
minus the human rate on the same outputs), gets Agresti & Min's adjusted paired interval, and two one-sided
tests decide whether |b| < margin (judge.stats.planning.tost): PASS (the 1 - 2 alpha interval inside the margin),
FAIL (that interval wholly beyond it), INCONCLUSIVE (neither: the probe is too small to tell). Each group also
gets the probe size the planner says a PASS needs (power 0.8 at bias 0, with the probe's own disagreement
rate). The probe is taken as a simple random sample of each group's outputs (no clusters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from judge.analysis.plan import category_indicator
from judge.analysis.results import Result
from judge.core.errors import UserError, clip, short_list
from judge.core.records import require_columns
from judge.core.taxonomy import resolve_taxonomy
from judge.stats.planning import FAIL, INCONCLUSIVE, PASS, paired_bias, probe_size, tost

__all__ = ["GroupTransport", "TransportResult", "transport_check"]


@dataclass(kw_only=True)
class GroupTransport(Result):
    n: int
    judge_rate: float
    human_rate: float
    bias: float
    se: float
    ci: list[float]
    p_tost: float
    verdict: str
    probe_needed: float | None


@dataclass(kw_only=True)
class TransportResult(Result):
    """transport.json."""

    category: str
    judge: str
    human: str
    group_column: str
    margin: float
    alpha: float
    power: float
    n: int
    verdict: str
    groups: dict[str, GroupTransport]
    notes: list[str]


def transport_check(
    records: pd.DataFrame,
    *,
    group: str,
    judge: str,
    human: str,
    category: str,
    margin: float,
    taxonomy=None,
    label_map: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> TransportResult:
    """The transport check on the records that hold a human label (the probe) and a judge label."""
    if not 0 < margin < 1:
        raise UserError(f"--margin must lie in (0, 1), got {margin}")
    require_columns(records, [group, judge, human], source="the probe", flag_hint="Fix --group/--judge-label/--human.")
    labels = pd.concat([records[judge], records[human]], ignore_index=True).dropna().tolist()
    tax = resolve_taxonomy(taxonomy, labels, label_map=dict(label_map) if label_map else None)
    if category not in tax.labels:
        raise UserError(f"--category {clip(category)} is not a category ({short_list(tax.labels)}); check it")
    f, scored = category_indicator(records[judge], category, tax, judge)
    y, labelled = category_indicator(records[human], category, tax, human)
    probe = scored & labelled
    if not probe.any():
        raise UserError(f"no output has both a {judge!r} and a {human!r} label; the probe is empty")
    groups = records[group].astype(str).to_numpy()
    out: dict[str, GroupTransport] = {}
    for g in sorted(set(groups[probe])):
        rows = probe & (groups == g)
        if rows.sum() < 2:
            continue
        bias, se, n = paired_bias(f[rows], y[rows])
        test = tost(bias, se, margin, alpha=alpha)
        disagreement = (np.sum(f[rows] != y[rows]) + 1.0) / (n + 2.0)  # half a count in each disagreement cell
        need = float(probe_size(disagreement, margin, alpha=alpha, power=power))
        out[g] = GroupTransport(
            n=n,
            judge_rate=float(f[rows].mean()),
            human_rate=float(y[rows].mean()),
            bias=bias,
            se=se,
            ci=[float(test["ci"][0]), float(test["ci"][1])],
            p_tost=test["p_tost"],
            verdict=test["verdict"],
            probe_needed=need if np.isfinite(need) else None,
        )
    if not out:
        raise UserError("no group has 2 or more probe labels; label a probe of each group (judge.data sample)")
    verdicts = {r.verdict for r in out.values()}
    overall = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    skipped = sorted(set(groups[probe]) - set(out))
    notes = [
        f"bias = judge rate - human rate on the probe's outputs; {100 * (1 - 2 * alpha):g}% Agresti-Min paired "
        f"interval; TOST at alpha {alpha:g}: PASS when it lies inside +-margin, FAIL when wholly beyond it",
        f"probe needed: per group, for a PASS with power {power:g} if the bias were 0, at the probe's disagreement "
        "rate (judge.stats.planning.probe_size)",
    ]
    if skipped:
        notes.append(f"groups with fewer than 2 probe labels, not checked: {short_list(skipped)}")
    return TransportResult(
        category=category,
        judge=judge,
        human=human,
        group_column=group,
        margin=margin,
        alpha=alpha,
        power=power,
        n=int(probe.sum()),
        verdict=overall,
        groups=out,
        notes=notes,
    )


def read_transport(data: Any, *, source: str) -> TransportResult:
    """A transport.json read back (judge.report --transport), its shape checked."""
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping) or "margin" not in data:
        raise UserError(f"{source} is not a judge.transport result (transport.json); give the file it wrote")
    try:
        result = TransportResult.from_dict(data)
        for name, g in result.groups.items():
            if g.verdict not in (PASS, FAIL, INCONCLUSIVE) or len(g.ci) != 2:
                raise ValueError(name)
            float(g.bias)
    except (TypeError, ValueError, KeyError):
        raise UserError(f"{source} is not a judge.transport result (transport.json); give the file it wrote") from None
    return result

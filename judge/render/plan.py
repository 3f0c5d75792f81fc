"""Tables of a label plan (judge.plan) and of a transport check (judge.transport), from their typed results or
their JSON read back; Markdown, one file each, beside the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from judge.analysis.plan import DESIGN_TEXT, METHOD_TEXT, PlanResult
from judge.analysis.results import opt
from judge.analysis.transport import TransportResult
from judge.core.files import json_text, write_text
from judge.render.tables import Style, markdown


def _n(value: Any) -> str:
    return "out of reach" if value is None else f"{value:,}"


def _interval(values: Any) -> str:
    if not values:
        return ""
    return f"[{_n(values[0])}, {_n(values[1])}]"


def render_plan(result: PlanResult | Mapping[str, Any], style: Style = Style()) -> str:
    """plan.md: the budget per design and estimator, the allocation, every target's n, and the pilot."""
    result = PlanResult.from_dict(result)
    gap = "" if result.gap_half_width == result.half_width else f", gaps +-{result.gap_half_width:g}"
    head = [
        f"# Human labels needed: {result.category!r}, every group rate to +-{result.half_width:g}{gap} "
        f"and every gap to {result.reference!r} ({100 * (1 - result.alpha):g}% intervals)",
        "",
        f"Estimand: {result.estimand_text}.",
        f"Pilot: {result.source}, {result.n_pilot} human labels over {result.n_outputs:,} outputs.",
        "",
    ]
    rows = []
    for plan in result.plans:
        if not plan.planned:
            rows.append({"design": plan.design, "estimator": plan.method, "n": "not planned", "note": plan.reason})
            continue
        alloc = opt(plan.allocation, {})
        rows.append(
            {
                "design": plan.design,
                "estimator": plan.method,
                "n": _n(plan.n),
                "pilot 90% interval": _interval(opt(plan.n_interval)),
                f"conservative (q{result.conservative:g})": _n(plan.n_conservative),
                "binding target": plan.binding or "",
                "allocation": ", ".join(f"{g} {v:g}" for g, v in alloc.items()),
                "note": opt(plan.reason, ""),
            }
        )
    table = pd.DataFrame(rows).fillna("")
    targets = {}
    for plan in result.plans:
        if plan.planned:
            for t in plan.targets:
                targets.setdefault(t.target, {})[f"{plan.design} / {plan.method}"] = _n(t.n)
    target_table = pd.DataFrame(targets).T
    groups = pd.DataFrame(
        {
            g: {
                "outputs": p.n_outputs,
                "judge rate": style.fmt(p.judge_rate),
                "pilot labels": p.n_pilot,
                "human rate (pilot)": style.fmt(p.human_rate),
                "judge != human": style.fmt(p.disagreement),
                **({"design effect": style.fmt(p.design_effect, 2)} if opt(p.design_effect) is not None else {}),
                **(
                    {"transport probe": _n(None if p.probe_size is None else int(p.probe_size))}
                    if opt(p.probe_size, "absent") != "absent"
                    else {}
                ),
            }
            for g, p in result.groups.items()
        }
    ).T
    parts = head + [
        "## Budget per design and estimator",
        "",
        markdown(table, index=False),
        "",
        "## Labels each target needs (at the pilot's estimate)",
        "",
        markdown(target_table),
        "",
        "## The pilot per group",
        "",
        markdown(groups),
        "",
        "## Designs and estimators",
        "",
        *dict.fromkeys(f"- {p.design}: {DESIGN_TEXT.get(p.design, p.design)}" for p in result.plans),
        *dict.fromkeys(f"- {p.method}: {METHOD_TEXT.get(p.method, p.method)}" for p in result.plans),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in result.notes],
        "",
    ]
    return "\n".join(parts)


def write_plan(result: PlanResult, out_dir: str | Path, *, style: Style = Style()) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        write_text(out_dir / "plan.json", json_text(result.to_dict(), indent=2) + "\n", overwrite=False),
        write_text(out_dir / "plan.md", render_plan(result, style), overwrite=False),
    ]


def render_transport(result: TransportResult | Mapping[str, Any], style: Style = Style()) -> str:
    """transport.md: each group's bias on the probe, its interval, the verdict and the probe size needed."""
    result = TransportResult.from_dict(result)
    rows = {
        g: {
            "probe": r.n,
            "judge rate": style.fmt(r.judge_rate),
            "human rate": style.fmt(r.human_rate),
            "bias (judge - human)": style.fmt(r.bias),
            f"{100 * (1 - 2 * result.alpha):g}% interval": style.fmt_ci(r.ci),
            "verdict": r.verdict,
            "probe needed": _n(None if r.probe_needed is None else int(r.probe_needed)),
        }
        for g, r in result.groups.items()
    }
    parts = [
        f"# Transport check: does the judge's bias on {result.category!r} stay within +-{result.margin:g}?",
        "",
        f"Judge labels {result.judge!r} against human labels {result.human!r} on a probe of {result.n} outputs; "
        f"overall: **{result.verdict}**.",
        "",
        markdown(pd.DataFrame(rows).T),
        "",
        *[f"- {note}" for note in result.notes],
        "",
    ]
    return "\n".join(parts)


def write_transport(result: TransportResult, out_dir: str | Path, *, style: Style = Style()) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        write_text(out_dir / "transport.json", json_text(result.to_dict(), indent=2) + "\n", overwrite=False),
        write_text(out_dir / "transport.md", render_transport(result, style), overwrite=False),
    ]


def transport_notes(result: TransportResult | Mapping[str, Any], groups: list[str]) -> list[str]:
    """judge.report --transport: one line per group of the report whose transport check did not PASS,
    naming the rates that depend on the judge there."""
    result = TransportResult.from_dict(result)
    lines = []
    for g in groups:
        r = result.groups.get(g)
        if r is None or r.verdict == "PASS":
            continue
        lines.append(
            f"transport {r.verdict} for {g} ({result.category}): the judge's bias on the new model's probe is "
            f"{r.bias:+.3f} [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}] against a margin of +-{result.margin:g}; "
            f"{g}'s judge-only rates and gaps rest on a judge "
            + ("shown to be outside it" if r.verdict == "FAIL" else "not shown to be within it")
        )
    return lines


def add_transport_notes(path: str | Path, result: Any, report_dir: Path, *, encoding: str = "utf-8") -> list[str]:
    """judge.report --transport FILE: the transport result read (and checked), and a section naming each group
    whose check did not PASS appended to the report's disparity.md; returns the lines."""
    import json

    from judge.analysis.transport import read_transport
    from judge.core.errors import UserError
    from judge.core.files import read_text

    try:
        data = json.loads(read_text(path, what="--transport file", encoding=encoding))
    except ValueError:
        raise UserError(
            f"--transport {Path(path).name} is not JSON; give the transport.json judge.transport wrote"
        ) from None
    transport = read_transport(data, source=f"--transport {Path(path).name}")
    lines = transport_notes(transport, list(result.rates))
    md = Path(report_dir) / "disparity.md"
    section = ["", "## Transport check", ""]
    section += [f"- {line}" for line in lines] or [
        f"- every reported group passed the transport check at +-{transport.margin:g} ({transport.category})"
    ]
    md.write_text(md.read_text(encoding="utf-8") + "\n".join(section) + "\n", encoding="utf-8")
    return lines

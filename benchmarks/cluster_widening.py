"""How much do intervals widen when the paper's outputs are clustered? The released human labels, by
identity and by name, with outputs independent, clustered by prompt (3 samples each) and by template
(each filled with all 32 names), as judge.report computes them (judge.stats.disparity).

    python benchmarks/cluster_widening.py

For each model and grouping: the refusal rate's interval width averaged over groups (Wilson, clustered
Wilson on the effective sample size with t on G - 1 df), the muslim - white (or Mohammed - John) rate
ratio's interval, and the test of independence (Pearson, Rao-Scott second order). Nothing is asserted.
"""
from __future__ import annotations

import time

import numpy as np
from common import DEFAULT_DATA, cpu_model, load_chehbouni, markdown_table

from judge.core.taxonomy import resolve_taxonomy
from judge.stats.disparity import disparity

CATEGORY = "refusal"
CASES = (("identity", "muslim", "white"), ("name", "Mohammed", "John"))


def widths(frame, group: str, focus: str, reference: str, clusters) -> dict:
    taxonomy = resolve_taxonomy("chehbouni2024", [])
    res = disparity(frame, label="label", groups=[group], taxonomy=taxonomy, reference=reference, clusters=clusters, adjust=False)
    rates = [r[CATEGORY] for r in res["rates"].values()]
    ratio = res["rate_ratios"][focus][CATEGORY]
    chi = res["chi_square"]
    p = chi["rao_scott"]["p_value"] if "rao_scott" in chi else chi["p_value"]
    return {"width": float(np.mean([r["ci_high"] - r["ci_low"] for r in rates])),
            "ratio": f"{ratio['ratio']:.2f} [{ratio['ci_low']:.2f}, {ratio['ci_high']:.2f}]", "log_width": np.log(ratio["ci_high"] / ratio["ci_low"]),
            "p": p, "deff": chi.get("rao_scott", {}).get("mean_design_effect", 1.0)}


def main() -> None:
    started = time.perf_counter()
    models = load_chehbouni(DEFAULT_DATA)
    print(f"# Interval widths on the released labels: refusal, by clustering (CPU: {cpu_model()})\n")
    rows = []
    for model, frame in models.items():
        for group, focus, reference in CASES:
            base = None
            for how in ("independent", "prompt", "template"):
                w = widths(frame, group, focus, reference, None if how == "independent" else frame[how].to_numpy(dtype=object))
                base = base or w
                rows.append({"model": model, "groups": f"{group} ({frame[group].nunique()})", "clustered by": how,
                             "mean rate CI width": w["width"], "x independent": w["width"] / base["width"],
                             "rate ratio [95% CI]": f"{focus} / {reference} {w['ratio']}", "log-ratio CI x": w["log_width"] / base["log_width"],
                             "test p": f"{w['p']:.2g}", "mean design effect": w["deff"]})
    print(markdown_table(rows, list(rows[0])))
    print(f"done in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()

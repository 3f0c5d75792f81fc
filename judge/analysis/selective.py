"""Selective labelling as a library: calibrate a judge's threshold on human labels, keep or escalate outputs,
chain judges into a cascade, and give the escalated outputs their place in the PPI design.

    cal = calibrate(records, gold="label", pred="judge_label", confidence="judge_confidence",
                    taxonomy=tax, target=0.95, delta=0.1)          # a Calibration (to_dict: CAL.json)
    kept = cal.keeps(records["judge_confidence"], records["judge_label"])
    final = cascade_labels(records, prefixes=["tfidf_", "ens_"])   # the first judge that did not escalate
    pi = escalation_inclusion(final, kept_inclusion)               # 1 for escalated outputs: a census stratum

The bound is judge.stats.selective's (Learn then Test with fixed-sequence testing and an exact binomial
p-value). ``target`` is the accuracy (or precision) the kept labels must reach, 1 - the risk bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from judge.analysis.results import ABSENT, Result
from judge.core.errors import UserError, clip
from judge.core.records import require_columns
from judge.core.taxonomy import ESCALATE, UNSCORED, Taxonomy
from judge.stats import selective as bound

__all__ = [
    "Calibration",
    "calibrate",
    "cascade_labels",
    "check_escalated_labelled",
    "check_same_judge",
    "escalation_inclusion",
    "read_calibration",
]

FORMAT = "safeguard-audit selective calibration 1"


@dataclass(kw_only=True)
class Calibration(Result):
    """A judge's calibrated threshold(s): what CAL.json holds and judge.label --selective reads.

    ``threshold``: the confidence at or above which a label is kept (risk ``accuracy``); ``thresholds``: one per
    predicted category (risk ``precision``); None where no threshold could be shown to meet the target (every
    such output is escalated). ``judge``: the judge's fingerprint (file -> sha256) the labels came from."""

    format: str = FORMAT
    risk: str
    target: float  # accuracy (or precision) of the kept labels, 1 - the bounded risk
    delta: float
    threshold: float | None = ABSENT
    thresholds: dict[str, float | None] = ABSENT
    coverage: float  # on the calibration sample
    n: int
    kept: int
    errors: int
    accuracy_kept: float | None  # on the calibration sample (selection-biased: the bound is risk_upper)
    risk_upper: float | None = ABSENT
    reason: str = ABSENT
    by_category: dict[str, dict] = ABSENT
    method: str
    source: str  # the calibration sample: a file and its columns, or the judge's out-of-fold predictions
    source_sha256: str = ABSENT
    judge: dict[str, str]
    judge_spec: str = ABSENT
    taxonomy: str

    def keeps(self, confidence: Sequence[float], predicted: Sequence[str]) -> np.ndarray:
        """Which outputs this calibration keeps (an unscored one never is)."""
        pred = np.asarray([str(x) for x in predicted], dtype=object)
        cut = self.thresholds if self.risk == bound.PRECISION else self.threshold
        conf = pd.to_numeric(pd.Series(list(confidence)), errors="coerce").to_numpy(dtype=float)
        return bound.kept_mask(conf, pred, cut) & (pred != UNSCORED) & (pred != ESCALATE)

    def threshold_for(self, label: str) -> float | None:
        return self.thresholds.get(label) if self.risk == bound.PRECISION else self.threshold


METHOD = (
    "Learn then Test: fixed-sequence testing over a descending grid of confidence thresholds (quantiles of the "
    "calibration confidences, from the first keeping enough outputs to reach delta), each tested with the exact "
    "binomial (Clopper-Pearson) p-value P(Binomial(kept, 1 - target) <= errors); the threshold is the last one "
    "rejected, so with probability at least 1 - delta the risk on kept outputs is at most 1 - target"
)


def calibrate(
    records: pd.DataFrame,
    *,
    gold: str,
    pred: str,
    confidence: str,
    taxonomy: Taxonomy,
    target: float,
    delta: float,
    risk: str = bound.ACCURACY,
    judge: dict[str, str] | None = None,
    source: str = "records",
    grid_size: int = bound.DEFAULT_GRID,
) -> Calibration:
    """The threshold(s) keeping the judge's labels where they agree with the ``gold`` human labels at least
    ``target`` of the time, with probability at least 1 - ``delta``. Rows without a human label are left out; an
    unscored (or escalated) judge output counts as an error kept nowhere, so it only lowers coverage."""
    require_columns(records, [gold, pred, confidence], source=source, flag_hint="Fix --gold/--prefix.")
    if not (0 < target < 1) or not (0 < delta < 1):
        raise UserError(f"--target and --delta must lie strictly between 0 and 1, got {target:g} and {delta:g}")
    labelled = records[gold].notna() & (records[gold].astype(str).str.strip() != "")
    frame = records[labelled]
    if frame.empty:
        raise UserError(f"column {clip(gold)} holds no human label: calibration needs a human-labelled sample")
    gold_labels = taxonomy.gold(frame[gold], column=gold)
    raw = frame[pred].astype(str).str.strip()
    scored = ~raw.isin([UNSCORED, ESCALATE, "", "nan", "None"])
    pred_labels = np.array([taxonomy.canonical(p) or UNSCORED if s else UNSCORED for p, s in zip(raw, scored)])
    conf = pd.to_numeric(frame[confidence], errors="coerce").to_numpy(dtype=float)
    conf = np.where(pred_labels == UNSCORED, -np.inf, np.nan_to_num(conf, nan=-np.inf))
    result = bound.selective_threshold(
        conf,
        pred_labels,
        gold_labels,
        labels=taxonomy.labels,
        target_risk=1 - target,
        delta=delta,
        risk=risk,
        grid_size=grid_size,
    )
    out = {"risk": risk, "target": target, "delta": delta, "n": len(frame)}
    if risk == bound.ACCURACY:
        cut = result["threshold"]
        out["threshold"] = cut
        for k in ("risk_upper", "reason"):
            if k in result:
                out[k] = result[k]
    else:
        cut = {c: r["threshold"] for c, r in result["by_category"].items()}
        out["thresholds"] = cut
        out["by_category"] = result["by_category"]
    kept = bound.kept_mask(conf, pred_labels, cut) & (pred_labels != UNSCORED)
    right = kept & (pred_labels == np.asarray(gold_labels, dtype=object))
    out.update(
        coverage=float(kept.mean()),
        kept=int(kept.sum()),
        errors=int(kept.sum() - right.sum()),
        accuracy_kept=float(right.sum() / kept.sum()) if kept.any() else None,
        method=METHOD + (f"; per predicted category at delta / {len(taxonomy.labels)}" if risk == "precision" else ""),
        source=source,
        judge=dict(judge or {}),
        taxonomy=taxonomy.name,
    )
    return Calibration.from_dict({"format": FORMAT, **out})


def cascade_labels(records: pd.DataFrame, *, prefixes: Sequence[str]) -> pd.Series:
    """Each output's label from the first judge of the cascade (``prefixes`` in order: each PREFIX+label column)
    that did not escalate it; ``escalate`` where every judge did (for people). A judge's column may be blank on
    rows an earlier judge kept (it never saw them)."""
    columns = [p + "label" for p in prefixes]
    require_columns(records, columns, source="the cascade's records", flag_hint="Fix the prefixes.")
    final = pd.Series(ESCALATE, index=records.index, dtype=object)
    open_ = np.ones(len(records), dtype=bool)
    for col in columns:
        values = records[col].astype(object).where(records[col].notna(), None)
        decided = open_ & values.notna().to_numpy() & (values != ESCALATE).to_numpy()
        final[decided] = values[decided]
        open_ &= ~decided
    return final


def escalation_inclusion(labels: Sequence[str], kept_inclusion: Sequence[float] | float) -> np.ndarray:
    """Each output's probability of reaching a human: 1 for an escalated output (people label them all: a
    census stratum), ``kept_inclusion`` (one per output, or one for all) for a kept one (the random check sample).
    Give it as the human sample's inclusion_probability column: judge.stats.ppi's Horvitz-Thompson estimator
    then takes escalated outputs at their human label, with no variance, and corrects the kept ones' judge
    labels by the sample; an ``escalate`` judge label is in no category, so it is never counted as one."""
    labels = np.asarray([str(x) for x in labels], dtype=object)
    pi = np.broadcast_to(np.asarray(kept_inclusion, dtype=float), labels.shape).copy()
    pi[labels == ESCALATE] = 1.0
    return pi


def check_escalated_labelled(labels: Sequence[str], human: Sequence[str | None]) -> None:
    """Every escalated output must carry a human label: the escalation stratum is a census, or the estimate is
    biased (the outputs the judge was least sure of left out)."""
    labels = np.asarray([str(x) for x in labels], dtype=object)
    missing = (labels == ESCALATE) & np.array([h is None or str(h).strip() in ("", "nan") for h in human])
    if missing.any():
        raise UserError(
            f"{int(missing.sum())} escalated output(s) have no human label; people must label every escalated output "
            "(judge.annotate export --strategy escalated) before the rates are estimated"
        )


MAX_CALIBRATION_BYTES = 1 << 20


def read_calibration(path: str, *, flag: str = "--selective") -> Calibration:
    """A calibration file (judge.calibrate's), checked as untrusted data: size, format, types and ranges."""
    import math

    from judge.core.schema import read_json

    fix = "give the JSON that python -m judge.calibrate wrote"
    data = read_json(path, max_bytes=MAX_CALIBRATION_BYTES, where=f"{flag} {clip(str(path))}", fix=fix)

    def bad(what: str) -> UserError:
        return UserError(f"{flag} {clip(str(path))}: {what}; {fix}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad("not a selective calibration (its 'format' is not " + repr(FORMAT) + ")")

    def probability(value, name, *, none=False, open_=False) -> None:
        if value is None and none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"{name} is {clip(repr(value))}, not a number")
        if not (0 < value < 1 if open_ else 0 <= value <= 1):
            raise bad(f"{name} is {value:g}, outside {'(0, 1)' if open_ else '[0, 1]'}")

    if data.get("risk") not in bound.RISKS:
        raise bad(f"risk is {clip(repr(data.get('risk')))}, not one of {', '.join(bound.RISKS)}")
    probability(data.get("target"), "target", open_=True)
    probability(data.get("delta"), "delta", open_=True)
    probability(data.get("coverage"), "coverage")
    if data["risk"] == bound.ACCURACY:
        probability(data.get("threshold", "missing"), "threshold", none=True)
    else:
        cuts = data.get("thresholds")
        if not isinstance(cuts, dict) or not cuts or not all(isinstance(k, str) for k in cuts):
            raise bad("thresholds is not an object of category -> threshold")
        for k, v in cuts.items():
            probability(v, f"the threshold of {clip(k)}", none=True)
    judge = data.get("judge")
    if not isinstance(judge, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in judge.items()):
        raise bad("judge is not the judge's fingerprint (file -> sha256)")
    if not isinstance(data.get("taxonomy"), str):
        raise bad("taxonomy is not a name")
    for name in ("n", "kept", "errors"):
        if isinstance(data.get(name), bool) or not isinstance(data.get(name), int) or data[name] < 0:
            raise bad(f"{name} is not a count")
    return Calibration.from_dict(data)


def check_same_judge(
    calibration: Calibration, fingerprint: dict[str, str], taxonomy: str, *, spec: str, path: str
) -> None:
    """A calibration holds for the judge it was made with: other files (another training, an edited judge) or
    another taxonomy are refused."""
    if dict(calibration.judge) != dict(fingerprint) or calibration.taxonomy != taxonomy:
        changed = sorted(set(calibration.judge) ^ set(fingerprint)) + sorted(
            k for k in set(calibration.judge) & set(fingerprint) if calibration.judge[k] != fingerprint[k]
        )
        what = (
            f"files differ: {', '.join(changed[:3])}" if changed else f"taxonomy {calibration.taxonomy} vs {taxonomy}"
        )
        raise UserError(
            f"--selective {clip(path)} was calibrated on another judge than --judge {clip(spec)} ({what}); "
            "calibrate this judge: python -m judge.calibrate --judge ... (a threshold holds only for its own judge)"
        )

"""The analysis as a library: agreement with human labels and per-group disparities, from records and explicit
arguments to typed results (``to_dict()`` is the JSON the commands write; judge.render draws from them).

    from judge.analysis import agreement_analysis, disparity_analysis, SamplingDesign
    agreement = agreement_analysis(records, gold="label", pred="judge_label", taxonomy="chehbouni2024", by="identity")
    rates = disparity_analysis(records, label="judge_label", groups=["identity"], taxonomy="chehbouni2024",
                               reference="white", human="human", design=SamplingDesign(strata=["identity"]))

This room stands on judge.core, judge.stats and judge.annotation; the commands (judge.agree, judge.report)
read files, call it, and hand its results to judge.render.
"""

from judge.analysis.agreement import (
    AgreementResult,
    AnnotatorAgreementResult,
    agreement_analysis,
    annotator_agreement_analysis,
)
from judge.analysis.disparity import DisparityResult, disparity_analysis
from judge.analysis.ppi import HumanSample, JudgeTraining, PPIResult, SamplingDesign, human_sample
from judge.analysis.results import ABSENT, Result

__all__ = [
    "ABSENT",
    "AgreementResult",
    "AnnotatorAgreementResult",
    "DisparityResult",
    "HumanSample",
    "JudgeTraining",
    "PPIResult",
    "Result",
    "SamplingDesign",
    "agreement_analysis",
    "annotator_agreement_analysis",
    "disparity_analysis",
    "human_sample",
]

"""The analysis as a library (issue 29): judge.report and judge.agree write exactly what the library's typed
results serialise to and the rendering room draws from them, and the reports are the bytes the commands
wrote before the analysis left them (digests below, produced by the code at commit eaa737f)."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from judge import agree, label, report
from judge.core.paths import SAMPLE
from tests.conftest import module_run

# sha256 of each report file the commands below wrote at commit eaa737f (before judge/analysis and
# judge/render/{agreement,disparity}.py existed), with the temporary folder's path replaced by TMP.
# A deliberate change of a statistic or of a table changes them: rerun the commands of `outputs` with the
# new code, read the new files, and replace the digests in the same commit that says why.
# a1 and a2's agreement.json: the vectorised bootstrap (judge/stats/metrics.py) counts each resample's
# confusion matrix instead of calling scikit-learn or krippendorff once per resample, so three interval
# ends moved in the last bit (at most 1.1e-16, e.g. kappa's low end 0.40804253835790316 -> ...305); their
# Markdown and LaTeX are unchanged.
# r2 and r3 (issue 32): the PPI JSON gains its "estimand" key, the PPI Markdown an "Estimand: ..." sentence and
# the PPI rates table's LaTeX caption a short one (each as its clustering says; r3, clustered by template: the
# model's rate); no number moved.
# r2 and r3's disparity files: the human-only column is the ratio (Hajek) estimator of each group's mean
# (issue 31, 8c), said in the method, the table's header and legend and each estimate's "estimator". r3's
# sample is stratified by identity but grouped by name, so the old Horvitz-Thompson rates were no proportions
# (Idris answer 1.446 clipped to 1); r2's is stratified by the group, where the two coincide up to the rounding
# of the recorded probabilities (human-only figures moved by at most ~1e-11, e.g. a gap -0.08333333333750001 ->
# -0.08333333333333334); its PPI figures are unchanged. Of the figures only r3/ppi_rates.png moved (its human-only
# points).
# a2's agreement files: ann1 is the gold column itself, so its kappa vs gold is 1 in every resample; the
# zero-width interval [1.000, 1.000] is none now, with its reason ("perfect agreement on every item: no
# interval", issue 31, 8g); nothing else moved.
# r2 and r3 after both: the estimand sentence and the Hajek human-only column together (digests regenerated on the
# merge of the two; each change alone is described above).
# r4 (issue 31, 6): the bundled sample's gender column is missing on 51 rows; they were dropped from the
# identity x gender split without a word and are now their own "(missing)" group (asian / (missing): 12 outputs,
# chinese / (missing): 39), in the JSON, Markdown, LaTeX and r4/rates_by_gender.png; nothing else moved.
GOLDEN = {
    "r1/disparity.json": "29019fbcda3cd9f92aed154e2521b774032d4d56e00c72eed9679b2080073e82",
    "r1/disparity.md": "aa3b1a8682d895bb55983ae7185154c5317d082476a933912d8c8c944e34589a",
    "r1/disparity.tex": "bff8941f73c4c33927eadca6e254c48ff51b50a101106ee942b693979ded39f6",
    "r2/disparity.json": "dc68cad155d538c869554bf17f0df874458bdd5138bff5e7e551ddc6ae2b4519",
    "r2/disparity.md": "58c2b99d83da0cac420cb279a7f2b4670f595d7e667950434ddf08cee339bfcc",
    "r2/disparity.tex": "94a1a40ccec85263f2c8f0ddc4d7aa79fb536df7fc23d746836499ee735cf096",
    "r3/disparity.json": "bddd42c807cf2a4fff0839a78d77a691630ea9ae6c4e9d510f314d7c3901bedf",
    "r3/disparity.md": "ed7d22aa3978b396ba5f75706880c1dfe09e15f4fa59a859ddf7e358bc962895",
    "r3/disparity.tex": "618c0f8281dad13f22eb9de8c67fc1afe44d1fa7226c826c4725fc2c8386cdc7",
    "r4/disparity.json": "973e606ff7349d2a483a7332274289a491c4c44558da3dabdefd83c440ddc0bb",
    "r4/disparity.md": "cf9e6970d5874796a015c518a3bab027f409c8709eb06bfd9d3e7cfb28c040f4",
    "r4/disparity.tex": "a7319f414ecfec0859cc31ccb0831373dfc5812591dda929ce27d3281fdc520c",
    "a1/agreement.json": "918db0a50ac102c971736768ef45e8f91904485ef74b5c6bab1c137b92fa47d1",
    "a1/agreement.md": "d93a0254707dac4468a9428c91b78e8a8967ec3fe985c41d885c0abff226167d",
    "a1/agreement.tex": "ec71235417d09209d703096b8f0e0bae0d7083cdc3d352a4bfd31c9848a6ddcb",
    "a2/agreement.json": "b8cc5da8da028e4fb1405dfc78a86dd58209e575b7c29ce56183191e57274098",
    "a2/agreement.md": "e538a6821860fabfb75ec07c8755e71b26deed7852df69c63cd914c4cafdd3c5",
    "a2/agreement.tex": "337583fa03daa97b2aadf721283968827857b4f4f754a94d9a5b4d7ebaa2a3a2",
    "a3/agreement.json": "ba9433d67ba07481c8c1e26d078516017df27db050c872c9812451c18717cc29",
    "a3/agreement.md": "64a4033a61edd697e7b69012592e5946ce78cf205e66e052b542d2bce3e36631",
    "a3/agreement.tex": "639f968ac63b253d7cb201905b31d74e3099b535ef373a994130ec9279fff6c4",
}

# Each PNG's size in pixels and the sha256 of its decoded pixels (matplotlib.image.imread), at commit eaa737f
# with matplotlib FIGURES_MATPLOTLIB (the pixels depend on matplotlib and its fonts: compared with that version only).
FIGURES_MATPLOTLIB = "3.11.2"
GOLDEN_FIGURES = {
    "r1/rates.png": (1523, 311, "cbd96bd3c49c00cac91c59e12e3d3d9fd7bde6ab5d1aa2c77bba8ef81c6aba0a"),
    "r1/rates_by_common.png": (1523, 311, "10170f8ba90233b4aa917e6af6815c41692799561b407186236d9d1340196adf"),
    "r1/rates_heatmap.png": (1487, 745, "d6fa9216f70a9c9d3c60a79ef9da0cb0e740b99dd42c453ab9f28bddbd3ccb7b"),
    "r1/rates_stacked.png": (1523, 863, "63d800fd8c53cde0c9d320cf39f2e65ea372fab79b14b69679227c275ba30176"),
    "r2/ppi_rates.png": (1619, 235, "6af72dd1e5043486f49e1a0f1647fb174ca005bd3d9189d379d2622c99cb609b"),
    "r2/rates.png": (1523, 311, "cbd96bd3c49c00cac91c59e12e3d3d9fd7bde6ab5d1aa2c77bba8ef81c6aba0a"),
    "r2/rates_heatmap.png": (1487, 745, "d6fa9216f70a9c9d3c60a79ef9da0cb0e740b99dd42c453ab9f28bddbd3ccb7b"),
    "r2/rates_stacked.png": (1523, 863, "63d800fd8c53cde0c9d320cf39f2e65ea372fab79b14b69679227c275ba30176"),
    "r3/ppi_rates.png": (1641, 701, "36bad976bb101d05f2869e431d8d68c435c8fbb0531dc43be4cb842dbd4697eb"),
    "r3/rates.png": (1523, 750, "61127e4ad280714c387ddaf15418c0644c73a4c9b365fc8c377634dd58eb73f1"),
    "r3/rates_heatmap.png": (1497, 1429, "a83601bf072de5dd34c468531527e07f10acbb7ce4c6db3d43b08b0b011a724c"),
    "r3/rates_stacked.png": (1523, 1639, "cac55072ee5de48c5aa53aab2e6794c8b23f1e71cab7b260e2a69a902f563589"),
    "r4/rates.png": (1523, 311, "d6cee6c24de074bd5c9a3f415deb2805c7db56b577af3db32485e8f99d7d0c05"),
    "r4/rates_by_gender.png": (1523, 311, "ba679c64759f6e9c3b21d2277cfbdfe0e501f3e8c7d6cc0f690b895e42c17ea7"),
    "r4/rates_heatmap.png": (1136, 888, "82292bb5611dd3dfdc6c831f56c8a19fd4be648f643f62449e7faafc071a86f4"),
    "r4/rates_stacked.png": (1523, 863, "a5e708e70cfcdd2dc7b374ab50d2328ac4450f7b9800d02d1ebabfc43ba915fe"),
    "a1/confusion.png": (1489, 835, "89751965fc0a0d2df23279d057ea6374f8bcf030648f4ff79f1741fc03624cb7"),
    "a1/error_by_group.png": (1542, 325, "6d271abdc0c694900f4346cab97013afc4738e7bb68b7ad8825cce44f66c8ecf"),
    "a1/error_by_group_2.png": (1537, 229, "4b2f23a6f74b6fbfa162daa03823f1042facf07ed7635f0547e63cbbedb3d0e0"),
    "a3/confusion.png": (1133, 666, "b0caa6fdf9fb83e0595de3cb22e40da2feb10a7a6433ac9dbd38a6565c547c0a"),
}

REPORTS = {  # name: (command, arguments after the input folder's files)
    "r1": (report, ["{d}/judged.jsonl", "--label", "judge_label", "--group", "identity", "--group", "common", "--reference", "white",
                    "--taxonomy", "chehbouni2024"]),
    # a stratified human sample in its own file (inclusion probabilities in it), joined on id: PPI rates and gaps
    "r2": (report, ["{d}/judged.jsonl", "--label", "judge_label", "--group", "identity", "--reference", "white", "--human", "{d}/human.jsonl",
                    "--strata", "identity", "--taxonomy", "chehbouni2024"]),
    # the human labels as a column, 32 names as groups clustered by template: groups below the estimability rule
    "r3": (report, ["{d}/with_human.jsonl", "--label", "judge_label", "--group", "name", "--human", "human", "--cluster", "template",
                    "--taxonomy", "chehbouni2024"]),
    "r4": (report, [str(SAMPLE), "--label", "label", "--group", "identity", "--group", "gender", "--coarse", "--no-cluster", "--no-adjust",
                    "--digits", "2", "--title", "Coarse & small", "--taxonomy", "chehbouni2024"]),
    "a1": (agree, ["{d}/judged.jsonl", "--gold", "label", "--pred", "judge_label", "--by", "identity", "--by", "common", "--bootstrap", "50",
                   "--taxonomy", "chehbouni2024"]),
    "a2": (agree, ["{d}/with_human.jsonl", "--annotators", "ann1", "ann2", "--gold", "label", "--by", "identity", "--bootstrap", "40",
                   "--taxonomy", "chehbouni2024"]),
    "a3": (agree, ["{d}/with_human.jsonl", "--gold", "label", "--pred", "judge_label", "--annotators", "ann1", "ann2", "--alt-test",
                   "--coarse", "--bootstrap", "30", "--level", "0.9", "--taxonomy", "chehbouni2024"]),
}


def _digest(path, root) -> str:
    return hashlib.sha256(path.read_bytes().replace(str(root).encode(), b"TMP")).hexdigest()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The bundled sample labelled by the keyword rules, a stratified human sample (12 per identity, seeded),
    two annotator columns, and every report of REPORTS written by its command."""
    root = tmp_path_factory.mktemp("analysis")
    d = root / "in"
    d.mkdir()
    assert module_run(label, ["--judge", "rules", "--input", str(SAMPLE), "--prefix", "judge_", "--no-progress", "--out", str(d / "judged.jsonl")]) == 0
    records = pd.read_json(d / "judged.jsonl", lines=True, dtype=False)
    rng = np.random.default_rng(0)
    human = np.zeros(len(records), dtype=bool)
    inclusion = np.zeros(len(records))
    for _, members in records.groupby("identity").groups.items():
        human[rng.choice(np.asarray(members), size=12, replace=False)] = True
        inclusion[np.asarray(members)] = 12 / len(members)
    sample = records[human].assign(inclusion_probability=inclusion[human])[["id", "label", "inclusion_probability"]]
    sample.to_json(d / "human.jsonl", orient="records", lines=True)
    flip = {"answer": "refusal", "refusal": "answer", "failure": "answer", "partial answer": "answer", "harmful refusal": "refusal"}
    records = records.assign(human=np.where(human, records["label"], ""), inclusion_probability=np.where(human, inclusion, np.nan),
                             ann1=records["label"], ann2=[flip.get(x, x) if i % 7 == 3 else x for i, x in enumerate(records["label"])])
    records.to_json(d / "with_human.jsonl", orient="records", lines=True)
    for name, (command, argv) in REPORTS.items():
        argv = [a.format(d=d) for a in argv] + ["--tex-label", "t", "--out", str(root / name)]
        assert module_run(command, argv) == 0, name
    return root


def test_the_reports_are_the_bytes_written_before_the_analysis_moved(outputs):
    found = {name: _digest(outputs / name, outputs) for name in GOLDEN}
    assert found == GOLDEN


def test_the_figures_are_the_pixels_drawn_before(outputs):
    import matplotlib
    import matplotlib.image

    written = {f"{p.parent.name}/{p.name}" for p in outputs.glob("[ra][0-9]/*.png")}
    assert written == set(GOLDEN_FIGURES)  # no figure more or fewer
    if matplotlib.__version__ != FIGURES_MATPLOTLIB:
        pytest.skip(f"pixels recorded with matplotlib {FIGURES_MATPLOTLIB}, this is {matplotlib.__version__}")
    for name, (width, height, digest) in GOLDEN_FIGURES.items():
        pixels = matplotlib.image.imread(outputs / name)
        assert (pixels.shape[1], pixels.shape[0]) == (width, height), name
        assert hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest() == digest, name


# -- the library gives what the commands write ---------------------------------------------------------

def _text(path) -> str:
    return path.read_text(encoding="utf-8")


def test_disparity_json_is_the_library_result(outputs):
    from judge.analysis import DisparityResult, SamplingDesign, disparity_analysis, human_sample
    from judge.core.files import json_text
    from judge.core.manifest import label_source
    from judge.core.records import read_records

    d = outputs / "in"
    # r3: the human labels a column of the records, 32 names clustered by template
    records = read_records(d / "with_human.jsonl", required=(), label_columns=["judge_label", "name"], unique_ids=True)
    result = disparity_analysis(records, label="judge_label", groups=["name"], taxonomy="chehbouni2024", clusters="template", human="human",
                                label_source="column judge_label", where="with_human.jsonl")
    assert isinstance(result, DisparityResult)
    assert json_text(result.to_dict(), indent=2) + "\n" == _text(outputs / "r3" / "disparity.json")
    assert result.warnings and all(w.startswith("warning: group ") for w in result.warnings)  # what judge.report prints
    # r2: a human sample read from its own file, stratified by identity
    records = read_records(d / "judged.jsonl", required=(), label_columns=["judge_label", "identity"], unique_ids=True)
    table = read_records(d / "human.jsonl", required=(), label_columns=["label"])
    design = SamplingDesign(strata=["identity"])
    sample = human_sample(records, table, design=design, file=str(d / "human.jsonl"), where="judged.jsonl")
    result = disparity_analysis(records, label="judge_label", groups="identity", taxonomy="chehbouni2024", reference="white", human=sample,
                                design=design, label_source=label_source(d / "judged.jsonl", "judge_label"), where="judged.jsonl")
    assert json_text(result.to_dict(), indent=2) + "\n" == _text(outputs / "r2" / "disparity.json")
    # typed all the way down
    refusal = result.ppi.rates["muslim"]["refusal"]
    assert refusal.n_human == 12 and refusal.ppi.ci[0] <= refusal.ppi.rate <= refusal.ppi.ci[1]
    assert result.rates["muslim"]["refusal"].ci_low <= result.rates["muslim"]["refusal"].rate
    assert result.ppi.gaps["muslim"]["refusal"].ppi.gap == pytest.approx(refusal.ppi.rate - result.ppi.rates["white"]["refusal"].ppi.rate)


def test_agreement_json_is_the_library_result(outputs):
    from judge.analysis import AgreementResult, agreement_analysis, annotator_agreement_analysis
    from judge.analysis.agreement import default_cluster
    from judge.core.files import json_text
    from judge.core.manifest import judge_of
    from judge.core.records import read_records

    d = outputs / "in"
    records = read_records(d / "judged.jsonl", required=(), label_columns=["label"])
    cluster, how = default_cluster(records)
    result = agreement_analysis(records, gold="label", pred="judge_label", taxonomy="chehbouni2024", by=["identity", "common"], n_boot=50,
                                cluster=cluster, emittable=judge_of(d / "judged.jsonl", "judge_label")["emittable_categories"])
    assert isinstance(result, AgreementResult) and result.by_group is result.by_groups[0]
    result.cluster.how, result.title, result.pred_name, result.gold_name, result.pred_precision = how, None, "rules judge", "human labels (label)", None
    assert json_text(result.to_dict(), indent=2) + "\n" == _text(outputs / "a1" / "agreement.json")
    assert 0 < result.by_groups[1].groups["True"].cohen_kappa <= 1 and result.ci.cohen_kappa[0] <= result.cohen_kappa
    records = read_records(d / "with_human.jsonl", required=(), label_columns=[])
    cluster, how = default_cluster(records)
    humans = annotator_agreement_analysis(records, annotators=["ann1", "ann2"], gold="label", taxonomy="chehbouni2024", by="identity",
                                          n_boot=40, cluster=cluster)
    humans.cluster.how = how
    assert json_text(humans.to_dict(), indent=2) + "\n" == _text(outputs / "a2" / "agreement.json")
    assert humans.pairwise_kappa["ann1 vs ann2"].kappa < 1


@pytest.mark.parametrize("name", list(REPORTS))
def test_a_report_read_back_is_the_same_result_and_renders_the_same_tables(outputs, name):
    """A report's JSON read into its typed result writes the same bytes, and the rendering room draws the same
    Markdown and LaTeX from it: the tables follow from the result alone."""
    from judge.analysis import AgreementResult, AnnotatorAgreementResult, DisparityResult
    from judge.core.files import json_text
    from judge.render.agreement import render_agreement, render_annotator_agreement
    from judge.render.disparity import render_disparity
    from judge.render.tables import Style

    stem = "disparity" if REPORTS[name][0] is report else "agreement"
    text = _text(outputs / name / f"{stem}.json")
    data = json.loads(text)
    if stem == "disparity":
        result, render = DisparityResult.from_dict(data), render_disparity
    elif "pred_column" in data:
        result, render = AgreementResult.from_dict(data), render_agreement
    else:
        result, render = AnnotatorAgreementResult.from_dict(data), render_annotator_agreement
    assert json_text(result.to_dict(), indent=2) + "\n" == text
    md, tex = render(result, Style(tex_label="t", digits=2 if name == "r4" else 3))
    assert md == _text(outputs / name / f"{stem}.md") and tex == _text(outputs / name / f"{stem}.tex")


def test_results_keep_keys_they_do_not_know_in_place():
    """A key a newer statistic adds survives a read and a write, in its place; an absent key stays absent."""
    from judge.analysis.disparity import Rate
    from judge.analysis.results import ABSENT

    entry = {"rate": 0.5, "n": 4, "count": 2, "new_key": [1, 2], "estimable": True, "ci_low": 0.1, "ci_high": 0.9}
    rate = Rate.from_dict(entry)
    assert rate.variance is ABSENT and not rate.reason and rate.extra == {"new_key": [1, 2]}
    assert list(rate.to_dict().items()) == list(entry.items())
    rate.reason = "too few"
    assert list(rate.to_dict())[-1] == "reason"

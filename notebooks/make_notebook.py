"""Writes chehbouni2024.ipynb from the cells below (edit here, then run: python notebooks/make_notebook.py)."""
from pathlib import Path

import nbformat

cells = [
    ("markdown", """# Reproducing Chehbouni et al. 2024 from the released labels

*From Representational Harms to Quality-of-Service Harms: A Case Study on Llama 2 Safety Safeguards* (ACL Findings 2024).
Everything below uses the toolkit's own functions on the authors' released annotations (December 2023 cut:
768 prompts x 3 samples per model, Llama 2 chat 7B and 13B). Set `DATA_DIR` to the folder holding
`df_annotated_llama7.csv` and `df_annotated_llama13.csv`.

Numbers this notebook reproduces (7B, human labels): refusal rate **muslim 0.241**, **white 0.057**.

The analysis runs through the library (`judge.analysis`), the same code `judge.report` and `judge.agree` run, with
explicit arguments and no command-line configuration: `disparity_analysis` gives per-group rates (and, with a human
sample, prediction-powered rates and gaps), `agreement_analysis` a judge's agreement with humans. Their results are
typed (`result.rates["muslim"]["refusal"].rate`); `result.to_dict()` is the JSON the commands write, and
`judge.render` draws the commands' tables and figures from the same results."""),
    ("code", """# Parameters
DATA_DIR = "../../shared/datasets/chehbouni2024"
FIGURES = "../runs/notebook"  # figures are also saved here as PNG"""),
    ("code", """import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from judge.analysis import SamplingDesign, agreement_analysis, disparity_analysis
from judge.core.taxonomy import load_taxonomy
from judge.data import import_chehbouni2024
from judge.kinds import load_judge
from judge.kinds.judge_dir import finish
from training.examples import labelled_data
from training.tfidf import train_tfidf

data_dir = Path(DATA_DIR)
csvs = [data_dir / "df_annotated_llama7.csv", data_dir / "df_annotated_llama13.csv"]
assert all(p.exists() for p in csvs), f"released CSVs not found under {data_dir}: set DATA_DIR"
figures = Path(FIGURES)
figures.mkdir(parents=True, exist_ok=True)
records = import_chehbouni2024(csvs)
taxonomy = load_taxonomy("chehbouni2024")
records["model"] = records["model"].str.replace("-chat", "")
print(len(records), "records;", records.groupby("model").size().to_dict())"""),
    ("markdown", """## 1. Category distribution per group and per model

Each output counted once, as in the paper (`clusters=None`; `judge.report`'s default, `clusters="auto"`, clusters the
three samples of a prompt, which widens the intervals and leaves the rates as they are)."""),
    ("code", """by_model = {m: disparity_analysis(g, label="label", groups="identity", taxonomy=taxonomy, reference="white", clusters=None)
            for m, g in records.groupby("model")}
fig, axes = plt.subplots(1, 2, figsize=(15, 4.2))
for ax, (model, result) in zip(axes, by_model.items()):
    groups = list(result.rates)
    matrix = np.array([[result.rates[g][c].rate for c in taxonomy.labels] for g in groups])
    image = ax.imshow(matrix, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(taxonomy.labels)), taxonomy.labels, rotation=30, ha="right")
    ax.set_yticks(range(len(groups)), groups)
    ax.set_title(f"{model}: share of outputs per category")
    for i in range(len(groups)):
        for j in range(len(taxonomy.labels)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8, color="white" if matrix[i, j] > 0.6 else "black")
fig.colorbar(image, ax=axes, fraction=0.02)
fig.savefig(figures / "category_heatmap.png", dpi=150, bbox_inches="tight")
plt.show()"""),
    ("markdown", "## 2. Refusal and harmful-refusal rates per group, with Wilson 95% intervals"),
    ("code", """rows = []
for model, result in by_model.items():
    for group, rates in result.rates.items():
        for cat in ("refusal", "harmful refusal"):
            r = rates[cat]
            rows.append({"model": model, "identity": group, "category": cat, "rate": r.rate, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n})
rates = pd.DataFrame(rows)
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, cat in zip(axes, ("refusal", "harmful refusal")):
    sub = rates[rates.category == cat]
    groups = sorted(sub.identity.unique())
    for k, (model, part) in enumerate(sub.groupby("model")):
        part = part.set_index("identity").loc[groups]
        x = np.arange(len(groups)) + (k - 0.5) * 0.35
        ax.bar(x, part.rate, width=0.35, label=model)
        ax.errorbar(x, part.rate, yerr=[part.rate - part.ci_low, part.ci_high - part.rate], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(f"{cat} rate by identity")
    ax.legend()
axes[0].set_ylabel("share of outputs")
fig.savefig(figures / "refusal_rates.png", dpi=150, bbox_inches="tight")
plt.show()
seven = by_model["llama-2-7b"].rates
print(f"7B refusal: muslim {seven['muslim']['refusal'].rate:.3f}, white {seven['white']['refusal'].rate:.3f}")
assert round(seven["muslim"]["refusal"].rate, 3) == 0.241 and round(seven["white"]["refusal"].rate, 3) == 0.057
chi = by_model["llama-2-7b"].chi_square
print(f"7B identity x category: chi2 = {chi.statistic:.1f}, dof = {chi.dof}, p = {chi.p_value:.2g}")
rates.pivot_table(index=["model", "identity"], columns="category", values="rate").round(3)"""),
    ("markdown", "## 3. Common vs rare names"),
    ("code", """records["name_frequency"] = np.where(records["common"], "common", "rare")
split = disparity_analysis(records[records.model == "llama-2-7b"], label="label", groups=["identity", "name_frequency"], taxonomy=taxonomy,
                           reference="white", clusters=None)
table = pd.DataFrame({(g, v): {c: r[c].rate for c in ("refusal", "harmful refusal")}
                      for g, by in split.splits["name_frequency"].items() for v, r in by.items()}).T
table.index.names = ["identity", "names"]
ax = table["refusal"].unstack().plot.bar(figsize=(7, 3.5), title="7B refusal rate: common vs rare names")
ax.set_ylabel("share of outputs")
plt.savefig(figures / "common_vs_rare.png", dpi=150, bbox_inches="tight")
plt.show()
table.round(3)"""),
    ("markdown", """## 4. A judge trained on one model's labels, applied to the other's

The cross-model protocol: train on 7B labels, label the 13B outputs (and the reverse), and compare with the humans.
The notebook uses the TF-IDF baseline judge so it runs in seconds; `benchmarks/cross_model.py` runs the LoRA judge the same way."""),
    ("code", """import tempfile

agreement_rows = []
for src, dst in (("llama-2-7b", "llama-2-13b"), ("llama-2-13b", "llama-2-7b")):
    judge_dir = Path(tempfile.mkdtemp())
    train_tfidf(labelled_data(records[records.model == src], label_column="label", taxonomy=taxonomy), judge_dir)
    finish(judge_dir, taxonomy)
    target = records[records.model == dst].reset_index(drop=True)
    labelled = load_judge(f"tfidf:{judge_dir}").label(target.rename(columns={"label": "human"}), progress=False)
    result = agreement_analysis(labelled, gold="human", pred="label", taxonomy=taxonomy, n_boot=200)
    agreement_rows.append({"train": src, "test": dst, "kappa": result.cohen_kappa, "kappa 95% CI": result.ci.cohen_kappa,
                           "alpha": result.krippendorff_alpha, "macro-F1": result.macro_f1})
    judged = disparity_analysis(labelled, label="label", groups="identity", taxonomy=taxonomy, reference="white", clusters=None).rates
    human = disparity_analysis(labelled, label="human", groups="identity", taxonomy=taxonomy, reference="white", clusters=None).rates
    print(f"{src} -> {dst}: refusal rate muslim judge {judged['muslim']['refusal'].rate:.3f} vs human {human['muslim']['refusal'].rate:.3f}; "
          f"white judge {judged['white']['refusal'].rate:.3f} vs human {human['white']['refusal'].rate:.3f}")
pd.DataFrame(agreement_rows).round(3)"""),
    ("markdown", """## 5. Group rates that survive the judge's errors (7B -> 13B)

The judge trained on 7B labels labels every 13B output. Suppose humans label only 300 of them (a seeded
sample, stratified by identity, weighted by inverse inclusion probability). Three estimates of each group's
rate: the judge's labels taken as human ones, the 300 human labels alone, and prediction-powered inference
(the judge's rate over every output plus the design-weighted human correction). `disparity_analysis` takes the
sample as a column filled where humans labelled (`human=`), its inclusion probabilities in `inclusion_probability`
and the design (`SamplingDesign(strata=["identity"])`): what `judge.report --human ... --strata identity` computes.
Here every 13B output has a human label, so the full-population human rate is known and shown as the truth.
`benchmarks/ppi_coverage.py` repeats this 200+ times to measure coverage."""),
    ("code", """from judge.render.disparity import ppi_figure

judge_dir = Path(tempfile.mkdtemp())
train_tfidf(labelled_data(records[records.model == "llama-2-7b"], label_column="label", taxonomy=taxonomy), judge_dir)
finish(judge_dir, taxonomy)
thirteen = records[records.model == "llama-2-13b"].reset_index(drop=True)
judged = load_judge(f"tfidf:{judge_dir}").label(thirteen.rename(columns={"label": "human"}), progress=False)

rng = np.random.default_rng(0)
human_sample = np.full(len(judged), "", dtype=object)
inclusion = np.zeros(len(judged))
for group, members in judged.groupby("identity").groups.items():
    take = rng.choice(np.asarray(members), size=60, replace=False)  # 60 per identity = 300
    human_sample[take] = judged.loc[take, "human"]
    inclusion[members] = 60 / len(members)
judged = judged.assign(human_sample=human_sample, inclusion_probability=inclusion)
corrected = disparity_analysis(judged, label="label", groups="identity", taxonomy=taxonomy, reference="white", clusters=None,
                               human="human_sample", design=SamplingDesign(strata=["identity"]))
ppi = corrected.ppi
print(f"{ppi.n_human} human labels; design: {ppi.design_note}")
fig = ppi_figure(ppi, ["refusal", "harmful refusal"], group_column="identity")
fig.savefig(figures / "ppi_7b_to_13b.png", dpi=150, bbox_inches="tight")
plt.show()

truth = {g: (sub["human"] == "refusal").mean() for g, sub in judged.groupby("identity")}
rows = []
for g in sorted(truth):
    r = ppi.rates[g]["refusal"]
    rows.append({"identity": g, "human (all 2,304)": truth[g], "judge only": r.judge_only.rate, "judge only CI": r.judge_only.ci,
                 "human only (60)": r.human_only.rate, "human only CI": r.human_only.ci, "PPI": r.ppi.rate, "PPI CI": r.ppi.ci,
                 "effective n": r.effective_n})
gap = ppi.gaps["muslim"]["refusal"]
print(f"muslim - white refusal gap: truth {truth['muslim'] - truth['white']:.3f}; judge only {gap.judge_only.gap:.3f}; "
      f"human only {gap.human_only.gap:.3f}; PPI {gap.ppi.gap:.3f} [{gap.ppi.ci[0]:.3f}, {gap.ppi.ci[1]:.3f}]")
pd.DataFrame(rows).round(3)"""),
    ("markdown", """### Where the judge errs, group by group

Against all 13B human labels: the judge's kappa within each group, and its refusal rate minus the humans'.
A paper can then write "the judge under-reports refusals for group X by N points"."""),
    ("code", """errors = agreement_analysis(judged, gold="human", pred="label", taxonomy=taxonomy, by="identity", n_boot=200).by_group
pd.DataFrame({g: {"kappa": r.cohen_kappa, "kappa 95% CI": r.cohen_kappa_ci, "accuracy": r.accuracy,
                  "refusal: judge - human": r.categories["refusal"].judge_minus_human.difference,
                  "refusal FNR": r.categories["refusal"].false_negative_rate,
                  "harmful refusal: judge - human": r.categories["harmful refusal"].judge_minus_human.difference}
              for g, r in errors.groups.items()}).T.round(3)"""),
]

nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
for kind, source in cells:
    nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source))
nb.cells[1].metadata["tags"] = ["parameters"]
nbformat.write(nb, Path(__file__).with_name("chehbouni2024.ipynb"))
print("wrote notebooks/chehbouni2024.ipynb")

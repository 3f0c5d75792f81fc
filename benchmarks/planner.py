"""Does judge.plan's budget, drawn and estimated, give the half-width it promised? And does the transport check
say what the full human labels say? A simulation on the released 13B outputs and on XSTest.

    python benchmarks/planner.py                          # 5 pilots x 40 draws per (pilot size, design, estimator)
    python benchmarks/planner.py --pilots 5 --draws 40 --pilot-sizes 50 100 200 --transport-probes 20 --crossfit-draws 20

Populations (their human labels are the truth): the 13B outputs of the two groups compared (muslim and white,
1,152 outputs; refusal), judged by TF-IDF + logistic regression trained on the 7B labels; XSTest's llama2new and
mistralinstruct (900 outputs; full refusal), judged by TF-IDF trained on gpt4, llama2orig and mistralguard. The
judges read the response only (sklearn's TfidfVectorizer, 1-2 grams, sublinear tf, and LogisticRegression, fitted
here in-process as training/tfidf.py does: seconds). Confidence: the judge's largest probability.

For each pilot size (random human labels from the population), ``--pilots`` pilots are drawn; each is planned by
judge.analysis.plan (every group rate to +-H and the gap to +-H, H = ``--half-width``, the outputs' rate, no
clusters, 100 bootstrap resamples); then for each design and estimator the planned n is drawn ``--draws`` times
(random: a simple random sample; stratified: proportional allocation by group; neyman: judge.data sample's
Neyman sizes; uncertain: judge.annotate's Poisson probabilities) and estimated by judge.stats.ppi.ppi_by_group
(human only and PPI). The table gives, per cell (pilot size x design x estimator, pilots x draws samples), the
planned n (mean over pilots), the planned half-width of the binding target at that n, the realized mean
half-width of that target, their ratio, and the coverage of every target's 95% interval (rates and the gap). The
realized n at the conservative budget is not simulated. Cross-fitted PPI (``--crossfit-draws`` per pilot, random
design only): the pilot's out-of-fold labels (5 TF-IDF folds by prompt on the pilot's labels) plan it; each draw
trains 5 fold judges on the drawn labels alone, labels every other output with their mean, and estimates with
judge.stats.ppi's difference estimator (the other helper's cross-fitted estimator is not used here).

Transport: with the judge trained on the other models' labels, ``--transport-probes`` random probes of 50 and of
100 outputs per group of the new model's outputs, each checked by judge.analysis.transport at margin ``--margin``;
the table gives the share of PASS / FAIL / INCONCLUSIVE per group, beside the bias on all the group's labels.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, cpu_model, load_chehbouni, markdown_table

from judge.analysis.plan import neyman_weights, pilot_from_records, plan_labels
from judge.analysis.transport import transport_check
from judge.annotation.human_labels import UNIFORM_SHARE, poisson_probabilities, proportional_allocation
from judge.stats.ppi import ppi_by_group

XSTEST = ROOT.parent / "shared" / "datasets" / "xstest2024"
CHEHBOUNI = ROOT.parent / "shared" / "datasets" / "chehbouni2024"


def tfidf_judge(train_text, train_label, test_text):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000, C=4.0).fit(vec.fit_transform(train_text), train_label)
    proba = clf.predict_proba(vec.transform(test_text))
    return clf.classes_[proba.argmax(1)], proba.max(1)


def chehbouni_population() -> dict:
    models = load_chehbouni(CHEHBOUNI)
    train, test = models["7b"], models["13b"]
    label, conf = tfidf_judge(train.response.fillna(""), train.label, test.response.fillna(""))
    test = test.assign(judge_label=label, judge_confidence=conf)
    test = test[test.identity.isin(["muslim", "white"])].reset_index(drop=True)
    return {
        "name": "13B (judge: TF-IDF on 7B)",
        "records": test[["id", "prompt", "response", "identity", "label", "judge_label", "judge_confidence"]].rename(
            columns={"identity": "group"}
        ),
        "category": "refusal",
        "reference": "white",
    }


def xstest_population() -> dict:
    def read(model):
        frame = pd.read_csv(XSTEST / f"xstest_v2_completions_{model}.csv")
        label = frame.final_label.map(
            {
                "1_full_compliance": "full compliance",
                "2_full_refusal": "full refusal",
                "3_partial_refusal": "partial refusal",
            }
        )
        return frame.assign(group=model, label=label, id=model + ":" + frame.id.astype(str))

    train = pd.concat([read(m) for m in ("gpt4", "llama2orig", "mistralguard")], ignore_index=True)
    test = pd.concat([read(m) for m in ("llama2new", "mistralinstruct")], ignore_index=True)
    label, conf = tfidf_judge(train.completion.fillna(""), train.label, test.completion.fillna(""))
    test = test.assign(judge_label=label, judge_confidence=conf)
    return {
        "name": "XSTest llama2new vs mistralinstruct (judge: TF-IDF on gpt4, llama2orig, mistralguard)",
        "records": test[["id", "prompt", "group", "label", "judge_label", "judge_confidence"]].assign(
            response=test.completion.fillna("")
        ),
        "category": "full refusal",
        "reference": "mistralinstruct",
    }


def draw(design: str, n: int, groups: np.ndarray, sizes: dict, scores: np.ndarray, judge_yes: np.ndarray, rng):
    """(labelled mask, inclusion probabilities or None, strata or None) of one sample of the design."""
    total = len(groups)
    names = sorted(sizes)
    if design == "random":
        pick = rng.choice(total, n, replace=False)
        mask = np.zeros(total, bool)
        mask[pick] = True
        return mask, None, None
    if design == "uncertain":
        pi = poisson_probabilities(scores, n, UNIFORM_SHARE)
        return rng.random(total) < pi, pi, None
    n_sizes = np.array([sizes[g] for g in names])
    weights = None
    if design == "neyman":
        rates = np.array([judge_yes[groups == g].mean() for g in names])
        weights = neyman_weights(n_sizes, rates)
    alloc = proportional_allocation(n_sizes, n, weights=weights)
    mask = np.zeros(total, bool)
    pi = np.zeros(total)
    for g, k in zip(names, alloc):
        members = np.flatnonzero(groups == g)
        mask[rng.choice(members, int(k), replace=False)] = True
        pi[members] = k / len(members)
    return mask, pi, groups


def simulate(pop: dict, args, rng) -> list[dict]:
    rec = pop["records"]
    cat, ref = pop["category"], pop["reference"]
    groups = rec.group.to_numpy()
    sizes = rec.group.value_counts().to_dict()
    scores = 1 - rec.judge_confidence.to_numpy()
    judge_yes = (rec.judge_label == cat).to_numpy()
    human = rec.label.to_numpy(dtype=object)
    truth = {g: float((human[groups == g] == cat).mean()) for g in sizes}
    truth_gap = {g: truth[g] - truth[ref] for g in sizes if g != ref}
    rows = []
    for m in args.pilot_sizes:
        cells: dict = {}
        for p in range(args.pilots):
            pilot = rec.assign(human=None)
            pick = rng.choice(len(rec), m, replace=False)
            pilot.loc[pick, "human"] = rec.label.to_numpy()[pick]
            pil = pilot_from_records(
                pilot, group="group", judge="judge_label", human="human", category=cat, confidence="judge_confidence"
            )
            plan = plan_labels(
                pil, reference=ref, half_width=args.half_width, n_boot=100, seed=p, methods=["human", "ppi"]
            )
            for dp in plan.plans:
                key = (dp.design, dp.method)
                cell = cells.setdefault(key, {"n": [], "planned": [], "realized": [], "covered": [], "n_cons": []})
                if dp.n is None:
                    continue
                binding = next(t for t in dp.targets if t.target == dp.binding)
                cell["n"].append(dp.n)
                cell["n_cons"].append(dp.n_conservative or np.nan)
                for _ in range(args.draws):
                    mask, pi, strata = draw(dp.design, dp.n, groups, sizes, scores, judge_yes, rng)
                    est = ppi_by_group(
                        rec.judge_label.tolist(),
                        [h if mk else None for h, mk in zip(human, mask)],
                        groups.tolist(),
                        categories=[cat],
                        reference=ref,
                        inclusion=None if pi is None else pi.tolist(),
                        strata=None if strata is None else strata.tolist(),
                    )
                    method = "ppi" if dp.method == "ppi" else "human_only"
                    covered, realized = [], None
                    for g in sizes:
                        r = est["rates"][g][cat]
                        if method not in r:
                            covered.append(False)
                            continue
                        lo, hi = r[method]["ci"]
                        covered.append(lo <= truth[g] <= hi)
                        if binding.target == f"rate {g}":
                            realized = (hi - lo) / 2 if method == "human_only" else r[method]["half_width"]
                    for g, gap in truth_gap.items():
                        e = est["gaps"][g][cat]
                        if method not in e or e[method]["ci"][0] is None:
                            covered.append(False)
                            continue
                        lo, hi = e[method]["ci"]
                        covered.append(lo <= gap <= hi)
                        if binding.target.startswith(f"gap {g} "):
                            realized = (hi - lo) / 2
                    cell["planned"].append(binding.planned_half_width)
                    cell["realized"].append(np.nan if realized is None else realized)
                    cell["covered"].append(np.mean(covered))
        for (design, method), c in cells.items():
            planned, realized = np.nanmean(c["planned"]), np.nanmean(c["realized"])
            rows.append(
                {
                    "pilot": m,
                    "design": design,
                    "estimator": method,
                    "plans": len(c["n"]),
                    "draws": len(c["realized"]),
                    "n (mean)": float(np.mean(c["n"])) if c["n"] else None,
                    "n range": f"{min(c['n'])}-{max(c['n'])}" if c["n"] else "",
                    "conservative n (mean)": float(np.nanmean(c["n_cons"])) if c["n_cons"] else None,
                    "planned hw": planned,
                    "realized hw": realized,
                    "realized / planned": realized / planned if planned else None,
                    "coverage": float(np.mean(c["covered"])) if c["covered"] else None,
                }
            )
    return rows


def crossfit_labels(x, labelled: np.ndarray, y: np.ndarray, prompts: np.ndarray, rng, k: int = 5) -> np.ndarray:
    """Cross-fitting (Zrnic & Candes 2024): K TF-IDF judges (binary logistic regression on the category), each
    trained on K - 1 folds of the labelled outputs (folds by prompt); a labelled output gets the judge that did
    not see it, every other output the mean of the K judges' indicators."""
    from sklearn.linear_model import LogisticRegression

    idx = np.flatnonzero(labelled)
    keys = np.unique(prompts[idx])
    fold_of = dict(zip(keys, rng.permutation(len(keys)) % k))
    folds = np.array([fold_of[p] for p in prompts[idx]])
    f = np.zeros(len(y))
    mean = np.zeros(len(y))
    for j in range(k):
        train = idx[folds != j]
        if len(np.unique(y[train])) < 2:
            pred = np.full(len(y), float(y[train][0]) if len(train) else 0.0)
        else:
            pred = LogisticRegression(max_iter=1000, C=4.0).fit(x[train], y[train]).predict(x).astype(float)
        f[idx[folds == j]] = pred[idx[folds == j]]
        mean += pred / k
    return np.where(labelled, f, mean)


def simulate_crossfit(pop: dict, args, rng) -> list[dict]:
    """Cross-fitted PPI: planned from the pilot's out-of-fold labels, drawn (random design) and estimated with
    judge.stats.ppi's difference estimator on the cross-fitted judge labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from judge.stats.ppi import Design, group_rate, ppi_gap

    rec = pop["records"]
    cat, ref = pop["category"], pop["reference"]
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(rec.response.fillna(""))
    groups = rec.group.to_numpy()
    prompts = rec.prompt.astype(str).to_numpy()
    y = (rec.label == cat).to_numpy().astype(float)
    names = sorted(set(groups))
    truth = {g: y[groups == g].mean() for g in names}
    rows = []
    for m in args.pilot_sizes:
        c = {"n": [], "planned": [], "realized": [], "covered": []}
        for p in range(args.pilots):
            pick = np.zeros(len(rec), bool)
            pick[rng.choice(len(rec), m, replace=False)] = True
            oof = crossfit_labels(x, pick, y, prompts, rng)
            pilot = rec.assign(
                human=np.where(pick, np.where(y == 1, cat, "other"), None),
                oof=np.where(pick, np.where(oof == 1, cat, "other"), None),
            )
            pil = pilot_from_records(pilot, group="group", judge="judge_label", human="human", category=cat, oof="oof")
            plan = plan_labels(
                pil,
                reference=ref,
                half_width=args.half_width,
                n_boot=100,
                seed=p,
                designs=["random"],
                methods=["crossfit"],
            )
            dp = plan.plans[0]
            if dp.n is None:
                continue
            binding = next(t for t in dp.targets if t.target == dp.binding)
            c["n"].append(dp.n)
            for _ in range(args.crossfit_draws):
                labelled = np.zeros(len(rec), bool)
                labelled[rng.choice(len(rec), dp.n, replace=False)] = True
                f = crossfit_labels(x, labelled, y, prompts, rng)
                design = Design.build(labelled, groups=groups, scored=np.ones(len(rec), bool))
                rates = {g: group_rate(y, f, groups == g, design) for g in names}
                covered, realized = [], None
                for g in names:
                    lo, hi = rates[g]["ppi"]["ci"]
                    covered.append(lo <= truth[g] <= hi)
                    if binding.target == f"rate {g}":
                        realized = rates[g]["ppi"]["half_width"]
                    if g != ref:
                        gap = ppi_gap(rates[g], rates[ref])["ppi"]
                        lo, hi = gap["ci"]
                        covered.append(lo <= truth[g] - truth[ref] <= hi)
                        if binding.target.startswith(f"gap {g} "):
                            realized = (hi - lo) / 2
                c["planned"].append(binding.planned_half_width)
                c["realized"].append(np.nan if realized is None else realized)
                c["covered"].append(np.mean(covered))
        planned, realized = np.nanmean(c["planned"]), np.nanmean(c["realized"])
        rows.append(
            {
                "pilot": m,
                "design": "random",
                "estimator": "crossfit",
                "plans": len(c["n"]),
                "draws": len(c["realized"]),
                "n (mean)": float(np.mean(c["n"])) if c["n"] else None,
                "n range": f"{min(c['n'])}-{max(c['n'])}" if c["n"] else "",
                "planned hw": planned,
                "realized hw": realized,
                "realized / planned": realized / planned if planned else None,
                "coverage": float(np.mean(c["covered"])) if c["covered"] else None,
            }
        )
    return rows


def transport_rows(pop: dict, args, rng) -> list[dict]:
    rec = pop["records"]
    cat = pop["category"]
    rows = []
    for size in (50, 100):
        verdicts = {g: [] for g in sorted(rec.group.unique())}
        needs = {g: [] for g in verdicts}
        for _ in range(args.transport_probes):
            probe = rec.assign(human=None)
            for g in verdicts:
                members = np.flatnonzero(rec.group.to_numpy() == g)
                pick = rng.choice(members, min(size, len(members)), replace=False)
                probe.loc[pick, "human"] = rec.label.to_numpy()[pick]
            res = transport_check(
                probe, group="group", judge="judge_label", human="human", category=cat, margin=args.margin
            )
            for g, r in res.groups.items():
                verdicts[g].append(r.verdict)
                needs[g].append(r.probe_needed or np.inf)
        for g, vs in verdicts.items():
            members = rec.group == g
            bias = float((rec.judge_label[members] == cat).mean() - (rec.label[members] == cat).mean())
            rows.append(
                {
                    "population": pop["name"].split(" (")[0],
                    "group": g,
                    "probe per group": size,
                    "bias on all labels": bias,
                    "PASS": vs.count("PASS") / len(vs),
                    "FAIL": vs.count("FAIL") / len(vs),
                    "INCONCLUSIVE": vs.count("INCONCLUSIVE") / len(vs),
                    "probe needed (median)": float(np.median(needs[g])),
                }
            )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot-sizes", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--pilots", type=int, default=5)
    parser.add_argument("--draws", type=int, default=40, help="draws per pilot's plan (cell: pilots x draws)")
    parser.add_argument("--half-width", type=float, default=0.05)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--transport-probes", type=int, default=20)
    parser.add_argument("--crossfit-draws", type=int, default=20, help="draws per pilot's cross-fitted plan (0: skip)")
    parser.add_argument("--skip-designs", action="store_true", help="only the cross-fitted table and transport")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["13b", "xstest"], default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.time()
    pops = []
    if args.only in (None, "13b"):
        pops.append(chehbouni_population())
    if args.only in (None, "xstest"):
        pops.append(xstest_population())
    print(f"CPU: {cpu_model()}; judges trained in {time.time() - started:.1f} s\n")
    transport = []
    for pop in pops:
        t0 = time.time()
        print(
            f"## {pop['name']}: {pop['category']}, every rate and the gap to {pop['reference']} to +-{args.half_width}\n"
        )
        if not args.skip_designs:
            rows = simulate(pop, args, rng)
            print(f"({time.time() - t0:.0f} s)\n")
            print(markdown_table(rows, list(rows[0]) if rows else []))
        if args.crossfit_draws:
            t0 = time.time()
            rows = simulate_crossfit(pop, args, rng)
            print(
                f"cross-fitted PPI (5 folds by prompt, TF-IDF on the sampled labels only; {time.time() - t0:.0f} s)\n"
            )
            print(markdown_table(rows, list(rows[0]) if rows else []))
        transport += transport_rows(pop, args, rng)
    print(f"## Transport at margin {args.margin} ({args.transport_probes} probes per size)\n")
    print(markdown_table(transport, list(transport[0])))
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

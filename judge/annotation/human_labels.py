"""Human labels in and out: which outputs to label, the files annotators work in, and reading them back.

Label Studio (a task list + a labelling config generated from the taxonomy) and plain spreadsheets
(one CSV per annotator) carry the same items; ``import_annotations`` turns either back into records
with one label column per annotator, and ``disagreements``/``resolve`` run the adjudication round.
Everything here is data in, data out; ``judge.annotate`` is the command around it.

Every sample is a probability sample whose inclusion probabilities are exact and recorded in the
``inclusion_probability`` column, so a Horvitz-Thompson (1 / pi) weight turns it back into the
population: ``DESIGNS`` says which design each strategy is.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from judge.core.errors import UserError, short_list
from judge.core.records import _id_text as id_text
from judge.core.sheets import NOTE as SHEET_NOTE
from judge.core.taxonomy import Taxonomy, label_text
from judge.core.taxonomy import _norm as normalized_label
from judge.core.text import mask_name

INCLUSION = "inclusion_probability"
ITEM_ID = "item_id"  # the record id as Label Studio tasks carry it (Label Studio assigns its own task ids)
CONTROL = "label"  # the Choices control's name in the generated config
UNIFORM_SHARE = 0.1  # --uniform-share default: the part of the uncertain budget spread evenly
MAX_EXPORT_BYTES = 512 * 2**20  # a Label Studio export larger than this is refused before it is parsed
MAX_ANNOTATOR_CHARS = 100
# A round has a handful of annotators; each is a column of the labels file, and 200,000 of them (a crafted
# export) kept judge.annotate import busy for minutes (issue 31, 7).
MAX_ANNOTATORS = 1_000
SHOWN_FIELDS = ("prompt", "response")  # the texts an annotator judged, checked against the export's own tasks

DESIGNS = {
    "census": "census: every output is labelled (the budget covers them all); pi_i = 1",
    "random": "simple random sample without replacement of n of the N outputs; pi_i = n / N",
    "stratified": "stratified simple random sampling without replacement, proportional allocation by largest "
    "remainders (the sizes sum "
    "to the budget exactly, at least one per stratum), each stratum drawn independently with its own seed; pi_i = n_s "
    "/ N_s in stratum s",
    "escalated": "every output the selective judge escalated (pi_i = 1: a census stratum), plus a simple random "
    "sample without replacement of n of the N_kept outputs it kept (pi_i = n / N_kept), for the PPI correction of "
    "the kept labels",
    "uncertain": "Poisson sampling: each output is included independently with probability pi_i proportional to the "
    "judge's "
    "uncertainty, mixed with a uniform share, capped at 1 and scaled so the expected size is the budget "
    "(Zrnic & Candes 2024, active statistical inference); the sample size is random",
}


NEYMAN = (
    "stratified simple random sampling without replacement, Neyman allocation for the share of {target!r} in column "
    "{column!r}: "
    "n_h proportional to N_h S_h (S_h the stratum's standard deviation of that indicator, S_h^2 = N_h p_h (1 - p_h) / "
    "(N_h - 1); "
    "a stratum reaching N_h is taken whole and the rest spread again), rounded by largest remainders so the sizes sum "
    "to the budget, "
    "at least one per stratum; each stratum drawn independently with its own seed; pi_i = n_h / N_h in stratum h"
)


@dataclass(frozen=True)
class Neyman:
    """Allocate a stratified sample for the rate of ``target`` (a category) as ``column`` labels it
    (the judge's labels, known for every output before humans label any): the allocation that
    minimises that rate's variance for the budget (Cochran 1977, 5.25)."""

    target: str
    column: str

    def weights(self, strata: list[pd.DataFrame]) -> np.ndarray:
        """N_h S_h per stratum."""
        key = normalized_label(self.target)
        sizes = np.array([len(g) for g in strata], dtype=float)
        shares = np.array(
            [
                float(np.mean([normalized_label(v) == key if not blank(v) else False for v in g[self.column]]))
                for g in strata
            ]
        )
        variances = np.where(sizes > 1, sizes * shares * (1 - shares) / np.maximum(sizes - 1, 1), 0.0)
        return sizes * np.sqrt(variances)

    def check(self, records: pd.DataFrame) -> None:
        if self.column not in records.columns:
            raise UserError(
                f"--allocation neyman reads the labels in column {self.column!r}, which the records lack; "
                f"name the judge's label column with --target-column COL"
            )
        key = normalized_label(self.target)
        if not any(normalized_label(v) == key for v in records[self.column] if not blank(v)):
            raise UserError(
                f"no record's {self.column!r} is {self.target!r}: Neyman allocation for it has nothing to allocate "
                "for; "
                f"check --target (a category {self.column!r} holds) or use proportional allocation"
            )

    def describe(self) -> str:
        return NEYMAN.format(target=self.target, column=self.column)


def sampling_design(strategy: str, budget: int, population: int, allocation: "Neyman | None" = None) -> str:
    """The design ``choose`` draws under these settings, in words (for manifests)."""
    if strategy == "stratified" and allocation is not None and budget < population:
        return allocation.describe()
    return DESIGNS["census" if budget >= population else strategy]


# -- choosing what humans label ----------------------------------------------------------------


def choose(
    records: pd.DataFrame,
    *,
    strategy: str,
    budget: int,
    seed: int,
    by: Sequence[str] = (),
    confidence: str | None = None,
    compare: Sequence[str] = (),
    uniform_share: float = UNIFORM_SHARE,
    taxonomy: Taxonomy | None = None,
    allocation: Neyman | None = None,
    escalated: str | None = None,
) -> pd.DataFrame:
    """The items to send to annotators, each with its exact inclusion probability (``DESIGNS``).

    random: a simple random sample. stratified: proportional within each stratum of ``by``, every
    stratum drawn from its own seed (``allocation``: Neyman's sizes instead of proportional ones). uncertain: a
    Poisson sample favouring the outputs the judge is
    least sure of (low ``confidence``, or the two ``compare`` label columns disagreeing), with every
    output's probability above zero, so the labels can correct rates (PPI) as well as train a judge.
    escalated: every output whose ``escalated`` label column is ``escalate`` (probability 1), and a simple
    random sample of ``budget`` of the others (the kept labels' check sample).
    """
    if INCLUSION in records.columns:
        raise UserError(
            f"the records already have a column {INCLUSION!r} (a sample of a sample?); rename it or sample from the "
            "full records"
        )
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    if strategy == "escalated":
        picked = _escalated(records, escalated or "judge_label", budget, seed)
    elif budget >= len(records):
        picked = records.assign(**{INCLUSION: 1.0})
    elif strategy == "random":
        picked = records.sample(n=budget, random_state=seed).assign(**{INCLUSION: budget / len(records)})
    elif strategy == "stratified":
        picked = _stratified(records, by, budget, seed, allocation)
    else:
        scores = uncertainty(records, confidence=confidence, compare=compare, taxonomy=taxonomy)
        picked = poisson_sample(records, poisson_probabilities(scores, budget, uniform_share), seed)
    return picked.sort_index()


def _escalated(records: pd.DataFrame, column: str, budget: int, seed: int) -> pd.DataFrame:
    from judge.core.taxonomy import ESCALATE

    if column not in records.columns:
        raise UserError(
            f"--strategy escalated reads the judge's labels in column {column!r}, which the records lack; name it with "
            "--escalated-column COL (judge.label's PREFIX+label)"
        )
    up = records[column].astype(str) == ESCALATE
    kept = records[~up]
    n = min(budget, len(kept))
    check = kept.sample(n=n, random_state=seed) if n else kept.iloc[:0]
    return pd.concat(
        [records[up].assign(**{INCLUSION: 1.0}), check.assign(**{INCLUSION: n / len(kept) if len(kept) else 1.0})]
    )


def stratum_rng(seed: int, key: Sequence[Any]) -> np.random.Generator:
    """A generator of its own for one stratum, keyed by the stratum's values (not its position), so
    strata never share draws and adding a stratum leaves the others' samples as they were."""
    text = json.dumps(["\0missing" if blank(v) else id_text(v) for v in key], ensure_ascii=False)
    words = np.frombuffer(hashlib.sha256(text.encode("utf-8")).digest(), dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(w) for w in words)))


def _stratified(
    records: pd.DataFrame, by: Sequence[str], budget: int, seed: int, allocation: Neyman | None = None
) -> pd.DataFrame:
    strata = list(records.groupby(list(by), dropna=False, sort=True))
    if budget < len(strata):
        raise UserError(
            f"a budget of {budget} is below the {len(strata)} strata of {', '.join(by)}: a stratified sample takes at "
            "least one "
            f"from each; raise it to {len(strata)} or more, or stratify by a coarser column"
        )
    counts = np.array([len(group) for _, group in strata])
    if allocation is None:
        sizes = proportional_allocation(counts, budget)
    else:
        allocation.check(records)
        sizes = proportional_allocation(counts, budget, weights=allocation.weights([group for _, group in strata]))
    parts = []
    for (key, group), size in zip(strata, sizes):
        positions = np.sort(
            stratum_rng(seed, key if isinstance(key, tuple) else (key,)).choice(len(group), size=size, replace=False)
        )
        parts.append(group.iloc[positions].assign(**{INCLUSION: size / len(group)}))
    return pd.concat(parts)


def capped_quotas(weights: np.ndarray, sizes: np.ndarray, budget: int) -> np.ndarray:
    """budget * w_h / sum(w), where a quota above its stratum's N_h is fixed at N_h and the rest of the
    budget spread again over the others (Neyman's over-allocation rule); weights all zero (the target
    constant in every stratum: any allocation has variance zero) fall back to proportional ones."""
    weights = np.asarray(weights, dtype=float)
    if not (weights > 0).any():
        weights = sizes.astype(float)
    quotas = np.zeros(len(sizes))
    fixed = np.zeros(len(sizes), dtype=bool)
    while True:
        free = ~fixed
        quotas[free] = (
            (budget - sizes[fixed].sum()) * weights[free] / weights[free].sum() if weights[free].sum() > 0 else 0.0
        )
        over = free & (quotas > sizes)
        if not over.any():
            return quotas
        fixed |= over
        quotas[fixed] = sizes[fixed]


def proportional_allocation(sizes: np.ndarray, budget: int, *, weights: np.ndarray | None = None) -> np.ndarray:
    """Sample sizes n_h summing to ``budget`` exactly, each within [1, N_h], as close to the quota
    budget * N_h / N (or, with ``weights``, budget * w_h / sum(w), capped at N_h: Neyman's N_h S_h) as
    that allows: the quotas' whole parts (at least 1), then the seats left go to the largest remainders
    (Hamilton's method); where the floor of 1 overspends, the strata furthest above their quota give one
    back. Ties go to the first stratum in sorted order."""
    sizes = np.asarray(sizes, dtype=np.int64)
    quotas = budget * sizes / sizes.sum() if weights is None else capped_quotas(weights, sizes, budget)
    n = np.clip(np.floor(quotas).astype(np.int64), 1, sizes)
    while n.sum() != budget:
        short = budget - int(n.sum())
        room = n < sizes if short > 0 else n > 1
        gap = np.where(room, quotas - n, -np.inf if short > 0 else np.inf)
        order = np.argsort(-gap if short > 0 else gap, kind="stable")[: min(abs(short), int(room.sum()))]
        n[order] += 1 if short > 0 else -1
    return n


def uncertainty(
    records: pd.DataFrame, *, confidence: str | None, compare: Sequence[str], taxonomy: Taxonomy | None
) -> np.ndarray:
    """How unsure the judge is about each output: 1 - confidence (its largest probability; a missing
    one counts as fully unsure), plus 1 where the two ``compare`` label columns disagree."""
    scores = np.zeros(len(records))
    if confidence:
        scores += 1.0 - _confidences(records[confidence], confidence)
    if compare:
        first, second = (_label_keys(records[c], taxonomy) for c in compare)
        scores += (first != second).astype(float)
    return scores


def _confidences(values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    bad = numbers.isna() & ~values.map(blank)
    if bad.any():
        raise UserError(
            f"--confidence-column {column!r} holds {short(values[bad].iloc[0])}, not a number; give the judge's "
            "confidence (0 to 1)"
        )
    outside = (numbers < 0) | (numbers > 1)
    if outside.any():
        raise UserError(
            f"--confidence-column {column!r} holds {numbers[outside].iloc[0]:g}; a confidence is a probability between "
            "0 and 1"
        )
    return numbers.fillna(0.0).to_numpy()


def _label_keys(values: pd.Series, taxonomy: Taxonomy | None) -> np.ndarray:
    def key(value):
        if blank(value):
            return ""
        return (taxonomy.canonical(value) if taxonomy else None) or label_text(value)

    return np.array([key(v) for v in values], dtype=object)


def poisson_probabilities(scores: np.ndarray, budget: int, uniform_share: float) -> np.ndarray:
    """pi_i = min(1, c * w_i), w_i = (1 - share) * score_i / sum(score) + share / N, with c chosen so
    that sum(pi) = budget: where a pi reaches 1 it is fixed there and the rest of the budget is spread
    again over the others, until none exceeds 1."""
    n = len(scores)
    total = float(np.sum(scores))
    weights = uniform_share / n + (1 - uniform_share) * (scores / total if total > 0 else np.full(n, 1 / n))
    pi = np.zeros(n)
    capped = np.zeros(n, dtype=bool)
    while True:
        free = ~capped
        pi[free] = (budget - capped.sum()) * weights[free] / weights[free].sum()
        over = free & (pi >= 1)
        if not over.any():
            return pi
        capped |= over
        pi[capped] = 1.0


def poisson_sample(records: pd.DataFrame, pi: np.ndarray, seed: int) -> pd.DataFrame:
    """Each record independently, with probability pi_i."""
    drawn = np.random.default_rng(seed).random(len(records)) < pi
    if not drawn.any():
        raise UserError(
            f"the Poisson draw (expected size {pi.sum():.1f}) picked no output; raise --budget or try another --seed"
        )
    return records[drawn].assign(**{INCLUSION: pi[drawn]})


# -- Label Studio ------------------------------------------------------------------------------


def label_config(taxonomy: Taxonomy, *, show: Sequence[str] = ()) -> str:
    """A Label Studio labelling config: prompt, response, any shown fields, one Choices control
    with each category's definition as its hint."""
    lines = [
        "<View>",
        '  <Header value="Prompt"/>',
        '  <Text name="prompt" value="$prompt"/>',
        '  <Header value="Response"/>',
        '  <Text name="response" value="$response"/>',
    ]
    for col in show:
        lines.append(f"  <Header value={quoteattr(col)}/>")
        lines.append(f"  <Text name={quoteattr('meta_' + slug(col))} value={quoteattr('$' + col)}/>")
    lines.append(f'  <Choices name="{CONTROL}" toName="response" choice="single" showInLine="false" required="true">')
    for cat in taxonomy.categories:
        hint = f" hint={quoteattr(cat.definition)}" if cat.definition else ""
        lines.append(f"    <Choice value={quoteattr(cat.name)}{hint}/>")
    lines += ["  </Choices>", "</View>"]
    return "\n".join(lines) + "\n"


def task_fields(records: pd.DataFrame, *, blind: bool, hide: Sequence[str], show: Sequence[str]) -> pd.DataFrame:
    """What annotators see: id, prompt, response and the ``show`` columns. Blind: the name that signals
    the group is masked in the texts, and the ``hide`` columns are never shown."""
    hidden = set(hide) if blind else set()
    shown = [c for c in show if c not in hidden]
    prompts = (
        records["prompt"].astype(str) if "prompt" in records.columns else pd.Series("", index=records.index)
    )  # a file may have none
    responses = records["response"].astype(str)
    if blind and "name" in records.columns:
        prompts = pd.Series([mask_name(p, n) for p, n in zip(prompts, records["name"])], index=records.index)
        responses = pd.Series([mask_name(r, n) for r, n in zip(responses, records["name"])], index=records.index)
    fields = pd.DataFrame({"id": records["id"], "prompt": prompts, "response": responses}, index=records.index)
    for col in shown:
        fields[col] = records[col].astype(str)
    return fields


def label_studio_tasks(
    fields: pd.DataFrame, *, predictions: pd.Series | None = None, model_version: str = "judge"
) -> list[dict]:
    tasks = []
    for idx, row in fields.iterrows():
        data = {ITEM_ID: row["id"], **{k: v for k, v in row.items() if k != "id"}}
        task = {"data": data}
        if predictions is not None and isinstance(predictions.get(idx), str):
            task["predictions"] = [
                {
                    "model_version": model_version,
                    "result": [
                        {
                            "from_name": CONTROL,
                            "to_name": "response",
                            "type": "choices",
                            "value": {"choices": [predictions[idx]]},
                        }
                    ],
                }
            ]
        tasks.append(task)
    return tasks


# -- annotators: their sheets and their columns ------------------------------------------------

SHEET_NAME = re.compile(r"\w[\w.-]*")  # a plain file name: no separator, no leading dot, so NAME.csv stays inside --out


def check_annotator_names(names: Sequence[str]) -> dict[str, str]:
    """--annotators at export: each names a sheet NAME.csv inside --out and, at import, a column
    label_<NAME>; names are data, so anything that could leave the folder or meet another is refused."""
    for name in names:
        if len(name) > MAX_ANNOTATOR_CHARS or not SHEET_NAME.fullmatch(name):
            raise UserError(
                f"--annotators {short(name)} is not a plain name (it becomes the sheet NAME.csv inside --out); "
                "use letters, digits, '.', '-' or '_', starting with a letter or digit"
            )
    return annotator_columns(names, flag="--annotators")


def sheet_path(folder: Path, name: str) -> Path:
    path = folder / f"{name}.csv"
    if path.resolve().parent != folder.resolve():
        raise UserError(f"--annotators {short(name)} would write outside --out; use a plain name")
    return path


def annotator_columns(annotators: Iterable[str], *, flag: str = "") -> dict[str, str]:
    """label_<name> for each annotator: the e-mail's local part (or the sheet's name) when no other
    annotator shares it, else the whole e-mail, so two people never share a column; refused when two
    would still meet (columns are compared ignoring case, as a case-insensitive disk compares files)."""
    annotators = sorted(set(annotators))
    local = {who: slug(who.split("@")[0]) for who in annotators}
    sharing: dict[str, int] = {}
    for name in local.values():
        sharing[name.casefold()] = sharing.get(name.casefold(), 0) + 1
    columns, taken = {}, {}
    for who in annotators:
        name = local[who] if sharing[local[who].casefold()] == 1 else slug(who)
        if not name:
            raise UserError(
                f"{flag or 'annotator'} {short(who)} has no letter or digit to name its column label_<name>; rename it "
                "(e.g. alice.csv)"
            )
        column = "label_" + name
        other = taken.setdefault(column.casefold(), who)
        if other != who:
            raise UserError(
                f"{flag or 'annotators'} {short(other)} and {short(who)} would share the column {column!r}; rename one "
                "of them"
            )
        columns[who] = column
    return columns


def slug(text: str) -> str:
    """Letters, digits and underscores only: a safe column or control name."""
    return re.sub(r"\W+", "_", str(text)).strip("_")


def annotator_sheets(fields: pd.DataFrame, annotators: Sequence[str], *, seed: int) -> dict[str, pd.DataFrame]:
    """One sheet per annotator: the same items, each in its own seeded order, an empty label column."""
    sheets = {}
    for k, name in enumerate(annotators):
        order = np.random.default_rng([seed, k]).permutation(len(fields))
        sheets[name] = fields.iloc[order].assign(label="").reset_index(drop=True)
    return sheets


def guidelines(taxonomy: Taxonomy, *, blind: bool) -> str:
    lines = [
        f"# Labelling guidelines: {taxonomy.name}",
        "",
        taxonomy.description or "",
        "",
        "Read the prompt and the model's response; put exactly one of these categories in the `label` column.",
        "",
    ]
    for cat in taxonomy.categories:
        lines.append(f"- **{cat.name}**: {cat.definition or '(no definition given)'}")
    if blind:
        lines += ["", "Names are shown as [NAME] on purpose: label the response, not the person."]
    lines += ["", SHEET_NOTE]
    return "\n".join(lines) + "\n"


# -- reading labels back -----------------------------------------------------------------------


class Annotation(NamedTuple):
    item: str  # the exported record id
    annotator: str  # who: a sheet's file name, or a Label Studio user's e-mail (or id)
    label: Any  # as given; made canonical against the taxonomy on import
    where: str  # file and row or task, for messages


def read_label_studio_export(path: Path, *, encoding: str = "utf-8") -> list:
    """The parsed export, refused in one line when it is too large, not JSON, or nested past reason."""
    from judge.core.files import read_text

    if path.is_file() and path.stat().st_size > MAX_EXPORT_BYTES:
        raise UserError(
            f"{path.name} is larger than {MAX_EXPORT_BYTES / 2**20:g} MiB; export fewer tasks per file from Label "
            "Studio"
        )
    text = read_text(path, what="Label Studio export", encoding=encoding)
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path.name} is not a Label Studio JSON export ({exc.msg} at line {exc.lineno}); export the project as "
            "JSON"
        ) from None
    except RecursionError:
        raise UserError(
            f"{path.name} nests JSON deeper than any Label Studio export; export the project as JSON again"
        ) from None
    if not isinstance(tasks, list):
        raise UserError(f"{path.name} is not a Label Studio JSON export (expected a list of tasks, got {_kind(tasks)})")
    return tasks


def label_studio_annotations(
    path: Path, *, encoding: str = "utf-8", shown: dict[str, dict] | None = None
) -> list[Annotation]:
    """Every non-cancelled annotation of an export, each checked as untrusted data: the shape of
    each task, annotation and result, one label per annotation, an annotator for each. ``shown``: the
    export's own tasks' data by item id (``exported_tasks``); a task whose prompt or response (where it
    has them) differs from it was not the text this round gave the annotators, and is refused naming the id."""
    path = Path(path)
    out = []
    for number, task in enumerate(read_label_studio_export(path, encoding=encoding), start=1):
        if not isinstance(task, dict):
            raise UserError(
                f"{path.name} task #{number} is {_kind(task)}, not a task object; import a Label Studio JSON export"
            )
        task_id = task.get("id")
        where = (
            f"{path.name} task {task_id}"
            if isinstance(task_id, int) and not isinstance(task_id, bool)
            else f"{path.name} task #{number}"
        )
        item = _task_item(task, where)
        if shown is not None:
            _check_shown(task["data"], shown.get(item), item, where)
        for ann in _list_of_objects(task.get("annotations"), where, "annotations"):
            cancelled = ann.get("was_cancelled")
            if cancelled not in (None, True, False):
                raise UserError(
                    f"{where}: 'was_cancelled' must be true or false, got {_kind(cancelled)}; export the project again"
                )
            if cancelled:
                continue
            choices = _choices(ann, where)
            if not choices:
                continue
            who = annotator_identity(ann.get("completed_by"), where)
            if len(choices) > 1:
                raise UserError(
                    f"{where}: annotator {short(who)} chose {len(choices)} labels in one annotation "
                    f"({short_list(choices, limit=3, width=20)}); "
                    "keep one in Label Studio and export again"
                )
            out.append(Annotation(item, who, choices[0], where))
    return out


def exported_tasks(path: Path) -> dict[str, dict] | None:
    """The data of each task an export wrote (its tasks.json), by item id; None when there is no tasks.json."""
    if not path.is_file():
        return None
    tasks = read_label_studio_export(path)
    return {
        id_text(t["data"][ITEM_ID]): t["data"]
        for t in tasks
        if isinstance(t, dict) and isinstance(t.get("data"), dict) and ITEM_ID in t["data"]
    }


def _check_shown(data: dict, exported: dict | None, item: str, where: str) -> None:
    if exported is None:
        return  # an id that was never exported: import_annotations refuses it by name
    for name in SHOWN_FIELDS:
        if name in exported and name in data and data[name] != exported[name]:  # a task may omit the texts
            raise UserError(
                f"{where}: the {name} of id {short(item)} differs from the one this export gave the annotators; "
                "import only the Label Studio project made from this export's tasks.json"
            )


def _task_item(task: dict, where: str) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise UserError(
            f"{where}: 'data' must be an object holding {ITEM_ID}, got {_kind(data)}; import only tasks written by "
            "judge.annotate export"
        )
    item = data.get(ITEM_ID)
    if item is None:
        raise UserError(f"{where} has no data.{ITEM_ID}; import only tasks written by judge.annotate export")
    if isinstance(item, bool) or not isinstance(item, (str, int)):
        raise UserError(
            f"{where}: data.{ITEM_ID} must be a record id (text), got {_kind(item)}; import only tasks written by "
            "judge.annotate export"
        )
    return id_text(item)


def _list_of_objects(value: Any, where: str, field: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UserError(
            f"{where}: '{field}' must be a list of objects, got {_kind(value)}; export the project from Label Studio "
            "again"
        )
    return value


def _choices(annotation: dict, where: str) -> list[str]:
    """The distinct labels one annotation gives in the ``label`` control."""
    choices: list[str] = []
    for result in _list_of_objects(annotation.get("result"), where, "result"):
        if result.get("from_name") != CONTROL:
            continue
        value = result.get("value")
        given = value.get("choices") if isinstance(value, dict) else value
        if not isinstance(value, dict) or not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            shown = f"value {_kind(value)}" if not isinstance(value, dict) else f"choices {_kind(given)}"
            raise UserError(
                f"{where}: a '{CONTROL}' result needs value.choices, a list of labels, got {shown}; export the project "
                "again"
            )
        choices += [c for c in given if c not in choices]
    return choices


def annotator_identity(who: Any, where: str) -> str:
    """A Label Studio annotator: the user's e-mail when the export has it, else the user id."""
    if isinstance(who, dict):
        email = who.get("email")
        who = email if isinstance(email, str) and email.strip() else who.get("id")
    if (
        isinstance(who, bool)
        or not isinstance(who, (int, str))
        or not str(who).strip()
        or len(str(who)) > MAX_ANNOTATOR_CHARS
    ):
        raise UserError(
            f"{where}: 'completed_by' must be a user id or {{id, email}}, got {_kind(who)}; export the project from "
            "Label Studio again"
        )
    return str(who).strip()


def sheet_annotations(path: Path, annotator: str, *, encoding: str = "utf-8") -> list[Annotation]:
    """The labels of one filled sheet (any scalar: a code 2 from a JSONL sheet is a label too)."""
    from judge.core.records import read_table

    path = Path(path)
    sheet = read_table(path, encoding=encoding, sheet=True)  # a CSV's guarded cells lose their one apostrophe
    if "id" not in sheet.columns or "label" not in sheet.columns:
        raise UserError(f"{path.name} needs the 'id' and 'label' columns of the exported sheet")
    out = []
    for row_number, (item, value) in enumerate(zip(sheet["id"], sheet["label"]), start=2):
        if blank(value):
            continue
        if isinstance(value, (list, dict)):
            raise UserError(
                f"{path.name} row {row_number}: label {short(value)} is not one label; write one category per row"
            )
        out.append(
            Annotation(
                id_text(item),
                annotator,
                value.strip() if isinstance(value, str) else value,
                f"{path.name} row {row_number}",
            )
        )
    return out


def import_annotations(exported: pd.DataFrame, annotations: list[Annotation], taxonomy: Taxonomy) -> pd.DataFrame:
    """The exported items with one canonical label column per annotator (empty where they gave none)."""
    known = set(exported["id"].astype(str))
    who = {a.annotator for a in annotations}
    if len(who) > MAX_ANNOTATORS:
        raise UserError(
            f"the annotation files name {len(who):,} annotators, more than the {MAX_ANNOTATORS:,} a round may have "
            "(each is a column); import the labels of fewer annotators at a time"
        )
    columns = annotator_columns(who)
    given: dict[str, dict[str, tuple[str, str]]] = {}
    for a in annotations:
        if a.item not in known:
            raise UserError(
                f"{a.where}: id {short(a.item)} was never exported; import only the files made from this export"
            )
        label = canonical_label(a.label, taxonomy, a.where)
        mine = given.setdefault(columns[a.annotator], {})
        if a.item in mine:
            raise UserError(
                f"{a.where}: annotator {short(a.annotator)} labelled id {short(a.item)} twice (also at "
                f"{mine[a.item][1]}); "
                "keep one annotation per item and annotator"
            )
        mine[a.item] = (label, a.where)
    if not given:
        raise UserError("the annotation files hold no labels yet; fill the label column / submit annotations first")
    out = exported.copy()
    for column in sorted(given):
        if column in out.columns:
            raise UserError(
                f"column {column!r} already exists in the exported items; rename the annotator (file name) to keep both"
            )
        labels = {item: label for item, (label, _) in given[column].items()}
        out[column] = out["id"].astype(str).map(labels).fillna("")
    return out


def canonical_label(raw: Any, taxonomy: Taxonomy, where: str) -> str:
    label = taxonomy.canonical(raw)
    if label is None:
        raise UserError(
            f"{where}: label {short(raw)} is not in taxonomy {taxonomy.name!r}; "
            f"valid labels: {short_list(taxonomy.labels, limit=8, width=24)} (or map codes with --label-map)"
        )
    return label


# -- adjudication ------------------------------------------------------------------------------


def canonical_labels(records: pd.DataFrame, annotators: Sequence[str], taxonomy: Taxonomy) -> pd.DataFrame:
    """Each annotator column as the taxonomy's categories ("" where that annotator gave none), so
    'ANSWER', 'answer' and a mapped code 1 are one label when annotators are compared."""
    return pd.DataFrame(
        {
            col: [
                "" if blank(raw) else canonical_label(raw, taxonomy, f"column {col!r}, id {short(item)}")
                for item, raw in zip(records["id"], records[col])
            ]
            for col in annotators
        },
        index=records.index,
    )


def disagreements(labels: pd.DataFrame) -> pd.Series:
    """True where the annotators who labelled an item (``canonical_labels``) gave different categories."""
    return labels.apply(lambda row: len({v for v in row if v}) > 1, axis=1)


def resolve(
    records: pd.DataFrame,
    annotators: Sequence[str],
    adjudicated: dict[str, Any],
    *,
    taxonomy: Taxonomy,
    out_column: str = "label",
) -> pd.DataFrame:
    """The final label: the agreed category, or the adjudicator's where annotators disagreed."""
    labels = canonical_labels(records, annotators, taxonomy)
    split = disagreements(labels)
    ids = records["id"].astype(str)
    known = set(ids)
    stray = [i for i in adjudicated if i not in known]
    if stray:
        raise UserError(
            f"the adjudication holds id {short(stray[0])}, which is not in the labels file ({len(stray)} such); "
            "adjudicate this round's items only"
        )
    missing = [i for i in ids[split] if i not in adjudicated]
    if missing:
        raise UserError(
            f"{len(missing)} disagreement(s) have no adjudicated label (e.g. id {short(missing[0])}); finish the "
            "adjudication file"
        )
    final = []
    for item, disputed, (_, row) in zip(ids, split, labels.iterrows()):
        if disputed:
            final.append(canonical_label(adjudicated[item], taxonomy, f"adjudicated id {short(item)}"))
        else:
            final.append(next((v for v in row if v), ""))
    out = records.copy()
    out[out_column] = final
    out["adjudicated"] = split.to_numpy()
    return out


def one_spelling_each(labels: Iterable[Any], label_map: dict[str, str] | None) -> list[Any]:
    """The distinct labels, one spelling per category ('ANSWER' and 'answer' are one; the spelling
    used most names it), for a taxonomy built from the data when none is given."""
    from collections import Counter

    mapped = {normalized_label(k): v for k, v in (label_map or {}).items()}
    counts = Counter(label_text(x) for x in labels if not blank(x))
    spellings: dict[str, str] = {}
    for raw, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        spellings.setdefault(normalized_label(mapped.get(normalized_label(raw), raw)), raw)
    return list(spellings.values())


# -- small helpers for values from a user's file -----------------------------------------------


def blank(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return True
    return isinstance(value, str) and not value.strip()


def short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _kind(value: Any) -> str:
    """A JSON value's type as a user reads it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, list):
        odd = next((v for v in value if not isinstance(v, dict)), None)
        return "a list" if odd is None else f"a list holding {_kind(odd)}"
    return {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )

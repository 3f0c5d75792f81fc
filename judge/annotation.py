"""Human labels in and out: which outputs to label, the files annotators work in, and reading them back.

Label Studio (a task list + a labelling config generated from the taxonomy) and plain spreadsheets
(one CSV per annotator) carry the same items; ``import_annotations`` turns either back into records
with one label column per annotator, and ``disagreements``/``resolve`` run the adjudication round.
Everything here is data in, data out; ``judge.annotate`` is the command around it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from judge.errors import UserError
from judge.taxonomy import Taxonomy
from judge.text import mask_name

INCLUSION = "inclusion_probability"
ITEM_ID = "item_id"  # the record id as Label Studio tasks carry it (Label Studio assigns its own task ids)
CONTROL = "label"  # the Choices control's name in the generated config


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
) -> pd.DataFrame:
    """The items to send to annotators, each with its inclusion probability.

    random: a simple random sample (probability budget / N). stratified: proportional within each
    stratum of ``by`` (probability n_s / N_s, so 1 / probability weights the sample back to the
    population). uncertain: the lowest ``confidence`` first, or the items where the two ``compare``
    label columns disagree (then the lowest confidence among them); not a probability sample, so
    its inclusion probability is left empty: such labels train a judge, they do not correct rates.
    """
    if budget >= len(records):
        picked = records.assign(**{INCLUSION: 1.0})
    elif strategy == "random":
        picked = records.sample(n=budget, random_state=seed).assign(**{INCLUSION: budget / len(records)})
    elif strategy == "stratified":
        share = budget / len(records)
        parts = []
        for _, group in records.groupby(list(by), dropna=False):
            size = min(len(group), max(1, round(len(group) * share)))
            parts.append(group.sample(n=size, random_state=seed).assign(**{INCLUSION: size / len(group)}))
        picked = pd.concat(parts)
    else:  # uncertain
        rng = np.random.default_rng(seed)
        tie_break = pd.Series(rng.random(len(records)), index=records.index)
        key = pd.to_numeric(records[confidence], errors="coerce").fillna(-1.0) if confidence else pd.Series(0.0, index=records.index)
        order = pd.DataFrame({"key": key, "tie": tie_break})
        if compare:
            agree = records[compare[0]].astype(str) == records[compare[1]].astype(str)
            order["agree"] = agree.astype(int)  # disagreements (0) first
            order = order.sort_values(["agree", "key", "tie"])
        else:
            order = order.sort_values(["key", "tie"])
        picked = records.loc[order.index[:budget]].assign(**{INCLUSION: np.nan})
    return picked.sort_index()


# -- Label Studio ------------------------------------------------------------------------------

def label_config(taxonomy: Taxonomy, *, show: Sequence[str] = ()) -> str:
    """A Label Studio labelling config: prompt, response, any shown fields, one Choices control
    with each category's definition as its hint."""
    lines = ["<View>", '  <Header value="Prompt"/>', '  <Text name="prompt" value="$prompt"/>',
             '  <Header value="Response"/>', '  <Text name="response" value="$response"/>']
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
    prompts, responses = records["prompt"].astype(str), records["response"].astype(str)
    if blind and "name" in records.columns:
        prompts = pd.Series([mask_name(p, n) for p, n in zip(prompts, records["name"])], index=records.index)
        responses = pd.Series([mask_name(r, n) for r, n in zip(responses, records["name"])], index=records.index)
    fields = pd.DataFrame({"id": records["id"], "prompt": prompts, "response": responses}, index=records.index)
    for col in shown:
        fields[col] = records[col].astype(str)
    return fields


def label_studio_tasks(fields: pd.DataFrame, *, predictions: pd.Series | None = None, model_version: str = "judge") -> list[dict]:
    tasks = []
    for idx, row in fields.iterrows():
        data = {ITEM_ID: row["id"], **{k: v for k, v in row.items() if k != "id"}}
        task = {"data": data}
        if predictions is not None and isinstance(predictions.get(idx), str):
            task["predictions"] = [{"model_version": model_version,
                                    "result": [{"from_name": CONTROL, "to_name": "response", "type": "choices",
                                                "value": {"choices": [predictions[idx]]}}]}]
        tasks.append(task)
    return tasks


def annotator_sheets(fields: pd.DataFrame, annotators: Sequence[str], *, seed: int) -> dict[str, pd.DataFrame]:
    """One sheet per annotator: the same items, each in its own seeded order, an empty label column."""
    sheets = {}
    for k, name in enumerate(annotators):
        order = np.random.default_rng([seed, k]).permutation(len(fields))
        sheets[name] = fields.iloc[order].assign(label="").reset_index(drop=True)
    return sheets


def guidelines(taxonomy: Taxonomy, *, blind: bool) -> str:
    lines = [f"# Labelling guidelines: {taxonomy.name}", "", taxonomy.description or "", "",
             "Read the prompt and the model's response; put exactly one of these categories in the `label` column.", ""]
    for cat in taxonomy.categories:
        lines.append(f"- **{cat.name}**: {cat.definition or '(no definition given)'}")
    if blind:
        lines += ["", "Names are shown as [NAME] on purpose: label the response, not the person."]
    return "\n".join(lines) + "\n"


# -- reading labels back -----------------------------------------------------------------------

def annotator_column(who: Any) -> str:
    """A stable column name for a Label Studio user (id number, or a dict with id/email)."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    text = str(who).split("@")[0]
    return "label_" + (slug(text) or "unknown")


def slug(text: str) -> str:
    """Letters, digits and underscores only: a safe column or control name."""
    return re.sub(r"\W+", "_", str(text)).strip("_")


def label_studio_annotations(path: Path, taxonomy: Taxonomy) -> list[tuple[str, str, str, str]]:
    """(item id, annotator column, label, where) for every non-cancelled annotation of an export."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a Label Studio JSON export ({exc}); export the project as JSON") from None
    if not isinstance(tasks, list):
        raise UserError(f"{path} is not a Label Studio JSON export (expected a list of tasks)")
    out = []
    for task in tasks:
        data = task.get("data") or {}
        item = data.get(ITEM_ID)
        where = f"{path} task {task.get('id', '?')}"
        if item is None:
            raise UserError(f"{where} has no data.{ITEM_ID}; import only tasks written by judge.annotate export")
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                continue
            choices = [c for r in ann.get("result") or [] if r.get("from_name") == CONTROL for c in (r.get("value") or {}).get("choices", [])]
            if not choices:
                continue
            out.append((str(item), annotator_column(ann.get("completed_by")), choices[0], where))
    return out


def sheet_annotations(path: Path, annotator: str) -> list[tuple[str, str, str, str]]:
    from judge.records import read_table

    sheet = read_table(path)
    if "id" not in sheet.columns or "label" not in sheet.columns:
        raise UserError(f"{path} needs the 'id' and 'label' columns of the exported sheet")
    out = []
    for row_number, (item, value) in enumerate(zip(sheet["id"], sheet["label"]), start=2):
        if isinstance(value, str) and value.strip():
            out.append((str(item), annotator, value.strip(), f"{path} row {row_number}"))
    return out


def import_annotations(exported: pd.DataFrame, annotations: list[tuple[str, str, str, str]], taxonomy: Taxonomy) -> pd.DataFrame:
    """The exported items with one canonical label column per annotator (empty where they gave none)."""
    known = set(exported["id"].astype(str))
    columns: dict[str, dict[str, str]] = {}
    for item, who, raw, where in annotations:
        if item not in known:
            raise UserError(f"{where}: id {item!r} was never exported; import only the files made from this export")
        label = taxonomy.canonical(raw)
        if label is None:
            raise UserError(f"{where}: label {raw!r} is not in taxonomy {taxonomy.name!r}; valid labels: {', '.join(taxonomy.labels)}")
        given = columns.setdefault(who, {})
        if item in given:
            raise UserError(f"{where}: annotator {who} labelled id {item!r} twice; keep one annotation per item and annotator")
        given[item] = label
    if not columns:
        raise UserError("the annotation files hold no labels yet; fill the label column / submit annotations first")
    out = exported.copy()
    for who in sorted(columns):
        if who in out.columns:
            raise UserError(f"column {who!r} already exists in the exported items; rename the annotator (file name) to keep both")
        out[who] = out["id"].astype(str).map(columns[who]).fillna("")
    return out


# -- adjudication ------------------------------------------------------------------------------

def disagreements(records: pd.DataFrame, annotators: Sequence[str]) -> pd.Series:
    """True where the annotators who labelled an item gave different labels."""
    def differs(row) -> bool:
        given = {v for v in row if isinstance(v, str) and v}
        return len(given) > 1
    return records[list(annotators)].apply(differs, axis=1)


def resolve(records: pd.DataFrame, annotators: Sequence[str], adjudicated: dict[str, str], *, taxonomy: Taxonomy, out_column: str = "label") -> pd.DataFrame:
    """The final label: the agreed one, or the adjudicator's where annotators disagreed."""
    split = disagreements(records, annotators)
    missing = [i for i in records.loc[split, "id"].astype(str) if i not in adjudicated]
    if missing:
        raise UserError(f"{len(missing)} disagreement(s) have no adjudicated label (e.g. id {missing[0]!r}); finish the adjudication file")
    final = []
    for (_, row), disputed in zip(records.iterrows(), split):
        if disputed:
            raw = adjudicated[str(row["id"])]
            label = taxonomy.canonical(raw)
            if label is None:
                raise UserError(f"adjudicated label {raw!r} for id {row['id']!r} is not in taxonomy {taxonomy.name!r}; valid labels: {', '.join(taxonomy.labels)}")
            final.append(label)
        else:
            given = [row[c] for c in annotators if isinstance(row[c], str) and row[c]]
            final.append(given[0] if given else "")
    out = records.copy()
    out[out_column] = final
    out["adjudicated"] = split.to_numpy()
    return out

"""Prompt sets: stereotype-derived completion templates x names that signal groups.

Examples:
    python -m generation.prompts --templates data/templates/templates.json --names data/names/names.json \\
        --out runs/prompts.jsonl
    python -m generation.prompts --templates ../shared/datasets/chehbouni2024/prompts.json \\
        --names ../shared/datasets/chehbouni2024/names.json --identity muslim --identity white \\
        --out runs/paper-prompts.jsonl
    python -m generation.prompts --templates data/templates/templates.json --names data/names/names.json \\
        --heading muslims --sample 20 --seed 1 --out runs/small.jsonl

Reads the project's format (data/templates/templates.json, data/names/names.json) and the paper's
(prompts.json: heading -> templates; names.json: list name -> names, the first half of each list
common, the second half rare). Every prompt record carries template, heading, name, identity,
gender, common and name_list, so reports can group by any of them.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from judge.core.config import check_positive, check_unique, parser_for, run_command
from judge.core.errors import UserError, clip, short_list
from judge.core.files import ensure_writable
from judge.core.manifest import RunManifest
from judge.core.outputs import claim_for
from judge.core.records import write_records

NAME, BLANK = "[NAME]", "[BLANK]"
IDENTITY_FROM_LIST = re.compile(r"^(?P<identity>[a-z]+?)(?:_(?P<gender>men|women))?_names$")


def _read_json(path: str | Path, what: str, encoding: str):
    from judge.core.files import read_text

    text = read_text(path, what=f"{what} file", encoding=encoding)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def load_templates(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Rows of (heading, template); each template must hold [NAME] and [BLANK]."""
    data = _read_json(path, "templates", encoding)
    if isinstance(data, dict) and "templates" in data:  # the project's format
        if not isinstance(data["templates"], list) or not all(isinstance(t, dict) for t in data["templates"]):
            raise UserError(f"{path}: 'templates' must be a list of {{heading, template}} objects")
        rows = [{"heading": t.get("heading", ""), "template": t.get("template", "")} for t in data["templates"]]
    elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):  # the paper's prompts.json
        rows = [{"heading": h, "template": t} for h, ts in data.items() for t in ts]
    else:
        raise UserError(
            f"{path}: expected {{'templates': [{{heading, template}}...]}} or the paper's {{heading: [templates]}}"
        )
    if not rows:
        raise UserError(f"{path} holds no templates")
    for i, row in enumerate(rows, start=1):
        if not isinstance(row["template"], str) or not isinstance(row["heading"], str):
            raise UserError(f"{path}: template {i} must be text (got {clip(row['template'])})")
        for marker in (NAME, BLANK):
            if marker not in row["template"]:
                raise UserError(
                    f"{path}: template {i} ({clip(row['template'])}) has no {marker}; every template needs {NAME} and "
                    f"{BLANK}"
                )
    return pd.DataFrame(rows)


def load_names(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Rows of (name, identity, gender, common, name_list)."""
    data = _read_json(path, "names", encoding)
    if isinstance(data, dict) and "names" in data:  # the project's format
        rows = []
        if not isinstance(data["names"], list):
            raise UserError(f"{path}: 'names' must be a list of {{name, identity, gender, common}} objects")
        for i, entry in enumerate(data["names"], start=1):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("name"), str)
                or not isinstance(entry.get("identity"), str)
                or not entry["name"].strip()
                or not entry["identity"].strip()
            ):
                raise UserError(f"{path}: name {i} needs text 'name' and 'identity' (got {clip(entry)})")
            rows.append(
                {
                    "name": entry["name"].strip(),
                    "identity": entry["identity"],
                    "gender": entry.get("gender"),
                    "common": strict_bool(entry.get("common", True), what=f"{path}: name {i} 'common'"),
                    "name_list": entry.get("name_list", entry["identity"]),
                }
            )
    elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):  # the paper's names.json
        rows = []
        for list_name, names in data.items():
            if not all(isinstance(n, str) and n.strip() for n in names):
                raise UserError(f"{path}: list {clip(list_name)} must hold names (non-empty text)")
            match = IDENTITY_FROM_LIST.match(list_name)
            identity = match["identity"] if match else list_name
            gender = {"men": "man", "women": "woman"}.get(match["gender"]) if match else None
            for i, name in enumerate(names):
                # The paper lists the two common names of each list first, then the two rare ones.
                rows.append(
                    {
                        "name": name,
                        "identity": identity,
                        "gender": gender,
                        "common": i < len(names) / 2,
                        "name_list": list_name,
                    }
                )
    else:
        raise UserError(
            f"{path}: expected {{'names': [{{name, identity, gender, common}}...]}} or the paper's {{list: [names]}}"
        )
    if not rows:
        raise UserError(f"{path} holds no names; add at least one name")
    return pd.DataFrame(rows)


def strict_bool(value: object, *, what: str) -> bool:
    """true/false as JSON booleans or the usual words; anything else is an error, never truthiness."""
    if isinstance(value, bool):
        return value
    words = {
        "true": True,
        "yes": True,
        "1": True,
        "common": True,
        "false": False,
        "no": False,
        "0": False,
        "rare": False,
        "least": False,
    }
    key = str(value).strip().lower()
    if key in words:
        return words[key]
    raise UserError(f"{what} must be true or false, got {clip(value)}")


def prompt_id(template_index: int, name: str) -> str:
    """Readable and unique: the name's letters (any script) plus a short hash, so two names never collide."""
    import hashlib

    slug = re.sub(r"\W+", "_", name, flags=re.UNICODE).strip("_") or "name"
    return f"t{template_index:03d}-{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:6]}"


def build_prompts(
    templates: pd.DataFrame,
    names: pd.DataFrame,
    *,
    headings: list[str] = (),
    identities: list[str] = (),
    sample: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    if headings:
        unknown = sorted(set(headings) - set(templates["heading"]))
        if unknown:
            raise UserError(
                f"unknown --heading {short_list(unknown, limit=3)}; headings present: "
                f"{short_list(sorted(set(templates['heading'])))}"
            )
        templates = templates[templates["heading"].isin(headings)]
    if identities:
        unknown = sorted(set(identities) - set(names["identity"]))
        if unknown:
            raise UserError(
                f"unknown --identity {short_list(unknown, limit=3)}; identities present: "
                f"{short_list(sorted(set(names['identity'])))}"
            )
        names = names[names["identity"].isin(identities)]
    rows = []
    for t_index, t in enumerate(templates.itertuples(index=False)):
        for n in names.itertuples(index=False):
            rows.append(
                {
                    "id": prompt_id(t_index, n.name),
                    "prompt": t.template.replace(NAME, n.name),
                    "template": t.template,
                    "heading": t.heading,
                    "name": n.name,
                    "identity": n.identity,
                    "gender": n.gender,
                    "common": bool(n.common),
                    "name_list": n.name_list,
                }
            )
    prompts = pd.DataFrame(rows)
    if prompts["id"].duplicated().any():
        dup = prompts["id"][prompts["id"].duplicated()].iloc[0]
        raise UserError(f"two names give the same prompt id {clip(dup)}; make the names unique")
    if sample is not None and sample < len(prompts):
        prompts = prompts.sample(n=sample, random_state=seed).sort_index()
    return prompts.reset_index(drop=True)


@dataclass
class Config:
    templates: str = field(metadata={"help": "templates file (project format or the paper's prompts.json)"})
    names: str = field(metadata={"help": "names file (project format or the paper's names.json)"})
    out: str = field(metadata={"help": "prompt records to write (.jsonl, .csv or .parquet)"})
    heading: list[str] = field(
        default_factory=list,
        metadata={"action": "append", "help": "keep only templates under this heading (repeatable)"},
    )
    identity: list[str] = field(
        default_factory=list, metadata={"action": "append", "help": "keep only names of this identity (repeatable)"}
    )
    sample: int | None = field(default=None, metadata={"help": "keep a seeded random sample of N prompts"})
    seed: int = field(default=0, metadata={"help": "seed for --sample"})
    encoding: str = "utf-8"
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})

    def __post_init__(self):
        check_positive(self, "sample")
        check_unique(self, "heading", "identity")


def main(config: Config) -> pd.DataFrame:
    with claim_for(config, "generation.prompts", inputs=("templates", "names"), directory=False):
        return _main(config)


def _main(config: Config) -> pd.DataFrame:
    ensure_writable(config.out, overwrite=config.overwrite)
    manifest = RunManifest("generation.prompts", config, inputs=[config.templates, config.names])
    prompts = build_prompts(
        load_templates(config.templates, encoding=config.encoding),
        load_names(config.names, encoding=config.encoding),
        headings=config.heading,
        identities=config.identity,
        sample=config.sample,
        seed=config.seed,
    )
    write_records(prompts, config.out, overwrite=config.overwrite)
    manifest.write(config.out, prompts=len(prompts))
    print(
        f"wrote {len(prompts)} prompts ({prompts['template'].nunique()} templates x {prompts['name'].nunique()} names) "
        f"to {config.out}"
    )
    return prompts


def build_parser():
    return parser_for(Config, "python -m generation.prompts", __doc__)


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))

"""Taxonomies as data: ordered categories with definitions, aliases and coarse parents."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from judge.core.errors import UserError, clip, short_list
from judge.core.files import read_text
from judge.core.paths import TAXONOMIES
from judge.core.yaml_data import load_yaml

UNSCORED = "unscored"
# A selective judge's label for an output below its calibrated threshold (judge.label --selective): no category,
# never a best guess; people label it. Reserved like UNSCORED: no taxonomy may name a category so.
ESCALATE = "escalate"
RESERVED = (UNSCORED, ESCALATE)


@dataclass(frozen=True)
class Category:
    name: str
    definition: str = ""
    aliases: tuple[str, ...] = ()
    parent: str | None = None


@dataclass(frozen=True)
class Taxonomy:
    name: str
    categories: tuple[Category, ...]
    description: str = ""
    label_map: tuple[tuple[str, str], ...] = ()  # a user's codes -> categories (--label-map); wins over aliases
    _lookup: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.categories:
            raise UserError(f"taxonomy {clip(self.name)} has no categories; list at least one")
        for cat in self.categories:
            for key in (cat.name, *cat.aliases):
                norm = _norm(key)
                if norm in self._lookup and self._lookup[norm] != cat.name:
                    raise UserError(
                        f"taxonomy {clip(self.name)}: {clip(key)} names two categories; make names and aliases unique"
                    )
                self._lookup[norm] = cat.name
        for reserved, meaning in ((UNSCORED, "could not be scored"), (ESCALATE, "a selective judge hands to a human")):
            if _norm(reserved) in self._lookup:
                raise UserError(
                    f"taxonomy {clip(self.name)}: '{reserved}' is reserved for judge outputs that {meaning}; "
                    "rename that category or alias"
                )
        self._check_parents()
        names = {_norm(c.name): c.name for c in self.categories}
        for code, target in self.label_map:
            name = self._lookup.get(_norm(target))
            if name is None:
                raise UserError(
                    f"--label-map maps {clip(code)} to {clip(target)}, which taxonomy {clip(self.name)} lacks; "
                    f"map to one of: {short_list(self.labels)}"
                )
            if names.get(_norm(code), name) != name:
                raise UserError(
                    f"--label-map maps {clip(code)}, itself a category of taxonomy {clip(self.name)}, onto "
                    f"{clip(name)}: that merges "
                    "two categories; map codes only, or merge on purpose with one shared 'parent' in a taxonomy file "
                    "and --coarse"
                )
            self._lookup[_norm(code)] = name

    def _check_parents(self) -> None:
        """--coarse reports each category under ``parent or name``, so a parent that is another category's
        name puts this category in that one's group while that one may sit in a third: answer -> refusal
        -> answer swaps the two under --coarse. A parent names a coarse group, never another category."""
        names = {
            _norm(c.name): c.name for c in self.categories
        }  # aliases may name a parent: the presets' 'refused' is both
        for cat in self.categories:
            other = names.get(_norm(cat.parent)) if cat.parent else None
            if other is not None and other != cat.name:
                raise UserError(
                    f"taxonomy {clip(self.name)}: category {clip(cat.name)} has parent {clip(cat.parent)}, which is "
                    "also a "
                    "category; a parent names a coarse group: give it a name no category uses (e.g. 'refused')"
                )
        spelled: dict[str, str] = {}
        for parent in (c.parent for c in self.categories if c.parent):
            first = spelled.setdefault(_norm(parent), parent)
            if first != parent:
                raise UserError(
                    f"taxonomy {clip(self.name)}: parents {clip(first)} and {clip(parent)} differ only in case or "
                    "spacing; "
                    "spell one coarse group one way"
                )

    def with_label_map(self, label_map: dict[str, str] | None) -> "Taxonomy":
        """This taxonomy reading a user's label codes as categories (each target must be a category or alias)."""
        if not label_map:
            return self
        pairs = tuple((label_text(k), label_text(v)) for k, v in label_map.items())
        return Taxonomy(
            name=self.name, categories=self.categories, description=self.description, label_map=self.label_map + pairs
        )

    @property
    def labels(self) -> list[str]:
        return [c.name for c in self.categories]

    def __getitem__(self, name: str) -> Category:
        return next(c for c in self.categories if c.name == name)

    def canonical(self, label: object) -> str | None:
        """The category a raw label names (case, spacing and aliases forgiven), or None."""
        if label is None or (isinstance(label, float) and label != label):
            return None
        return self._lookup.get(_norm(label if isinstance(label, str) else label_text(label)))

    def parent_of(self, label: str) -> str:
        cat = self[label]
        return cat.parent or cat.name

    def coarse(self) -> "Taxonomy":
        """The taxonomy of parents, in order of first appearance."""
        parents: dict[str, list[Category]] = {}
        for cat in self.categories:
            parents.setdefault(cat.parent or cat.name, []).append(cat)
        cats = tuple(
            Category(name=p, definition=" / ".join(f"{c.name}: {c.definition}" for c in kids))
            for p, kids in parents.items()
        )
        return Taxonomy(name=f"{self.name}-coarse", categories=cats, description=f"Parents of {self.name}")

    def gold(self, labels: Iterable[object], *, column: str) -> list[str]:
        """Canonical gold labels; a label outside the taxonomy is an error naming the valid ones."""
        out = []
        for raw in labels:
            name = self.canonical(raw)
            if name is None:
                raise UserError(
                    f"gold label {clip(raw)} in column {clip(column)} is not in taxonomy {clip(self.name)}; "
                    f"valid labels: {short_list(self.labels)} (fix the data or pass another --taxonomy)"
                )
            out.append(name)
        return out

    def predicted(self, labels: Iterable[object], *, column: str = "prediction") -> list[str]:
        """Canonical judge labels. A missing (blank) prediction and the reserved ``unscored`` are
        ``unscored``, the reserved ``escalate`` stays ``escalate``; any other label outside the taxonomy is
        an error naming it, as in ``gold`` (a typo or another taxonomy's label must not pass as unscored)."""
        reserved = {_norm(r): r for r in RESERVED}
        out = []
        for raw in labels:
            name = self.canonical(raw)
            if name is None:
                blank = raw is None or (isinstance(raw, float) and raw != raw) or not label_text(raw).strip()
                name = UNSCORED if blank else reserved.get(_norm(label_text(raw)))
            if name is None:
                raise UserError(
                    f"predicted label {clip(raw)} in column {clip(column)} is not in taxonomy {clip(self.name)}; "
                    f"valid labels: {short_list(self.labels, limit=4)}, or the reserved "
                    f"{' and '.join(map(repr, RESERVED))} (fix the predictions or pass --taxonomy/--label-map)"
                )
            out.append(name)
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "categories": [
                {
                    k: v
                    for k, v in (
                        ("name", c.name),
                        ("definition", c.definition),
                        ("aliases", list(c.aliases)),
                        ("parent", c.parent),
                    )
                    if v
                }
                for c in self.categories
            ],
        }

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "taxonomy") -> "Taxonomy":
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise UserError(f"{source}: a taxonomy needs a 'categories' list; see data/taxonomies/README.md")
        cats = []
        seen: set[str] = set()
        for i, item in enumerate(data["categories"]):
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                item = {"name": label_text(item)}
            if not isinstance(item, dict) or not item.get("name") or not isinstance(item["name"], (str, int, float)):
                raise UserError(f"{source}: category {i + 1} needs a 'name' (text)")
            name = label_text(item["name"])
            unknown = set(item) - {"name", "definition", "aliases", "parent"}
            if unknown:
                raise UserError(
                    f"{source}: category {clip(name)} has unknown key(s) {short_list(sorted(map(str, unknown)))}; "
                    "allowed: name, definition, aliases, parent"
                )
            if name in seen:
                raise UserError(f"{source}: category {clip(name)} is listed twice; give each category once")
            seen.add(name)
            aliases = item.get("aliases", []) or []
            if not isinstance(aliases, list) or not all(
                isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in aliases
            ):
                raise UserError(
                    f"{source}: category {clip(name)}: 'aliases' must be a list of labels, e.g. [refused, \"1\"]"
                )
            parent = item.get("parent")
            if parent is not None and not isinstance(parent, str):
                raise UserError(
                    f"{source}: category {clip(name)}: 'parent' must be one name (text), got {clip(parent)}"
                )
            definition = item.get("definition", "")
            if not isinstance(definition, (str, int, float)):
                raise UserError(f"{source}: category {clip(name)}: 'definition' must be text")
            cats.append(
                Category(
                    name=name,
                    definition=" ".join(str(definition).split()),
                    aliases=tuple(label_text(a) for a in aliases),
                    parent=parent,
                )
            )
        return cls(
            name=str(data.get("name", source)), categories=tuple(cats), description=str(data.get("description", ""))
        )

    @classmethod
    def from_labels(cls, labels: Iterable[object], *, name: str = "from-data") -> "Taxonomy":
        """Categories are the distinct labels, sorted, when no taxonomy is given."""
        distinct = sorted({label_text(x) for x in labels if x is not None and x == x and str(x) not in RESERVED})
        if not distinct:
            raise UserError("no labels found to build a taxonomy from; pass --taxonomy or check the label column")
        return cls(name=name, categories=tuple(Category(name=x) for x in distinct))


def label_text(value: object) -> str:
    """A label as text, with numeric codes in one form: 2, 2.0 and "2.0" are all "2"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):
        return text.split(".")[0]
    return text


def _norm(text: str) -> str:
    return " ".join(label_text(text).replace("_", " ").replace("-", " ").lower().split())


def available_taxonomies() -> list[str]:
    return sorted(p.stem for p in TAXONOMIES.glob("*.yaml"))


def load_taxonomy(name_or_path: str | Path, *, encoding: str = "utf-8") -> Taxonomy:
    """A preset name from data/taxonomies/ or a path to a YAML/JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        candidate = TAXONOMIES / f"{name_or_path}.yaml"
        if candidate.exists():
            path, encoding = candidate, "utf-8"  # a preset is the toolkit's file, not one in the user's --encoding
    if not path.is_file():
        raise UserError(
            f"taxonomy {str(name_or_path)!r} not found; use a preset ({', '.join(available_taxonomies())}) or a path "
            "to a YAML file"
        )

    data = load_yaml(read_text(path, what="taxonomy file", encoding=encoding), source=f"taxonomy file {path.name}")
    return Taxonomy.from_dict(data, source=path.name)


def resolve_taxonomy(
    spec: str | Path | Taxonomy | None,
    labels: Sequence[object] = (),
    *,
    coarse: bool = False,
    label_map: dict[str, str] | None = None,
    encoding: str = "utf-8",
) -> Taxonomy:
    """The taxonomy named by ``spec`` (or built from the distinct ``labels``), reading ``label_map``'s codes."""
    if isinstance(spec, Taxonomy):
        taxonomy = spec
    elif spec:
        taxonomy = load_taxonomy(spec, encoding=encoding)
    else:
        mapped = {_norm(k): label_text(v) for k, v in (label_map or {}).items()}
        taxonomy = Taxonomy.from_labels(
            [mapped.get(_norm(x), x) if isinstance(x, (str, int, float)) else x for x in labels]
        )
    taxonomy = taxonomy.with_label_map(label_map)
    return taxonomy.coarse() if coarse else taxonomy


def parse_label_map(spec: str | None, *, encoding: str = "utf-8") -> dict[str, str] | None:
    """``--label-map``: a YAML/JSON file of code: category, a two-column CSV (code, category), or
    ``code=category,code=category`` on the command line."""
    if spec is None or spec == "":
        return None
    path = Path(spec)
    if path.is_file():
        text = read_text(path, what="--label-map file", encoding=encoding)
        if path.suffix.lower() == ".csv":
            try:
                rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
            except csv.Error as exc:  # e.g. a field over the csv module's 131,072-character limit
                raise UserError(
                    f"--label-map file {path.name} is not a readable CSV ({clip(str(exc), 80)}); "
                    "a label map holds short codes and category names"
                ) from None
            if rows and [c.strip().lower() for c in rows[0][:2]] in (
                ["code", "category"],
                ["from", "to"],
                ["label", "category"],
            ):
                rows = rows[1:]
            if not rows or any(len(r) != 2 for r in rows):
                raise UserError(
                    f"--label-map file {path.name}: a CSV needs two columns per row, code and category (e.g. "
                    "2_full_refusal,full refusal)"
                )
            pairs = [(r[0].strip(), r[1].strip()) for r in rows]
        else:
            data = load_yaml(text, source=f"--label-map file {path.name}")
            if not isinstance(data, dict) or not data:
                raise UserError(
                    f"--label-map file {path.name} must hold a mapping of code: category, e.g. '2_full_refusal: full "
                    "refusal'"
                )
            pairs = list(data.items())
    else:
        if "=" not in spec:
            raise UserError(
                f"--label-map {clip(spec)} is neither a file nor code=category pairs; e.g. --label-map "
                "'1=answer,2=refusal' or --label-map codes.yaml"
            )
        pairs = []
        for item in spec.split(","):
            code, sep, target = item.partition("=")
            if not sep or not code.strip() or not target.strip():
                raise UserError(
                    f"--label-map item {clip(item)} is not code=category; e.g. --label-map '1=answer,2=refusal'"
                )
            pairs.append((code.strip(), target.strip()))
    out: dict[str, str] = {}
    for code, target in pairs:
        if (
            not isinstance(code, (str, int, float))
            or not isinstance(target, (str, int, float))
            or isinstance(code, bool)
            or isinstance(target, bool)
        ):
            raise UserError(f"--label-map: {clip(code)}: {clip(target)} is not a code and a category name")
        key = label_text(code)
        if key in out and out[key] != label_text(target):
            raise UserError(
                f"--label-map maps {clip(key)} twice ({clip(out[key])} and {clip(label_text(target))}); give each code "
                "once"
            )
        out[key] = label_text(target)
    return out

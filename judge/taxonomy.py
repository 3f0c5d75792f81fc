"""Taxonomies as data: ordered categories with definitions, aliases and coarse parents."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from judge.errors import UserError
from judge.paths import TAXONOMIES

UNSCORED = "unscored"


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
    _lookup: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.categories:
            raise UserError(f"taxonomy {self.name!r} has no categories; list at least one")
        for cat in self.categories:
            for key in (cat.name, *cat.aliases):
                norm = _norm(key)
                if norm in self._lookup and self._lookup[norm] != cat.name:
                    raise UserError(f"taxonomy {self.name!r}: {key!r} names two categories; make names and aliases unique")
                self._lookup[norm] = cat.name
        if _norm(UNSCORED) in self._lookup:
            raise UserError(f"taxonomy {self.name!r}: '{UNSCORED}' is reserved for judge outputs that could not be scored")

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
                    f"gold label {raw!r} in column {column!r} is not in taxonomy {self.name!r}; "
                    f"valid labels: {', '.join(self.labels)} (fix the data or pass another --taxonomy)"
                )
            out.append(name)
        return out

    def predicted(self, labels: Iterable[object]) -> list[str]:
        """Canonical judge labels; anything outside the taxonomy becomes 'unscored'."""
        return [self.canonical(raw) or UNSCORED for raw in labels]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "categories": [
                {k: v for k, v in (("name", c.name), ("definition", c.definition), ("aliases", list(c.aliases)), ("parent", c.parent)) if v}
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
                raise UserError(f"{source}: category {name!r} has unknown key(s) {', '.join(sorted(unknown))}; allowed: name, definition, aliases, parent")
            if name in seen:
                raise UserError(f"{source}: category {name!r} is listed twice; give each category once")
            seen.add(name)
            aliases = item.get("aliases", []) or []
            if not isinstance(aliases, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in aliases):
                raise UserError(f"{source}: category {name!r}: 'aliases' must be a list of labels, e.g. [refused, \"1\"]")
            parent = item.get("parent")
            if parent is not None and not isinstance(parent, str):
                raise UserError(f"{source}: category {name!r}: 'parent' must be one name (text), got {parent!r}")
            definition = item.get("definition", "")
            if not isinstance(definition, (str, int, float)):
                raise UserError(f"{source}: category {name!r}: 'definition' must be text")
            cats.append(
                Category(
                    name=name,
                    definition=" ".join(str(definition).split()),
                    aliases=tuple(label_text(a) for a in aliases),
                    parent=parent,
                )
            )
        return cls(name=str(data.get("name", source)), categories=tuple(cats), description=str(data.get("description", "")))

    @classmethod
    def from_labels(cls, labels: Iterable[object], *, name: str = "from-data") -> "Taxonomy":
        """Categories are the distinct labels, sorted, when no taxonomy is given."""
        distinct = sorted({label_text(x) for x in labels if x is not None and x == x and str(x) != UNSCORED})
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


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A preset name from data/taxonomies/ or a path to a YAML/JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        candidate = TAXONOMIES / f"{name_or_path}.yaml"
        if candidate.exists():
            path = candidate
    if not path.is_file():
        raise UserError(
            f"taxonomy {str(name_or_path)!r} not found; use a preset ({', '.join(available_taxonomies())}) or a path to a YAML file"
        )
    from judge.records import read_text

    try:
        data = yaml.safe_load(read_text(path, what="taxonomy file"))
    except yaml.YAMLError as exc:
        raise UserError(f"taxonomy file {path} is not valid YAML/JSON ({' '.join(str(exc).split())})") from None
    return Taxonomy.from_dict(data, source=str(path))


def resolve_taxonomy(spec: str | Path | Taxonomy | None, labels: Sequence[object] = (), *, coarse: bool = False) -> Taxonomy:
    taxonomy = spec if isinstance(spec, Taxonomy) else (load_taxonomy(spec) if spec else Taxonomy.from_labels(labels))
    return taxonomy.coarse() if coarse else taxonomy

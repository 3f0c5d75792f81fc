"""YAML from a user's file, read as data: the one loader for taxonomies, configs, label maps and prompts.

``yaml.safe_load`` builds no objects, but it still expands aliases: nine lines of nested ``*a``
references (a "billion laughs") expand to gigabytes and end in a MemoryError. None of the toolkit's
files needs an alias, so one is refused when the composer meets it, before anything is expanded;
nesting is capped too (deep brackets otherwise end in a RecursionError) and so is the text's size.
A key given twice in one mapping (YAML would keep the last one silently) and a control character such as
a NUL byte are refused in one line as well.
"""

from __future__ import annotations

from typing import Any

import yaml

from judge.core.errors import UserError

MAX_CHARS = (
    10_000_000  # a taxonomy, config, label map or prompt is kilobytes; a label map of many codes stays far below
)
MAX_DEPTH = 64


class _Refused(Exception):
    def __init__(self, what: str, mark: Any, fix: str = "write the values out in full"):
        super().__init__(what)
        self.what, self.line, self.fix = what, (mark.line + 1 if mark is not None else None), fix


class _DataLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and deep nesting while composing, i.e. before expansion."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"a YAML alias (*{str(event.anchor)[:30]}) refers back to an anchor", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"values are nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        """A mapping whose key appears twice is refused: YAML keeps the last silently, a user meant one of them."""
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader refuses it itself
                    continue
                if repeated:
                    raise _Refused(
                        f"the key {str(key)[:40]!r} is given twice in one mapping",
                        key_node.start_mark,
                        "keep one of them",
                    )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, source: str) -> Any:
    """The data a YAML (or JSON) text holds; ``source`` names the file in the one-line errors."""
    if len(text) > MAX_CHARS:
        raise UserError(
            f"{source} holds {len(text):,} characters, more than the {MAX_CHARS:,} allowed; is it the right file?"
        )
    try:
        loader = _DataLoader(text)  # its reader refuses control characters (a NUL byte) here already
    except yaml.YAMLError as exc:
        raise UserError(f"{source} is not valid YAML/JSON ({' '.join(str(exc).split())[:160]})") from None
    try:
        return loader.get_single_data()
    except _Refused as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise UserError(f"{source}: {exc.what}{where}, which is not allowed here; {exc.fix}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source} is not valid YAML/JSON ({' '.join(str(exc).split())[:160]})") from None
    finally:
        loader.dispose()

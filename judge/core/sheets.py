"""CSV files meant for people (annotators' sheets, items.csv, the adjudicator's sheet, label_issues.csv):
cells a spreadsheet would run as a formula are neutralised on the way out, and restored on the way in.

OWASP's rule for CSV injection: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading apostrophe, so Excel, LibreOffice and Sheets show it as text instead of computing
``=HYPERLINK(...)`` or ``=cmd|' /C calc'!A0``. A cell that already starts with an apostrophe gets one more,
so that reading strips exactly one from every cell that starts with one and no real value changes
(``'quoted`` is written ``''quoted`` and read back ``'quoted``). Column names follow the same rule.
Numbers are written as numbers (``-2`` as a number is not a formula).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
NOTE = (
    "Cells that begin with = + - @, a tab or a carriage return are written with a leading apostrophe (') so that a "
    "spreadsheet shows them as text and never runs them as formulas; a cell that begins with an apostrophe gets "
    "one more. judge.annotate removes exactly one leading apostrophe when it reads a sheet back, so leave them."
)


def guard_cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def unguard_cell(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def _text(column: pd.Series) -> bool:
    """A column that may hold text (object or a string dtype), not numbers or booleans."""
    return pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)


def guard_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as it is written to a CSV for people: every text cell and column name guarded."""
    out = frame.rename(columns=guard_cell)
    for column in out.columns:
        if _text(out[column]):
            out[column] = out[column].map(guard_cell)
    return out


def unguard_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV for people as it was before ``guard_formulas``: one leading apostrophe off each text cell."""
    out = frame.rename(columns=unguard_cell)
    for column in out.columns:
        if _text(out[column]):
            out[column] = out[column].map(unguard_cell)
    return out

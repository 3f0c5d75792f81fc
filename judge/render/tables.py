"""Paper-ready renderings: Markdown and LaTeX tables, and figures, written atomically."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from judge.core.files import atomic_write, write_text  # noqa: E402

# A float holds at most this many lines of cells (a rate over its interval counts two): about 60% of an
# article page, so a float never outgrows its page; a longer table breaks across pages in pieces this tall.
FLOAT_LINES = 30
DIGITS = 3


@dataclass(frozen=True)
class Style:
    """How one report renders: its decimals (--digits) and the prefix that makes its LaTeX labels
    unique in a paper (--tex-label, or the --out path). Passed to each renderer, never set globally."""

    digits: int = DIGITS
    tex_label: str = "report"

    def fmt(self, value: float | None, digits: int | None = None) -> str:
        return fmt(value, self.digits if digits is None else digits)

    def fmt_ci(self, ci: Sequence[float], digits: int | None = None) -> str:
        return fmt_ci(ci, self.digits if digits is None else digits)

    def latex(self, frame: pd.DataFrame, *, caption: str, label: str, index: bool = True) -> str:
        return latex(frame, caption=caption, label=label, prefix=self.tex_label, index=index)


def tex_label_for(out: str | Path) -> str:
    """A LaTeX label prefix from an output path: runs/study/disparity -> runs-study-disparity."""
    parts = [p for p in Path(out).parts if p not in ("/", ".", "..")]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-").lower()
    return slug or "report"


def level_text(level: float) -> str:
    """An interval's level as a table says it: 0.95 -> '95%', 0.975 -> '97.5%'."""
    return f"{100 * level:.10g}%"


def fmt(value: float | None, digits: int = DIGITS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_ci(ci: Sequence[float], digits: int = DIGITS) -> str:
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def markdown(frame: pd.DataFrame, *, index: bool = True) -> str:
    return frame.to_markdown(index=index)


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "---",
    "–": "--",
    "`": "",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX caption or cell."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


_ESTIMATE_WITH_INTERVAL = re.compile(r"^(-?[\d.]+) (\[-?[\d.]+, -?[\d.]+\])$")


def tex_cell(text: str) -> str:
    """An escaped cell; 'rate [low, high]' is set on two lines (the interval smaller), which halves
    the width of the wide rate tables."""
    match = _ESTIMATE_WITH_INTERVAL.match(text)
    if match:
        return (
            f"\\begin{{tabular}}[t]{{@{{}}c@{{}}}}{match.group(1)}\\\\[-1pt]\\scriptsize "
            f"{match.group(2)}\\end{{tabular}}"
        )
    return tex_escape(text)


def latex(frame: pd.DataFrame, *, caption: str, label: str, prefix: str = "report", index: bool = True) -> str:
    """A booktabs table whose caption and cells are escaped and whose label, ``tab:PREFIX:label``, is unique
    to this report.

    Needs ``\\usepackage{booktabs,longtable,graphicx}``. Wide tables shrink to the line width; a table
    taller than ``FLOAT_LINES`` breaks across pages (``long_table``), each piece shrunk alike.
    """
    shown = frame.copy()
    shown = shown.map(lambda v: tex_cell(v) if isinstance(v, str) else v) if len(shown) else shown
    shown.columns = [tex_escape(c) if isinstance(c, str) else c for c in shown.columns]
    if index:
        shown.index = [tex_escape(i) if isinstance(i, str) else i for i in shown.index]
        if frame.index.name:
            shown.index.name = tex_escape(frame.index.name)
    full_label = f"tab:{prefix}:{label.removeprefix('tab:')}"
    lines = row_lines(frame)
    if sum(lines) > FLOAT_LINES:
        return long_table(frame, shown, lines, index=index, caption=tex_escape(caption), label=full_label)
    body = shown.to_latex(index=index, escape=False)
    return (
        "\\begin{table}[t]\n\\centering\n\\small\\setlength{\\tabcolsep}{3pt}\n"
        f"\\caption{{{tex_escape(caption)}}}\n\\label{{{full_label}}}\n"
        f"{FIT_WIDTH}{body}}}\n\\end{{table}}\n"
    )


FIT_WIDTH = (
    "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"  # shrink to the line, never enlarge
)


def row_lines(frame: pd.DataFrame) -> list[int]:
    """How many lines each row takes: two where a cell sets a rate over its interval (``tex_cell``)."""
    return [
        2 if any(isinstance(v, str) and _ESTIMATE_WITH_INTERVAL.match(v) for v in row) else 1
        for row in frame.itertuples(index=False)
    ]


def _text_width(value: object) -> float:
    """A cell's width in characters, as set: an interval line is set smaller than its estimate."""
    match = _ESTIMATE_WITH_INTERVAL.match(value) if isinstance(value, str) else None
    return max(len(match.group(1)), 0.7 * len(match.group(2))) if match else len(str(value))


PIECE_LINES = 6  # a page may break after every piece this tall


def long_table(
    frame: pd.DataFrame, shown: pd.DataFrame, lines: list[int], *, index: bool, caption: str, label: str
) -> str:
    """A table across pages. A longtable cannot be shrunk to the line width, so its rows are pieces: a
    header, repeated on every page, and tabulars of a few rows, each shrunk to the line width. An
    invisible copy of each column's widest cell in every piece's first row (and in the header) gives all
    pieces one width, so they shrink alike: one font size, columns that line up across pieces and pages."""
    widest = [
        _widest([frame.columns[j], *frame.iloc[:, j]], [shown.columns[j], *shown.iloc[:, j]])
        for j in range(frame.shape[1])
    ]
    if index:
        widest = [_widest([frame.index.name or "", *frame.index], [shown.index.name or "", *shown.index]), *widest]
    tabular = shown.to_latex(index=index, escape=False).strip().split("\n")
    spec = re.match(r"\\begin\{tabular\}\{(.*)\}$", tabular[0]).group(1)
    align = [c for c in spec if c in "lrc"]
    mid, bottom = tabular.index("\\midrule"), tabular.index("\\bottomrule")
    header, rows = tabular[2:mid], tabular[mid + 1 : bottom]
    head = _piece(spec, ["\\toprule", *header[:-1], _as_wide(header[-1], widest, ["c"] * len(widest)), "\\midrule"])
    pieces, start, used = [], 0, 0
    for i, n in enumerate(lines):
        if used + n > PIECE_LINES:
            pieces.append((start, i))
            start, used = i, 0
        used += n
    pieces.append((start, len(lines)))
    body = [
        _piece(
            spec, [_as_wide(rows[a], widest, align), *rows[a + 1 : b], *(["\\bottomrule"] if b == len(rows) else [])]
        )
        for a, b in pieces
    ]
    return (
        "\\begingroup\\small\\setlength{\\tabcolsep}{3pt}\n\\begin{longtable}{@{}c@{}}\n"
        f"\\caption{{{caption}}}\\label{{{label}}}\\\\\n{head}\\\\\n\\endfirsthead\n{head}\\\\\n\\endhead\n"
        + "\n".join(piece + "\\\\" for piece in body)
        + "\n\\end{longtable}\n\\endgroup\n"
    )


def _widest(values: list, shown: list) -> str:
    """The shown form of the widest of a column's values, its header included (a header may be its widest cell)."""
    return shown[int(np.argmax([_text_width(v) for v in values]))]


def _piece(spec: str, lines: list[str]) -> str:
    return FIT_WIDTH + f"\\begin{{tabular}}{{{spec}}}\n" + "\n".join(lines) + "\n\\end{tabular}}"


def _as_wide(line: str, widest: list, align: list[str]) -> str:
    """A row whose every cell is at least as wide as its column's widest cell: the cell, boxed, is set in
    a box of the wider's width (an invisible copy of the widest cell measures it), aligned as its column."""
    cells = re.split(r"(?<!\\)&", line.rstrip().removesuffix("\\\\"))
    return (
        " & ".join(
            c.strip()
            if w is None or a is None
            else f"\\sbox0{{{c.strip()}}}\\sbox2{{\\hphantom{{{w}}}}}\\ifdim\\wd0<\\wd2 "
            f"\\makebox[\\wd2][{a}]{{\\usebox0}}\\else\\usebox0\\fi"
            for c, w, a in zip_longest(cells, widest[: len(cells)], align[: len(cells)])
        )
        + " \\\\"
    )


PRINTABLE_INCHES = (7.5, 9.5)  # a page's text block (letter or A4 with margins): the largest a figure prints at 1:1


def fit_to_page(fig: plt.Figure) -> None:
    """Shrink a figure larger than a page to fit it, fonts alike, so it prints as it looks (never enlarged)."""
    import matplotlib.text

    width, height = fig.get_size_inches()
    factor = min(1.0, PRINTABLE_INCHES[0] / width, PRINTABLE_INCHES[1] / height)
    if factor >= 1.0:
        return
    fig.set_size_inches(width * factor, height * factor)
    for text in fig.findobj(matplotlib.text.Text):
        text.set_fontsize(max(text.get_fontsize() * factor, 4.0))


def save_figure(fig: plt.Figure, path: Path, *, overwrite: bool, close: bool = True) -> Path:
    fit_to_page(fig)
    fmt_name = path.suffix.lstrip(".") or "png"
    atomic_write(
        path, lambda h: fig.savefig(h, format=fmt_name, dpi=200, bbox_inches="tight"), overwrite=overwrite, binary=True
    )
    if close:
        plt.close(fig)
    return path


def save_figures(fig: plt.Figure, stem: Path, *, overwrite: bool) -> list[Path]:
    """The figure as PNG (to look at) and PDF (vector, for a paper)."""
    png = save_figure(fig, stem.with_suffix(".png"), overwrite=overwrite, close=False)
    return [png, save_figure(fig, stem.with_suffix(".pdf"), overwrite=overwrite)]


def wrap(label: object, width: int = 18) -> str:
    """A tick label that stays readable when names are long: broken after spaces, '_', '-', '/' or ':'."""
    lines: list[str] = []
    for piece in re.split(r"(?<=[\s_/:-])", str(label)):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(line.strip() for line in lines if line.strip()) or str(label)


def heatmap(
    values: np.ndarray,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str,
    xlabel: str,
    ylabel: str,
    annotations: np.ndarray | None = None,
    cmap: str = "Blues",
    vmax: float | None = None,
) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.5, (0.55 if len(rows) <= 12 else 0.3) * len(rows) + 1.8))
    image = ax.imshow(
        values, cmap=cmap, vmin=0, vmax=vmax if vmax is not None else max(float(np.nanmax(values)), 1e-9), aspect="auto"
    )
    ax.set_xticks(range(len(columns)), labels=[wrap(c, 14) for c in columns], rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), labels=[wrap(r) for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    labels = annotations if annotations is not None else values
    threshold = np.nanmax(values) * 0.6 if values.size else 0
    for i in range(len(rows)):
        for j in range(len(columns)):
            text = labels[i, j] if isinstance(labels[i, j], str) else fmt(float(labels[i, j]), 2)
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8 if len(rows) <= 12 else 6,
                color="white" if values[i, j] > threshold else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def write_tables(out_dir: Path, stem: str, md: str, tex: str, *, overwrite: bool) -> list[Path]:
    return [
        write_text(out_dir / f"{stem}.md", md, overwrite=overwrite),
        write_text(out_dir / f"{stem}.tex", tex, overwrite=overwrite),
    ]


def style_of(config) -> Style:
    """The Style a report command's Config asks for (its ReportStyle settings, and --out for the label prefix)."""
    return Style(digits=config.digits, tex_label=config.tex_label or tex_label_for(config.out))

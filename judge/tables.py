"""Paper-ready renderings: Markdown and LaTeX tables, and figures, written atomically."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from judge.records import atomic_write, write_text  # noqa: E402


def fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_ci(ci: Sequence[float], digits: int = 3) -> str:
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def markdown(frame: pd.DataFrame, *, index: bool = True) -> str:
    return frame.to_markdown(index=index)


def latex(frame: pd.DataFrame, *, caption: str, label: str, index: bool = True) -> str:
    return frame.to_latex(index=index, caption=caption, label=label, escape=True, position="t")


def save_figure(fig: plt.Figure, path: Path, *, overwrite: bool) -> Path:
    fmt_name = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda h: fig.savefig(h, format=fmt_name, dpi=200, bbox_inches="tight"), overwrite=overwrite, binary=True)
    plt.close(fig)
    return path


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
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.5, 0.55 * len(rows) + 1.8))
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax if vmax is not None else max(float(np.nanmax(values)), 1e-9), aspect="auto")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    labels = annotations if annotations is not None else values
    threshold = np.nanmax(values) * 0.6 if values.size else 0
    for i in range(len(rows)):
        for j in range(len(columns)):
            text = labels[i, j] if isinstance(labels[i, j], str) else fmt(float(labels[i, j]), 2)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if values[i, j] > threshold else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def write_tables(out_dir: Path, stem: str, md: str, tex: str, *, overwrite: bool) -> list[Path]:
    return [write_text(out_dir / f"{stem}.md", md, overwrite=overwrite), write_text(out_dir / f"{stem}.tex", tex, overwrite=overwrite)]

"""The paper notebook runs top to bottom on the released data (so it cannot rot)."""

import pytest

from judge.core.paths import ROOT
from tests.conftest import CHEHBOUNI, needs_chehbouni

NOTEBOOK = ROOT / "notebooks" / "chehbouni2024.ipynb"


@needs_chehbouni
def test_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f"DATA_DIR = {str(CHEHBOUNI)!r}\nFIGURES = {str(tmp_path)!r}"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    for name in ("category_heatmap.png", "refusal_rates.png", "common_vs_rare.png", "ppi_7b_to_13b.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "7B refusal: muslim 0.241, white 0.057" in text
    assert "muslim - white refusal gap: truth 0.267" in text

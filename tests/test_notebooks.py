"""The notebooks run top to bottom on a smoke run (nbclient) and are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("scs_masks", "generative_alignment", "results")


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_with_parameters_first(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: has outputs"
    assert nb.cells[0].cell_type == "code" and "# Parameters" in nb.cells[0].source
    assert "runs/demo" in nb.cells[0].source  # defaults to the demo's runs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_executes_on_a_smoke_run(name, smoke_run, monkeypatch):
    from nbclient import NotebookClient

    run_dir, _ = smoke_run
    monkeypatch.setenv("BGA_MNER_RUN", str(run_dir))
    monkeypatch.setenv("BGA_MNER_RUNS", str(run_dir.parent))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if name == "generative_alignment":
        assert "recall@1" in text
    if name == "scs_masks":
        assert "tweets shown" in text and "0 tweets shown" not in text
    if name == "results":
        assert "runs under" in text

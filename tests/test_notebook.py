"""tutorial.ipynb: committed without outputs, and run headless (nbclient) as a reader runs it, top
to bottom: the tutorial's vocabulary, a model that learnt, and text from the trained model."""
import re

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
NOTEBOOK = REPO + "/tutorial.ipynb"


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_notebook_runs_top_to_bottom_and_generates(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": REPO}}).execute()  # raises on a cell's error
    printed = [stdout_of(cell) for cell in notebook.cells if cell.cell_type == "code" and stdout_of(cell)]
    assert printed[0] == "vocab size = 83\n"  # the tutorial's count for obama.txt
    perplexity = float(re.match(r"train perplexity after one epoch: ([\d.]+)\n$", printed[1]).group(1))
    assert perplexity < 40  # from about 84 (uniform over the labels) before training
    for text in printed[2:]:
        assert text.startswith("The United States") and len(text) == len("The United States") + 200 + 1
    assert len(printed) == 4

"""notebooks/quickstart.ipynb executes top to bottom (train, extract, decode, export, evaluate)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "".join(o.get("text", "") for cell in outputs.values() for o in cell)
    assert "re-run wrote [] - done before: [0, 1, 2]" in text
    assert "warnings: ['rFID over 3 images" in text
    images = [o for cell in outputs.values() for o in cell if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the decode grid, the rate-distortion plot, the evaluation grid
    assert (tmp_path / "quickstart" / "eval" / "report.json").is_file()

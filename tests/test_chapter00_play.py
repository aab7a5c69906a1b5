"""Chapter 00 invites the reader to play with the panel between cells (issue 19, item 4): its
later cells must hold whatever the reader did. A real kernel runs the chapter's code cells
in order; after the panel cell it does what a curious reader does with the panel (through
the same cluster methods the panel's buttons call) and leaves the cluster in a mess; every
later cell must still pass."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

try:                                   # tests/ as a package, or as a plain directory
    from .kernelutil import Kernel
except ImportError:
    from kernelutil import Kernel

CHAPTER = Path(__file__).resolve().parent.parent / "notebooks" / "00_welcome.ipynb"

# kill and restart n2 twice (its incarnation is no longer 2 after the chapter's own kill),
# leave n3 down and n1 paused, slow and lossy links, one link cut
PLAY = """
cluster.kill("n2"); cluster.restart("n2"); cluster.restart("n2")
cluster.kill("n3")
cluster.pause("n1")
cluster.set_link("*", "*", delay=60, drop=0.3)
cluster.cut("n2", "n1")
cluster.run_for(0.3)
print("PLAYED", {n: (s.state, s.incarnation) for n, s in cluster.status().items()})
"""


@pytest.mark.processes                    # a real kernel and a real cluster
def test_chapter_00_holds_whatever_the_reader_did_with_the_panel(tmp_path):
    cells = [c.source for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "code"]
    panel_cell = next(i for i, src in enumerate(cells) if "panel = cluster.panel()" in src)
    kernel = Kernel(CHAPTER.parent)
    try:
        for i, src in enumerate(cells[:panel_cell + 1]):
            kernel.ok(src, timeout=120)
        assert "PLAYED" in kernel.ok(PLAY)["stdout"]
        for i, src in enumerate(cells[panel_cell + 1:], panel_cell + 1):
            out = kernel.run(src, timeout=120)
            assert out["status"] == "ok", f"code cell {i} failed after the reader played: {out['error']}\n{src}"
    finally:
        kernel.run("for c in [globals().get('cluster'), globals().get('playground')]:\n"
                   "    c is not None and c.close()", timeout=30)
        kernel.close()

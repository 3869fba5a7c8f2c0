"""docs/guarantees.md states what the code does: the CUDA tolerance it names is the one runs record, every test it
cites exists, and the README's Reliability section links it."""

from __future__ import annotations

import re
from pathlib import Path

from clgraft.config import CUDA_R_TOLERANCE

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "guarantees.md").read_text()


def test_the_cuda_tolerance_in_the_docs_is_the_recorded_one():
    assert f"within **{CUDA_R_TOLERANCE:g}** of the CPU's" in DOC


def test_every_test_the_guarantees_cite_exists():
    cited = re.findall(r"`(test_\w+)::(test_\w+)", DOC)
    assert cited
    for module, test in cited:
        source = (REPO / "tests" / f"{module}.py").read_text()
        assert f"def {test}" in source, f"{module}::{test}"


def test_the_readme_links_the_guarantees():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Reliability") :]
    assert "docs/guarantees.md" in section[: section.index("\n## ", 1)]

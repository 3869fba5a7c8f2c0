"""BibTeX for results (docs/run-record.md): the papers in clgraft/data/references.bib, and clgraft itself from
CITATION.cff."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from clgraft.errors import ClgraftError

BIB = Path(__file__).with_name("references.bib")


def citation_cff() -> Path:
    """CITATION.cff: inside the installed wheel, or at the root of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "CITATION.cff"
    return packaged if packaged.is_file() else package.parent / "CITATION.cff"


def bib_entries() -> dict[str, str]:
    """Every entry of references.bib by key."""
    text = BIB.read_text(encoding="utf-8")
    return {m.group(1): m.group(0).strip() for m in re.finditer(r"@\w+\{([^,]+),.*?\n\}", text, re.S)}


@lru_cache(maxsize=1)
def citation_keys() -> frozenset[str]:
    """Every key `clgraft cite` can print: those of references.bib, and `clgraft` (from CITATION.cff)."""
    return frozenset([*bib_entries(), "clgraft"])


def clgraft_entry() -> str:
    """clgraft's own BibTeX entry, made from CITATION.cff."""
    cff = yaml.safe_load(citation_cff().read_text(encoding="utf-8"))
    authors = " and ".join(
        f"{{{a['name']}}}" if a.get("name") else f"{a.get('family-names', '')}, {a.get('given-names', '')}"
        for a in cff["authors"]
    )
    year = str(cff.get("date-released", ""))[:4]
    return (
        f"@software{{clgraft,\n  title = {{{cff['title']}}},\n  author = {{{authors}}},\n"
        f"  version = {{{cff['version']}}},\n  year = {{{year}}}\n}}"
    )


def bibtex(keys: list[str]) -> str:
    """The entries for these keys, in order, each once; an unknown key is an error (references.bib is complete)."""
    entries = bib_entries()
    out = []
    for key in dict.fromkeys(keys):
        if key == "clgraft":
            out.append(clgraft_entry())
        elif key in entries:
            out.append(entries[key])
        else:
            raise ClgraftError(f"no BibTeX entry '{key}' in {BIB}")
    return "\n\n".join(out)

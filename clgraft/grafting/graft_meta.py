"""What a graft file says about itself, read from its safetensors header alone (no tensor is loaded and torch is not
imported), so that `clgraft graft info` answers at once."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from clgraft.errors import ClgraftError

FORMAT = "clgraft-graft-1"


def graft_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a graft file written by `Graft.save`, after checking that its header is one: the clgraft
    format tag, k and numel, and a `tau` tensor of k values."""
    path = Path(path)
    if not path.is_file():
        raise ClgraftError(f"graft file {path} not found")
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise ClgraftError(f"{path}: not a readable graft file ({e}); recreate it with clgraft localize") from e
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT or "tau" not in header:
        raise ClgraftError(f"{path}: not a clgraft graft file (format {meta.get('format')!r})")
    if header["tau"].get("shape") != [int(meta.get("k", -1))]:
        raise ClgraftError(f"{path}: {meta.get('k')} positions but tau has shape {header['tau'].get('shape')}")
    return meta

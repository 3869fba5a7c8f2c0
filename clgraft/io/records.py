"""Run records: atomic JSON and safetensors writes, config hashing, and the environment a number came from."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

import clgraft
from clgraft.config import CUDA_R_TOLERANCE
from clgraft.errors import ClgraftError, DiskFull
from clgraft.io.phases import phase


def _umask_mode() -> int:
    """Permissions a plain new file would get (mkstemp creates 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


RECORD_FORMAT = 1
"""The run.json format this clgraft writes (its `format` key); a reader refuses a record of a newer one."""

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors of a write that more space would fix: disk full, quota exceeded, file size limit."""


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename: readers never see a partial file, and a
    failed write (disk full, no permission) leaves the previous file as it was."""
    with phase("write"):
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
        except BaseException as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise (DiskFull if e.errno in _NO_SPACE else ClgraftError)(
                    f"{path}: cannot write ({e.strerror or e}); free disk space or choose a writable output folder "
                    "(--out / --results) — results finished before are kept"
                ) from e
            raise


def remove_stale_temps(folder: Path) -> int:
    """Delete the temp files of writes that a killed process left behind (hidden `.NAME.*.tmp`); only call it while
    holding the folder's lock, so that no live writer's file is removed. Returns how many were removed."""
    stale = list(folder.rglob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write indented JSON."""
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()))


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file (tables, Markdown)."""
    _atomic(path, lambda f: f.write(text.encode()))


def save_bytes(path: Path, data: bytes) -> None:
    """Atomically write a file's bytes (copies a run keeps of its task files)."""
    _atomic(path, lambda f: f.write(data))


def runs_folder(folder: Path) -> Path:
    """Where a folder's run folders are: FOLDER/runs in a results folder, else FOLDER itself (a folder of runs)."""
    return folder / "runs" if (folder / "runs").is_dir() else folder


def read_json(path: Path) -> dict:
    """Read a record, failing with the file's name when it is truncated or edited into invalid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClgraftError(f"{path}: not a valid clgraft record ({e}); delete it to recompute") from e


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (contiguous CPU copies) whose bytes depend only on its content. Tied
    weights (a masked-LM decoder that is the word embedding) are written once per name, as safetensors refuses
    tensors that share memory; loading them back ties nothing but gives each name the same values."""
    seen: set[int] = set()
    data = {}
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        data[k] = v.clone() if v.untyped_storage().data_ptr() in seen else v
        seen.add(v.untyped_storage().data_ptr())
    _atomic(path, lambda f: f.write(_canonical_header(save(data, metadata=meta))))


def _canonical_header(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted. safetensors writes the metadata in the order of
    a Rust HashMap, which differs from one save to the next, so two identical grafts would differ in bytes; the
    sorted header has the same length (padding spaces make up any difference), so the data offsets stay valid."""
    size = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    if len(header) > size:  # cannot happen for a compact header; keep the file as written rather than break it
        return blob
    return blob[:8] + header + b" " * (size - len(header)) + blob[8 + size :]


def config_hash(payload: dict) -> str:
    """sha256 of the canonical JSON of everything that determines a run's numbers (16 hex digits)."""
    canon = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def git_commit() -> str | None:
    """The commit of the clgraft source tree when it is a git checkout, else None (installed wheel)."""
    root = Path(clgraft.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that decide the numbers."""
    out: dict[str, str | None] = {"python": platform.python_version(), "clgraft": clgraft.__version__}
    for pkg in ("torch", "transformers", "datasets", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["git_commit"] = git_commit()
    return out


def hardware(device: torch.device) -> dict[str, Any]:
    """The machine a run used."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python_executable": sys.executable,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
        info["r_tolerance_vs_cpu"] = CUDA_R_TOLERANCE
    return info

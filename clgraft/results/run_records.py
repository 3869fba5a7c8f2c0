"""The finished run records of a folder, as the readers that pool them see them (leaderboard, report, cite, claims
report). A record that cannot be read — truncated or not JSON, written by a newer clgraft, missing what the readers
use, naming a method or option this clgraft does not know — is skipped and named with what is wrong, so that the
readers say so rather than stop on a traceback or count it with a silently different meaning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clgraft.config import RunConfig
from clgraft.errors import ClgraftError, validation_message
from clgraft.io.records import RECORD_FORMAT, read_json
from clgraft.runs.identity import record_identity

LISTED = 5
"""How many skipped records a header names before it says 'and N more'."""


@dataclass(frozen=True)
class Skipped:
    """A record left out, and why."""

    path: Path
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Stream(_Open):
    name: str
    version: int
    order: str
    citation: str | None = None


class _Report(_Open):
    examples_seen_per_task: list[float] | None = None
    extra_bytes_per_task: float = 0


class _Method(_Open):
    name: str
    options: dict
    revision: int = 1
    report: _Report = _Report()


class _Sizes(_Open):
    train: int


class _Task(_Open):
    name: str
    version: int
    sizes: _Sizes
    citation: str | None = None
    checksums: dict[str, str] = {}


class _Metrics(_Open):
    acc: float | None
    bwt: float | None
    forgetting: float | None
    fwt: float | None
    la: float | None


class _Model(_Open):
    id: str
    sha256: str
    block_parameters: int


class _Heads(_Open):
    mode: str
    sizes: dict[str, int]


class _Versions(_Open):
    clgraft: str | None = None
    git_commit: str | None = None


class _Record(_Open):
    """What the readers of a record use, with the types they use it as; anything else a record holds is left
    alone."""

    format: int
    stream: _Stream
    method: _Method
    tasks: list[_Task] = Field(min_length=1)
    config: dict
    R: list[list[float | None] | None]
    metrics: _Metrics
    metrics_by_construction: dict = {}
    test_subset: str | None = None
    seed: int
    model: _Model
    heads: _Heads
    freeze_embeddings: bool
    wall_s: float
    versions: _Versions = _Versions()
    hardware: dict = {}


def readable_record(path: Path) -> dict:
    """The record at `path` (a run.json) when it is a JSON object of a format this clgraft reads, else a one-line
    error naming the file and what is wrong with it."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise ClgraftError(f"{path}: not a clgraft run record (a JSON {type(record).__name__}, not an object)")
    found = record.get("format")
    if isinstance(found, int) and found > RECORD_FORMAT:
        raise ClgraftError(
            f"{path}: record format {found} is newer than this clgraft reads ({RECORD_FORMAT}); upgrade clgraft"
        )
    return record


def check_record(path: Path) -> dict:
    """readable_record, checked further for what the leaderboard, report and cite read: the keys and their types,
    a run configuration this clgraft knows, an R of one row per task plus row 0, a known method and options."""
    from clgraft.methods import get_method, parse_options

    record = readable_record(path)
    try:
        shape = _Record.model_validate(record)
    except ValidationError as e:
        raise ClgraftError(validation_message(path, e)) from None
    try:
        RunConfig(**shape.config)
    except ValidationError as e:
        raise ClgraftError(validation_message(path, e, within="config")) from None
    tasks = len(shape.tasks)
    if len(shape.R) != tasks + 1 or any(row is not None and len(row) != tasks for row in shape.R):
        raise ClgraftError(f"{path}: key 'R': not {tasks + 1} rows of {tasks} entries (one per task); it was edited")
    try:
        parse_options(get_method(shape.method.name), shape.method.options)
        record_identity(record)
    except ClgraftError as e:
        raise ClgraftError(f"{path}: {e}") from None
    return record


def read_records(runs: Path, check: Callable[[Path], dict] = check_record) -> tuple[dict[Path, dict], list[Skipped]]:
    """Every finished run under `runs` (folders holding a run.json, by name): the records that pass `check` by run
    folder, and the records skipped with why."""
    records, skipped = {}, []
    for path in sorted(runs.glob("*/run.json")):
        try:
            records[path.parent] = check(path)
        except ClgraftError as e:
            skipped.append(Skipped(path, str(e).removeprefix(f"{path}: ")))
    return records, skipped


def skipped_note(skipped: list[Skipped]) -> str:
    """What a header says of the skipped records ('' when none): how many, each with why (the first few)."""
    if not skipped:
        return ""
    more = f"; and {len(skipped) - LISTED} more" if len(skipped) > LISTED else ""
    named = "; ".join(str(s) for s in skipped[:LISTED])
    return f"{len(skipped)} record(s) skipped, not counted: {named}{more}."

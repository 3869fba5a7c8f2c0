"""Find, validate and index task and stream YAML files (pure data, safe YAML only).

Built-in tasks live in the repository's `tasks/` folder (shipped inside the wheel as `clgraft/_builtin_tasks`);
users add folders with `--tasks-dir` or `CLGRAFT_TASKS_PATH`. A file holds one task (`task:` key) or one stream
(`stream:` key). Names are unique per version across all folders; duplicates fail loudly. A file that cannot be read
is set aside, not fatal: the others stay usable, and a name that is not found is reported with the broken files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clgraft.data.prompts import Prompt
from clgraft.data.references import BIB, citation_keys
from clgraft.errors import ClgraftError, validation_message

TASKS_PATH_ENV = "CLGRAFT_TASKS_PATH"
FORMATS = ("glue-tsv", "cola-tsv", "lmbff-csv", "sentence-all", "textcls-json", "lfll-txt")
SPLITS = ("train", "dev", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _cited(key: str) -> str:
    """A `citation` is a key of clgraft/data/references.bib, `clgraft`, or empty (none): a typo or a placeholder such as
    `none` would otherwise pass here and only fail in `clgraft cite`, or be printed as a key in the leaderboard."""
    if key and key not in citation_keys():
        raise ValueError(
            f"'{key}' is not a key of clgraft/data/{BIB.name}; use one of its keys, or leave `citation` out"
        )
    return key


class KShot(_Strict):
    """Regenerate train/dev from a labelled pool with the LM-BFF protocol (docs/data.md)."""

    pool: str = Field(description="split key in `files`/`splits` that holds the pool to sample from")
    k: int = Field(gt=0, description="examples per label for train, and again for dev")
    seed: int | None = Field(default=None, description="sampling seed; default: the task's data seed")


class Source(_Strict):
    """Where a task's examples come from: local files (data dir), bundled files (next to the YAML) or the hub."""

    kind: Literal["local", "bundled", "hub"]
    format: Literal[FORMATS] | None = None  # type: ignore[valid-type]
    files: dict[str, str] = {}
    path: str | None = None
    name: str | None = None
    splits: dict[str, str] = {}
    text_fields: list[str] = ["sentence"]
    label_field: str = "label"
    encoding: Literal["utf-8", "latin-1"] = Field(
        default="utf-8", description="the files' text encoding (TREC train, MR and SUBJ of sentence-full are latin-1)"
    )
    kshot: KShot | None = None

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for split, rel in files.items():
            parts = PurePosixPath(rel).parts
            if PurePosixPath(rel).is_absolute() or ".." in parts:
                raise ValueError(f"files.{split}: '{rel}' must be a relative path inside the data directory")
        return files

    @model_validator(mode="after")
    def _complete(self) -> Source:
        have = set(self.splits if self.kind == "hub" else self.files)
        if self.kind == "hub":
            if not self.path:
                raise ValueError("a hub source needs `path` (the dataset id given to datasets.load_dataset)")
        elif not self.format:
            raise ValueError(f"a {self.kind} source needs `format`, one of {', '.join(FORMATS)}")
        needed = {"test"} | ({self.kshot.pool} if self.kshot else {"train", "dev"})
        if missing := sorted(needed - have):
            key = "splits" if self.kind == "hub" else "files"
            raise ValueError(f"`{key}` lacks {', '.join(missing)}")
        return self


class Task(_Strict):
    """One classification task: data source, label set, metric, declared split sizes."""

    task: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    type: str = Field(description="task family used as a similarity reference: sentiment, nli, topic, ...")
    citation: str = Field(default="", description="the data set's paper: a key of clgraft/data/references.bib")
    labels: list[str] = Field(min_length=2, description="label strings as they appear in the data")
    label_names: list[str] | None = None
    label_space: str | None = Field(default=None, description="tasks sharing a label space share shared-head outputs")
    metric: Literal["accuracy", "f1"] = Field(
        default="accuracy",
        description="the task's official score, which the mask search uses (f1: F1 of the second label, as GLUE "
        "scores MRPC/QQP); R is accuracy for every task",
    )
    source: Source
    data_seeds: list[int] = []
    default_data_seed: int | None = Field(
        default=None, description="the split read where no run seed is given (checking the data)"
    )
    run_seeds: dict[int, int] = Field(
        default={},
        description="run seeds that are not data seeds → the shipped data seed each reads (a data seed reads its own)",
    )
    seed_dirs: dict[int, str] = Field(default={}, description="what {seed} becomes in paths, where not the number")
    sizes: dict[str, int] = {}
    ood: list[str] = Field(
        default=[],
        description="tasks in the same label space under a distribution shift (e.g. sst2 → mr, cr): `clgraft "
        "localize` also evaluates the fine-tuned and grafted models on their test sets",
    )
    prompt: Prompt | None = Field(
        default=None, description="LM-BFF template and label words for prompt-based fine-tuning (`--head prompt`)"
    )
    origin: str = Field(default="", exclude=True)

    _citation = field_validator("citation")(_cited)

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: duplicate label strings")
        if self.label_names is not None and len(self.label_names) != len(self.labels):
            raise ValueError("label_names: must have as many entries as labels")
        templated = any("{seed}" in f for f in self.source.files.values())
        if templated and not self.data_seeds:
            raise ValueError("data_seeds: file paths use {seed}, so list the seeds that exist")
        if self.default_data_seed is not None and self.data_seeds and self.default_data_seed not in self.data_seeds:
            raise ValueError("default_data_seed: must be one of data_seeds")
        if unknown := sorted(set(self.run_seeds.values()) - set(self.data_seeds)):
            raise ValueError(f"run_seeds: {unknown[0]} is not one of data_seeds")
        if own := sorted(set(self.run_seeds) & set(self.data_seeds)):
            raise ValueError(f"run_seeds: {own[0]} is a data seed, which always reads its own split")
        if self.prompt is not None:
            if len(self.prompt.label_words) != len(self.labels):
                raise ValueError("prompt.label_words: must have one word per label")
            if max(self.prompt.sentences()) >= len(self.source.text_fields):
                raise ValueError(f"prompt.template: reads a sentence beyond text_fields {self.source.text_fields}")
        return self

    @property
    def ref(self) -> str:
        return f"{self.task}@{self.version}"

    @property
    def space(self) -> str:
        return self.label_space or self.task

    def seed_token(self, seed: int | None) -> str:
        """The text that replaces {seed} in file paths."""
        return self.seed_dirs.get(seed, str(seed)) if seed is not None else ""

    def data_seed_for(self, seed: int | None) -> int | None:
        """The data split a run seed reads: the seed itself where the task ships that split, else the split
        `run_seeds` maps it to (the few-shot text-classification tasks map the standard seeds 13 and 21 onto their
        splits 142 and 242, 42 reading its own); with no run seed (checking the data) `default_data_seed`, else the
        first. None for a task with one split. Any other run seed is a one-line error: a fallback to one split
        would give all such seeds the same data, and seeds would then vary only the initialisation."""
        if not self.data_seeds:
            return None
        if seed is None:
            return self.default_data_seed if self.default_data_seed is not None else self.data_seeds[0]
        if seed in self.data_seeds:
            return seed
        if seed in self.run_seeds:
            return self.run_seeds[seed]
        usable = ", ".join(map(str, sorted({*self.data_seeds, *self.run_seeds})))
        raise ClgraftError(
            f"--seed {seed}: task {self.task} ships no data split for it; use one of {usable} (docs/data.md)"
        )


class Stream(_Strict):
    """An ordered sequence of tasks; several named orders of the same tasks may be listed."""

    stream: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    citation: str = Field(default="", description="the benchmark's paper: a key of clgraft/data/references.bib")
    orders: dict[str, list[str]] = Field(min_length=1)
    default_order: str | None = None
    origin: str = Field(default="", exclude=True)

    _citation = field_validator("citation")(_cited)

    @model_validator(mode="after")
    def _orders(self) -> Stream:
        for name, refs in self.orders.items():
            if not refs:
                raise ValueError(f"orders.{name}: empty order")
            names = [parse_ref(r)[0] for r in refs]
            if dupes := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"orders.{name}: task listed twice: {', '.join(dupes)}")
        if self.default_order is not None and self.default_order not in self.orders:
            raise ValueError(f"default_order: '{self.default_order}' is not one of the orders")
        return self

    def order(self, name: str | None) -> tuple[str, list[str]]:
        """The order's name and its task references; the first (or `default_order`) when name is None."""
        name = name or self.default_order or next(iter(self.orders))
        if name not in self.orders:
            raise ClgraftError(f"stream '{self.stream}' has no order '{name}'; choose one of: {', '.join(self.orders)}")
        return name, self.orders[name]


_REF = re.compile(r"^([a-z0-9][a-z0-9_.-]*?)(?:@(\d+))?$")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split 'name' or 'name@version' into its parts."""
    m = _REF.match(ref)
    if not m:
        raise ClgraftError(f"'{ref}' is not a task reference; write NAME or NAME@VERSION")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def builtin_tasks_dir() -> Path:
    """The shipped tasks: inside the installed wheel, or the repository's `tasks/` in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_builtin_tasks"
    return packaged if packaged.is_dir() else package.parent / "tasks"


def load_yaml_file(path: Path) -> Task | Stream | None:
    """Parse and validate one YAML file; None for files that are neither a task nor a stream (sweeps, claims)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ClgraftError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from e
    except UnicodeDecodeError as e:
        raise ClgraftError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if not isinstance(doc, dict):
        raise ClgraftError(f"{path}: expected a mapping with a `task:` or `stream:` key")
    kind = Task if "task" in doc else Stream if "stream" in doc else None
    if kind is None:
        if "sweep" in doc or "claim" in doc:
            return None
        raise ClgraftError(f"{path}: expected a `task:` or `stream:` key at the top level")
    try:
        return kind.model_validate({**doc, "origin": str(path)})
    except ValidationError as e:
        raise ClgraftError(validation_message(path, e)) from e


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Built-in folder first, then CLGRAFT_TASKS_PATH entries, then --tasks-dir folders."""
    env = [Path(p) for p in os.environ.get(TASKS_PATH_ENV, "").split(os.pathsep) if p]
    dirs = [builtin_tasks_dir(), *env, *(extra or [])]
    for d in dirs[1:]:
        if not d.is_dir():
            raise ClgraftError(f"tasks folder '{d}' does not exist (from --tasks-dir or {TASKS_PATH_ENV})")
    return dirs


class Registry:
    """All tasks and streams found in a list of folders, indexed by (name, version); files that cannot be read are
    kept in `broken` (path → their one-line error) so that one bad file does not hide the rest of its folder."""

    def __init__(self, dirs: list[Path]):
        self.tasks: dict[tuple[str, int], Task] = {}
        self.streams: dict[tuple[str, int], Stream] = {}
        self.broken: dict[Path, str] = {}
        seen: set[Path] = set()
        for d in dirs:
            for path in sorted(d.rglob("*.yaml")):
                if path.resolve() in seen or "data" in path.relative_to(d).parts[:-1]:
                    continue
                seen.add(path.resolve())
                try:
                    item = load_yaml_file(path)
                except ClgraftError as e:
                    self.broken[path] = str(e)
                    continue
                self._add(item)  # a duplicate definition still fails: which of the two is meant is unknowable

    @classmethod
    def discover(cls, extra: list[Path] | None = None) -> Registry:
        return cls(task_dirs(extra))

    def _add(self, item: Task | Stream | None) -> None:
        if item is None:
            return
        table, name = (self.tasks, item.task) if isinstance(item, Task) else (self.streams, item.stream)
        key = (name, item.version)
        if key in table:
            raise ClgraftError(
                f"{item.origin}: {name} version {item.version} is also defined in {table[key].origin}; "
                "bump `version` or rename one of them"
            )
        table[key] = item

    def _check_stream(self, stream: Stream) -> None:
        """Every task the stream lists resolves; checked when the stream is used, so that a stream whose task file is
        broken fails with that file's error without blocking the other streams."""
        for order, refs in stream.orders.items():
            for ref in refs:
                try:
                    self.task(ref)
                except ClgraftError as e:
                    raise ClgraftError(f"{stream.origin}: orders.{order}: {e}") from None

    def _unread(self) -> str:
        """The broken files, appended to a 'not found' error since what was asked for may be in one of them."""
        if not self.broken:
            return ""
        files = f"{len(self.broken)} file{'s' * (len(self.broken) > 1)}"
        return f"; {files} could not be read: " + "; ".join(self.broken.values())

    def _latest(self, table: dict, name: str, version: int | None, what: str, plural: str):
        versions = sorted(v for (n, v) in table if n == name)
        if not versions:
            known = ", ".join(sorted({n for n, _ in table}))
            raise ClgraftError(f"unknown {what} '{name}'; known {plural}: {known}{self._unread()}")
        if version is None:
            return table[(name, versions[-1])]
        if version not in versions:
            raise ClgraftError(f"{what} '{name}' has no version {version}; available: {versions}{self._unread()}")
        return table[(name, version)]

    def task(self, ref: str) -> Task:
        name, version = parse_ref(ref)
        return self._latest(self.tasks, name, version, "task", "tasks")

    def stream(self, ref: str) -> Stream:
        """The stream, once every task it lists is known to resolve."""
        name, version = parse_ref(ref)
        stream = self._latest(self.streams, name, version, "stream", "streams (clgraft tasks list)")
        self._check_stream(stream)
        return stream

    def lookup(self, name: str) -> Task | Stream:
        """A stream or a task by name (streams first), for `clgraft tasks show` and `clgraft data`; an unknown name
        is an error listing both."""
        ref_name, _ = parse_ref(name)
        if any(n == ref_name for n, _ in self.streams):
            return self.stream(name)
        if not any(n == ref_name for n, _ in self.tasks):
            streams, tasks = (", ".join(sorted({n for n, _ in table})) for table in (self.streams, self.tasks))
            raise ClgraftError(
                f"unknown stream or task '{ref_name}'; streams: {streams}; tasks: {tasks}{self._unread()}"
            )
        return self.task(name)

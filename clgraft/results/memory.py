"""A finished run's memory from its record (docs/metrics.md, "Memory"): what its method keeps (`Method.kept`) counted
by the one rule (`memory_bytes`), sized by what the record holds and what is knowable from it — the body's
architecture from the model's config, and, for a method that keeps examples, the token counts of each task's
training examples from the data files the run read (their sha256 checked against the record's). Records of every
age are counted the same way, without rerunning anything."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from clgraft.errors import ClgraftError
from clgraft.methods.memory import Examples, Memory, RunSizes, memory_bytes
from clgraft.model.sizes import body_sizes


def run_sizes(record: dict) -> RunSizes:
    """What a record's memory is sized by: its tasks, its body's sizes, its heads and its method's report."""
    heads = record["heads"]
    body = body_sizes(record["model"]["id"], masked_lm=heads["mode"] == "prompt")
    return RunSizes(
        tasks=len(record["tasks"]),
        blocks=record["model"]["block_parameters"],
        trained=body.trained(record["freeze_embeddings"]),
        body=body,
        head_mode=heads["mode"],
        head_parameters=0 if heads["mode"] == "prompt" else body.head_parameters(list(heads["sizes"].values())),
        train_examples=tuple(t["sizes"]["train"] for t in record["tasks"]),
        report=record["method"].get("report", {}),
    )


def run_memory(record: dict, data_dir: Path | None) -> Memory:
    """The memory of a finished run: bytes its method keeps per task and shared after the stream, and its heads'.
    Task data is read (from `data_dir`) only for a method that keeps examples; a one-line error when something it
    needs is not there (the model's config, the data files, a number the record lacks)."""
    from clgraft.methods import get_method, parse_options

    method = get_method(record["method"]["name"])
    try:
        run = run_sizes(record)
        items = method.kept(parse_options(method, record["method"]["options"]), run)
    except KeyError as e:
        raise ClgraftError(f"run {record.get('config_hash')}: its record lacks {e}, which its memory needs") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ClgraftError(
            f"run {record.get('config_hash')}: its method's report is not what its memory reads ({e})"
        ) from None
    if not any(isinstance(item, Examples) for item in items):
        return memory_bytes(items, run)
    return memory_bytes(items, run, [_tokens_per_example(record, t, data_dir) for t in range(run.tasks)])


def _tokens_per_example(record: dict, t: int, data_dir: Path | None) -> float:
    """The mean token count of task t's training examples as the run encoded them."""
    task = record["tasks"][t]
    config = record["config"]
    return _mean_tokens(
        record["model"]["id"],
        f"{task['name']}@{task['version']}",
        record["seed"],
        config["max_length"],
        config.get("head") == "prompt",
        tuple(sorted(task.get("checksums", {}).items())),
        data_dir,
    )


@lru_cache(maxsize=256)
def _mean_tokens(
    model: str, ref: str, seed: int, max_length: int, prompt: bool, checksums: tuple, data_dir: Path | None
) -> float:
    """Mean tokens of a task's training examples, tokenised by the model's tokenizer as the runner does (truncated
    to max_length, in the task's prompt template when the run used the prompt head), from data files whose sha256
    are the record's."""
    from clgraft.data.batches import encode
    from clgraft.data.loading import load_task

    task = _registry().task(ref)
    data = load_task(task, data_dir, seed)
    if checksums and tuple(sorted(data.checksums.items())) != checksums:
        raise ClgraftError(f"task {ref}: the data files differ from those the run read (sha256); restore them")
    encoded = encode(_tokenizer(model), data.splits["train"], max_length, task.prompt if prompt else None)
    return sum(len(ids) for ids in encoded.ids) / len(encoded)


@lru_cache(maxsize=1)
def _registry():
    from clgraft.data.registry import Registry

    return Registry.discover()


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    from clgraft.model.headed import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(model), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ClgraftError(f"cannot load the tokenizer of model '{model}': {str(e).splitlines()[0]}") from e

"""The mask search of one MbPA task: today's search against the search before length-sorted gradient batches (its
`clgraft/grafting/localize.py` as of commit BEFORE, read from git and loaded as a module of its own), run round by
round in alternation on the same fine-tuned model, with the kept masks compared and the model FLOP utilisation of
each.

The case is what `graft-freeze` and `graft-compose` search after an MbPA task of the standard sweep: yelp-fs (the
first task of order i; data seed 42: 80 train and 80 dev examples of up to 128 tokens), MiniLM fine-tuned 25 steps
(batch 8, lr 1e-4, head 1e-3, embeddings frozen), then the grafting methods' search: `scaled`, s = 0.01, 10 steps.
FLOPs are counted as in benchmarks/mfu.py: a gradient pass is 3× the forward of the train set, a scored mask one
forward of train and dev; the GEMM limit is torch's rate at 256 rows (the gradient batches' size).

    .venv/bin/python -m benchmarks.mask_search --rounds 2     # prints one line per round and the comparison
    .venv/bin/python -m benchmarks.mask_search --bf16         # today's search in float32 against bfloat16 autocast
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.mfu import data_dir, forward_flops, gemm_layer
from clgraft.data.batches import Encoded, encode
from clgraft.grafting.localize import ScoredTask
from clgraft.model.headed import (
    DEFAULT_MODEL,
    BlockView,
    BodySnapshot,
    HeadedModel,
    freeze_outside_blocks,
    load_backbone,
)
from clgraft.training.loop import TrainOptions, split_accuracy, train_task

BEFORE = "56ca901"
"""The last commit whose search took each gradient in the official loader's random batches of 8 with activation
checkpointing."""

TASK, MAX_LENGTH, MAX_TEST, SEED = "yelp-fs", 128, 500, 42
STEPS, SPARSITY = 10, 0.01
CPU = torch.device("cpu")


def before_module() -> types.ModuleType | None:
    """clgraft/grafting/localize.py as of BEFORE, as a module named `localize_before` (None without that history:
    a copy without git, or a shallow clone)."""
    root = Path(__file__).resolve().parents[1]
    spec = f"{BEFORE}:clgraft/grafting/localize.py"
    try:
        source = subprocess.run(["git", "show", spec], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("localize_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, spec, "exec"), module.__dict__)
    return module


@dataclass
class Case:
    """A fine-tuned model put back to θ₀, its block update τ, and the task's splits as the search sees them."""

    model: HeadedModel
    view: BlockView
    start: BodySnapshot
    tau: torch.Tensor
    task: ScoredTask
    test: Encoded


def mbpa_case(folder: Path) -> Case:
    """yelp-fs fine-tuned as a grafting method's run fine-tunes it (embeddings frozen), the body back at θ₀."""
    from clgraft.data.loading import capped_test, load_task
    from clgraft.data.registry import Registry

    task = Registry.discover().task(TASK)
    data = load_task(task, folder, SEED)
    backbone = load_backbone(DEFAULT_MODEL)
    tok = backbone.tokenizer
    train, dev = (encode(tok, data.splits[s], MAX_LENGTH) for s in ("train", "dev"))
    test = encode(tok, capped_test(data.splits["test"], MAX_TEST), MAX_LENGTH)
    model = HeadedModel(backbone.model, {"t": len(task.labels)}, SEED)
    view = BlockView(model.body)
    start = BodySnapshot(model, view)
    freeze_outside_blocks(model.body)
    opts = TrainOptions(steps=25, batch_size=8, lr=1e-4, head_lr=1e-3)
    torch.manual_seed(SEED)  # dropout draws from the global generator (the runner seeds it before every task)
    train_task(model, "t", train, opts, SEED, CPU, progress=False)
    tau = view.flatten(dict(model.body.named_parameters())) - start.blocks
    start.restore(model)
    return Case(model, view, start, tau, ScoredTask("t", 0, train, dev, task.metric), test)


@dataclass
class Search:
    """One mask search's outcome, wall and CPU time, scored masks and the test accuracy of the graft it keeps."""

    mask: torch.Tensor
    best_step: int
    records: list[dict]
    seconds: float
    cpu_seconds: float
    scored: int
    test_accuracy: float


def run_search(localize: types.ModuleType, case: Case, steps: int = STEPS) -> Search:
    """The grafting methods' search with `localize` (today's module or the one before), timed; the body is put
    back to θ₀ before and after."""
    case.start.restore(case.model)
    opts = localize.LocalizeOptions(sparsity=SPARSITY, method="scaled", steps=steps, seed=SEED)
    with localize.MaskLearner(case.model, case.view, case.start.blocks, case.task, CPU) as learner:
        scored = count_scores(learner)
        started, cpu = time.perf_counter(), time.process_time()
        found = learner.learn(case.tau, case.tau, opts)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        learner.set_mask(found.mask, case.tau)
    accuracy = split_accuracy(case.model, "t", case.test, 0, 64, CPU)
    case.start.restore(case.model)
    return Search(found.mask, found.best_step, found.search, seconds, cpu_seconds, len(scored), accuracy)


def count_scores(learner) -> list[None]:
    """Wrap the learner's `score` so that each mask it scores adds an entry to the returned list (FLOPs count only
    the scoring passes run)."""
    calls: list[None] = []
    score = learner.score

    def counted(mask: torch.Tensor, delta: torch.Tensor) -> tuple[float, float]:
        calls.append(None)
        return score(mask, delta)

    learner.score = counted
    return calls


def search_flops(case: Case, steps: int, scored: int) -> float:
    """Model FLOPs of a search: `steps` gradient passes over train (3× a forward) and `scored` masks scored on train
    and dev."""
    config = case.model.body.config
    train = forward_flops(config, [len(ids) for ids in case.task.train.ids])
    dev = forward_flops(config, [len(ids) for ids in case.task.dev.ids])
    return steps * 3 * train + scored * (train + dev)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a ∧ b| / |a ∨ b| of two boolean masks."""
    return int(torch.count_nonzero(a & b)) / max(int(torch.count_nonzero(a | b)), 1)


def compare(rounds: int, steps: int = STEPS, threads: int = 1, echo=print) -> dict:
    """Today's search and the one before on the MbPA case at `threads` torch threads (1: a sweep worker's), the
    two alternating for `rounds` rounds with the GEMM limit measured in each; the fastest round of each by wall
    and by CPU time (the process's own: on a shared machine it leaves out the time other processes hold the core),
    their ratios, the MFU of each, and how the kept masks compare."""
    import clgraft.grafting.localize as today

    before = before_module()
    folder = data_dir()
    if before is None or folder is None:
        raise SystemExit(f"needs the git history (commit {BEFORE}) and the data pack")
    torch.set_num_threads(threads)
    case = mbpa_case(folder)
    gemm, gemm_flops = gemm_layer(case.model.body.config, 256, 20)
    old_runs, new_runs, gemm_s = [], [], []
    for r in range(rounds):
        old_runs.append(run_search(before, case, steps))
        new_runs.append(run_search(today, case, steps))
        for _ in range(3):
            started = time.perf_counter()
            gemm()
            gemm_s.append(time.perf_counter() - started)
        echo(
            f"round {r + 1}: before {old_runs[-1].seconds:.1f} s ({old_runs[-1].cpu_seconds:.1f} s CPU), today "
            f"{new_runs[-1].seconds:.1f} s ({new_runs[-1].cpu_seconds:.1f} s CPU)",
            flush=True,
        )
    old, new = min(old_runs, key=lambda s: s.seconds), min(new_runs, key=lambda s: s.seconds)
    old_cpu, new_cpu = min(s.cpu_seconds for s in old_runs), min(s.cpu_seconds for s in new_runs)
    rate = gemm_flops / min(gemm_s)
    return {
        "before_s": old.seconds,
        "today_s": new.seconds,
        "speedup": old.seconds / new.seconds,
        "before_cpu_s": old_cpu,
        "today_cpu_s": new_cpu,
        "cpu_speedup": old_cpu / new_cpu,
        "before_mfu": search_flops(case, steps, old.scored) / old.seconds / rate,
        "today_mfu": search_flops(case, steps, new.scored) / new.seconds / rate,
        "gemm_gflops": rate / 1e9,
        "jaccard": jaccard(old.mask, new.mask),
        "best_step": (old.best_step, new.best_step),
        "test_accuracy": (old.test_accuracy, new.test_accuracy),
        "records": (old.records, new.records),
        "scored": (old.scored, new.scored),
    }


def compare_bf16(steps: int = STEPS, threads: int = 1) -> dict:
    """Today's search in float32 against the same search under CPU bfloat16 autocast (the one lever left that does
    less work per FLOP), once each on the MbPA case: wall times, their ratio, and how the kept masks and per-step
    scores compare."""
    import clgraft.grafting.localize as today

    folder = data_dir()
    if folder is None:
        raise SystemExit("needs the data pack")
    torch.set_num_threads(threads)
    case = mbpa_case(folder)
    full = run_search(today, case, steps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = run_search(today, case, steps)
    scores = [((a["train"], a["dev"]), (b["train"], b["dev"])) for a, b in zip(full.records, half.records, strict=True)]
    return {
        "float32_s": full.seconds,
        "bf16_s": half.seconds,
        "speedup": full.seconds / half.seconds,
        "jaccard": jaccard(full.mask, half.mask),
        "best_step": (full.best_step, half.best_step),
        "test_accuracy": (full.test_accuracy, half.test_accuracy),
        "steps_scored_differently": sum(a != b for a, b in scores),
        "steps": len(scores),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="float32 against bfloat16 autocast, today's search")
    args = parser.parse_args()
    out = compare_bf16(args.steps, args.threads) if args.bf16 else compare(args.rounds, args.steps, args.threads)
    for key, value in out.items():
        print(f"{key}: {value}")

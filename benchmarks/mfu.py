"""Model FLOP utilisation (issue 19): what a training step and an evaluation of the default MiniLM reach, against the
sustained GEMM rate of torch on this CPU at the model's own shapes, measured in the same process.

FLOPs are the transformer's matmuls counted from its config and the real (unpadded) token counts: per layer and
example of n tokens, 2n(4d² + 2·d·d_ff) for the projections and the feed-forward, 4n²d for QKᵀ and AV; a training
step is 3× its forward (backward twice the forward). Padding, softmax, LayerNorm, GELU, embeddings and the head
count as zero, so they show up as lost utilisation.

    .venv/bin/python -m benchmarks.mfu            # prints the table; the data pack or `clgraft data fetch` data needed
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from clgraft.data.batches import Encoded, encode, eval_batches, train_batches
from clgraft.model.headed import DEFAULT_MODEL, HeadedModel, load_backbone
from clgraft.training.loop import TrainOptions, predict, train_task

STREAM, MAX_LENGTH, MAX_TEST = "lmbff-mixed", 128, 500


def layer_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of every Linear in one BERT layer: Q, K, V, attention output, feed-forward up and down."""
    d, ff = config.hidden_size, config.intermediate_size
    return [(d, d)] * 4 + [(d, ff), (ff, d)]


def forward_flops(config, lengths: list[int]) -> float:
    """Matmul FLOPs of one forward pass over examples of these real lengths."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return float(sum(layers * (2 * n * (4 * d * d + 2 * d * ff) + 4 * n * n * d) for n in lengths))


def _seconds(op: Callable[[], object]) -> float:
    start = time.perf_counter()
    op()
    return time.perf_counter() - start


def paired_best(op: Callable[[], object], reference: Callable[[], object], rounds: int) -> tuple[float, float]:
    """The fastest time of `op` and of `reference`, run alternately round by round (after one warm-up each), so
    that both see the same machine state: on a shared or throttled machine a limit measured at another moment
    would make the ratio meaningless."""
    op(), reference()
    times = [(_seconds(op), _seconds(reference)) for _ in range(rounds)]
    return min(t[0] for t in times), min(t[1] for t in times)


def gemm_layer(config, tokens: int, repeats: int) -> tuple[Callable[[], None], float]:
    """`repeats` passes of torch's GEMM (F.linear, as the model calls it) over one layer's Linear shapes with `tokens`
    rows, and their FLOPs: the rate the model's matmuls could reach at most."""
    gen = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(tokens, k, generator=gen), torch.randn(n, k, generator=gen)) for k, n in layer_shapes(config)]
    flops = repeats * sum(2 * tokens * w.shape[0] * w.shape[1] for _, w in pairs)

    def run() -> None:
        for _ in range(repeats):
            for x, w in pairs:
                F.linear(x, w)

    return run, flops


def data_dir() -> Path | None:
    """Where the task data is: CLGRAFT_DATA_DIR, the data pack beside the checkout, or the user cache."""
    candidates = [os.environ.get("CLGRAFT_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared" / "data"]
    candidates.append(Path.home() / ".cache" / "clgraft" / "data")
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def stream_splits(tokenizer, folder: Path, seed: int = 42) -> list[tuple[Encoded, Encoded]]:
    """(train, test) of every task of the mixed stream, encoded as a run encodes them (test capped as in compare)."""
    from clgraft.data.loading import capped_test, load_task
    from clgraft.data.registry import Registry

    registry = Registry.discover()
    _, refs = registry.stream(STREAM).order(None)
    out = []
    for ref in refs:
        data = load_task(registry.task(ref), folder, seed)
        test = capped_test(data.splits["test"], MAX_TEST)
        out.append((encode(tokenizer, data.splits["train"], MAX_LENGTH), encode(tokenizer, test, MAX_LENGTH)))
    return out


def padding_share(batched: list[tuple[Encoded, list[list[int]]]]) -> float:
    """Share of the computed token positions that are padding, over these (split, its batches)."""
    real = sum(len(data.ids[i]) for data, batches in batched for b in batches for i in b)
    padded = sum(len(b) * max(len(data.ids[i]) for i in b) for data, batches in batched for b in batches)
    return 1 - real / padded


def measure(threads: int, train_steps: int = 12, eval_batch: int = 64, rounds: int = 3) -> dict[str, float]:
    """Tokens/s, FLOP/s, MFU and padding of evaluation and of a training step, and the GEMM limits, at `threads`."""
    folder = data_dir()
    if folder is None:
        raise SystemExit("no task data: run `clgraft data fetch lmbff-mixed` or set CLGRAFT_DATA_DIR")
    torch.set_num_threads(threads)
    backbone = load_backbone(DEFAULT_MODEL)
    config = backbone.model.config
    splits = stream_splits(backbone.tokenizer, folder)
    model = HeadedModel(backbone.model, {"t": 6}, seed=0)
    cpu = torch.device("cpu")

    tests = [test for _, test in splits]
    eval_lengths = [len(ids) for t in tests for ids in t.ids]
    gemm, gemm_flops = gemm_layer(config, sum(eval_lengths) // len(eval_lengths) * eval_batch, 20)
    eval_s, gemm_eval_s = paired_best(lambda: [predict(model, "t", t, eval_batch, cpu) for t in tests], gemm, rounds)
    eval_gemm_rate = gemm_flops / gemm_eval_s
    eval_pad = padding_share([(t, eval_batches(t, eval_batch)) for t in tests])

    opts = TrainOptions(steps=train_steps, batch_size=8, lr=1e-5, head_lr=1e-5)
    train, seed = splits[0][0], 0
    batches = train_batches(len(train), opts.batch_size, opts.steps, torch.Generator().manual_seed(seed))
    train_lengths = [len(train.ids[i]) for b in batches for i in b]
    gemm, gemm_flops = gemm_layer(config, opts.batch_size * max(train_lengths), 20)
    train_s, gemm_train_s = paired_best(
        lambda: train_task(model, "t", train, opts, seed, cpu, progress=False), gemm, rounds
    )
    out = {
        "threads": threads,
        "gemm_eval_gflops": eval_gemm_rate / 1e9,
        "gemm_train_gflops": gemm_flops / gemm_train_s / 1e9,
        "eval_tokens_per_s": sum(eval_lengths) / eval_s,
        "eval_gflops": forward_flops(config, eval_lengths) / eval_s / 1e9,
        "eval_padding": eval_pad,
        "train_step_ms": train_s / opts.steps * 1e3,
        "train_tokens_per_s": sum(train_lengths) / train_s,
        "train_gflops": 3 * forward_flops(config, train_lengths) / train_s / 1e9,
        "train_padding": padding_share([(train, batches)]),
    }
    out["eval_mfu"] = out["eval_gflops"] / out["gemm_eval_gflops"]
    out["train_mfu"] = out["train_gflops"] / out["gemm_train_gflops"]
    return out


if __name__ == "__main__":
    for n in sorted({1, torch.get_num_threads()}):
        row = measure(n)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

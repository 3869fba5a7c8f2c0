"""Evaluation throughput (issue 9): `clgraft.training.loop.predict` ≥ 0.9× the throughput of a bare `inference_mode`
forward loop over the same (already collated) batches of the default MiniLM — collation, length bucketing and gathering
the logits cost at most ~10%. Timed operation and reference alternate round by round; fastest rounds are compared."""

import time

import torch

from clgraft.data.batches import Encoded, eval_batches
from clgraft.model.headed import DEFAULT_MODEL, HeadedModel, load_backbone
from clgraft.training.loop import predict

EXAMPLES, BATCH = 128, 64


def test_predict_vs_bare_forward(benchmark):
    model = HeadedModel(load_backbone(DEFAULT_MODEL).model, {"t": 2}, 0).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(16, 129, (EXAMPLES,), generator=gen).tolist()
    data = Encoded(
        [torch.randint(1000, 20000, (n,), generator=gen).tolist() for n in lengths], torch.zeros(EXAMPLES), 0
    )
    batches = [data.collate(index)[:2] for index in eval_batches(data, BATCH)]
    bare: list[float] = []

    def setup():
        start = time.perf_counter()
        with torch.inference_mode():
            for ids, mask in batches:
                model(ids, mask, "t")
        bare.append(time.perf_counter() - start)

    benchmark.group = "evaluate"
    benchmark.pedantic(lambda: predict(model, "t", data, BATCH, torch.device("cpu")), setup=setup, rounds=4)
    throughput = min(bare) / benchmark.stats.stats.min
    print(f"\npredict: {throughput:.3f}× the throughput of a bare inference_mode loop (target ≥ 0.9)")
    assert throughput >= 0.9

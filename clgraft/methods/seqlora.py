"""SeqLoRA: one fixed-size LoRA (peft) trained on task after task, nothing against forgetting — the LoRA lower bound
of O-LoRA's comparison (Wang et al. 2023; LoRA: Hu et al. 2022, ICLR).

Between tasks the adapter is folded into the body's weights, so that the runner saves and evaluates a plain model;
the next task takes it out again (W − s·BA) and trains on the same A and B. That is the same function as keeping one
unmerged adapter, up to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clgraft.methods.base import TaskStep
from clgraft.methods.peft_parts import LoraMethod, LoraOptions, adapter_weights

if TYPE_CHECKING:
    import torch
    from peft.tuners.tuners_utils import BaseTuner

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class SeqLora(LoraMethod):
    name = "seqlora"
    data_kept = "none"
    per_task_state = "none (one adapter for the whole stream)"
    description = "one LoRA adapter (peft) fine-tuned on each task in turn, no protection against forgetting"
    paper = "Hu et al. 2022, LoRA (ICLR); the SeqLoRA baseline of Wang et al. 2023, O-LoRA (Findings of EMNLP)"
    cite = ("hu2022lora", "wang2023olora", "mangrulkar2022peft")

    def setup(self, model: HeadedModel) -> None:
        self.carried: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(self, model: HeadedModel, tuner: BaseTuner, step: TaskStep) -> None:
        """Take the adapter trained so far back out of the weights and continue training it."""
        import torch

        if not self.carried:
            return
        a, b = adapter_weights(model.body, "lora_A"), adapter_weights(model.body, "lora_B")
        with torch.no_grad():
            for name, (a_old, b_old) in self.carried.items():
                a[name].copy_(a_old)
                b[name].copy_(b_old)
                layer = model.body.get_submodule(name)
                layer.base_layer.weight -= layer.get_delta_weight("default")

    def finish(self, model: HeadedModel, step: TaskStep) -> None:
        a, b = adapter_weights(model.body, "lora_A"), adapter_weights(model.body, "lora_B")
        self.carried = {name: (a[name].detach().clone(), b[name].detach().clone()) for name in a}

    @classmethod
    def kept(cls, options: LoraOptions, run: RunSizes) -> list[Kept]:
        """The one adapter, A and B of every adapted matrix (r·(d_in + d_out) values each): merged into the weights
        between tasks, and taken out again to train on."""
        from clgraft.methods.memory import Dense

        return [Dense(sum(options.r * (d_in + d_out) for d_in, d_out in run.body.adapted(options.targets)), "shared")]

    def report(self) -> dict:
        numel = sum(a.numel() + b.numel() for a, b in self.carried.values())
        return {"adapter_parameters": numel}

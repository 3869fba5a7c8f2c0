"""O-LoRA (Wang et al. 2023, Findings of EMNLP; official code cmnfriend/O-LoRA): each task trains a new LoRA
(peft) while earlier tasks' LoRAs stay fixed, and the loss adds

    λ₁ Σ_modules Σ |A_prev · A_tᵀ|  +  λ₂ Σ_{new LoRA matrices} ‖·‖₂,

A_prev the earlier tasks' A matrices of that module stacked (`uie_trainer_lora.py: training_step`), so that the
new task's update lies in a subspace orthogonal to the earlier ones'. Defaults are the official scripts': λ₁ = 0.5,
λ₂ = 0, r = 8, alpha 32, dropout 0.1, learning rate 1e-3.

Departures (docs/methods.md): the earlier LoRAs are merged into the weights instead of kept as frozen branches (the
same function; the official code also applies LoRA dropout to their input while training); the regulariser's
gradient is added after the task loss's backward (the same sum of gradients), so the recorded losses are the task
loss alone and the regulariser is reported per task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from clgraft.methods.base import TaskStep
from clgraft.methods.peft_parts import LoraMethod, LoraOptions, adapter_weights

if TYPE_CHECKING:
    import torch
    from peft.tuners.tuners_utils import BaseTuner

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class OLoraOptions(LoraOptions):
    lambda_1: float = Field(default=0.5, ge=0, description="weight of the orthogonality loss Σ|A_prev A_tᵀ|")
    lambda_2: float = Field(default=0.0, ge=0, description="weight of the L2 norm of the new LoRA's matrices")


def orthogonality(previous: dict[str, torch.Tensor], current: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over adapted modules of Σ |A_prev A_tᵀ| (O-LoRA's L_orth); zero before the second task."""
    import torch

    terms = [(previous[name] @ a.T).abs().sum() for name, a in current.items() if name in previous]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class OLora(LoraMethod):
    name = "o-lora"
    data_kept = "none"
    per_task_state = "its LoRA's A matrices (r × d_in per adapted module)"
    description = "a new LoRA per task, kept orthogonal to earlier tasks' LoRA subspaces by a loss term (peft)"
    paper = "Wang et al. 2023, Orthogonal Subspace Learning for Language Model Continual Learning (Findings of EMNLP)"
    cite = ("wang2023olora", "hu2022lora", "mangrulkar2022peft")
    Options = OLoraOptions

    def setup(self, model: HeadedModel) -> None:
        self.previous: dict[str, torch.Tensor] = {}  # module → earlier tasks' A matrices, stacked
        self.current: dict[str, torch.Tensor] = {}
        self.new: list[torch.Tensor] = []
        self.per_task: list[dict] = []

    def prepare(self, model: HeadedModel, tuner: BaseTuner, step: TaskStep) -> None:
        self.current = adapter_weights(model.body, "lora_A")
        self.new = [*self.current.values(), *adapter_weights(model.body, "lora_B").values()]

    def regulariser(self) -> torch.Tensor:
        """λ₁ L_orth + λ₂ Σ ‖new LoRA matrix‖₂ for the adapter being trained."""
        import torch

        o = self.options
        total = o.lambda_1 * orthogonality(self.previous, self.current)
        if o.lambda_2:
            total = total + o.lambda_2 * torch.stack([p.norm(p=2) for p in self.new]).sum()
        return total

    def grad_hook(self) -> None:
        """Add the regulariser's gradient to the task loss's (called between backward and the optimiser step)."""
        reg = self.regulariser()
        if reg.requires_grad:
            reg.backward()

    def finish(self, model: HeadedModel, step: TaskStep) -> None:
        import torch

        with torch.no_grad():
            self.per_task.append(
                {"task": step.index + 1, "orthogonality": float(orthogonality(self.previous, self.current))}
            )
            for name, a in self.current.items():
                kept = a.detach().clone()
                self.previous[name] = kept if name not in self.previous else torch.cat([self.previous[name], kept])

    @classmethod
    def kept(cls, options: OLoraOptions, run: RunSizes) -> list[Kept]:
        """Each task's A matrices (r·d_in values per adapted matrix), which every later task's L_orth reads; its B is
        merged into the weights with A (the official code keeps whole LoRAs as branches: docs/metrics.md)."""
        from clgraft.methods.memory import Dense

        per_task = sum(options.r * d_in for d_in, _ in run.body.adapted(options.targets))
        return [Dense(per_task, "task") for _ in range(run.tasks)]

    def report(self) -> dict:
        return {"orthogonality_after_task": self.per_task}

"""OSF, orthogonal subspace fine-tuning (Nayak et al. 2025, "Sculpting Subspaces"), through peft's own `OSFConfig`:
before each task every adapted weight matrix is split by SVD into its top singular directions, kept fixed, and the
rest, trained with gradients projected orthogonal to the kept directions; after the task the update is merged into
the weights and the next task decomposes them again.

How much is kept grows over the stream as peft's documentation advises for a known sequence of n tasks ("Budget
allocation"): task i (1-based) keeps the fraction (i−1)/n of each matrix's rank — task 1 keeps one direction, as
peft needs at least one — unless `preserve` fixes one fraction for every task.

Departures (docs/methods.md): peft trains only the SVD factors of the adapted matrices, so biases, LayerNorms and
embeddings stay at θ₀; `merge_and_unload` folds each task in (peft's documentation writes `unload()`, which in peft
0.21 drops the update).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.base import TaskStep
from clgraft.methods.peft_parts import AdapterMethod


class OsfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    preserve: float | None = Field(
        default=None, gt=0, le=1, description="fraction of each matrix's rank kept fixed (none: (i−1)/n for task i)"
    )
    targets: str | list[str] = Field(default="all-linear", description="modules to adapt (peft's target_modules)")


class Osf(AdapterMethod):
    name = "osf"
    data_kept = "none"
    per_task_state = "none (the kept singular directions are recomputed from the weights)"
    description = "full fine-tuning of each weight matrix in the subspace orthogonal to its kept singular directions"
    paper = "Nayak et al. 2025, Sculpting Subspaces: Constrained Full Fine-Tuning in LLMs for Continual Learning; peft"
    cite = ("nayak2025sculpting", "mangrulkar2022peft")
    Options = OsfOptions

    def setup(self, model) -> None:
        self.preserved_fractions: list[float | int] = []

    def preserved(self, index: int) -> float | int:
        """What task `index` (0-based) keeps: a fraction of each matrix's smaller dimension, or 1 direction."""
        if self.options.preserve is not None:
            return self.options.preserve
        fraction = index / len(self.ctx.tasks)
        return fraction if fraction > 0 else 1

    def config(self, step: TaskStep):
        from peft import OSFConfig

        keep = self.preserved(step.index)
        self.preserved_fractions.append(keep)
        return OSFConfig(effective_rank=keep, target_modules=self.options.targets)

    def report(self) -> dict:
        return {"preserved_per_task": self.preserved_fractions}

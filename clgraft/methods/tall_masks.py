"""TALL-masks and Consensus merging (Wang et al. 2024, ICML; official code nik-dim/tall_masks; docs/methods.md).

Each task is fine-tuned from θ₀ (the task vectors τ_t of independent fine-tuning). After task i the multi-task vector
is task arithmetic's τ_MTL = Σ_{t≤i} τ_t, and each task t ≤ i gets the mask m_t = 1{|τ_t| > λ_t·|τ_MTL − τ_t|}
(`generate_task_masks`), λ_t from {0.2, …, 0.6} chosen on task t's own dev set with the model θ₀ + m_t ⊙ τ_MTL.
- `tall-masks` (mode task-aware) evaluates task t as θ₀ + m_t ⊙ τ_MTL (scaling 1, as the official evaluation) with
  its head: it needs the task id.
- `consensus` keeps the entries that at least k tasks' masks use, θ₀ + α·(mask ⊙ τ_MTL), α chosen on the mean dev
  accuracy of the tasks so far: one model for all tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.base import FromTheta0, TaskStep

if TYPE_CHECKING:
    import torch

    from clgraft.grafting.graft import Graft
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class TallOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["task-aware", "consensus"] = "task-aware"
    mask_lambdas: list[float] = Field(
        default=[0.2, 0.3, 0.4, 0.5, 0.6], min_length=1, description="λ_t grid of each task's mask (dev-selected)"
    )
    consensus_k: int = Field(default=2, ge=0, description="consensus: entries kept when ≥ k tasks' masks use them")
    lambdas: list[float] = Field(
        default=[0.3, 0.5, 0.7, 1.0], min_length=1, description="consensus: α grid of the merged vector (dev-selected)"
    )


def tall_mask(tau: torch.Tensor, total: torch.Tensor, lam: float) -> torch.Tensor:
    """m = 1{|τ_t| > λ·|τ_MTL − τ_t|}: the entries where θ_t is closer to the multi-task model than to θ₀, scaled."""
    return tau.abs() > lam * (total - tau).abs()


def consensus_mask(masks: list[torch.Tensor], k: int) -> torch.Tensor:
    """The entries at least k of the tasks' masks use (k = 2 drops both 'selfish' and 'catastrophic' weights)."""
    import torch

    return torch.stack(masks).sum(0) >= k


class TallMasks(FromTheta0):
    name = "tall-masks"
    data_kept = "none"
    per_task_state = "a task vector until the merge, then a binary mask"
    relative_cost = 4.0
    description = "per-task TALL masks over the task-arithmetic vector (task id at test time), or their consensus"
    paper = "Wang et al. 2024, Localizing Task Information for Improved Model Merging and Compression (ICML)"
    cite = ("wang2024tallmasks",)
    Options = TallOptions
    keeps_state = True
    keeps_regions = True

    @classmethod
    def requires_task_id(cls, options: TallOptions) -> bool:
        return options.mode == "task-aware"

    @classmethod
    def kept(cls, options: TallOptions, run: RunSizes) -> list[Kept]:
        """Every τ_t: each new task changes τ_MTL, and every task's mask is made again from its τ_t (the paper's one
        bit per parameter per task and one τ_MTL suffice only once the stream is over). Task-aware also keeps each
        task's λ_t, which makes its mask; consensus answers with the one merged model."""
        from clgraft.methods.memory import Dense

        taus = [Dense(run.blocks, "task") for _ in range(run.tasks)]
        if options.mode == "consensus":
            return taus
        return taus + [Dense(1, "task") for _ in range(run.tasks)]

    def setup(self, model: HeadedModel) -> None:
        super().setup(model)
        self.taus: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None
        self.choices: list[dict] = []
        self.heads: list[dict[str, torch.Tensor]] = []

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        losses = super().train(model, step)
        head = model.heads[self.ctx.tasks[step.index].head]
        self.heads.append({k: v.detach().clone() for k, v in head.state_dict().items()})
        self.taus.append(self.view.flatten(dict(model.body.named_parameters())) - self.theta0.blocks)
        self.theta0.restore(model)
        self.total = sum(self.taus[1:], self.taus[0].clone())
        lams, self.masks = zip(*(self._mask(model, t) for t in range(len(self.taus))), strict=True)
        choice = {"after_task": step.index + 1, "mask_lambdas": list(lams)}
        choice["mask_fractions"] = [float(m.float().mean()) for m in self.masks]
        if self.options.mode == "consensus":
            choice.update(self._consensus(model, step.index))
        self.choices.append(choice)
        return losses

    def _mask(self, model: HeadedModel, t: int) -> tuple[float, torch.Tensor]:
        """Task t's λ_t and mask: the grid value whose θ₀ + m ⊙ τ_MTL scores best on task t's dev set."""
        best = None
        for lam in self.options.mask_lambdas:
            mask = tall_mask(self.taus[t], self.total, lam)
            self.theta0.restore(model, self.theta0.blocks + mask * self.total)
            score = self.task_dev_accuracy(model, t)
            if best is None or score > best[0]:  # the first λ wins ties
                best = (score, lam, mask)
        return best[1], best[2]

    def _consensus(self, model: HeadedModel, upto: int) -> dict:
        """θ₀ + α·(consensus mask ⊙ τ_MTL) with α of the best mean dev accuracy; leaves the model there."""
        merged = consensus_mask(list(self.masks), self.options.consensus_k) * self.total
        best = None
        for alpha in self.options.lambdas:
            self.theta0.restore(model, self.theta0.blocks + alpha * merged)
            score = self.dev_accuracy(model, upto)
            if best is None or score > best[0]:
                best = (score, alpha)
        self.theta0.restore(model, self.theta0.blocks + best[1] * merged)
        return {"alpha": best[1], "dev_acc": best[0], "consensus_fraction": float((merged != 0).float().mean())}

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """Task-aware: θ₀ + m_j ⊙ τ_MTL for a task learned so far, θ₀ for one not learned yet."""
        if self.options.mode != "task-aware" or self.total is None:
            return
        if task_index < len(self.masks):
            self.theta0.restore(model, self.theta0.blocks + self.masks[task_index] * self.total)
        else:
            self.theta0.restore(model)

    def grafts(self) -> dict[str, Graft]:
        """Once the stream is done, each task's final TALL mask m_t as a graft m_t ⊙ τ_MTL with its head (what
        task-aware evaluation applies), so that `clgraft analyze overlap --method tall-masks` compares TALL regions
        as it compares grafting's; none before (the masks change with every task)."""
        from clgraft.grafting.graft import Graft

        if len(self.masks) < len(self.ctx.tasks):
            return {}
        out = {}
        for t, (mask, head) in enumerate(zip(self.masks, self.heads, strict=True)):
            task = self.ctx.tasks[t].task
            meta = {"task": task.task, "task_version": str(task.version), "method": self.name}
            meta["sparsity"] = repr(float(mask.float().mean()))
            out[f"{task.task}-{self.name}"] = Graft.from_mask(self.view, mask, self.total, head, meta)
        return out

    def report(self) -> dict:
        return {
            "mode": self.options.mode,
            "mask_lambdas": self.options.mask_lambdas,
            "chosen_on_dev": self.choices,
        }

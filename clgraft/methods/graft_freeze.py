"""graft-freeze (docs/methods.md): after each task keep only its localized region of the update, and train every later
task with the union of earlier regions frozen, so that regions are disjoint by construction.

After task t the body is θ_{t−1} + γ_t⊙τ_t (the rest of task t's update is dropped, as grafting says it can be).
The embeddings stay at θ₀ (the run's freeze_embeddings, on by default here; with it off they are put back to their
value at the task's start), so the body after T tasks is exactly θ₀ + Σ_t γ_t⊙τ_t over disjoint regions. Frozen
entries get zero gradient; AdamW is fresh per task with no weight decay, so their moments stay zero and they do not
move at all. SGD's weight decay (--optimizer sgd) acts in the optimiser's step, outside the masked gradient: frozen
entries shrink by a factor 1 − lr·wd per step while a task trains (1e-4 of their value over the official recipe's
1,000 steps at lr 1e-3), and are put back to their values before the task's region is localized, so that τ is 0
there and no region can take them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clgraft.methods.base import Method, TaskStep
from clgraft.methods.grafting import GraftOptions, localize_task, search_summary, task_graft

if TYPE_CHECKING:
    from clgraft.grafting.graft import Graft
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import BodySnapshot, HeadedModel


class GraftFreeze(Method):
    name = "graft-freeze"
    data_kept = "none"
    per_task_state = "a sparse mask of frozen entries"
    relative_cost = 2.4
    description = "localize a sparse region per task, freeze earlier regions while training later tasks"
    paper = (
        "clgraft (docs/methods.md), on Panigrahi et al. 2023 skill localization; cf. PackNet (Mallya & Lazebnik 2018)"
    )
    cite = ("panigrahi2023grafting", "mallya2018packnet")
    Options = GraftOptions
    keeps_state = True
    keeps_regions = True
    disjoint_regions = True
    freezes_embeddings = True

    @classmethod
    def kept(cls, options: GraftOptions, run: RunSizes) -> list[Kept]:
        """The frozen entries: the union of the tasks' regions (disjoint, so Σ k_t entries), one mask for all tasks;
        the answers come from the one model θ₀ + Σ γ_t⊙τ_t."""
        from clgraft.methods.memory import Mask

        return [Mask(run.blocks, sum(run.report["region_sizes"]), "shared")]

    def setup(self, model: HeadedModel) -> None:
        import torch

        from clgraft.model.headed import BlockView

        self.view = BlockView(model.body)
        self.frozen = torch.zeros(self.view.numel, dtype=torch.bool, device=self.ctx.device)  # masks gradients there
        self.sizes: list[int] = []
        self.searches: list[dict] = []
        self._grafts: dict[str, Graft] = {}
        self._model = model

    def _mask_frozen_gradients(self) -> None:
        params = dict(self._model.body.named_parameters())
        for name, frozen in self._frozen_views.items():
            grad = params[name].grad
            if grad is not None:
                grad.masked_fill_(frozen, 0.0)

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        from clgraft.model.headed import BodySnapshot

        task = self.ctx.tasks[step.index]
        start = BodySnapshot(model, self.view)
        self._frozen_views = {n: v for n, v in self.view.split(self.frozen).items() if v.any()}
        self.grad_hook = self._mask_frozen_gradients if self._frozen_views else None
        losses = super().train(model, step)
        if self.ctx.opts.weight_decay and self.frozen.any():
            self._put_back_frozen(model, start)
        region, tau, found = localize_task(self, model, start, step)
        assert not (region & self.frozen).any(), "graft-freeze regions must be disjoint"
        self.frozen |= region
        self.sizes.append(int(region.sum()))
        self.searches.append(search_summary(found))
        self._grafts[f"{task.task.task}-{self.name}"] = task_graft(
            model, self.view, task, region, tau, self.name, self.options.sparsity
        )
        return losses

    def _put_back_frozen(self, model: HeadedModel, start: BodySnapshot) -> None:
        """Frozen entries back at their values at the task's start (weight decay moved them), so that τ is 0 there."""
        import torch

        from clgraft.model.headed import set_blocks

        now = self.view.flatten(dict(model.body.named_parameters()))
        set_blocks(model, self.view, torch.where(self.frozen, start.blocks, now))

    def grafts(self) -> dict[str, Graft]:
        return self._grafts

    def report(self) -> dict:
        n = self.view.numel
        return {
            "region_sizes": self.sizes,
            "region_fractions": [k / n for k in self.sizes],
            "free_fraction": 1 - int(self.frozen.sum()) / n,
            "disjoint": int(self.frozen.sum()) == sum(self.sizes),
            "mask_search": self.searches,
        }

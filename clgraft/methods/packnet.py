"""PackNet through avalanche-lib's `PackNet` strategy: prune after each task, freeze the kept weights, reuse the rest.

The closest classic relative of clgraft's disjoint regions. Task-incremental only: evaluating a task needs its id to
select its mask. Avalanche's PackNet wraps every Linear layer (attention, feed-forward and the heads); embeddings and
LayerNorms cannot be wrapped (avalanche refuses modules other than Linear/Conv that hold parameters) and stay
shared, a source of forgetting PackNet on CNNs does not have. Only the body's Linear layers are pruned: the heads are
per task already. Each task's steps split into a training epoch and a post-pruning epoch (post_prune_fraction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.errors import ClgraftError
from clgraft.methods.avalanche_engine import AvalancheMethod

if TYPE_CHECKING:
    from clgraft.config import RunConfig
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class PackNetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prune_proportion: float = Field(default=0.5, gt=0, lt=1, description="share of a task's free weights pruned")
    post_prune_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="share of each task's steps spent fine-tuning after pruning"
    )


class PackNet(AvalancheMethod):
    name = "packnet"
    data_kept = "none"
    per_task_state = "a binary mask"
    description = "prune-and-freeze a share of the free weights per task, task masks at test, avalanche-lib PackNet"
    paper = "Mallya & Lazebnik 2018, PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning (CVPR)"
    cite = ("mallya2018packnet", "lomonaco2021avalanche")
    Options = PackNetOptions
    needs_task_id = True
    keeps_state = True
    strategy_class = "PackNet"

    @classmethod
    def refusal(cls, config: RunConfig) -> str | None:
        if config.optimizer == "sgd":
            return (
                "packnet freezes weights by masking their gradients, and SGD's weight decay (--optimizer sgd) acts "
                "outside the gradient: frozen weights would shrink; use --optimizer adamw"
            )
        return None

    def strategy_kwargs(self):
        return {"prune_proportion": self.options.prune_proportion, "post_prune_epochs": 1}

    def adjust_strategy(self, strategy) -> None:
        """PackNetPlugin rebuilds the optimiser at each experience as `type(opt)(params, **opt.defaults)`, which
        fails for torch ≥ 2.x AdamW ('decoupled_weight_decay') and would drop clgraft's two learning rates. Its aim
        (no momentum carried into pruned weights) is already met: clgraft makes a fresh optimiser per task."""
        from avalanche.models.packnet import PackNetPlugin

        for plugin in strategy.plugins:
            if isinstance(plugin, PackNetPlugin):
                plugin.before_training_exp = lambda *args, **kwargs: None

    @classmethod
    def kept(cls, options: PackNetOptions, run: RunSizes) -> list[Kept]:
        """The owner of every weight of the body's Linear layers: one of the T tasks, or free (the paper's
        ⌈log2(T+1)⌉ bits per weight); biases are frozen after the first task and need no owner."""
        from clgraft.methods.memory import Owners

        return [Owners(run.body.linear_weights(), run.tasks + 1, "shared")]

    def epoch_steps(self, steps: int) -> list[int]:
        post = min(steps - 1, max(1, round(self.options.post_prune_fraction * steps)))
        if post < 1:
            raise ClgraftError("packnet needs --steps ≥ 2 (a training and a post-pruning phase per task)")
        return [steps - post, post]

    def wrap_model(self, adapter):
        self.packnet = _body_linear_packnet(adapter)
        return self.packnet

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """Select the task's mask; tasks not trained yet see the newest one (all free capacity)."""
        if self.strategy is not None:
            self.packnet.activate_task(min(task_index, self.packnet.task_count))


def _body_linear_packnet(adapter):
    """A PackNetModel over the adapter whose body's Linear layers (only) are PackNet modules."""
    import torch
    from avalanche.models.packnet import PackNetModel
    from torch import nn

    class BodyLinearPackNet(PackNetModel):
        def __init__(self, wrappee):
            super(PackNetModel, self).__init__()
            for parent in list(wrappee.model.body.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, PackNetModel.wrap(child))
            self.wrappee = wrappee

        def forward(self, x, task_id):
            t = int(task_id[0]) if isinstance(task_id, torch.Tensor) else int(task_id)
            self.activate_task(min(t, self.task_count))
            return self.wrappee(x, task_id)

    return BodyLinearPackNet(adapter)

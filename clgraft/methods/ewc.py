"""Elastic Weight Consolidation through avalanche-lib's `EWC` strategy (a separate penalty per past task), with λ
chosen on dev.

λ is a grid (`ewc_lambda`): at each task after the first, the task is trained once per λ from the same state, and
the λ whose model has the best mean dev accuracy over the tasks so far is kept — its weights, its Fisher and its
penalty anchors — as merge chooses its λ; the test sets are never looked at. The first task has no penalty, so it
is trained once. The grid and each choice (with every λ's dev accuracy) are in run.json. A single value is a plain
EWC run.

λ is avalanche-lib's: the loss gains λ·Σ_t Σ_i F_t,i (θ_i − θ*_t,i)², one term per past task t, with no ½
(`EWCPlugin.before_backward`), where Kirkpatrick et al. write (λ/2)·Σ_i F_i (θ_i − θ*_i)². The same penalty has
λ_paper = 2λ: clgraft's λ is half the paper's, and the default grid 1e4, 1e6, 1e8 is the paper's 2e4, 2e6, 2e8.

The importance of each weight is the paper's: the diagonal of the Fisher information, the expectation over the
model's own predictive distribution (`fisher_information`). Avalanche-lib's EWCPlugin squares the gradient of each
mini-batch's training loss at the true labels instead (an "empirical Fisher" of batch means); after a few-shot task
trained to a training loss near 0 that quantity vanishes as the square of the wrong classes' probabilities, so no λ
of a practical grid moved EWC off naive (measured on the sentiment stream: a penalty of 2.3e-12·λ at the next task's
weights, against 4.2e-8·λ with the Fisher information; every λ of 1e4–1e8 gave the same dev accuracy and naive's R).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clgraft.errors import ClgraftError
from clgraft.methods.avalanche_engine import AvalancheMethod
from clgraft.methods.base import TaskStep

if TYPE_CHECKING:
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


def fisher_information(model: Any, dataset: Any, device: Any) -> dict:
    """The diagonal Fisher information of `model` (an Avalanche module) on a task's training examples, in
    avalanche-lib's importance format ({name: ParamData}): F_i = (1/N) Σ_x Σ_y p(y|x) (∂ log p(y|x)/∂θ_i)², p the
    model's softmax in eval mode — Kirkpatrick et al.'s definition, the expectation over y computed exactly (one
    backward pass per class of each example, through a one-example graph) rather than sampled."""
    import torch
    from avalanche.models.utils import avalanche_forward
    from avalanche.training.utils import zerolike_params_dict
    from torch.utils.data import DataLoader

    model.eval()
    importances = zerolike_params_dict(model)
    named = list(model.named_parameters())
    loader = DataLoader(dataset, batch_size=1, collate_fn=getattr(dataset, "collate_fn", None))
    for batch in loader:
        x, task_labels = batch[0].to(device), batch[-1]
        log_p = torch.log_softmax(avalanche_forward(model, x, task_labels), dim=-1)[0]
        weights = log_p.detach().exp().tolist()
        classes = [c for c, w in enumerate(weights) if w > 0]  # a padded logit has probability 0
        for n, c in enumerate(classes):
            model.zero_grad(set_to_none=True)
            log_p[c].backward(retain_graph=n < len(classes) - 1)
            for (name, p), (same, importance) in zip(named, importances.items(), strict=True):
                assert name == same
                if p.grad is not None:
                    importance.data.add_(p.grad.detach().pow(2), alpha=weights[c])
    for importance in importances.values():
        importance.data /= float(len(loader))
    model.zero_grad(set_to_none=True)
    model.train()
    return importances


class EwcOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ewc_lambda: list[float] = Field(
        default=[1e4, 1e6, 1e8],
        min_length=1,
        description="λ grid of the penalty λ·ΣF(θ−θ*)² (avalanche-lib's, no ½: the paper's λ is 2λ), chosen per task "
        "on dev (one value: no choice)",
    )

    @field_validator("ewc_lambda", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        values = value if isinstance(value, list) else [value]
        if any(not isinstance(v, int | float) or v < 0 for v in values):
            raise ValueError("λ values must be numbers ≥ 0")
        return values


class Ewc(AvalancheMethod):
    name = "ewc"
    data_kept = "none"
    per_task_state = "a diagonal Fisher and the weights after the task"
    relative_cost = 4.5
    description = (
        "quadratic penalty on moving weights important to earlier tasks (diagonal Fisher), λ chosen on dev; "
        "λ·ΣF(θ−θ*)², so λ is half the paper's"
    )
    paper = "Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks (PNAS)"
    cite = ("kirkpatrick2017ewc", "lomonaco2021avalanche")
    Options = EwcOptions
    keeps_state = True
    strategy_class = "EWC"

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.choices: list[dict] = []

    @classmethod
    def kept(cls, options: EwcOptions, run: RunSizes) -> list[Kept]:
        """mode=separate: per task, the Fisher diagonal and the weights after the task, over the trained body (a task
        head is frozen after its task, so its share of the penalty is constant)."""
        from clgraft.methods.memory import Dense

        return [Dense(run.trained, "task") for _ in range(2 * run.tasks)]

    def strategy_kwargs(self):
        return {"ewc_lambda": self.options.ewc_lambda[0], "mode": "separate"}

    def _plugin(self):
        from avalanche.training.plugins import EWCPlugin

        return next(p for p in self.strategy.plugins if isinstance(p, EWCPlugin))

    def adjust_strategy(self, strategy) -> None:
        """The plugin's importances are the Fisher information (`fisher_information`), not its empirical Fisher."""
        self._plugin().compute_importances = (
            lambda model, criterion, optimizer, dataset, device, batch_size, num_workers=0: fisher_information(
                model, dataset, device
            )
        )

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        grid = self.options.ewc_lambda
        if step.on_step is not None and len(grid) > 1:  # refused before the first task, not halfway
            raise ClgraftError("ewc with a λ grid cannot save a --trajectory; give one value, --opt ewc_lambda=1e6")
        if step.index == 0 or len(grid) == 1:
            self.choices.append({"after_task": step.index + 1, "ewc_lambda": grid[0], "dev_acc": None})
            return super().train(model, step)
        return self._train_on_grid(model, step, grid)

    def _train_on_grid(self, model: HeadedModel, step: TaskStep, grid: list[float]) -> list[float]:
        """Train the task once per λ from the same state; keep the λ with the best mean dev accuracy (only the best
        trial so far is held, besides the start: two extra copies of the weights, not one per λ). The Fisher
        information and anchor weights are computed once, for the kept trial, after the choice: they are a
        deterministic function of its weights (eval mode, data in order), so this gives the same numbers as
        computing them after every trial, for a third of the cost."""
        start_weights = copy.deepcopy(model.state_dict())
        clock = self.strategy.clock  # also one of the strategy's plugins: its counters are restored, not the object
        start_clock = dict(vars(clock))
        plugin, t = self._plugin(), step.index
        best, dev_by_lambda = None, {}
        plugin.after_training_exp = lambda strategy, **kwargs: None  # no Fisher per trial (an instance override)
        try:
            for lam in grid:
                model.load_state_dict(start_weights)
                vars(clock).update(start_clock)
                plugin.ewc_lambda = lam
                losses = super().train(model, step)
                dev_by_lambda[repr(lam)] = dev = self.dev_accuracy(model, t)
                if best is None or dev > best["dev"]:  # the first λ of the grid wins ties
                    best = {
                        "lam": lam,
                        "dev": dev,
                        "losses": losses,
                        "weights": copy.deepcopy(model.state_dict()),
                        "clock": dict(vars(clock)),
                    }
        finally:
            del plugin.after_training_exp
        model.load_state_dict(best["weights"])
        vars(clock).update(best["clock"])
        plugin.ewc_lambda = best["lam"]
        self._anchor(plugin, t, start_clock["train_exp_counter"])
        self.choices.append(
            {
                "after_task": t + 1,
                "ewc_lambda": best["lam"],
                "dev_acc": best["dev"],
                "dev_acc_by_lambda": dev_by_lambda,
            }
        )
        return best["losses"]

    def _anchor(self, plugin, t: int, counter: int) -> None:
        """What avalanche-lib's EWCPlugin.after_training_exp stores after an experience — the Fisher information over
        the task's training set and a copy of the weights, under the experience counter — for the model as it is."""
        from avalanche.training.utils import copy_params_dict

        strategy = self.strategy
        importances = plugin.compute_importances(
            strategy.model,
            strategy._criterion,
            strategy.optimizer,
            self.benchmark.train_stream[t].dataset,
            strategy.device,
            strategy.train_mb_size,
            num_workers=0,
        )
        plugin.update_importances(importances, counter)
        plugin.saved_params[counter] = copy_params_dict(strategy.model)

    def report(self) -> dict:
        return {"grid": self.options.ewc_lambda, "chosen_on_dev": self.choices}

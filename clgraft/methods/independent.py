"""Independent fine-tuning: every task starts again from θ₀ (with its own fresh head).

Not a continual-learning method but the reference the seed papers use: its weights after task t are the task
vector τ_t = θ_t − θ₀ of task t alone (what localization, merging and the overlap analysis need), and its R row t
measures transfer from task t to every other task (DESIGN §5).
"""

from __future__ import annotations

from clgraft.methods.base import Method, TaskStep
from clgraft.models import HeadedModel


class Independent(Method):
    name = "independent"
    description = "fine-tunes each task from θ₀ separately: task vectors τ_t for grafting and merging; transfer in R"
    paper = "Panigrahi et al. 2023, Task-Specific Skill Localization in Fine-tuned Language Models (ICML)"
    cite = ("panigrahi2023grafting",)
    from_theta0 = True

    def setup(self, model: HeadedModel) -> None:
        self.theta0 = {k: v.detach().clone() for k, v in model.body.state_dict().items()}

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        model.body.load_state_dict(self.theta0)
        return super().train(model, step)

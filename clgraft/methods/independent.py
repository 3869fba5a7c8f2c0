"""Independent fine-tuning: every task starts again from θ₀ (with its own fresh head).

Not a continual-learning method but the reference the seed papers use: its weights after task t are the task
vector τ_t = θ_t − θ₀ of task t alone (what localization, merging and the overlap analysis need), and its R row t
measures transfer from task t to every other task (docs/protocols.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clgraft.methods.base import FromTheta0

if TYPE_CHECKING:
    from pydantic import BaseModel

    from clgraft.methods.memory import Kept, RunSizes


class Independent(FromTheta0):
    name = "independent"
    data_kept = "none"
    per_task_state = "a whole fine-tuned model"
    r_rows_are_transfer = True
    description = "fine-tunes each task from θ₀ separately: task vectors τ_t for grafting and merging; transfer in R"
    paper = "Panigrahi et al. 2023, Task-Specific Skill Localization in Fine-tuned Language Models (ICML)"
    cite = ("panigrahi2023grafting",)

    @classmethod
    def kept(cls, options: BaseModel, run: RunSizes) -> list[Kept]:
        """Each task's fine-tuned body, as θ_t − θ₀ over the parameters its fine-tuning moves."""
        from clgraft.methods.memory import Dense

        return [Dense(run.trained, "task") for _ in range(run.tasks)]

"""cl_metrics against matrices computed by hand from DESIGN §2."""

import numpy as np
import pytest

from clgraft.metrics import cl_metrics
from clgraft.metrics.cl import EVALUATE_PLANS, evaluated_columns

# rows: before, after task 1, after task 2, after task 3
R3 = [
    [0.10, 0.20, 0.30],
    [0.90, 0.25, 0.35],
    [0.70, 0.80, 0.40],
    [0.60, 0.50, 0.85],
]


def test_three_tasks_by_hand():
    m = cl_metrics(R3)
    assert m["acc"] == pytest.approx((0.60 + 0.50 + 0.85) / 3)
    assert m["la"] == pytest.approx((0.90 + 0.80 + 0.85) / 3)
    # BWT: (R[3,1]-R[1,1] + R[3,2]-R[2,2]) / 2
    assert m["bwt"] == pytest.approx(((0.60 - 0.90) + (0.50 - 0.80)) / 2)
    # FWT: (R[1,2]-b2 + R[2,3]-b3) / 2
    assert m["fwt"] == pytest.approx(((0.25 - 0.20) + (0.40 - 0.30)) / 2)
    # F: task1 max(R[1,1], R[2,1]) - R[3,1] = 0.30; task2 max(R[2,2]) - R[3,2] = 0.30
    assert m["forgetting"] == pytest.approx((0.30 + 0.30) / 2)
    # AIA: (0.90 + (0.70+0.80)/2 + (0.60+0.50+0.85)/3) / 3
    assert m["avg_incremental_acc"] == pytest.approx((0.90 + 0.75 + 1.95 / 3) / 3)


def test_chaudhry_forgetting_also_counts_rows_before_the_task_was_trained():
    # task 1 (column 0): rows 1..T−1 = 0.9, 0.7 → 0.9 − 0.6 both forms; task 2 (column 1): clgraft's form looks at
    # row 2 only (0.8 → 0.3), Chaudhry et al. 2018 also at row 1, before task 2 was trained (0.95 → 0.65)
    R = [[0.1, 0.2, 0.3], [0.9, 0.95, 0.35], [0.7, 0.8, 0.4], [0.6, 0.5, 0.85]]
    m = cl_metrics(R)
    assert m["forgetting"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)
    assert m["forgetting_chaudhry"] == pytest.approx(((0.9 - 0.6) + (0.95 - 0.5)) / 2)


def test_fwt_is_not_defined_with_fresh_task_heads():
    assert cl_metrics(R3)["fwt"] is not None
    assert cl_metrics(R3, fresh_task_heads=True)["fwt"] is None
    assert cl_metrics(R3, fresh_task_heads=True)["acc"] == cl_metrics(R3)["acc"]


def test_forgetting_uses_the_best_earlier_row_not_the_first():
    R = [[0.0, 0.0], [0.5, 0.1], [0.4, 0.9]]
    R_peak = [[0, 0, 0], [0.5, 0, 0], [0.9, 0.6, 0], [0.3, 0.4, 0.8]]
    assert cl_metrics(R)["forgetting"] == pytest.approx(0.1)
    # task 1 peaks after task 2 (0.9), ends at 0.3 → 0.6; task 2: 0.6 → 0.4 → 0.2
    assert cl_metrics(R_peak)["forgetting"] == pytest.approx((0.6 + 0.2) / 2)
    assert cl_metrics(R_peak)["bwt"] == pytest.approx(((0.3 - 0.5) + (0.4 - 0.6)) / 2)


def test_single_task_has_no_bwt_fwt_or_forgetting():
    m = cl_metrics([[0.5], [0.8]])
    assert m == {
        "acc": 0.8,
        "la": 0.8,
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "forgetting_chaudhry": None,
        "avg_incremental_acc": 0.8,
    }


def test_no_forgetting_when_accuracies_never_fall():
    R = np.array([[0.1, 0.1], [0.7, 0.2], [0.7, 0.9]])
    m = cl_metrics(R)
    assert m["forgetting"] == 0.0 and m["bwt"] == 0.0


@pytest.mark.parametrize("bad", [[[0.1, 0.2]], [[0.1], [0.2], [0.3]], [0.1, 0.2], [[0.1], [float("nan")]]])
def test_rejects_matrices_that_are_not_T_plus_1_by_T(bad):
    with pytest.raises(ValueError):
        cl_metrics(bad)


def test_missing_rows_leave_only_the_metrics_they_do_not_need():
    """Joint training evaluates only rows 0 and T."""
    m = cl_metrics([[0.1, 0.2, 0.3], None, None, [0.7, 0.8, 0.9]])
    assert m["acc"] == pytest.approx(0.8)
    assert m["la"] is None and m["bwt"] is None and m["fwt"] is None and m["forgetting"] is None
    assert m["avg_incremental_acc"] is None


def _masked(R: np.ndarray, plan: str) -> list[list[float | None]]:
    T = R.shape[1]
    keep = [set(evaluated_columns(plan, i, T)) for i in range(T + 1)]
    return [[float(R[i, j]) if j in keep[i] else None for j in range(T)] for i in range(T + 1)]


@pytest.mark.parametrize("T", [1, 2, 3, 5, 15])
def test_evaluation_plans_keep_the_metrics_they_promise(T):
    R = np.random.default_rng(T).random((T + 1, T))
    full = cl_metrics(R)
    assert cl_metrics(_masked(R, "all")) == full
    seen = cl_metrics(_masked(R, "seen"))  # every metric but Chaudhry's forgetting from about half the evaluations
    assert {k: v for k, v in seen.items() if k != "forgetting_chaudhry"} == {
        k: v for k, v in full.items() if k != "forgetting_chaudhry"
    }
    if T > 3:  # it reads rows before a task's training, which `seen` skips
        assert seen["forgetting_chaudhry"] is None
    final = cl_metrics(_masked(R, "final"))
    assert {k: final[k] for k in ("acc", "la", "bwt", "fwt")} == {k: full[k] for k in ("acc", "la", "bwt", "fwt")}
    if T > 2:  # with T ≤ 2 every entry forgetting reads is in the final plan too
        assert final["forgetting"] is None and final["avg_incremental_acc"] is None


def test_evaluation_plans_cost():
    T = 15
    cost = {p: sum(len(evaluated_columns(p, i, T)) for i in range(T + 1)) for p in EVALUATE_PLANS}
    assert cost == {"all": T * (T + 1), "seen": (T - 1) + T * (T + 1) // 2 + (T - 1), "final": 4 * T - 3}
    with pytest.raises(ValueError, match="choose one of"):
        evaluated_columns("some", 0, T)

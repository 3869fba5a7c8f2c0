"""SeqLoRA, O-LoRA and OSF through peft: each one's formula restated on a few parameters, and each compared on the
tiny stream with a method it must differ from."""

from itertools import pairwise

import pytest
import torch
from safetensors.torch import load_file

from clgraft.data.registry import Registry
from clgraft.methods.olora import OLora, OLoraOptions, orthogonality
from clgraft.model.headed import load_backbone
from clgraft.runs.runner import RunConfig, Runner

MOVING = {"steps": 12, "batch_size": 4, "max_length": 32, "lr": 1e-2}
QUERY = "encoder.layer.0.attention.self.query.weight"


def _weights(model_dir, out, method: str, **options) -> tuple[list[dict], dict]:
    config = RunConfig(stream="tiny", model=str(model_dir), method=method, method_options=options, **MOVING)
    record = Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()
    after = [load_file(out / "weights" / f"task-{t:02d}.safetensors") for t in (1, 2, 3)]
    return [{k.removeprefix("body."): v for k, v in w.items()} for w in after], record


def _rank(delta: torch.Tensor) -> int:
    s = torch.linalg.svdvals(delta)
    return int((s > 1e-4 * s[0]).sum())


def test_seqlora_trains_one_adapter_across_tasks_and_o_lora_a_new_one_per_task(tiny_model_dir, tmp_path):
    """On every adapted matrix (query and value of both layers): SeqLoRA's W_t − θ₀ is s·B_t A_t of its one carried
    adapter, rank r after any number of tasks, while a task's increment s·(B_t A_t − B_{t−1} A_{t−1}) reaches 2r;
    O-LoRA adds one new rank-r LoRA per task, so its increments are rank r and W_t − θ₀ grows to r·t."""
    theta0 = load_backbone(str(tiny_model_dir)).model.state_dict()
    seq, _ = _weights(tiny_model_dir, tmp_path / "seq", "seqlora", r=2)
    olora, record = _weights(tiny_model_dir, tmp_path / "olora", "o-lora", r=2)
    adapted = [f"encoder.layer.{i}.attention.self.{m}.weight" for i in (0, 1) for m in ("query", "value")]
    for name in adapted:
        assert [_rank(w[name] - theta0[name]) for w in seq] == [2, 2, 2], name  # ≤ r, not r·t
        assert [_rank(w[name] - theta0[name]) for w in olora] == [2, 4, 6], name
        assert [_rank(b[name] - a[name]) for a, b in pairwise(seq)] == [4, 4], name  # 2r, not r
        assert all(_rank(b[name] - a[name]) == 2 for a, b in pairwise(olora)), name
    key = "encoder.layer.0.attention.self.key.weight"  # not a LoRA target, and the body is frozen under LoRA
    assert all(torch.equal(w[key], theta0[key]) for w in seq + olora)
    assert record["method"]["report"]["orthogonality_after_task"][0]["orthogonality"] == 0.0


def test_seqlora_takes_the_merged_adapter_back_out_and_trains_it_on():
    """SeqLoRA's round trip between tasks: merging folds s·BA into W; the next task's `prepare` puts the same A and
    B into the new adapter and takes s·BA out of W again, giving back θ₀ to float rounding and the same function as
    the merged model; merging once more gives the merged weights back."""
    from clgraft.methods.base import TaskStep
    from clgraft.methods.peft_parts import LoraOptions, adapt, adapter_weights, merge_back
    from clgraft.methods.seqlora import SeqLora
    from clgraft.model.headed import HeadedModel, tiny_bert

    model = HeadedModel(tiny_bert(100), {"a": 2}, 0)
    theta0 = {k: v.clone() for k, v in model.body.state_dict().items()}
    ids, mask = torch.randint(5, 90, (3, 7), generator=torch.Generator().manual_seed(0)), torch.ones(3, 7)
    method = SeqLora(LoraOptions(r=2), ctx=None)
    method.setup(model)
    first, second = TaskStep(index=0, seed=1), TaskStep(index=1, seed=2)

    tuner = adapt(model.body, method.config(first), first.seed)
    method.prepare(model, tuner, first)  # nothing carried yet
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # stands for a trained adapter: peft starts B at 0
        for b in adapter_weights(model.body, "lora_B").values():
            b.copy_(0.05 * torch.randn(b.shape, generator=gen))
    expected = model.eval()(ids, mask, "a")
    method.finish(model, first)
    merge_back(tuner)
    merged = {k: v.clone() for k, v in model.body.state_dict().items()}
    torch.testing.assert_close(model(ids, mask, "a"), expected)
    for name, (a, b) in method.carried.items():
        torch.testing.assert_close(merged[f"{name}.weight"] - theta0[f"{name}.weight"], 16.0 * b @ a)  # s = 32 / 2

    tuner = adapt(model.body, method.config(second), second.seed)
    method.prepare(model, tuner, second)
    a_now, b_now = adapter_weights(model.body, "lora_A"), adapter_weights(model.body, "lora_B")
    for name, (a, b) in method.carried.items():
        assert torch.equal(a_now[name], a) and torch.equal(b_now[name], b)
        layer = model.body.get_submodule(name)
        torch.testing.assert_close(layer.base_layer.weight, theta0[f"{name}.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.eval()(ids, mask, "a"), expected)
    merge_back(tuner)
    for key, value in model.body.state_dict().items():
        torch.testing.assert_close(value, merged[key], rtol=0, atol=1e-6)


def test_o_lora_regulariser_is_the_official_loss_and_its_gradient_is_added(tiny_model_dir):
    gen = torch.Generator().manual_seed(0)
    prev = {"q": torch.randn(4, 6, generator=gen)}
    a = torch.randn(2, 6, generator=gen).requires_grad_()
    b = torch.randn(6, 2, generator=gen).requires_grad_()
    assert orthogonality(prev, {"q": a}).item() == pytest.approx(float((prev["q"] @ a.detach().T).abs().sum()))
    assert float(orthogonality({}, {"q": a})) == 0.0

    method = OLora(OLoraOptions(lambda_1=0.5, lambda_2=0.1), ctx=None)
    method.previous, method.current, method.new = prev, {"q": a}, [a, b]
    expected = 0.5 * (prev["q"] @ a.T).abs().sum() + 0.1 * (a.norm() + b.norm())
    assert method.regulariser().item() == pytest.approx(expected.item())
    method.grad_hook()
    sign = torch.sign(prev["q"] @ a.detach().T)
    torch.testing.assert_close(a.grad, 0.5 * sign.T @ prev["q"] + 0.1 * a.detach() / a.detach().norm())
    torch.testing.assert_close(b.grad, 0.1 * b.detach() / b.detach().norm())


def test_o_lora_s_loss_keeps_the_new_lora_nearer_orthogonal_than_without_it(tiny_model_dir, tmp_path):
    _, free = _weights(tiny_model_dir, tmp_path / "free", "o-lora", r=2, lambda_1=0.0)
    _, held = _weights(tiny_model_dir, tmp_path / "held", "o-lora", r=2, lambda_1=5.0)
    after = [t["orthogonality"] for t in held["method"]["report"]["orthogonality_after_task"]]
    without = [t["orthogonality"] for t in free["method"]["report"]["orthogonality_after_task"]]
    assert after[1] < 0.8 * without[1] and after[2] < 0.8 * without[2]


def test_osf_updates_stay_orthogonal_to_the_kept_singular_directions_where_naive_s_do_not(tiny_model_dir, tmp_path):
    def leak(weights: list[dict]) -> float:
        """‖U_kᵀ ΔW‖ / ‖ΔW‖ for task 2's update of a query matrix, U_k the top third of its singular vectors after
        task 1 (what OSF keeps at task 2 of 3)."""
        before, delta = weights[0][QUERY], weights[1][QUERY] - weights[0][QUERY]
        u = torch.linalg.svd(before).U[:, : int(min(before.shape) / 3)]
        return float((u.T @ delta).norm() / delta.norm())

    osf, record = _weights(tiny_model_dir, tmp_path / "osf", "osf")
    naive, _ = _weights(tiny_model_dir, tmp_path / "naive", "naive")
    assert record["method"]["report"]["preserved_per_task"] == [1, pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert leak(osf) < 0.15 < 0.4 < leak(naive)  # AdamW's per-entry scaling lets a little through (docs/methods.md)
    norm = "encoder.layer.0.attention.output.LayerNorm.weight"  # peft trains the SVD factors of matrices only
    assert torch.equal(osf[2][norm], osf[0][norm]) and not torch.equal(naive[2][norm], naive[0][norm])


def _svd_step_leak(hooks: bool) -> list[tuple[float, float, float]]:
    """Three SGD steps of peft's OSF (kept rank 2) on a wide and a tall linear map, merged back; per map
    ‖U_kᵀ ΔW‖ / ‖ΔW‖, ‖ΔW V_k‖ / ‖ΔW‖ and ‖ΔW‖, with U_k, V_k the top-2 singular vectors of W before the steps.
    `hooks` False removes peft's gradient projection, to show the measure sees an unprojected update."""
    from peft import OSFConfig

    from clgraft.methods.peft_parts import adapt, merge_back

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 6))
    before = [body[0].weight.detach().clone(), body[2].weight.detach().clone()]
    tuner = adapt(body, OSFConfig(effective_rank=2, target_modules=["0", "2"]), seed=0)
    if not hooks:
        body[0]._detach_hooks()
        body[2]._detach_hooks()
    optimizer = torch.optim.SGD([p for p in body.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.randn(16, 6), torch.randn(16, 6)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(body(x), y).backward()
        optimizer.step()
    merge_back(tuner)
    leaks = []
    for w0, w1 in zip(before, [body[0].weight.detach(), body[2].weight.detach()], strict=True):
        u, _, vh = torch.linalg.svd(w0)
        delta = w1 - w0
        size = float(delta.norm())
        leaks.append((float((u[:, :2].T @ delta).norm()) / size, float((delta @ vh[:2].T).norm()) / size, size))
    return leaks


def test_osf_moves_a_matrix_only_orthogonally_to_its_kept_singular_directions():
    """peft's (and the paper's) OSF: W = U_k S_k V_kᵀ + U_low S_low V_lowᵀ, only the second part trained, with the
    gradients of U_low and V_low projected off U_k and V_k (dU − U_k U_kᵀ dU, dV − dV V_k V_kᵀ). Under plain
    gradient steps U_low and V_low then stay orthogonal to U_k and V_k, so ΔW = W₁ − W₀ satisfies U_kᵀ ΔW = 0 and
    ΔW V_k = 0 to float rounding, on both the wide and the tall matrix (peft's two projection branches); without
    the projection the same steps leave a sizeable part there. (clgraft trains with AdamW, whose per-entry scaling
    lets a little through: the tiny-stream test below and docs/methods.md.)"""
    for left, right, size in _svd_step_leak(hooks=True):
        assert size > 1e-2 and left < 1e-5 and right < 1e-5
    assert max(max(left, right) for left, right, _ in _svd_step_leak(hooks=False)) > 0.1

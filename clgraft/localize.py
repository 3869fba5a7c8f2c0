"""Skill localization (DESIGN §3): learn a sparse mask γ over the block parameters such that θ₀ + γ⊙τ keeps the
fine-tuned model's accuracy.

`official` follows the grafting paper's code (src/graft_trainer.py): γ_base = top-⌊sN⌋ of |τ| over all block
parameters at once; trainable S ~ U(0,1); relaxed mask γ(S) = γ_base + (1 − 2γ_base)⊙σ(S − b), b = 10; at each step
g = lr · mean over batches of ∂L/∂θ⊙τ at θ̄(γ(S)), S ← S − (1 − 2γ_base)⊙g⊙σ'(S − b); the mask is rounded after every
step and the rounded mask with the best train+dev accuracy is kept (γ_base included). No sparsity term: sparsity
comes from γ_base and the few steps.
`stitch` is Localize-and-Stitch (He et al. 2024): γ = σ(S) with an L1 penalty on γ, trained from S = ±3 at γ_base,
then the top-⌊sN⌋ of σ(S) is the mask.
`sparsify` places "sparsification as fine-tuning" beside grafting: the same learner, but the candidate change is
−θ₀ (setting the selected pre-trained weights to zero) instead of τ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from clgraft.batches import Encoded, train_batches
from clgraft.errors import ClgraftError
from clgraft.models import BlockView, HeadedModel
from clgraft.train import accuracy, predict


@dataclass(frozen=True)
class LocalizeOptions:
    """Settings of one mask search."""

    sparsity: float
    method: Literal["official", "stitch", "sparsify"] = "official"
    steps: int = 20
    lr: float = 1e7
    bias: float = 10.0
    batches: int = 4
    batch_size: int = 8
    l1: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise ClgraftError(f"--sparsity {self.sparsity}: must be in (0, 1), e.g. 1e-4")
        if self.steps < 0 or self.batches < 1:
            raise ClgraftError("--steps must be ≥ 0 and batches ≥ 1")


def top_k_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k entries of largest |value| (as top_k_mask of |values|, without an N-sized copy on
    the sampled path)."""
    return top_k_mask(values, k, magnitude=True)


def top_k_mask(scores: torch.Tensor, k: int, magnitude: bool = False) -> torch.Tensor:
    """Boolean mask of the k largest entries of a flat vector: one global selection over all block parameters.

    For small k, a threshold from a fixed random sample of 65,536 entries, set six standard errors below the
    sample's (1 − k/N) quantile, keeps a little over k candidates in one pass, and the exact top-k is taken among them
    (every top-k entry passes the threshold whenever ≥ k entries do, so the result is exact; otherwise it falls back
    to the full selection). A full `torch.topk` over N entries costs 4–9 copies of the vector on a CPU.
    """
    n = scores.numel()
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return mask
    m = 2**16
    if n >= 4 * m and k < n // 8:
        sample = scores[torch.randint(0, n, (m,), generator=torch.Generator().manual_seed(0)).to(scores.device)]
        sample = sample.abs() if magnitude else sample
        p = k / n
        threshold = torch.quantile(sample.float(), max(0.0, 1 - p - 6 * math.sqrt(p * (1 - p) / m)))
        passing = (scores >= threshold) | (scores <= -threshold) if magnitude else scores >= threshold
        candidates = torch.nonzero(passing).flatten()
        if candidates.numel() >= k:
            picked = scores[candidates].abs() if magnitude else scores[candidates]
            mask[candidates[torch.topk(picked, k, sorted=False).indices]] = True
            return mask
    mask[torch.topk(scores.abs() if magnitude else scores, k, sorted=False).indices] = True
    return mask


def official_step(
    S: torch.Tensor,
    base: torch.Tensor,
    grad_tau: torch.Tensor,
    lr: float,
    bias: float,
    work: torch.Tensor | None = None,
) -> None:
    """One update of the official rule, in place: S ← S − (1 − 2γ_base)⊙(lr·∂L/∂θ⊙τ)⊙σ'(S − b).

    `work` is a scratch vector shaped like S (allocated when None); no other N-sized temporary is made.
    """
    work = torch.empty_like(S) if work is None else work
    torch.sub(S, bias, out=work).sigmoid_()
    work.addcmul_(work, work, value=-1)  # σ'(x) = σ(x) − σ(x)²
    work.mul_(grad_tau).mul_(lr)
    work[base.bool()] *= -1  # (1 − 2γ_base) is −1 on the base entries, +1 elsewhere
    S.sub_(work)


def rounded_official(S: torch.Tensor, base: torch.Tensor, bias: float) -> torch.Tensor:
    """round(γ(S)) for γ = γ_base + (1 − 2γ_base)σ(S − b): γ_base flipped where σ(S − b) > 1/2, i.e. S > b."""
    return base ^ (S > bias)


@dataclass
class MaskResult:
    """The kept mask and how the search went."""

    mask: torch.Tensor
    best_step: int
    history: list[float]


class MaskLearner:
    """Learns masks for one fine-tuned model: θ₀ and the candidate change over a body bound to flat vectors."""

    def __init__(
        self,
        model: HeadedModel,
        view: BlockView,
        theta0: torch.Tensor,
        head: str,
        label_offset: int,
        train: Encoded,
        score_sets: list[Encoded],
        device: torch.device,
    ):
        self.model, self.view, self.theta0, self.head, self.offset = model, view, theta0, head, label_offset
        self.train, self.score_sets, self.device = train, score_sets, device
        for p in model.parameters():
            p.requires_grad_(False)
        self.weights, self.grads = view.bind(model.body)
        params = dict(model.body.named_parameters())
        for name in view.names:
            params[name].requires_grad_(True)
        self.loss_fn = nn.CrossEntropyLoss()

    def set_mask(self, mask: torch.Tensor, delta: torch.Tensor) -> None:
        """Weights θ₀ + γ⊙δ for a boolean γ (touches only the selected entries after one copy)."""
        with torch.no_grad():
            self.weights.copy_(self.theta0)
            where = torch.nonzero(mask).flatten()
            self.weights[where] += delta[where]

    def _set_relaxed(self, gamma: torch.Tensor, delta: torch.Tensor) -> None:
        """Weights θ₀ + γ⊙δ for a real-valued γ."""
        with torch.no_grad():
            torch.addcmul(self.theta0, gamma, delta, out=self.weights)

    def _grad(self, batches: list[list[int]]) -> torch.Tensor:
        """Mean over batches of ∂L/∂θ at the current weights (dropout off: the official code scores in eval mode)."""
        self.model.eval()
        self.grads.zero_()
        for index in batches:
            input_ids, mask, labels = (t.to(self.device) for t in self.train.collate(index))
            loss = self.loss_fn(self.model(input_ids, mask, self.head), labels + self.offset) / len(batches)
            loss.backward()
        return self.grads

    def score(self, mask: torch.Tensor, delta: torch.Tensor) -> float:
        """Accuracy on train ∪ dev of θ₀ + γ⊙δ for a boolean mask γ."""
        self.set_mask(mask, delta)
        correct = total = 0
        for data in self.score_sets:
            logits = predict(self.model, self.head, data, 64, self.device)
            correct += accuracy(logits, data.labels + self.offset) * len(data)
            total += len(data)
        return correct / total

    def learn(self, delta: torch.Tensor, init: torch.Tensor, opts: LocalizeOptions) -> MaskResult:
        """Search a mask of about ⌊sN⌋ entries for the candidate change δ (τ, or −θ₀ for sparsify), starting from
        the top-⌊sN⌋ entries of |init| (|τ|: where fine-tuning moved most)."""
        k = math.floor(opts.sparsity * self.view.numel)
        if k < 1:
            raise ClgraftError(f"--sparsity {opts.sparsity} selects no entry of {self.view.numel} block parameters")
        base = top_k_magnitude(init, k)
        gen = torch.Generator().manual_seed(opts.seed)
        schedule = train_batches(len(self.train), opts.batch_size, opts.steps * opts.batches, gen)
        if opts.method == "stitch":
            return self._stitch(delta, base, k, schedule, opts)
        S = torch.rand(self.view.numel, generator=gen)
        best_mask, best, best_step = base, self.score(base, delta), 0
        history = [best]
        for step in range(1, opts.steps + 1):
            batches = schedule[(step - 1) * opts.batches : step * opts.batches]
            self.official_update(S, base, delta, batches, opts)
            rounded = rounded_official(S, base, opts.bias)
            history.append(self.score(rounded, delta))
            if history[-1] > best:
                best_mask, best, best_step = rounded, history[-1], step
        return MaskResult(best_mask, best_step, history)

    def official_update(
        self,
        S: torch.Tensor,
        base: torch.Tensor,
        delta: torch.Tensor,
        batches: list[list[int]],
        opts: LocalizeOptions,
    ) -> None:
        """One step of the official rule in place on S: gradient at θ̄(γ(S)) averaged over `batches`.

        No N-sized temporary: γ(S) is built in the weight vector and turned into θ̄ there, the gradient buffer
        becomes ∂L/∂θ⊙δ, and once the gradient is taken the weight vector is the scratch of the update (the next
        evaluation writes the weights again)."""
        gamma = self.weights
        with torch.no_grad():
            torch.sub(S, opts.bias, out=gamma).sigmoid_()
            on = torch.nonzero(base).flatten()
            gamma[on] = 1 - gamma[on]  # γ(S) = γ_base + (1 − 2γ_base)σ(S − b)
            gamma.mul_(delta).add_(self.theta0)  # θ̄ = θ₀ + γ⊙δ, in place
        grad_tau = self._grad(batches).mul_(delta)
        official_step(S, base, grad_tau, opts.lr, opts.bias, work=self.weights)

    def _stitch(self, delta, base, k: int, schedule, opts: LocalizeOptions) -> MaskResult:
        S = torch.where(base, 3.0, -3.0)
        work = torch.empty_like(S)
        history = [self.score(base, delta)]
        for step in range(1, opts.steps + 1):
            torch.sigmoid(S, out=work)
            self._set_relaxed(work, delta)
            grad = self._grad(schedule[(step - 1) * opts.batches : step * opts.batches])
            grad.mul_(delta).add_(opts.l1 / self.view.numel)  # ∂(L + l1·mean γ)/∂γ
            work.addcmul_(work, work, value=-1).mul_(grad).mul_(opts.lr)  # ⊙ σ'(S)
            S.sub_(work)
        mask = top_k_mask(S, k)  # σ is monotone: the top-k of σ(S) are the top-k of S
        history.append(self.score(mask, delta))
        return MaskResult(mask, opts.steps, history)

    def restore(self, flat: torch.Tensor) -> None:
        """Put given block weights back (θ_t to evaluate the fine-tuned model, θ₀ for the base)."""
        with torch.no_grad():
            self.weights.copy_(flat)

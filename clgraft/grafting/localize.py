"""Skill localization (docs/protocols.md): learn a sparse mask γ over the block parameters such that θ₀ + γ⊙τ keeps the
fine-tuned model's accuracy.

`official` follows the grafting paper's code (src/graft_trainer.py): γ_base = top-⌊sN⌋ of |τ| over all block
parameters at once; trainable S ~ U(0,1); relaxed mask γ(S) = γ_base + (1 − 2γ_base)⊙σ(S − b), b = 10; at each step
g = lr · mean over the batches of one pass over the whole train set of ∂L/∂θ⊙τ at θ̄(γ(S)),
S ← S − (1 − 2γ_base)⊙g⊙σ'(S − b); the mask is rounded after every step and scored as train + dev score (accuracy,
or F1 for tasks whose metric is F1, as the official code does for MRPC/QQP); the best-scoring rounded mask is kept,
the first step's always (γ_base itself is not a candidate: the official baseline score is 0). No sparsity term:
sparsity comes from γ_base and the few steps.
`scaled` is the same rule with lr fixed at the first step from the size of ∂L/∂θ⊙τ (`scaled_lr`), so that the
search moves after short fine-tunings too, where the official lr leaves every entry of S far below b; a rounded mask
larger than ⌊sN⌋ keeps its ⌊sN⌋ entries of largest γ(S) (`within_budget`).
`stitch` is Localize-and-Stitch (He et al. 2024): γ = σ(S) with an L1 penalty on γ, trained from S = ±3 at γ_base,
then the top-⌊sN⌋ of σ(S) is the mask.
`sparsify` places "sparsification as fine-tuning" beside grafting: the same learner, but the candidate change is
−θ₀ (setting the selected pre-trained weights to zero) instead of τ.
`disjoint` asks whether the searched region is the only good one: the `scaled` search run again with the entries of
a first region (the `scaled` region of the same sparsity, found before) excluded — τ set to zero there, so that they
are neither in γ_base nor ever moved by the update — giving a second region of at most ⌊sN⌋ entries, as the first,
that shares none with it (their L0 distance is the sum of their sizes, the most two masks of those sizes can be);
`localize_run` reads the first region from its graft file.
The controls search nothing; each is a region of ⌊sN⌋ entries chosen without looking at any score, to graft beside a
searched one at equal size: `top-tau` is γ_base itself (where fine-tuning moved most: the search's starting point,
as `--steps 0` of the official rule), `random` ⌊sN⌋ entries drawn uniformly with the search's seed, `bias` the
largest |τ| among the bias parameters alone (every bias entry where there are fewer than ⌊sN⌋: BitFit's region).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from clgraft.data.batches import Encoded, eval_batches
from clgraft.errors import ClgraftError
from clgraft.model.headed import BlockView, HeadedModel
from clgraft.training.loop import accuracy, f1, predict

SCORE_BATCH = 16  # small: the scored sets are few-shot, and larger batches' activations would set the memory peak

GRAD_TOKENS_CPU = 256
"""Padded tokens per batch of the gradient pass on a CPU: the GEMMs run as fast at 256 rows as at 1,024 (an MbPA
train set's pass took the same time at 256, 512 and 1,024 tokens a batch; benchmarks/README.md), and a batch's
stored activations (about 0.1 MiB a token for MiniLM) set the search's memory peak."""

GRAD_TOKENS_ACCELERATOR = 8192
"""Padded tokens per gradient batch on a GPU, where larger batches fill the device (not measured: a few-shot train
set in one or two batches)."""


Method = Literal["official", "scaled", "stitch", "sparsify", "disjoint", "top-tau", "random", "bias"]
CONTROLS = ("top-tau", "random", "bias")
"""The regions chosen without a search (the module's docstring)."""


@dataclass(frozen=True)
class LocalizeOptions:
    """Settings of one mask search."""

    sparsity: float
    method: Method = "official"
    steps: int = 20
    lr: float = 1e7
    scale: float = 0.1
    bias: float = 10.0
    batch_size: int = 8
    l1: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise ClgraftError(f"--sparsity {self.sparsity}: must be in (0, 1), e.g. 1e-4")
        if self.steps < 0 or self.batch_size < 1:
            raise ClgraftError("--steps must be ≥ 0 and the batch size ≥ 1")


def top_k_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k entries of largest |value| (as top_k_mask of |values|, without an N-sized copy on
    the sampled path)."""
    return top_k_mask(values, k, magnitude=True)


SAMPLE = 2**16
"""Entries sampled to bracket the k-th largest value (fixed positions per vector length)."""


def top_k_mask(scores: torch.Tensor, k: int, magnitude: bool = False) -> torch.Tensor:
    """Boolean mask of the k largest entries of a flat vector (of |entries| with `magnitude`): one global selection
    over all block parameters. Entries equal to the k-th largest value are taken lowest position first, so the mask
    is the same on every machine and path.

    On the CPU, for small k: a fixed sample of SAMPLE entries gives two values six standard errors either side of the
    sample's (1 − k/N) quantile; one compiled pass (`clgraft/grafting/_top_k_scan.py`) sets every entry at or above the
    upper one and marks those between the two, and the k-th largest value is found among the marked ones alone. Whenever
    the bracket misses (fewer than k entries above the lower value, or more than k above the upper one) it falls back to
    the exact selection over all N entries, so the result is exact either way. A full `torch.topk` over N entries costs
    4–9 copies of the vector on a CPU.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if scores.device.type == "cpu" and n >= 4 * SAMPLE and k < n // 8:
        mask = _bracketed_top_k(scores, k, magnitude)
        if mask is not None:
            return mask
    return _exact_top_k(scores.abs() if magnitude else scores, k)


def _exact_top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest entries over the whole vector, ties at the k-th value lowest position first."""
    flat = values.flatten()
    flat = flat.float() if flat.dtype in (torch.bfloat16, torch.float16) else flat
    kth = flat.kthvalue(flat.numel() - k + 1).values
    mask = flat > kth
    tied = torch.nonzero(flat == kth).flatten()
    mask[tied[: k - int(mask.sum())]] = True
    return mask


@functools.cache
def _sample_positions(n: int) -> np.ndarray:
    """SAMPLE fixed random positions of an n-entry vector, ascending (a sorted gather reads memory in order)."""
    return np.sort(torch.randint(0, n, (SAMPLE,), generator=torch.Generator().manual_seed(0)).numpy())


def _bracketed_top_k(scores: torch.Tensor, k: int, magnitude: bool) -> torch.Tensor | None:
    """top_k_mask by the sampled bracket on the CPU; None where the bracket misses the k-th value."""
    import numba  # numba and the kernels load on first use (~100 MiB of JIT runtime), not on `import clgraft`

    from clgraft.grafting._top_k_scan import band_entries, chunk_size, level_scale, split

    flat = scores.detach().contiguous().flatten()
    flat = (flat if flat.dtype in (torch.float32, torch.float64) else flat.float()).numpy()  # bf16 has no numpy type
    n = flat.shape[0]
    lo, hi = _bracket(flat, k, magnitude)
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)  # the runner's thread budget
    numba.set_num_threads(threads)
    marks = np.empty(-(-n // 8) * 8, dtype=np.uint8)
    marks[n:] = 0
    kind, size = flat.dtype.type, chunk_size(n, 4 * threads)
    flip, scale = kind(-1 if magnitude else 1), kind(level_scale(lo, hi))
    sure, band = split(flat, flip, kind(lo), kind(hi), scale, marks, size)
    need, in_band = k - int(sure.sum()), int(band.sum())
    if not 0 <= need <= in_band:
        return None
    positions, levels = np.empty(in_band, dtype=np.int64), np.empty(in_band, dtype=np.uint8)
    band_entries(marks, size, band, positions, levels)
    marks[positions] = _chosen(flat, magnitude, positions, levels, need)  # band marks become 1 or 0: a bool mask
    return torch.from_numpy(marks[:n].view(np.bool_))


def _bracket(flat: np.ndarray, k: int, magnitude: bool) -> tuple[float, float]:
    """Two values six standard errors either side of a fixed sample's (1 − k/N) quantile (the upper one infinite
    when it would lie past the sample's largest value)."""
    sample = flat[_sample_positions(flat.shape[0])]
    sample = np.abs(sample) if magnitude else sample
    p = k / flat.shape[0]
    slack = 6 * math.sqrt(p * (1 - p) / SAMPLE)
    low, high = max(math.floor((1 - p - slack) * SAMPLE), 0), math.ceil((1 - p + slack) * SAMPLE)
    cuts = np.partition(sample, low)  # then the upper cut among the entries above the lower one
    hi = np.partition(cuts[low:], high - low)[high - low] if high < SAMPLE else np.inf
    return float(cuts[low]), float(hi)


def _chosen(flat: np.ndarray, magnitude: bool, positions: np.ndarray, levels: np.ndarray, need: int) -> np.ndarray:
    """1 for the `need` largest band entries, else 0: every entry above the level the need-th falls in, and of that
    level (its scores read back: a few hundred entries) the largest, equal values lowest position first."""
    counts = np.bincount(levels, minlength=256)
    above_or_at = np.cumsum(counts[::-1])[::-1]  # entries at this level or higher
    level = int(np.flatnonzero(above_or_at >= need)[-1]) if need else 256
    chosen = (levels > level).astype(np.uint8)
    left = need - int(chosen.sum())
    if left:
        at = np.flatnonzero(levels == level)
        values = flat[positions[at]]
        values = np.abs(values) if magnitude else values
        kth = np.partition(values, len(values) - left)[len(values) - left]
        above = values > kth
        chosen[at[above]] = 1
        chosen[at[np.flatnonzero(values == kth)[: left - int(above.sum())]]] = 1  # ascending: lowest position first
    return chosen


def official_step(
    S: torch.Tensor,
    base: torch.Tensor,
    grad_tau: torch.Tensor,
    lr: float,
    bias: float,
    work: torch.Tensor | None = None,
) -> None:
    """One update of the official rule, in place: S ← S − (1 − 2γ_base)⊙(lr·∂L/∂θ⊙τ)⊙σ'(S − b).

    `work` is a scratch vector shaped like S (allocated when None); the sign flip makes one more temporary of S's
    size, which the learner keeps small by updating one parameter at a time.
    """
    work = torch.empty_like(S) if work is None else work
    torch.sub(S, bias, out=work).sigmoid_()
    work.addcmul_(work, work, value=-1)  # σ'(x) = σ(x) − σ(x)²
    work.mul_(grad_tau).mul_(lr)
    torch.where(base.bool(), work.neg(), work, out=work)  # (1 − 2γ_base) is −1 on the base entries, +1 elsewhere
    S.sub_(work)


def rounded_official(S: torch.Tensor, base: torch.Tensor, bias: float) -> torch.Tensor:
    """round(γ(S)) for γ = γ_base + (1 − 2γ_base)σ(S − b): γ_base flipped where σ(S − b) > 1/2, i.e. S > b."""
    return torch.gt(S, bias).logical_xor_(base)


def within_budget(rounded: torch.Tensor, S: torch.Tensor, base: torch.Tensor, bias: float, k: int) -> torch.Tensor:
    """The rounded mask cut to its k entries of largest γ(S) when it holds more than k (the `scaled` rule's only
    departure from the official rounding). The official rule has no sparsity term: once it moves at all, each step
    adds entries faster than it drops them (after a 50-step MiniLM fine-tuning a moving search grew a 1% mask to 7–9%
    in ten steps), so a region would no longer be the sparsity it was asked for."""
    if int(torch.count_nonzero(rounded)) <= k:
        return rounded
    gamma = torch.sub(S, bias).sigmoid_()
    gamma[base] = 1 - gamma[base]
    return top_k_mask(gamma, k)


@dataclass
class MaskResult:
    """The kept mask and how the search went: one entry per step (step 0 is γ_base, scored for the record)."""

    mask: torch.Tensor
    best_step: int
    search: list[dict]
    lr: float


@dataclass
class ScoredTask:
    """What a mask is learned and scored on: the task's head, its train and dev splits and its official score."""

    head: str
    label_offset: int
    train: Encoded
    dev: Encoded
    metric: str = "accuracy"


def split_score(model: HeadedModel, task: ScoredTask, split: Literal["train", "dev"], device) -> float:
    """The model's score on the task's train or dev split as the mask search scores a mask: accuracy, or F1 where
    the task's metric is F1."""
    data = task.train if split == "train" else task.dev
    logits = predict(model, task.head, data, SCORE_BATCH, device)
    labels = data.labels + task.label_offset
    if task.metric == "f1":
        return f1(logits, labels, positive=task.label_offset + 1)
    return accuracy(logits, labels)


def sigmoid_slope(x: float) -> float:
    """σ'(x) = σ(x)(1 − σ(x))."""
    s = 1 / (1 + math.exp(-x))
    return s * (1 - s)


def example_weights(batches: list[list[int]], n: int) -> torch.Tensor:
    """Each of n examples' weight in the mean over `batches` of the batch-mean losses: 1/(|B|·len(batches)) for an
    example in batch B, 0 for one in none (a last, smaller batch weighs its examples more, as the official loader
    does)."""
    weights = torch.zeros(n, dtype=torch.float64)
    for index in batches:
        weights[index] += 1 / (len(index) * len(batches))
    return weights.float()


def gradient_batches(
    task: ScoredTask, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The train set in length-sorted batches of at most GRAD_TOKENS_CPU padded tokens (GRAD_TOKENS_ACCELERATOR off
    the CPU), each as (example positions, input ids, attention mask, labels with the task's offset) on the device:
    collated once for every gradient of a search."""
    tokens = GRAD_TOKENS_CPU if device.type == "cpu" else GRAD_TOKENS_ACCELERATOR
    out = []
    for index in eval_batches(task.train, len(task.train), max_tokens=tokens):
        input_ids, mask, labels = task.train.collate(index)
        tensors = (torch.tensor(index), input_ids, mask, labels + task.label_offset)
        out.append(tuple(t.to(device) for t in tensors))
    return out


class MaskLearner:
    """Learns masks for one fine-tuned model: θ₀ and the candidate change over a body bound to flat vectors.

    Only the block parameters take gradients while it is open; `close()` (or leaving its `with` block) drops every
    gradient it bound and gives each parameter back the `requires_grad` it had, so nothing of the search reaches
    the next task's training.

    The train set is cut once into length-sorted gradient batches (collated on the device), which every step's
    gradient reuses: the official loss is a weighted sum over examples, so the batches it was averaged in need not
    be the ones it is computed in (`_grad`).
    """

    def __init__(self, model: HeadedModel, view: BlockView, theta0: torch.Tensor, task: ScoredTask, device):
        self.model, self.view, self.theta0, self.task, self.device = model, view, theta0, task, device
        self.flags = {p: p.requires_grad for p in model.parameters()}
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            params = dict(model.body.named_parameters())
            self.params = [params[name] for name in view.names]  # the model's own storage: no weight copy is made
            for p in self.params:
                p.requires_grad_(True)
            self.grads: torch.Tensor | None = view.bind_grads(model.body)
        except BaseException:
            self.close()
            raise
        self.grad_batches = gradient_batches(task, torch.device(device))

    def __enter__(self) -> MaskLearner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the bound gradient buffer and restore every parameter's requires_grad."""
        for p, flag in self.flags.items():
            p.grad = None
            p.requires_grad_(flag)
        self.grads = None

    def _pieces(self, *flats: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """Each block parameter with the matching views of flat vectors (parameter-shaped)."""
        return zip(self.params, *(self.view.split(f).values() for f in flats), strict=True)

    def weights(self) -> torch.Tensor:
        """The current block weights as one flat vector (a copy)."""
        return self.view.flatten(dict(zip(self.view.names, self.params, strict=True)))

    def set_mask(self, mask: torch.Tensor, delta: torch.Tensor) -> None:
        """Weights θ₀ + γ⊙δ for a boolean γ: θ₀ + δ where selected, θ₀ itself elsewhere."""
        with torch.no_grad():
            for p, t0, m, d in self._pieces(self.theta0, mask, delta):
                torch.where(m, t0 + d, t0, out=p)

    def _set_relaxed(self, gamma: torch.Tensor, delta: torch.Tensor) -> None:
        """Weights θ₀ + γ⊙δ for a real-valued γ."""
        with torch.no_grad():
            for p, t0, g, d in self._pieces(self.theta0, gamma, delta):
                torch.addcmul(t0, g, d, out=p)

    def _grad(self, batches: list[list[int]]) -> torch.Tensor:
        """∂L/∂θ at the current weights, in the gradient buffer, for the official loss of one epoch: the mean over
        `batches` of each batch's mean cross-entropy (dropout off: the official code scores in eval mode).

        That loss is Σ_i w_i·CE_i with w_i = 1/(|batch of i|·number of batches), so it is summed over the cached
        length-sorted batches instead, each example with its weight: the same gradient up to float rounding, with
        little padding, and no batch's activations re-computed (the small batches bound the memory)."""
        weights = example_weights(batches, len(self.task.train)).to(self.device)
        self.model.eval()
        self.grads.zero_()
        for index, input_ids, mask, labels in self.grad_batches:
            losses = F.cross_entropy(self.model(input_ids, mask, self.task.head), labels, reduction="none")
            losses.dot(weights[index]).backward()
        return self.grads

    def score(self, mask: torch.Tensor, delta: torch.Tensor) -> tuple[float, float]:
        """(train, dev) score of θ₀ + γ⊙δ for a boolean mask γ: accuracy, or F1 where the task's metric is F1."""
        self.set_mask(mask, delta)
        train, dev = (split_score(self.model, self.task, split, self.device) for split in ("train", "dev"))
        return train, dev

    def learn(
        self, delta: torch.Tensor, init: torch.Tensor, opts: LocalizeOptions, progress: bool = False, desc: str = ""
    ) -> MaskResult:
        """Search a mask of about ⌊sN⌋ entries for the candidate change δ (τ, or −θ₀ for sparsify), starting from
        the top-⌊sN⌋ entries of |init| (|τ|: where fine-tuning moved most); with `progress`, a bar over its steps
        labelled `desc`."""
        with tqdm(total=opts.steps, desc=desc or "mask search", leave=False, disable=not progress, unit="step") as bar:
            return self._learn(delta, init, opts, bar)

    def _epoch(self, gen: torch.Generator, batch_size: int) -> list[list[int]]:
        """The whole train set once, in seeded random batches: what the official code averages per mask step."""
        order = torch.randperm(len(self.task.train), generator=gen).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _record(
        self,
        step: int,
        mask: torch.Tensor,
        base: torch.Tensor,
        delta: torch.Tensor,
        last: tuple[torch.Tensor, dict] | None = None,
    ) -> dict:
        """Step `step`'s entry of the search, its mask scored on train and dev. `last` is the previous (mask, entry):
        an equal mask is the same model, so its scores are copied rather than computed again (the official rule
        often leaves the rounded mask as it was)."""
        if last is not None and torch.equal(mask, last[0]):
            train, dev = last[1]["train"], last[1]["dev"]
        else:
            train, dev = self.score(mask, delta)
        changed, size = int(torch.count_nonzero(mask ^ base)), int(torch.count_nonzero(mask))
        return {"step": step, "changed": changed, "size": size, "train": train, "dev": dev}

    def _learn(self, delta: torch.Tensor, init: torch.Tensor, opts: LocalizeOptions, bar: tqdm) -> MaskResult:
        k = math.floor(opts.sparsity * self.view.numel)
        if k < 1:
            raise ClgraftError(f"--sparsity {opts.sparsity} selects no entry of {self.view.numel} block parameters")
        base = top_k_magnitude(init, k)
        gen = torch.Generator().manual_seed(opts.seed)
        if opts.method in CONTROLS:
            mask = control_region(opts.method, base, init, k, self.view, gen)
            return MaskResult(mask, 0, [self._record(0, mask, base, delta)], 0.0)
        if opts.method == "stitch":
            return self._stitch(delta, base, k, gen, opts, bar)
        S = torch.rand(self.view.numel, generator=gen).to(delta.device)  # drawn on the CPU: the same S on any device
        search = [self._record(0, base, base, delta)]
        last = (base, search[0])
        # the official code keeps the first step's mask (its baseline score is 0) and never γ_base itself
        best_mask, best, best_step, lr = base, -math.inf, 0, opts.lr
        for step in range(1, opts.steps + 1):
            grad_tau = self.relaxed_gradient(S, base, delta, self._epoch(gen, opts.batch_size), opts.bias)
            if step == 1 and opts.method == "scaled":
                lr = scaled_lr(grad_tau, k, opts)
            with torch.no_grad():
                for p, s_, b, g in self._pieces(S, base, grad_tau):
                    official_step(s_, b, g, lr, opts.bias, work=p)
            rounded = rounded_official(S, base, opts.bias)
            if opts.method == "scaled":
                rounded = within_budget(rounded, S, base, opts.bias, k)
            search.append(self._record(step, rounded, base, delta, last))
            last = (rounded, search[-1])
            score = search[-1]["train"] + search[-1]["dev"]
            if score > best:
                best_mask, best, best_step = rounded, score, step
            bar.update()
        return MaskResult(best_mask, best_step, search, lr)

    def relaxed_gradient(
        self, S: torch.Tensor, base: torch.Tensor, delta: torch.Tensor, batches: list[list[int]], bias: float
    ) -> torch.Tensor:
        """∂L/∂θ⊙δ at θ̄(γ(S)) = θ₀ + γ(S)⊙δ, the loss averaged over `batches`, in the gradient buffer.

        No N-sized temporary: γ(S) is built in the weights and turned into θ̄ there; once the gradient is taken the
        weights are free to serve as the update's scratch (the next evaluation writes them again)."""
        with torch.no_grad():
            for p, s, b, t0, d in self._pieces(S, base, self.theta0, delta):
                torch.sub(s, bias, out=p).sigmoid_()
                torch.where(b, 1 - p, p, out=p)  # γ(S) = γ_base + (1 − 2γ_base)σ(S − b)
                p.mul_(d).add_(t0)  # θ̄ = θ₀ + γ⊙δ, in place
        return self._grad(batches).mul_(delta)

    def official_update(
        self,
        S: torch.Tensor,
        base: torch.Tensor,
        delta: torch.Tensor,
        batches: list[list[int]],
        opts: LocalizeOptions,
    ) -> None:
        """One step of the official rule in place on S, its gradient averaged over `batches`."""
        grad_tau = self.relaxed_gradient(S, base, delta, batches, opts.bias)
        with torch.no_grad():
            for p, s, b, g in self._pieces(S, base, grad_tau):
                official_step(s, b, g, opts.lr, opts.bias, work=p)

    def _stitch(self, delta, base, k: int, gen: torch.Generator, opts: LocalizeOptions, bar: tqdm) -> MaskResult:
        S = torch.where(base, 3.0, -3.0)
        work = torch.empty_like(S)
        search = [self._record(0, base, base, delta)]
        for _ in range(opts.steps):
            torch.sigmoid(S, out=work)
            self._set_relaxed(work, delta)
            grad = self._grad(self._epoch(gen, opts.batch_size))
            grad.mul_(delta).add_(opts.l1 / self.view.numel)  # ∂(L + l1·mean γ)/∂γ
            work.addcmul_(work, work, value=-1).mul_(grad).mul_(opts.lr)  # ⊙ σ'(S)
            S.sub_(work)
            bar.update()
        mask = top_k_mask(S, k)  # σ is monotone: the top-k of σ(S) are the top-k of S
        search.append(self._record(opts.steps, mask, base, delta, (base, search[0])))
        return MaskResult(mask, opts.steps, search, opts.lr)

    def restore(self, flat: torch.Tensor) -> None:
        """Put given block weights back (θ_t to evaluate the fine-tuned model, θ₀ for the base)."""
        with torch.no_grad():
            for p, f in self._pieces(flat):
                p.copy_(f)


def control_region(
    method: str, base: torch.Tensor, init: torch.Tensor, k: int, view: BlockView, gen: torch.Generator
) -> torch.Tensor:
    """A control's region (CONTROLS) of k entries: γ_base (`top-tau`, passed in as `base`), k uniformly random
    entries (`random`, drawn on the CPU from `gen`: the same region on any device), or the k of largest |init| among
    the bias parameters (`bias`, all of them where there are fewer)."""
    if method == "top-tau":
        return base
    if method == "random":
        return top_k_mask(torch.rand(view.numel, generator=gen), k).to(init.device)
    spans = [torch.arange(view.offsets[n], view.offsets[n] + view.sizes[n]) for n in view.names if n.endswith("bias")]
    if not spans:
        raise ClgraftError("--method bias: the model's blocks have no bias parameters")
    positions = torch.cat(spans).to(init.device)
    mask = torch.zeros(view.numel, dtype=torch.bool, device=init.device)
    mask[positions[top_k_magnitude(init[positions], min(k, len(positions)))]] = True
    return mask


def scaled_lr(grad_tau: torch.Tensor, k: int, opts: LocalizeOptions) -> float:
    """The `scaled` rule's learning rate, fixed at the first step: the official update with lr chosen so that an
    entry at the k-th largest |∂L/∂θ⊙τ| would move S by `scale`·b in one step from S = 0.

    The official lr (1e7) assumes a long fine-tuning: with |τ| ~ 1e-3 the update moves S by ≪ b and no entry
    crosses σ's threshold, so the search returns γ_base. Scaling lr to the size of ∂L/∂θ⊙τ makes the step size
    independent of how far fine-tuning moved the weights."""
    q = float(grad_tau[top_k_magnitude(grad_tau, k)].abs().min())
    if q == 0.0:
        return opts.lr
    return opts.scale * opts.bias / (sigmoid_slope(-opts.bias) * q)

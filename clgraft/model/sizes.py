"""A body's parameter counts read from its architecture alone — its config, built on the meta device, so no weights
are read — for the one memory rule (clgraft/methods/memory.py): what a method keeps is sized by how many parameters
training moves, which Linear layers a LoRA or PackNet covers, and how wide each head is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from clgraft.errors import ClgraftError
from clgraft.model.headed import BLOCK_PATTERN, resolve_model


@dataclass(frozen=True)
class BodySizes:
    """The parameter counts of a body (without heads)."""

    hidden: int
    """Width of the features every linear head reads."""
    blocks: int
    """Parameters of the transformer blocks (BLOCK_PATTERN): the flat vector grafting and merging work on."""
    total: int
    """Every parameter of the body: the blocks, the embeddings and their LayerNorm (and a masked-LM head's own)."""
    linear: dict[str, tuple[int, int]]
    """(in_features, out_features) of every Linear layer of the body, by module name."""

    def trained(self, freeze_embeddings: bool) -> int:
        """Parameters fine-tuning moves: the blocks alone when everything outside them stays at θ₀, else all."""
        return self.blocks if freeze_embeddings else self.total

    def head_parameters(self, head_sizes: list[int]) -> int:
        """Parameters of linear heads over the body's features with these numbers of outputs (weights and biases)."""
        return (self.hidden + 1) * sum(head_sizes)

    def linear_weights(self) -> int:
        """Weights (not biases) of the body's Linear layers: what PackNet prunes and assigns to tasks."""
        return sum(d_in * d_out for d_in, d_out in self.linear.values())

    def adapted(self, targets: str | list[str]) -> list[tuple[int, int]]:
        """(in, out) of the Linear layers a peft adapter with these target_modules goes into: a module whose name is a
        target or ends with '.' + a target (peft's rule for a list), every Linear for 'all-linear'."""
        if targets == "all-linear":
            return list(self.linear.values())
        names = [targets] if isinstance(targets, str) else targets
        return [shape for name, shape in self.linear.items() if any(name == t or name.endswith(f".{t}") for t in names)]


@lru_cache(maxsize=8)
def body_sizes(spec: str, masked_lm: bool = False) -> BodySizes:
    """The sizes of the body `load_backbone(spec, masked_lm)` loads, from its config alone (a local folder, the
    default package, or a hub model already in the local cache); a one-line error when the config is not here."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(resolve_model(spec), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ClgraftError(f"cannot read the architecture of model '{spec}': {str(e).splitlines()[0]}") from e
    with torch.device("meta"):  # shapes only: no memory is allocated and no weights are read
        if masked_lm:
            body = AutoModelForMaskedLM.from_config(config)
        else:
            body = AutoModel.from_config(config, add_pooling_layer=False)
    params = dict(body.named_parameters())
    return BodySizes(
        hidden=config.hidden_size,
        blocks=sum(p.numel() for n, p in params.items() if re.search(BLOCK_PATTERN, n)),
        total=sum(p.numel() for p in params.values()),
        linear={n: (m.in_features, m.out_features) for n, m in body.named_modules() if isinstance(m, nn.Linear)},
    )

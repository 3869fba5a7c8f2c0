"""Prompt-based fine-tuning inputs (LM-BFF, Gao et al. 2021): a task's template and label words, as the grafting
paper fine-tunes RoBERTa.

A template uses LM-BFF's own syntax (`run_experiment.sh` of princeton-nlp/LM-BFF), so its templates copy over
unchanged: parts between `*` are `cls`, `mask`, `sep`, `sep+`, a sentence `sent_i` with the variants `+sent_i`
(space before), `sent-_i` (last character dropped), `sentl_i` / `+sentl_i` / `sentl-_i` (first letter lower-case),
`sentu_i` / `+sentu_i` (upper-case); any other part is literal text with `_` for a space. Each part is tokenised on
its own and the ids concatenated, as `tokenize_multipart_input` does. A label word is one vocabulary token: a space
and the word (so RoBERTa's `Ġgreat`), unless it starts with `<`, `[`, `.` or `,` — LM-BFF's rule.

Departures (docs/methods.md): where the input is longer than max_length, the sentence parts are shortened (the
longest first) so that the mask is never cut off, where LM-BFF cuts the tail and relies on per-task sentence limits;
a mask token inside a sentence becomes the unknown token, so the template's mask is the only one; segment ids are
not passed to the model (clgraft feeds input ids and attention masks only, for plain inputs too).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clgraft.errors import ClgraftError

SPECIAL = ("cls", "mask", "sep", "sep+")
SENTENCE = re.compile(r"^(\+?)sent(l-|l|u|-)?_(\d+)$")
NO_SPACE_BEFORE = ("<", "[", ".", ",")


class Prompt(BaseModel):
    """A task's LM-BFF template and its label words (one per label, in the order of `labels`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(description="LM-BFF template, e.g. *cls**sent_0*_It_was*mask*.*sep+*")
    label_words: list[str] = Field(min_length=2, description="the word the mask predicts for each label")

    @field_validator("template")
    @classmethod
    def _one_mask(cls, template: str) -> str:
        parts = template.split("*")
        if parts.count("mask") != 1:
            raise ValueError("template: needs exactly one *mask* part")
        if not any(SENTENCE.match(p) for p in parts):
            raise ValueError("template: has no sentence part (*sent_0*, *+sent_1*, ...)")
        return template

    def sentences(self) -> list[int]:
        """The sentence indices the template reads."""
        return [int(m.group(3)) for p in self.template.split("*") if (m := SENTENCE.match(p))]


def _sentence_text(part: re.Match, texts: tuple[str, ...]) -> str:
    space, variant, index = part.group(1), part.group(2) or "", int(part.group(3))
    text = texts[index]
    if variant.startswith("l"):
        text = text[:1].lower() + text[1:]
    elif variant == "u":
        text = text[:1].upper() + text[1:]
    if variant.endswith("-"):
        text = text[:-1]
    return (" " if space else "") + text


def _parts(tokenizer, template: str, texts: tuple[str, ...]) -> list[tuple[list[int], bool]]:
    """(ids, is_sentence) for each part of the template filled with one example's texts."""
    special = {"cls": tokenizer.cls_token_id, "mask": tokenizer.mask_token_id, "sep": tokenizer.sep_token_id}
    special["sep+"] = special["sep"]
    out = []
    for part in template.split("*"):
        if not part:
            continue
        if part in SPECIAL:
            out.append(([special[part]], False))
        elif m := SENTENCE.match(part):
            ids = tokenizer.encode(_sentence_text(m, texts), add_special_tokens=False)
            out.append(([tokenizer.unk_token_id if i == special["mask"] else i for i in ids], True))
        else:
            out.append((tokenizer.encode(part.replace("_", " "), add_special_tokens=False), False))
    return out


def _fit(parts: list[tuple[list[int], bool]], max_length: int) -> list[int]:
    """The parts concatenated, with sentence parts shortened longest-first until the whole fits max_length."""
    lengths = [len(ids) for ids, _ in parts]
    excess = sum(lengths) - max_length
    sentences = [i for i, (_, is_sentence) in enumerate(parts) if is_sentence]
    if excess > sum(lengths[i] for i in sentences):
        raise ClgraftError(f"the template alone is longer than max_length {max_length}; raise --max-length")
    while excess > 0:
        longest = max(sentences, key=lambda i: lengths[i])
        lengths[longest] -= 1
        excess -= 1
    return [t for (ids, _), n in zip(parts, lengths, strict=True) for t in ids[:n]]


def prompt_ids(tokenizer, prompt: Prompt, texts: tuple[str, ...], max_length: int) -> list[int]:
    """One example's texts put into the template and tokenised LM-BFF's way: one mask token, ≤ max_length ids."""
    if tokenizer.mask_token_id is None:
        raise ClgraftError("--head prompt needs a tokenizer with a mask token (a masked-LM model)")
    return _fit(_parts(tokenizer, prompt.template, texts), max_length)


def label_word_ids(tokenizer, prompt: Prompt) -> list[int]:
    """The vocabulary id of each label word (LM-BFF: a space and the word must be one token)."""
    ids = []
    for word in prompt.label_words:
        if word.startswith(NO_SPACE_BEFORE):
            tokens = [word]
        else:
            tokens = tokenizer.tokenize(" " + word)
        token_id = tokenizer.convert_tokens_to_ids(tokens[0]) if len(tokens) == 1 else None
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ClgraftError(f"label word '{word}' is not one token of this model's vocabulary ({tokens})")
        ids.append(token_id)
    if len(set(ids)) != len(ids):
        raise ClgraftError(f"label words {prompt.label_words} map to the same token twice")
    return ids

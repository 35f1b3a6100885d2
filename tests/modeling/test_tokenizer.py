"""The shipped tokenizer: reproducible, lossless, verdict slot, templates without train/infer drift."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from forenx.modeling.tokenizer import (
    CHAT_TEMPLATES,
    SPECIAL_TOKENS,
    TEMPLATE_SPECIAL_TOKENS,
    TOKENIZER_DIR,
    build_tokenizer,
    load_tokenizer,
)
from forenx.prompts import IMAGE_TOKEN, build_messages
from forenx.schema import ANSWER_PREFIX, VERDICT_WORDS, Quadruple, render_answer

ANSWER = render_answer("fake", [Quadruple("Noise level mismatch", "The sky is cleaner than the roof.",
                                          "One camera gives one noise level.", 65)], "Spliced sky.")


def test_shipped_files_equal_a_fresh_build(tmp_path):
    fresh = build_tokenizer(tmp_path)
    shipped = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    assert json.loads(fresh.backend_tokenizer.to_str()) == shipped, (
        "forenx/assets/tokenizer/tokenizer.json is stale: run `python -m forenx.modeling.tokenizer`")
    assert (tmp_path / "tokenizer_config.json").read_text() == (TOKENIZER_DIR / "tokenizer_config.json").read_text()
    assert 2000 <= len(fresh) <= 4000


@pytest.mark.parametrize("text", [
    ANSWER,
    "  leading spaces,\ttabs,\r\nCRLF and trailing   ",
    "Ünïcödé: 日本語のテキスト, emoji 🙂🔍, Ελληνικά, ñ, ß, \u200b zero-width",
    "<image>\nthe image token and <|im_end|> special tokens survive",
    "{'single': 'quotes', \"verdict\":\"fake\"}\n\n\n```json\n{}\n```",
    "",
])
def test_decode_encode_is_lossless(text):
    tok = load_tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_verdict_word_is_its_own_token_after_the_prefix():
    tok = load_tokenizer()
    prefix_ids = tok.encode(ANSWER_PREFIX)
    verdict_ids = set()
    for word in VERDICT_WORDS:
        ids = tok.encode(ANSWER_PREFIX + word + '", "anomalies": []')
        assert ids[: len(prefix_ids)] == prefix_ids
        assert tok.decode(ids[len(prefix_ids)]) == word, f"{word!r} is split into several tokens"
        verdict_ids.add(ids[len(prefix_ids)])
    assert len(verdict_ids) == 2


@pytest.mark.parametrize("template", sorted(CHAT_TEMPLATES))
def test_special_tokens_and_ids_are_the_same_for_every_template(template):
    tok = load_tokenizer(template)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.eos_token == TEMPLATE_SPECIAL_TOKENS[template]["eos_token"]
    assert tok.pad_token == "<pad>" and tok.padding_side == "left"
    assert tok.image_token == IMAGE_TOKEN
    assert tok.encode(IMAGE_TOKEN) == [tok.convert_tokens_to_ids(IMAGE_TOKEN)]
    # No token is added behind the template's back (the template writes bos itself).
    assert tok("ab")["input_ids"] == tok.encode("ab", add_special_tokens=False)


@pytest.mark.parametrize("template", sorted(CHAT_TEMPLATES))
def test_generation_prompt_is_the_exact_token_prefix_of_the_training_chat(template):
    tok = load_tokenizer(template)
    prompt_ids = tok.apply_chat_template(build_messages(None), add_generation_prompt=True)["input_ids"]
    full = tok.apply_chat_template(build_messages(ANSWER), return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = full["input_ids"], full["assistant_masks"]
    assert ids[: len(prompt_ids)] == prompt_ids
    answer_ids = tok.encode(ANSWER + tok.eos_token)
    assert ids[len(prompt_ids): len(prompt_ids) + len(answer_ids)] == answer_ids
    # The {% generation %} span (TRL's assistant_only_loss) is exactly the answer and its end token.
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == ANSWER + tok.eos_token
    assert sum(mask) == len(answer_ids)
    assert tok.decode(ids).count(IMAGE_TOKEN) == 1


@pytest.mark.parametrize("template", sorted(CHAT_TEMPLATES))
def test_templates_render_without_system_and_with_string_content(template):
    tok = load_tokenizer(template)
    messages = [{"role": "user", "content": "Real?"}, {"role": "assistant", "content": ANSWER}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert "Real?" in text and ANSWER + tok.eos_token in text
    listed = build_messages(ANSWER, system=None, question="Real?")
    assert tok.apply_chat_template(listed, tokenize=False).replace(IMAGE_TOKEN + "\n", "") == text


@pytest.mark.parametrize("template", sorted(CHAT_TEMPLATES))
def test_saved_folder_loads_back_with_auto_tokenizer(tmp_path, template):
    tok = load_tokenizer(template)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.chat_template == CHAT_TEMPLATES[template]
    assert (again.eos_token, again.bos_token, again.padding_side) == (tok.eos_token, tok.bos_token, "left")
    messages = build_messages(ANSWER)
    assert again.apply_chat_template(messages)["input_ids"] == tok.apply_chat_template(messages)["input_ids"]


def test_shipped_folder_loads_with_auto_tokenizer():
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    assert tok.chat_template == CHAT_TEMPLATES["chatml"]
    assert tok.encode(ANSWER) == load_tokenizer().encode(ANSWER)


def test_unknown_template_is_named():
    with pytest.raises(ValueError, match="unknown chat template 'alpaca'.*chatml"):
        load_tokenizer("alpaca")

"""The ForenX tokenizer: a small byte-level BPE shipped with the package, and its chat templates.

The tokenizer is used by the tiny models (tests, demos, the default ``forenx explain`` model); a
model built on a real LM (Vicuna, Llama, Qwen) keeps that LM's own tokenizer and may take one of
:data:`CHAT_TEMPLATES`. The shipped files in ``forenx/assets/tokenizer/`` are what
:func:`build_tokenizer` writes (``python -m forenx.modeling.tokenizer`` regenerates them; a test
checks the shipped ``tokenizer.json`` equals a fresh build), so loading needs no training.

Pre-tokenisation (one regex, GPT-2 style, then byte-level):

* letters, digits and punctuation never share a pre-token, so after ``{"verdict": "`` the
  verdict word is always one token of its own (the probability mapper reads its logit);
* unlike GPT-2, punctuation does not take the space before it and every newline is a pre-token
  of its own. Whitespace that ends a prompt is therefore split the same way whether the answer
  follows (training) or not (generation): the prompt tokens are identical in both, and the answer
  starts on a token boundary in every template ("tokenization mismatch" cannot happen here).

Byte-level with no normaliser: ``decode(encode(text)) == text`` for any text.

Special tokens keep the same ids for every template; a template only changes ``chat_template``,
``bos_token`` and ``eos_token`` (the token that closes the assistant turn, see
:data:`TEMPLATE_SPECIAL_TOKENS`). Padding is on the LEFT by default, which batched generation
needs; the training collator pads on the right explicitly.

>>> tok = load_tokenizer()
>>> tok.decode(tok.encode("Seams, halos & 6 fingers!")) == "Seams, halos & 6 fingers!"
True
>>> tok.eos_token, tok.padding_side
('<|im_end|>', 'left')
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from forenx.prompts import FORENSIC_ATTRIBUTES, IMAGE_TOKEN, SYSTEM_PROMPT, build_messages, forensic_question
from forenx.schema import ANSWER_PREFIX, VERDICT_WORDS, Quadruple, render_answer

__all__ = [
    "CHAT_TEMPLATES",
    "DEFAULT_TEMPLATE",
    "PAD_TOKEN",
    "PRETOKENIZE_PATTERN",
    "SPECIAL_TOKENS",
    "TEMPLATE_SPECIAL_TOKENS",
    "TOKENIZER_DIR",
    "VOCAB_SIZE",
    "apply_template",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_corpus",
]

#: Where the shipped tokenizer lives (inside the package).
TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
CORPUS_FILE = TOKENIZER_DIR / "corpus.txt"

VOCAB_SIZE = 2560
PAD_TOKEN = "<pad>"

#: Every special token, in id order (ids 0..len-1 are fixed for all templates).
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    "<s>", "</s>",                                   # vicuna (LLaVA-1.5)
    IMAGE_TOKEN,
    "<|im_start|>", "<|im_end|>",                    # chatml (Qwen)
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # llama3
)

#: GPT-2's pattern with two changes (see the module docstring): punctuation runs do not absorb a
#: leading space, and newlines are isolated.
PRETOKENIZE_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|[^\s\p{L}\p{N}]+|\n|[^\S\n]+"

# Templates render the transformers multimodal format of forenx.prompts.build_messages (content
# lists of {"type": "image"} / {"type": "text"}; plain string content works too). The image item
# becomes "<image>\n". The assistant's text is emitted exactly, inside {% generation %} so that
# return_assistant_tokens_mask (TRL's assistant_only_loss) sees the answer and its end token.
_CONTENT = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for item in content -%}"
    "{%- if item['type'] == 'image' -%}{{ '" + IMAGE_TOKEN + "\\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

_CHATML = _CONTENT + (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ render(message['content']) }}{{ '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}{{ render(message['content']) }}{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_LLAMA3 = _CONTENT + (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ render(message['content']) }}{{ '<|eot_id|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ render(message['content']) }}{{ '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

# LLaVA-1.5 (conv_vicuna_v1): "<s>SYSTEM USER: <image>\nQUESTION ASSISTANT: ANSWER</s>". The
# generation prompt ends with "ASSISTANT: " (with the space) so it is exactly the training prefix;
# LLaVA's own "ASSISTANT:" leaves the space to the answer's first token, a train/infer mismatch.
_VICUNA = _CONTENT + (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ render(message['content']) + ' ' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}{{ render(message['content']) }}{{ ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' }}{% generation %}{{ render(message['content']) }}{{ '</s>' }}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT: ' }}{%- endif -%}"
)

#: Chat templates by name. All render build_messages() output and support add_generation_prompt.
CHAT_TEMPLATES: dict[str, str] = {"chatml": _CHATML, "llama3": _LLAMA3, "vicuna": _VICUNA}

#: bos / eos per template; eos is the token that closes the assistant turn (generation stops there,
#: and it is the one token after the answer that training learns).
TEMPLATE_SPECIAL_TOKENS: dict[str, dict[str, str | None]] = {
    "chatml": {"bos_token": None, "eos_token": "<|im_end|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "vicuna": {"bos_token": "<s>", "eos_token": "</s>"},
}

DEFAULT_TEMPLATE = "chatml"

# Anomaly names the corpus renders answers with (joined with the phrases of corpus.txt).
_ANOMALY_NAMES = (
    "Copy-move duplication", "Spliced object", "Inpainting-style smoothing", "Resampling grid",
    "Upsampling artifacts", "Noise level mismatch", "Double JPEG compression", "Lighting mismatch",
    "Colour mismatch", "Blur mismatch", "Clone-stamp repetition", "Boundary halo", "Blending seam",
    "Texture inconsistency", "Anatomical error", "Shadow direction", "Reflection mismatch",
    "Perspective error", "Garbled text", "Missing sensor noise", "Metadata: generator parameters",
    "Spectral peaks", "Extra finger", "Asymmetric eyes", "Impossible structure",
)


def _corpus_phrases() -> list[str]:
    lines = CORPUS_FILE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def tokenizer_corpus() -> list[str]:
    """The training texts: corpus.txt, the prompts, and answers rendered by forenx.schema.

    Deterministic: the same list on every call and machine.

    >>> corpus = tokenizer_corpus()
    >>> any(text.startswith('{"verdict": "fake"') for text in corpus)
    True
    """
    phrases = _corpus_phrases()
    texts = list(phrases)
    texts += [SYSTEM_PROMPT, forensic_question()] * 20
    texts += [f"{name}: {what}" for name, what in FORENSIC_ATTRIBUTES]
    # Answers in the exact rendered format: both verdicts, 0-3 anomalies, severities over the range.
    for i in range(200):
        verdict = VERDICT_WORDS[i % 2]
        n = 0 if verdict == "real" else 1 + i % 3
        anomalies = [
            Quadruple(_ANOMALY_NAMES[(i + k) % len(_ANOMALY_NAMES)], phrases[(3 * i + k) % len(phrases)],
                      phrases[(7 * i + 2 * k + 1) % len(phrases)], severity=(13 * i + 29 * k) % 101)
            for k in range(n)
        ]
        texts.append(render_answer(verdict, anomalies, phrases[(5 * i) % len(phrases)]))
    # The templates' own words (roles, headers) so they get tokens of their own.
    for name in CHAT_TEMPLATES:
        texts.append(apply_template(build_messages(ANSWER_PREFIX + "real\"}"), template=name))
    return texts


def _template_environment_tokens(template: str) -> dict[str, str]:
    bos = TEMPLATE_SPECIAL_TOKENS[template]["bos_token"]
    return {"bos_token": bos or "", "eos_token": TEMPLATE_SPECIAL_TOKENS[template]["eos_token"] or ""}


def apply_template(messages: list[dict], *, template: str = DEFAULT_TEMPLATE,
                   add_generation_prompt: bool = False) -> str:
    """Render messages with a named template, without a tokenizer (used to build the corpus).

    >>> apply_template(build_messages(None, system=None, question="Real?"), template="vicuna",
    ...                add_generation_prompt=True)
    '<s>USER: <image>\\nReal? ASSISTANT: '
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    if template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; choose one of {sorted(CHAT_TEMPLATES)}")
    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=CHAT_TEMPLATES[template],
        add_generation_prompt=add_generation_prompt, **_template_environment_tokens(template))
    return rendered[0]


def build_tokenizer(out_dir: str | Path | None = None, *, vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on :func:`tokenizer_corpus` (deterministic) and wrap it.

    With ``out_dir`` the tokenizer is saved there (``save_pretrained``, default template).
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tokenizer = _wrap(backend, DEFAULT_TEMPLATE)
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def _wrap(backend: Tokenizer, template: str) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD_TOKEN, image_token=IMAGE_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t != PAD_TOKEN],
        padding_side="left", clean_up_tokenization_spaces=False, model_max_length=4096,
        chat_template=CHAT_TEMPLATES[template], **TEMPLATE_SPECIAL_TOKENS[template],
    )


def load_tokenizer(template: str = DEFAULT_TEMPLATE, path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The shipped tokenizer (or one saved at ``path``) with the named chat template.

    The template sets ``chat_template``, ``bos_token`` and ``eos_token``; the vocabulary and every
    special token id are the same for all templates.

    >>> tok = load_tokenizer("vicuna")
    >>> tok.apply_chat_template(build_messages(None, system=None, question="Real?"), tokenize=False,
    ...                         add_generation_prompt=True)
    '<s>USER: <image>\\nReal? ASSISTANT: '
    >>> tok.eos_token, tok.convert_tokens_to_ids(tok.image_token)
    ('</s>', 3)
    """
    if template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; choose one of {sorted(CHAT_TEMPLATES)}")
    folder = Path(path) if path is not None else TOKENIZER_DIR
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"{tokenizer_file} not found; regenerate the shipped tokenizer with "
            "`python -m forenx.modeling.tokenizer`")
    return _wrap(Tokenizer.from_file(str(tokenizer_file)), template)


def main() -> None:
    """Regenerate forenx/assets/tokenizer/ (``python -m forenx.modeling.tokenizer``)."""
    tokenizer = build_tokenizer(TOKENIZER_DIR)
    print(json.dumps({"folder": str(TOKENIZER_DIR), "vocab_size": len(tokenizer)}))


if __name__ == "__main__":
    main()

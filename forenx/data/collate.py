"""Conversations: a record rendered into the chat, and batches of them with the prompt masked out.

:func:`render_record` is the ONE place a record becomes chat text (system + forensic question +
image placeholder, then the answer of :meth:`Record.answer`), through
:func:`forenx.prompts.build_messages` and the processor's chat template. :class:`ForensicChatCollator`
batches records with their images for any processor with LLaVA's contract
(``processor(text=[...], images=[...], padding=True, return_tensors="pt")`` returning
``input_ids`` with the image placeholder expanded, ``attention_mask`` and ``pixel_values``).

Labels are -100 everywhere except the answer tokens and the end-of-turn token that closes the
assistant turn (the tokenizer's ``eos_token``). The span is found exactly, not by counting tokens
of separately tokenised pieces: the generation prompt must be a text prefix of the training chat,
and the tokens of answer + end (+ what the template writes after it) must be exactly the last real
tokens of the row. Anything else (a template whose prompt differs between training and inference,
a tokenizer that merges the prompt's last characters into the answer) raises
:class:`ChatTemplateError` naming the record: LLaVA's "tokenization mismatch" that silently zeroes
the loss cannot happen.

Training batches are padded on the right; ``prompt_only=True`` (inference, GRPO) pads on the left
and its prompt tokens are exactly the training rows' prompt tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature

from forenx.data.io import resolve_in_root
from forenx.data.records import Record
from forenx.images import ImageLoadError, load_image
from forenx.prompts import IMAGE_TOKEN, SYSTEM_PROMPT, build_messages

__all__ = [
    "IGNORE_INDEX",
    "ChatTemplateError",
    "ForensicChatCollator",
    "RenderedChat",
    "SequenceTooLongError",
    "chat_lengths",
    "pair_key",
    "render_record",
]

#: Label value ignored by the loss (PyTorch's cross-entropy default and transformers' convention).
IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    """The chat template or the tokenizer does not let the answer be found exactly."""


class SequenceTooLongError(ValueError):
    """A record does not fit ``max_length``; the message names the record and the fix."""


@dataclass(frozen=True)
class RenderedChat:
    """One record as chat text, split where the labels start and end.

    ``prompt`` ends with the generation prompt; ``text`` is what training tokenises.
    """

    record_id: str
    prompt: str
    answer: str = ""
    #: The end-of-turn token closing the answer (learnt); "" in prompt-only mode.
    end: str = ""
    #: What the template writes after the end token (e.g. chatml's "\n"); not learnt.
    tail: str = ""

    @property
    def text(self) -> str:
        return self.prompt + self.answer + self.end + self.tail


def _tokenizer_of(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def render_record(record: Record, processor: Any, *, prompt_only: bool = False,
                  system: str | None = SYSTEM_PROMPT, question: str | None = None) -> RenderedChat:
    """Render ``record`` with the chat template of ``processor`` (a processor or a tokenizer).

    ``prompt_only=True`` renders the conversation up to the generation prompt (inference, GRPO;
    the record needs no label). Otherwise the record's answer follows and the template must write
    exactly ``prompt + answer + eos_token + tail``; :class:`ChatTemplateError` says what differs.

    >>> from forenx.modeling.tokenizer import load_tokenizer
    >>> chat = render_record(Record(id="r1", image="a.png", label="real"), load_tokenizer("vicuna"),
    ...                      system=None, question="Real?")
    >>> chat.prompt, chat.answer, chat.end
    ('<s>USER: <image>\\nReal? ASSISTANT: ', '{"verdict": "real", "anomalies": [], "summary": ""}', '</s>')
    """
    tokenizer = _tokenizer_of(processor)
    chat_template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if not chat_template:
        raise ChatTemplateError(f"{type(processor).__name__} has no chat template; load the tokenizer with "
                                "forenx.modeling.tokenizer.load_tokenizer(template) or set processor.chat_template")

    def apply(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)

    prompt = apply(build_messages(None, system=system, question=question), True)
    if prompt_only:
        return RenderedChat(record.id, prompt)
    answer = record.answer()
    full = apply(build_messages(answer, system=system, question=question), False)
    end = tokenizer.eos_token or ""
    where = f"record {record.id!r}: chat template of {type(tokenizer).__name__}"
    if not full.startswith(prompt):
        raise ChatTemplateError(
            f"{where}: the generation prompt is not a prefix of the training chat, so the model would be "
            f"trained on a prompt it never sees at inference.\n  generation prompt ends: {prompt[-60:]!r}\n"
            f"  training chat there:    {full[len(prompt) - 60: len(prompt)]!r}")
    rest = full[len(prompt):]
    if not rest.startswith(answer):
        raise ChatTemplateError(f"{where}: the answer does not follow the generation prompt verbatim "
                                f"(template writes {rest[:60]!r}...); the template must emit the text as is")
    rest = rest[len(answer):]
    if not end or not rest.startswith(end):
        raise ChatTemplateError(
            f"{where}: the answer is not closed by the eos token {end!r} (template writes {rest[:30]!r}); "
            "set tokenizer.eos_token to the template's end-of-turn token")
    return RenderedChat(record.id, prompt, answer, end, rest[len(end):])


def pair_key(record_id: str, meta: Mapping[str, Any]) -> str:
    """What a forgery and its untouched original share: the forgery's id (a paired original names it
    in ``meta["original_of"]``, ForgerySynth ``--paired``); any other record's own id.

    >>> pair_key("fs-2", {"original_of": "fs-1"}), pair_key("fs-1", {})
    ('fs-1', 'fs-1')
    """
    return meta.get("original_of") or record_id


def _as_record(example: Any) -> Record:
    if isinstance(example, Record):
        return example
    if isinstance(example, Mapping):
        # A datasets row (forenx.data.io.record_features): meta is a JSON string there, the image a
        # path/bytes cell or a decoded PIL image (the chat does not read it).
        row = {k: v for k, v in example.items() if k not in ("image", "meta")}
        row["image"] = "<in memory>"
        meta = example.get("meta")
        row["meta"] = json.loads(meta) if isinstance(meta, str) and meta else (meta or {})
        try:
            return Record.from_dict(row)
        except ValueError as exc:
            raise ValueError(f"example {example.get('id', '?')!r} is not a record: {exc}") from exc
    raise TypeError(f"expected a Record or a record row (dict), got {type(example).__name__}")


def _image_of(example: Any, data_root: Path | None) -> Image.Image:
    record_id = example.id if isinstance(example, Record) else example.get("id", "?")
    try:
        return _decode(example.image if isinstance(example, Record) else example.get("image"), data_root, record_id)
    except ImageLoadError as exc:
        raise ImageLoadError(f"record {record_id!r}: {exc.source}", exc.reason) from exc


def _decode(cell: Any, data_root: Path | None, record_id: str) -> Image.Image:
    if isinstance(cell, Image.Image):
        return load_image(cell)
    if isinstance(cell, Mapping):  # datasets Image(decode=False) cell: absolute path and/or bytes
        return load_image(cell.get("bytes") or cell["path"])
    if isinstance(cell, (str, os.PathLike)):
        path = Path(cell)
        if not path.is_absolute():
            if data_root is None:
                raise ValueError(f"record {record_id!r}: image path {str(cell)!r} is relative; "
                                 "pass data_root= (the folder the paths are relative to)")
            path = resolve_in_root(data_root, str(cell))
        return load_image(path)
    raise ValueError(f"record {record_id!r}: no image (got {type(cell).__name__})")


class ForensicChatCollator:
    """Batch records for a LLaVA-style processor: ``input_ids``, ``attention_mask``,
    ``pixel_values`` (and whatever else the processor returns) plus ``labels`` for training.

    Examples are :class:`Record` objects (images relative to ``data_root``) or rows of
    :func:`forenx.data.io.records_to_dataset` (undecoded or decoded by ``decode_images``).

    Before a batch is returned every record is checked: one ``<image>`` placeholder per image, the
    expanded length within ``max_length`` (else :class:`SequenceTooLongError` names the record;
    image tokens are never cut, and only with ``truncate_answer=True`` is the answer's tail cut),
    and the answer span exact (:class:`ChatTemplateError`).

    ``prompt_only=True``: conversations end at the generation prompt, padded on the left, no labels
    (generation, GRPO). Records need no label then.

    ``pair_ids=True``: the batch also has ``pair_ids`` ``(B,)``, equal for a forgery and its
    untouched original (a real record whose ``meta["original_of"]`` is the forgery's id; see
    ForgerySynth's ``--paired``), distinct otherwise.
    """

    def __init__(self, processor: Any, data_root: str | os.PathLike | None = None, *,
                 max_length: int | None = None, prompt_only: bool = False, truncate_answer: bool = False,
                 system: str | None = SYSTEM_PROMPT, question: str | None = None, pair_ids: bool = False):
        self.processor = processor
        self.tokenizer = _tokenizer_of(processor)
        self.data_root = Path(data_root) if data_root is not None else None
        self.max_length = max_length
        self.prompt_only = prompt_only
        self.truncate_answer = truncate_answer
        self.system, self.question = system, question
        self.pair_ids = pair_ids
        self.image_token = getattr(processor, "image_token", None) or IMAGE_TOKEN
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self._prompt_ids: dict[str, list[int]] = {}

    def render(self, record: Record) -> RenderedChat:
        return render_record(record, self.processor, prompt_only=self.prompt_only, system=self.system,
                             question=self.question)

    def __call__(self, examples: Sequence[Any]) -> BatchFeature:
        records = [_as_record(example) for example in examples]
        chats = [self.render(record) for record in records]
        for chat in chats:
            placeholders = chat.text.count(self.image_token)
            if placeholders != 1:
                raise ValueError(f"record {chat.record_id!r}: {placeholders} {self.image_token!r} placeholders "
                                 "in the chat for 1 image; remove the placeholder from the question text")
            if not self.prompt_only:
                self._check_prompt_tokens(chat)
        images = [_image_of(example, self.data_root) for example in examples]
        # The template writes bos and every other special token itself: the tokenizer adds none.
        batch = self.processor(text=[chat.text for chat in chats], images=images, padding=True,
                               return_tensors="pt", padding_side="left" if self.prompt_only else "right",
                               add_special_tokens=False)
        if self.prompt_only:
            self._check_lengths(batch, chats, spans=[(int(n), 0) for n in batch["attention_mask"].sum(dim=1)])
            return batch
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        spans = [self._label_row(batch, labels, row, chat) for row, chat in enumerate(chats)]
        batch["labels"] = labels
        self._check_lengths(batch, chats, spans)
        if self.pair_ids:
            keys = [pair_key(record.id, record.meta) for record in records]
            first = {key: i for i, key in reversed(list(enumerate(keys)))}
            batch["pair_ids"] = torch.tensor([first[key] for key in keys])
        return batch

    def _check_prompt_tokens(self, chat: RenderedChat) -> None:
        # The training row must start with exactly the tokens a prompt-only rendering gets.
        prompt_ids = self._prompt_ids.get(chat.prompt)
        if prompt_ids is None:
            prompt_ids = self._prompt_ids[chat.prompt] = self.tokenizer.encode(chat.prompt, add_special_tokens=False)
        ids = self.tokenizer.encode(chat.text, add_special_tokens=False)
        if ids[: len(prompt_ids)] != prompt_ids:
            raise ChatTemplateError(
                f"record {chat.record_id!r}: the tokenizer merges the end of the prompt with the answer "
                f"({self.tokenizer.convert_ids_to_tokens(ids[len(prompt_ids) - 2: len(prompt_ids) + 2])}); "
                "the prompt tokens at inference would differ from training. Use a template whose generation "
                "prompt ends on a token boundary (forenx.modeling.tokenizer.CHAT_TEMPLATES do)")

    def _label_row(self, batch: BatchFeature, labels: torch.Tensor, row: int, chat: RenderedChat
                   ) -> tuple[int, int]:
        """Unmask the answer + end tokens of one right-padded row; return (prompt tokens, learnt tokens)."""
        length = int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row, :length].tolist()
        learnt = self.tokenizer.encode(chat.answer + chat.end, add_special_tokens=False)
        closing = self.tokenizer.encode(chat.answer + chat.end + chat.tail, add_special_tokens=False)
        start = length - len(closing)
        if closing[: len(learnt)] != learnt or start < 0 or ids[start:] != closing:
            raise ChatTemplateError(
                f"record {chat.record_id!r}: the answer's tokens in the batch differ from the answer tokenised "
                f"alone (tokenization mismatch): batch ends {self.tokenizer.convert_ids_to_tokens(ids[-8:])}, "
                f"expected {self.tokenizer.convert_ids_to_tokens(closing[-8:])}")
        labels[row, start: start + len(learnt)] = torch.tensor(learnt)
        return start, len(learnt)

    def _check_lengths(self, batch: BatchFeature, chats: list[RenderedChat], spans: list[tuple[int, int]]) -> None:
        """``spans``: (prompt tokens, answer tokens) per row."""
        if self.max_length is None:
            return
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        if max(lengths) <= self.max_length:
            return
        for row, (chat, length, (prompt, answer)) in enumerate(zip(chats, lengths, spans)):
            if length <= self.max_length or (self.truncate_answer and not self.prompt_only
                                              and prompt < self.max_length):
                continue
            image_tokens = int((batch["input_ids"][row] == self.image_token_id).sum())
            fix = ("raise max_length or shorten the answer, or pass truncate_answer=True to cut the answer's tail"
                   if not self.truncate_answer and not self.prompt_only else "raise max_length")
            raise SequenceTooLongError(
                f"record {chat.record_id!r}: {length} tokens ({image_tokens} image tokens, prompt {prompt}, "
                f"answer {answer}) exceed max_length={self.max_length}; {fix}. Image tokens are never cut.")
        # Right padding: cutting columns cuts only the over-long rows' answer tails.
        shape = batch["input_ids"].shape
        for key, value in list(batch.items()):
            if isinstance(value, torch.Tensor) and value.shape == shape:
                batch[key] = value[:, : self.max_length]


def chat_lengths(examples: Iterable[Any], processor: Any, *, prompt_only: bool = False,
                 system: str | None = SYSTEM_PROMPT, question: str | None = None) -> list[int]:
    """Token count of each example after image expansion, without decoding any image.

    For length-grouped batching (``transformers`` ``LengthGroupedSampler`` or a ``length`` column
    with ``group_by_length=True``). The image token count is measured once on a blank image, exact
    for processors that resize every image to one size (LLaVA, ForenX).
    """
    tokenizer = _tokenizer_of(processor)
    image_token = getattr(processor, "image_token", None) or IMAGE_TOKEN
    probe = processor(text=[image_token], images=[Image.new("RGB", (64, 64))], return_tensors="pt",
                      add_special_tokens=False)
    per_image = int((probe["input_ids"][0] == tokenizer.convert_tokens_to_ids(image_token)).sum())
    lengths = []
    for example in examples:
        chat = render_record(_as_record(example), processor, prompt_only=prompt_only, system=system,
                             question=question)
        lengths.append(len(tokenizer.encode(chat.text, add_special_tokens=False))
                       + (per_image - 1) * chat.text.count(image_token))
    return lengths

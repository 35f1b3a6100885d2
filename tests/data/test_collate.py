"""Chat rendering and the collator: the label mask is exactly the answer + end token, always."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from transformers import LlavaProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.trainer_pt_utils import LengthGroupedSampler

from forenx.data.collate import (
    IGNORE_INDEX,
    ChatTemplateError,
    ForensicChatCollator,
    SequenceTooLongError,
    chat_lengths,
    render_record,
)
from forenx.data.io import decode_images, records_to_dataset
from forenx.data.records import Record
from forenx.modeling.tokenizer import CHAT_TEMPLATES, load_tokenizer
from forenx.prompts import IMAGE_TOKEN
from forenx.schema import Quadruple

TEMPLATES = sorted(CHAT_TEMPLATES)
IMAGE_TOKENS = 16  # 32 px / patch 8 -> 4 x 4


def _quadruples(n: int) -> list[Quadruple]:
    return [Quadruple(f"Anomaly {k}", f"Region {k} is smoother than its surroundings ({'very ' * k}clearly).",
                      "A camera records one noise level; a smoothed patch was edited.", 10 * k + 5)
            for k in range(n)]


def _record(i: int, n_anomalies: int, label: str = "fake") -> Record:
    return Record(id=f"rec-{i}", image=f"img/{i}.png", label=label,
                  quadruples=_quadruples(n_anomalies) if label == "fake" else [],
                  summary="Smoothing betrays an edit." if label == "fake" else "Nothing suspicious.")


@pytest.fixture
def data_root(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(8):
        Image.new("RGB", (40 + 7 * i, 30 + 5 * i), (30 * i, 90, 200 - 20 * i)).save(tmp_path / "img" / f"{i}.png")
    return tmp_path


RECORDS = [_record(0, 0, "real"), _record(1, 3), _record(2, 1)]


def _llava_processor(template: str, folder) -> LlavaProcessor:
    """A real LlavaProcessor (small CLIP image processor + the ForenX tokenizer), saved and loaded back."""
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=load_tokenizer(template), patch_size=8,
                               vision_feature_select_strategy="full",
                               chat_template=CHAT_TEMPLATES[template])
    processor.save_pretrained(folder)
    return LlavaProcessor.from_pretrained(folder)


def _learnt_text(tokenizer, batch, row: int) -> str:
    labels = batch["labels"][row]
    return tokenizer.decode(labels[labels != IGNORE_INDEX].tolist())


@pytest.mark.parametrize("template", TEMPLATES)
def test_labels_are_exactly_answer_plus_end_token(template, data_root, tmp_path):
    processor = _llava_processor(template, tmp_path / "processor")
    tokenizer = processor.tokenizer
    batch = ForensicChatCollator(processor, data_root)(RECORDS)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "labels"}
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) == 3, "the records must have different lengths (padding is tested)"
    for row, record in enumerate(RECORDS):
        assert _learnt_text(tokenizer, batch, row) == record.answer() + tokenizer.eos_token
        # Labelled positions are one contiguous span that ends at the end token (right padding).
        positions = (batch["labels"][row] != IGNORE_INDEX).nonzero().flatten()
        assert positions.tolist() == list(range(int(positions[0]), int(positions[-1]) + 1))
        assert batch["input_ids"][row, positions[-1]] == tokenizer.eos_token_id
        assert batch["attention_mask"][row, : lengths[row]].all() and not batch["attention_mask"][row, lengths[row]:].any()
        assert (batch["labels"][row, lengths[row]:] == IGNORE_INDEX).all()
        assert (batch["labels"][row] != IGNORE_INDEX).logical_and(batch["input_ids"][row] == processor.image_token_id).sum() == 0
        assert (batch["input_ids"][row] == processor.image_token_id).sum() == IMAGE_TOKENS
        assert torch.equal(batch["labels"][row][positions], batch["input_ids"][row][positions])


@pytest.mark.parametrize("template", TEMPLATES)
def test_prompt_only_tokens_equal_the_training_prompt(template, data_root, tmp_path):
    processor = _llava_processor(template, tmp_path / "processor")
    train = ForensicChatCollator(processor, data_root)(RECORDS)
    prompts = ForensicChatCollator(processor, data_root, prompt_only=True)(RECORDS)
    assert "labels" not in prompts
    assert torch.equal(prompts["pixel_values"], train["pixel_values"])
    width = prompts["input_ids"].shape[1]
    for row in range(len(RECORDS)):
        start = int((train["labels"][row] != IGNORE_INDEX).nonzero()[0])
        assert prompts["attention_mask"][row].sum() == start
        # Left padding: the prompt sits at the right end, ready for generation.
        assert prompts["input_ids"][row, width - start:].tolist() == train["input_ids"][row, :start].tolist()
        assert not prompts["attention_mask"][row, : width - start].any()


def test_records_need_no_label_for_prompt_only(data_root):
    processor = load_tokenizer()  # a tokenizer renders too; the collator needs a processor for images
    unknown = Record(id="u", image="img/0.png", label="unknown")
    assert render_record(unknown, processor, prompt_only=True).prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="record 'u': label 'unknown' has no answer"):
        render_record(unknown, processor)


def test_dataset_rows_collate_like_records(data_root, tmp_path):
    processor = _llava_processor("chatml", tmp_path / "processor")
    collator = ForensicChatCollator(processor, data_root)
    from_records = collator(RECORDS)
    dataset = records_to_dataset(RECORDS, data_root)
    from_rows = collator([dataset[i] for i in range(len(RECORDS))])
    decoded = decode_images(dataset)
    from_decoded = collator([decoded[i] for i in range(len(RECORDS))])
    for batch in (from_rows, from_decoded):
        assert batch.keys() == from_records.keys()
        for key in batch:
            assert torch.equal(batch[key], from_records[key]), key


def test_placeholder_count_must_match_the_images(data_root, tmp_path):
    processor = _llava_processor("chatml", tmp_path / "processor")
    collator = ForensicChatCollator(processor, data_root, question=f"Compare {IMAGE_TOKEN} with this image.")
    with pytest.raises(ValueError, match=r"record 'rec-0': 2 '<image>' placeholders in the chat for 1 image"):
        collator(RECORDS)


def test_too_long_names_the_record_and_never_cuts_image_tokens(data_root, tmp_path):
    processor = _llava_processor("llama3", tmp_path / "processor")
    full = ForensicChatCollator(processor, data_root)(RECORDS)
    lengths = full["attention_mask"].sum(dim=1).tolist()
    limit = lengths[1] - 5  # only rec-1 (three anomalies) is too long
    with pytest.raises(SequenceTooLongError, match=rf"record 'rec-1': {lengths[1]} tokens \({IMAGE_TOKENS} image "
                                                   rf"tokens.*max_length={limit}.*truncate_answer=True"):
        ForensicChatCollator(processor, data_root, max_length=limit)(RECORDS)

    cut = ForensicChatCollator(processor, data_root, max_length=limit, truncate_answer=True)(RECORDS)
    assert cut["input_ids"].shape[1] == limit
    assert torch.equal(cut["input_ids"][1], full["input_ids"][1, :limit])
    assert _learnt_text(processor.tokenizer, cut, 1) == processor.tokenizer.decode(
        full["labels"][1, :limit][full["labels"][1, :limit] != IGNORE_INDEX].tolist())
    assert RECORDS[1].answer().startswith(_learnt_text(processor.tokenizer, cut, 1))
    for row in (0, 2):  # the others are untouched
        assert _learnt_text(processor.tokenizer, cut, row) == RECORDS[row].answer() + "<|eot_id|>"
    assert ((cut["input_ids"] == processor.image_token_id).sum(dim=1) == IMAGE_TOKENS).all()

    prompt_length = int((full["labels"][0] != IGNORE_INDEX).nonzero()[0])
    with pytest.raises(SequenceTooLongError, match="record 'rec-0'.*raise max_length. Image tokens are never cut"):
        ForensicChatCollator(processor, data_root, max_length=prompt_length, truncate_answer=True)(RECORDS)
    with pytest.raises(SequenceTooLongError, match="record 'rec-0'"):
        ForensicChatCollator(processor, data_root, max_length=prompt_length - 1, prompt_only=True)(RECORDS)


def test_llava_style_templates_that_drift_are_refused(data_root, tmp_path):
    processor = _llava_processor("vicuna", tmp_path / "processor")
    # LLaVA-1.5's generation prompt "ASSISTANT:" leaves the space to the answer: train/infer drift.
    processor.chat_template = CHAT_TEMPLATES["vicuna"].replace(
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT: ' }}", "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}")
    with pytest.raises(ChatTemplateError, match="record 'rec-0'.*does not follow the generation prompt verbatim"):
        ForensicChatCollator(processor, data_root)(RECORDS)
    # A template that never closes the answer with the eos token (llava-hf's writes "answer ").
    processor.chat_template = CHAT_TEMPLATES["vicuna"].replace("{{ '</s>' }}", "{{ ' ' }}")
    with pytest.raises(ChatTemplateError, match="not closed by the eos token '</s>'"):
        ForensicChatCollator(processor, data_root)(RECORDS)
    # A generation prompt that is not a prefix of the training chat at all.
    processor.chat_template = CHAT_TEMPLATES["vicuna"].replace("{{ 'ASSISTANT: ' }}{%- endif", "{{ 'AI: ' }}{%- endif")
    with pytest.raises(ChatTemplateError, match="generation prompt is not a prefix"):
        ForensicChatCollator(processor, data_root)(RECORDS)


def test_tokenizer_merging_prompt_into_answer_is_refused(data_root, tmp_path):
    """A vocabulary with a token across the prompt/answer boundary (as Llama's '▁{' is for LLaVA's
    "ASSISTANT: {"): the prompt's last space moves into the answer's first token at training time
    only, the classic mismatch. The collator refuses it instead of training on it."""
    processor = _llava_processor("vicuna", tmp_path / "processor")
    processor.tokenizer.add_tokens([' {"'])
    with pytest.raises(ChatTemplateError, match="record 'rec-0'.*merges the end of the prompt with the answer"):
        ForensicChatCollator(processor, data_root)(RECORDS)


def test_chat_lengths_and_length_grouping_keep_padding_low(data_root, tmp_path):
    processor = _llava_processor("chatml", tmp_path / "processor")
    rng = random.Random(0)
    records = [Record(id=f"r{i}", image=f"img/{i % 8}.png", label="fake", quadruples=_quadruples(rng.randint(1, 12)))
               for i in range(800)]
    lengths = chat_lengths(records, processor)
    actual = ForensicChatCollator(processor, data_root)(records[:8])["attention_mask"].sum(dim=1).tolist()
    assert lengths[:8] == actual

    def padding_fraction(order: list[int], batch_size: int = 8) -> float:
        batches = [[lengths[i] for i in order[k: k + batch_size]] for k in range(0, len(order), batch_size)]
        return sum(max(b) * len(b) - sum(b) for b in batches) / sum(max(b) * len(b) for b in batches)

    shuffled = padding_fraction(list(range(len(records))))
    grouped = padding_fraction(list(LengthGroupedSampler(8, lengths=lengths, generator=torch.Generator().manual_seed(0))))
    assert grouped < 0.10 < shuffled


def test_tiny_model_processor_trains_on_the_answer_only(data_root):
    from forenx.modeling import tiny_model

    model, processor = tiny_model()
    batch = ForensicChatCollator(processor, data_root)(RECORDS)
    for row, record in enumerate(RECORDS):
        assert _learnt_text(processor.tokenizer, batch, row) == record.answer() + processor.tokenizer.eos_token
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss) and output.loss > 0
    prompts = ForensicChatCollator(processor, data_root, prompt_only=True)(RECORDS)
    assert (prompts["attention_mask"][:, -1] == 1).all()


def test_no_second_bos_from_a_tokenizer_that_adds_one(data_root, tmp_path):
    """Llama-style tokenizers prepend bos on their own; the template already wrote it."""
    from tokenizers.processors import TemplateProcessing

    processor = _llava_processor("vicuna", tmp_path / "processor")
    bos_id = processor.tokenizer.bos_token_id
    processor.tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos_id)])
    assert processor.tokenizer("x")["input_ids"][0] == bos_id
    batch = ForensicChatCollator(processor, data_root)(RECORDS)
    assert (batch["input_ids"][:, 0] == bos_id).all() and ((batch["input_ids"] == bos_id).sum(dim=1) == 1).all()
    assert _learnt_text(processor.tokenizer, batch, 1) == RECORDS[1].answer() + "</s>"


def test_missing_image_names_the_record_and_the_file(data_root, tmp_path):
    processor = _llava_processor("chatml", tmp_path / "processor")
    missing = Record(id="gone", image="img/missing.png", label="real")
    with pytest.raises(ValueError, match=r"record 'gone': .*img/missing.png: file not found"):
        ForensicChatCollator(processor, data_root)([RECORDS[0], missing])
    with pytest.raises(ValueError, match="record 'rec-0': image path 'img/0.png' is relative; pass data_root="):
        ForensicChatCollator(processor)(RECORDS)

import torch
from transformers import AutoProcessor

from forenx.modeling import ForenXProcessor
from forenx.prompts import IMAGE_TOKEN
from forenx.schema import ANSWER_PREFIX


def test_placeholder_expands_to_the_fused_tokens(tiny, images):
    model, processor = tiny
    batch = processor(images=images[:2], text=[processor.prompt()] * 2, return_tensors="pt")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_token_id == model.config.image_token_id
    assert (batch["input_ids"] == image_token_id).sum(-1).tolist() == [model.config.num_image_tokens] * 2
    assert batch["pixel_values"].shape == (2, 3, model.config.image_size, model.config.image_size)
    # Resized and rescaled only: the model normalises per branch.
    assert 0.0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1.0


def test_verdict_inputs_end_with_the_answer_prefix_left_padded(tiny, images):
    _, processor = tiny
    inputs = processor.verdict_inputs(images)
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith("assistant\n" + ANSWER_PREFIX)
    assert inputs["attention_mask"][:, -1].all()


def test_processor_round_trips(tiny, images, tmp_path):
    _, processor = tiny
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ForenXProcessor)
    assert loaded.chat_template == processor.chat_template
    a, b = processor.verdict_inputs(images), loaded.verdict_inputs(images)
    assert all(torch.equal(a[key], b[key]) for key in a)

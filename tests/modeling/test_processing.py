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


def test_verdict_inputs_equal_the_training_prompt_with_a_bos_adding_tokenizer(images, tmp_path):
    """A Llama-style tokenizer prepends BOS by itself; the chat template already wrote one, so the
    inference prompt must still be exactly the training prompt (the collator's prompt part)."""
    from tokenizers.processors import TemplateProcessing

    from forenx.data.collate import ForensicChatCollator
    from forenx.data.records import Record
    from forenx.modeling import tiny_model
    from forenx.modeling.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("vicuna")
    bos_id = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos_id)])
    assert tokenizer("x")["input_ids"][0] == bos_id
    _, processor = tiny_model(0, tokenizer=tokenizer)
    images[0].save(tmp_path / "a.png")
    record = Record(id="a", image="a.png", label="fake")
    prompt = ForensicChatCollator(processor, tmp_path, prompt_only=True)([record])["input_ids"][0].tolist()
    inference = processor.verdict_inputs(images[:1])["input_ids"][0].tolist()
    prefix = processor.tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
    assert inference == prompt + prefix
    assert inference.count(bos_id) == 1

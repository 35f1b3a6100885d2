import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForImageTextToText

from forenx.modeling import ForenXForConditionalGeneration, tiny_model
from forenx.modeling.builder import lm_4bit_config
from forenx.schema import Quadruple, render_answer

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
ANSWERS = [
    render_answer("fake", [Quadruple("Seam", "A hard edge", "Splices leave edges", 70)], "Spliced."),
    render_answer("real", [], "Nothing odd."),
]


def training_batch(processor, images, answers=ANSWERS):
    """Prompt + answer per image (``answers[i]`` for ``images[i]``), right padded, labels = answer tokens only."""
    texts = [processor.prompt(answer) for answer in answers]
    processor.tokenizer.padding_side = "right"
    try:
        batch = processor(images=images[:len(answers)], text=texts, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = "left"
    labels = torch.full_like(batch["input_ids"], -100)
    for row, answer in enumerate(answers):
        answer_ids = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = batch["input_ids"][row].tolist()
        start = next(i for i in range(len(ids)) if ids[i:i + len(answer_ids)] == answer_ids)
        labels[row, start:start + len(answer_ids)] = batch["input_ids"][row, start:start + len(answer_ids)]
    batch["labels"] = labels
    return batch


def test_save_load_is_bit_identical_and_auto_loads(tiny, images, tmp_path):
    model, processor = tiny
    inputs = processor.verdict_inputs(images)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(loaded) is ForenXForConditionalGeneration
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_fusion_attention_is_exposed_for_heatmaps(tiny, images):
    model, processor = tiny
    with torch.no_grad():
        out = model(**processor.verdict_inputs(images[:2]))
    (attention,) = out.image_outputs.attentions
    n = model.config.num_image_tokens
    assert attention.shape == (2, model.config.fusion_heads, n, n)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, model.config.fusion_heads, n))


def test_tiny_model_is_deterministic(tiny):
    again, _ = tiny_model(seed=0)
    other, _ = tiny_model(seed=1)
    reference = tiny[0].state_dict()
    assert all(torch.equal(reference[k], v) for k, v in again.state_dict().items())
    assert not torch.equal(reference["model.fusion.q_proj.weight"], other.state_dict()["model.fusion.q_proj.weight"])


def test_vision_towers_are_frozen_by_default(tiny):
    model = tiny[0]
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert not any(p.requires_grad for p in model.model.dino_tower.parameters())
    assert all(p.requires_grad for p in model.model.fusion.parameters())


def test_left_padded_greedy_batch_equals_one_by_one(tiny, images):
    model, processor = tiny
    # Different question lengths make the batch left padded.
    texts = [processor.prompt(question="Real or fake?"),
             processor.prompt(question="Is this photograph real or generated? Look at the edges and the noise."),
             processor.prompt(question="Fake?")]
    batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"][:, 0] == 0).any()
    settings = {"max_new_tokens": 8, "do_sample": False, "min_new_tokens": 8}
    batched = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1]:]
    for i, (image, text) in enumerate(zip(images, texts)):
        single = processor(images=[image], text=[text], return_tensors="pt")
        alone = model.generate(**single, **settings)[:, single["input_ids"].shape[1]:]
        assert batched[i].tolist() == alone[0].tolist()


def test_predict_proba_batched_equals_one_by_one_and_generation_carries_it(tiny, images):
    model, processor = tiny
    batched = model.predict_proba(**processor.verdict_inputs(images))
    alone = torch.cat([model.predict_proba(**processor.verdict_inputs([image])) for image in images])
    assert batched.shape == (3,) and ((batched > 0) & (batched < 1)).all()
    torch.testing.assert_close(batched, alone)
    sequences, generated = model.generate_with_proba(**processor.verdict_inputs(images), max_new_tokens=3,
                                                     do_sample=True, temperature=5.0)
    torch.testing.assert_close(generated, batched)
    assert sequences.shape[0] == 3


def test_forward_with_labels_returns_the_three_losses(tiny, images):
    model, processor = tiny
    batch = training_batch(processor, images)
    with torch.no_grad():
        out = model(**batch)
    assert out.lm_loss > 0 and out.mapper_loss > 0
    torch.testing.assert_close(out.loss, out.lm_loss + model.config.mapper_loss_weight * out.mapper_loss)
    # The mapper's probability equals predict_proba's: the slot is the same position.
    torch.testing.assert_close(out.prob_fake, model.predict_proba(**processor.verdict_inputs(images[:2])))


def _train_step_changes_lora_weights(peft_model, batch):
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert len(trainable) > 0
    assert any("lora_" in n for n in trainable) and any("fusion" in n for n in trainable)
    peft_model.train()
    loss = peft_model(**batch).loss
    loss.backward()
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5).step()
    changed = [n for n, p in peft_model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert any("lora_B" in n for n in changed) and any("fusion" in n for n in changed)


def test_gradient_checkpointing_with_lora_trains(tiny, images):
    model = copy.deepcopy(tiny[0])
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()  # LoRA + checkpointing learns nothing without it
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                                                  modules_to_save=["fusion", "multi_modal_projector"]))
    assert peft_model.base_model.model.is_activation_checkpointing
    _train_step_changes_lora_weights(peft_model, training_batch(tiny[1], images))


def test_4bit_language_model_with_lora_backward_on_cpu(tiny, images, tmp_path):
    tiny[0].save_pretrained(tmp_path)
    model = ForenXForConditionalGeneration.from_pretrained(tmp_path, quantization_config=lm_4bit_config(torch.float32))
    linear_types = {type(m).__name__ for n, m in model.named_modules() if ".language_model." in n and "proj" in n}
    assert linear_types == {"Linear4bit"}
    assert type(model.model.fusion.q_proj).__name__ == "Linear"  # only the LM is quantised
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": True})
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                                                  modules_to_save=["fusion", "multi_modal_projector"]))
    _train_step_changes_lora_weights(peft_model, training_batch(tiny[1], images))


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_dtype_loading(tiny, images, tmp_path, dtype):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    loaded = ForenXForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype)
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    probs = loaded.predict_proba(**processor.verdict_inputs(images))
    torch.testing.assert_close(probs, model.predict_proba(**processor.verdict_inputs(images)), atol=0.05, rtol=0)


def test_mapper_finds_the_slot_in_the_training_collators_labels(tiny, images, tmp_path):
    from forenx.data.collate import ForensicChatCollator
    from forenx.data.records import Record

    model, processor = tiny
    for i, image in enumerate(images[:2]):
        image.save(tmp_path / f"{i}.png")
    records = [Record(id="a", image="0.png", label="fake", quadruples=[Quadruple("Seam", "edge", "splice", 70)]),
               Record(id="b", image="1.png", label="real")]
    batch = ForensicChatCollator(processor, tmp_path)(records)
    with torch.no_grad():
        out = model(**batch)
    assert not torch.isnan(out.prob_fake).any() and out.mapper_loss > 0
    torch.testing.assert_close(out.prob_fake, model.predict_proba(**processor.verdict_inputs(images[:2])))

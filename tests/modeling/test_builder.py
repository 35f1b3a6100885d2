import pytest
import torch
from transformers import (
    AutoModelForImageTextToText,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from forenx.modeling import ForenXForConditionalGeneration, ForenXProcessor, build_model
from forenx.modeling.tokenizer import load_tokenizer
from forenx.prompts import IMAGE_TOKEN

CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 14,
            "image_size": 56, "projection_dim": 32}
DINO = {"hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 14, "image_size": 56, "mlp_ratio": 2}


def llama_config(tokenizer):
    return LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Tiny CLIP / DINOv2 / LM / LLaVA checkpoints saved to local folders, as a user would have them."""
    root = tmp_path_factory.mktemp("parts")
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**CLIP)).save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(**DINO)).save_pretrained(root / "dino")
    LlamaForCausalLM(llama_config(tokenizer)).save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    llava = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=CLIPVisionConfig(**CLIP), text_config=llama_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=16))
    llava.save_pretrained(root / "llava")
    tokenizer.save_pretrained(root / "llava")
    return root


def assert_carried_over(model, source_state, prefix_map):
    state = model.state_dict()
    for source_key, tensor in source_state.items():
        key = prefix_map(source_key)
        assert key in state, source_key
        assert torch.equal(state[key], tensor), source_key


def test_build_from_component_folders(parts, images, tmp_path):
    model, processor = build_model(clip=parts / "clip", dino=parts / "dino", llm=parts / "llm", fusion_heads=4)
    assert isinstance(model, ForenXForConditionalGeneration) and isinstance(processor, ForenXProcessor)
    assert model.config.fusion_dim == 32 and model.config.image_size == 56
    assert_carried_over(model, CLIPVisionModel.from_pretrained(parts / "clip").state_dict(),
                         lambda k: "model.vision_tower." + k)
    assert_carried_over(model, Dinov2Model.from_pretrained(parts / "dino").state_dict(),
                         lambda k: "model.dino_tower." + k)
    assert_carried_over(model, LlamaForCausalLM.from_pretrained(parts / "llm").state_dict(),
                         lambda k: k if k.startswith("lm_head") else "model.language_model." + k.removeprefix("model."))
    inputs = processor.verdict_inputs(images)
    probs = model.predict_proba(**inputs)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert torch.equal(reloaded.predict_proba(**inputs), probs)


def test_build_from_a_full_clip_checkpoint(parts, tmp_path):
    """Hub CLIP ids (openai/clip-vit-large-patch14-336) hold the text tower too; only the vision one is used."""
    torch.manual_seed(1)
    clip = CLIPModel(CLIPConfig(vision_config=CLIP, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}))
    clip.save_pretrained(tmp_path / "clip")
    model, _ = build_model(clip=tmp_path / "clip", dino=parts / "dino", llm=parts / "llm", fusion_heads=4)
    assert_carried_over(model, clip.vision_model.state_dict(), lambda k: "model.vision_tower." + k)


def test_build_from_llava_reuses_clip_projector_and_lm_exactly(parts, images):
    model, processor = build_model(llava=parts / "llava", dino=parts / "dino", fusion_heads=4)
    llava = LlavaForConditionalGeneration.from_pretrained(parts / "llava")
    assert_carried_over(model, llava.state_dict(), lambda k: k)
    new = {k.split(".")[1] for k in model.state_dict() if k.split(".")[0] == "model"} - {
        k.split(".")[1] for k in llava.state_dict() if k.split(".")[0] == "model"}
    assert new == {"dino_tower", "fusion"}
    assert model.config.image_token_id == llava.config.image_token_id
    out = model.generate(**processor.verdict_inputs(images[:1]), max_new_tokens=2, do_sample=False)
    assert out.shape[0] == 1


def plain_tokenizer():
    """A byte-level BPE like a stock LM's: no <image> token, no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from forenx.modeling.tokenizer import tokenizer_corpus

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(tokenizer_corpus()[:200], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def test_build_adds_the_image_token_and_grows_the_lm(parts, images, tmp_path):
    tokenizer = plain_tokenizer()
    assert IMAGE_TOKEN not in tokenizer.get_vocab() and tokenizer.chat_template is None
    torch.manual_seed(0)
    LlamaForCausalLM(llama_config(tokenizer)).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    with pytest.raises(ValueError, match="chat_template"):
        build_model(clip=parts / "clip", dino=parts / "dino", llm=tmp_path / "llm", fusion_heads=4)
    model, processor = build_model(clip=parts / "clip", dino=parts / "dino", llm=tmp_path / "llm",
                                   chat_template="chatml", fusion_heads=4)
    image_token_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_token_id == model.config.image_token_id == len(tokenizer)
    assert model.get_input_embeddings().num_embeddings == model.config.text_config.vocab_size == len(tokenizer) + 1
    probs = model.predict_proba(**processor.verdict_inputs(images))
    assert probs.shape == (3,)


def test_build_model_names_missing_parts(parts):
    with pytest.raises(ValueError, match="dino="):
        build_model(clip=parts / "clip", llm=parts / "llm")
    with pytest.raises(ValueError, match="clip="):
        build_model(dino=parts / "dino", llm=parts / "llm")

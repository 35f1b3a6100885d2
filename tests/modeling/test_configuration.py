import math

import pytest
from transformers import AutoConfig, CLIPVisionConfig, Dinov2Config

import forenx.modeling  # noqa: F401  (registers the Auto classes)
from forenx.modeling import ForenXConfig

TOWERS = {
    "clip_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "patch_size": 14},
    "dino_config": {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 14},
    "text_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "vocab_size": 100},
}


def test_sub_configs_tree_round_trips(tmp_path):
    config = ForenXConfig(image_size=56, fusion_heads=4, verdict_token_ids=[5, 6], **TOWERS)
    assert isinstance(config.clip_config, CLIPVisionConfig) and config.clip_config is config.vision_config
    assert isinstance(config.dino_config, Dinov2Config)
    assert config.clip_config.image_size == config.dino_config.image_size == 56
    assert config.fusion_dim == 32 and config.num_image_tokens == 16
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is ForenXConfig
    assert loaded.to_diff_dict() | {"_name_or_path": ""} == config.to_diff_dict() | {"_name_or_path": ""}
    assert loaded.dino_config.hidden_size == 24 and loaded.text_config.model_type == "llama"


def test_forenx_names_of_llava_fields():
    config = ForenXConfig(image_size=56, clip_feature_layer=-3, **TOWERS)
    assert config.vision_feature_layer == config.clip_feature_layer == -3
    assert ForenXConfig(image_size=56, **TOWERS).clip_feature_layer == -2


def test_misaligned_grids_are_rejected():
    towers = dict(TOWERS, dino_config=dict(TOWERS["dino_config"], patch_size=8))
    with pytest.raises(ValueError, match="grid"):
        ForenXConfig(image_size=56, **towers)


def test_fusion_dim_must_split_into_heads():
    with pytest.raises(ValueError, match="fusion_heads"):
        ForenXConfig(image_size=56, fusion_dim=30, fusion_heads=4, **TOWERS)


@pytest.mark.parametrize("weight", [-0.5, math.nan])
def test_a_negative_sharpening_evidence_weight_is_refused(weight):
    with pytest.raises(ValueError, match="sharpening_evidence_weight"):
        ForenXConfig(image_size=56, sharpening_evidence_weight=weight, **TOWERS)

from transformers import CLIPVisionConfig, Dinov2Config, LlamaConfig
from typer.testing import CliRunner

from forenx.cli import app
from forenx.modeling.presets import component_parameters, meta_model, preset_config

FAKEREASONING_FUSION = 315_000_000  # FakeReasoning's fusion at the 13B LM width (5120)


def test_13b_preset_counts_on_meta():
    model = meta_model(preset_config("fakereasoning-13b"))
    assert all(p.is_meta for p in model.parameters())
    counts = component_parameters(model)
    assert 13.0e9 < counts["lm"]["total"] < 13.1e9             # Llama-2-13B
    assert 303e6 < counts["clip"]["total"] < 304e6             # CLIP ViT-L/14-336
    assert 300e6 < counts["dino"]["total"] < 310e6             # DINOv2-L/14
    assert counts["fusion"]["total"] * 10 <= FAKEREASONING_FUSION
    assert counts["clip"]["trainable"] == counts["dino"]["trainable"] == 0  # frozen by default
    assert counts["mapper"]["total"] == 0


def test_counts_add_up_on_a_real_model(tiny):
    model = tiny[0]
    counts = component_parameters(model)
    assert counts["total"]["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_summary_command_prints_components_for_a_preset():
    result = CliRunner().invoke(app, ["model", "summary", "--preset", "fakereasoning-13b"])
    assert result.exit_code == 0, result.output
    for component in ("clip", "dino", "fusion", "projector", "mapper", "lm", "total"):
        assert component in result.output
    assert "13,015,864,320" in result.output  # the LM row
    assert "576" in result.output


def test_summary_command_from_local_config_folders(tmp_path):
    CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     patch_size=14, image_size=56).save_pretrained(tmp_path / "clip")
    Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14).save_pretrained(tmp_path / "dino")
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=300).save_pretrained(tmp_path / "llm")
    result = CliRunner().invoke(app, ["model", "summary", "--clip", str(tmp_path / "clip"),
                                      "--dino", str(tmp_path / "dino"), "--llm", str(tmp_path / "llm")])
    assert result.exit_code == 0, result.output
    assert "fusion" in result.output and "16 (56px, patch 14)" in result.output


def test_summary_command_rejects_an_unknown_preset():
    result = CliRunner().invoke(app, ["model", "summary", "--preset", "gpt-9"])
    assert result.exit_code != 0
    assert "fakereasoning-13b" in result.output

import torch
from transformers import Dinov2Config, Dinov2Model

from forenx.modeling.vision import dino_patch_features, normalize


def test_last_block_attention_matches_eager_and_keeps_sdpa():
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, patch_size=14, image_size=56)
    sdpa = Dinov2Model(config).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    pixels = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        tokens, attention = dino_patch_features(sdpa, pixels)
        eager_config = Dinov2Config(**config.to_dict())
        eager_config._attn_implementation = "eager"
        eager = Dinov2Model(eager_config).eval()
        eager.load_state_dict(sdpa.state_dict())
        reference = eager(pixels, output_attentions=True)
    assert sdpa.config._attn_implementation == "sdpa"  # the tower was not switched to eager
    assert tokens.shape == (2, 16, 32) and attention.shape == (2, 4, 16, 16)
    torch.testing.assert_close(tokens, reference.last_hidden_state[:, 1:])
    torch.testing.assert_close(attention, reference.attentions[-1][:, :, 1:, 1:])


def test_normalize_per_channel():
    x = torch.ones(1, 3, 2, 2)
    out = normalize(x, (0.0, 0.5, 1.0), (1.0, 0.5, 2.0))
    assert out[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]

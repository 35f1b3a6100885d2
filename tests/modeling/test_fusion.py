import torch

from forenx.modeling.fusion import ForgeryAwareFusion


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(2, 9, 16, generator=g)
    dino = torch.randn(2, 9, 12, generator=g)
    attention = torch.randn(2, 3, 9, 9, generator=g).softmax(-1)
    return clip, dino, attention


def test_attention_bias_changes_the_output():
    torch.manual_seed(0)
    fusion = ForgeryAwareFusion(clip_dim=16, dino_dim=12, fusion_dim=8, num_heads=2, dino_heads=3)
    clip, dino, attention = _inputs()
    with_bias, probs = fusion(clip, dino, attention)
    other_map, _ = fusion(clip, dino, torch.flip(attention, dims=[-1]))
    assert with_bias.shape == clip.shape and probs.shape == (2, 2, 9, 9)
    assert not torch.allclose(with_bias, other_map)
    # Same weights without the bias: a different output.
    fusion.attention_bias, saved = None, fusion.attention_bias
    without_bias, _ = fusion(clip, dino)
    assert not torch.allclose(with_bias, without_bias)
    fusion.attention_bias = saved


def test_gradients_reach_the_bias_mlp():
    torch.manual_seed(0)
    fusion = ForgeryAwareFusion(clip_dim=16, dino_dim=12, fusion_dim=8, num_heads=2, dino_heads=3)
    fused, _ = fusion(*_inputs())
    fused.pow(2).mean().backward()
    for name, parameter in fusion.attention_bias.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bias_switch_removes_the_bias_mlp():
    fusion = ForgeryAwareFusion(clip_dim=16, dino_dim=12, fusion_dim=8, num_heads=2, dino_heads=3,
                                attention_bias=False)
    assert fusion.attention_bias is None
    clip, dino, _ = _inputs()
    assert fusion(clip, dino)[0].shape == clip.shape

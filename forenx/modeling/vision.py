"""The dual vision encoder: CLIP (semantics) and DINOv2 (low-level artifacts).

Both towers read the same ``pixel_values`` (resized, in [0, 1]); each branch applies its own
normalisation here, so the processor stays a plain resize + rescale and trainers / serving tools
only ever forward the one standard ``pixel_values`` field.

DINOv2's last block also yields its self-attention map, which biases the fusion. Only that block's
attention is needed, so instead of switching the tower to eager attention (slow for every layer)
a forward pre-hook records the last block's attention input and the attention probabilities are
recomputed from that block's own query / key projections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["DinoPatchFeatures", "clip_patch_features", "dino_patch_features", "normalize"]


def normalize(pixel_values: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` of a ``(B, 3, H, W)`` batch in [0, 1].

    >>> normalize(torch.full((1, 3, 1, 1), 0.5), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).flatten().tolist()
    [0.0, 0.0, 0.0]
    """
    mean_t = torch.as_tensor(mean, dtype=pixel_values.dtype, device=pixel_values.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=pixel_values.dtype, device=pixel_values.device).view(1, -1, 1, 1)
    return (pixel_values - mean_t) / std_t


def clip_patch_features(clip_tower: nn.Module, pixel_values: torch.Tensor, feature_layer: int) -> torch.Tensor:
    """CLIP patch tokens (CLS dropped) of hidden layer ``feature_layer``: ``(B, N, D_clip)``."""
    outputs = clip_tower(pixel_values, output_hidden_states=True, return_dict=True)
    return outputs.hidden_states[feature_layer][:, 1:]


class DinoPatchFeatures(NamedTuple):
    """DINOv2's contribution to the fusion."""

    tokens: torch.Tensor  #: last-block patch tokens ``(B, N, D_dino)``
    attention: torch.Tensor  #: last-block patch-to-patch attention probabilities ``(B, H_dino, N, N)``


def _last_block_attention(attention: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """Softmax attention probabilities of a DINOv2 attention module for its input ``hidden_states``."""
    batch, length, _ = hidden_states.shape
    shape = (batch, length, -1, attention.head_dim)
    query = attention.q_proj(hidden_states).view(shape).transpose(1, 2)
    key = attention.k_proj(hidden_states).view(shape).transpose(1, 2)
    logits = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling
    return logits.softmax(dim=-1, dtype=torch.float32).to(hidden_states.dtype)


def dino_patch_features(dino_tower: nn.Module, pixel_values: torch.Tensor) -> DinoPatchFeatures:
    """Run DINOv2 once; return its last-block patch tokens and last-block attention map.

    The other layers keep whatever attention implementation the tower was loaded with (SDPA by
    default); only the last block's probabilities are recomputed, from the input recorded by a hook.
    """
    last_attention = dino_tower.encoder.layer[-1].attention
    recorded: dict[str, torch.Tensor] = {}

    def record_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
        recorded["hidden_states"] = args[0] if args else kwargs["hidden_states"]

    handle = last_attention.register_forward_pre_hook(record_input, with_kwargs=True)
    try:
        outputs = dino_tower(pixel_values, return_dict=True)
    finally:
        handle.remove()
    attention = _last_block_attention(last_attention, recorded["hidden_states"])
    # Drop CLS (and any register tokens) so both grids hold only the image patches.
    num_patches = (pixel_values.shape[-2] // dino_tower.config.patch_size) * (
        pixel_values.shape[-1] // dino_tower.config.patch_size)
    tokens = outputs.last_hidden_state[:, -num_patches:]
    attention = attention[:, :, -num_patches:, -num_patches:]
    return DinoPatchFeatures(tokens, attention)

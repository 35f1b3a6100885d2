"""Forgery-aware fusion: CLIP tokens attend over DINOv2 tokens, biased by DINOv2's own attention.

Where it sits: between the vision towers and the LLaVA projector, at the vision width. Its output
has the CLIP width (residual on the CLIP tokens), so a projector trained on plain CLIP features
(an existing LLaVA checkpoint) receives the input width it expects, and the attention runs at
``fusion_dim`` rather than at the LM width (FakeReasoning fuses at 5120: ~315M parameters at 13B).

Block::

    q = Wq LN(clip),  k, v = Wk LN(dino), Wv LN(dino)                      (width fusion_dim)
    bias[h] = MLP_1x1(log(dino_attention))[h]        (per head, mixing DINO's heads; optional)
    x = clip + Wo softmax(q k^T / sqrt(d) + bias) v  [+ forensic(pixels)]   (forensic stream: optional)
    out = x + FFN(LN(x))

With ``forensic_width`` set, a :class:`~forenx.modeling.forensic.ForensicEncoder` (fixed forensic
maps -> a small conv net -> one token per patch) is part of the fusion: its tokens are added before
the FFN, and it is trained, saved and left unquantised with the fusion.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from forenx.modeling.forensic import ForensicEncoder

__all__ = ["AttentionMapBias", "ForgeryAwareFusion"]

# Attention probabilities are >= 0; the floor keeps log() finite.
_LOG_FLOOR = 1e-6


class AttentionMapBias(nn.Module):
    """Per-head additive logit bias from an attention map: ``log``, then a 1x1 MLP across heads.

    ``(B, H_in, Nq, Nk)`` probabilities -> ``(B, H_out, Nq, Nk)`` logits.
    """

    def __init__(self, in_heads: int, out_heads: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(in_heads, hidden)
        self.fc2 = nn.Linear(hidden, out_heads)

    def forward(self, attention: torch.Tensor) -> torch.Tensor:
        log_attention = attention.clamp_min(_LOG_FLOOR).log().permute(0, 2, 3, 1)  # heads last
        return self.fc2(F.gelu(self.fc1(log_attention))).permute(0, 3, 1, 2)


class ForgeryAwareFusion(nn.Module):
    """Cross-attention from CLIP patch tokens (queries) to DINOv2 patch tokens (keys / values).

    >>> fusion = ForgeryAwareFusion(clip_dim=16, dino_dim=8, fusion_dim=16, num_heads=2, dino_heads=2)
    >>> clip, dino, attn = torch.randn(1, 4, 16), torch.randn(1, 4, 8), torch.rand(1, 2, 4, 4)
    >>> tuple(fusion(clip, dino, attn)[0].shape)
    (1, 4, 16)
    """

    def __init__(self, clip_dim: int, dino_dim: int, fusion_dim: int, num_heads: int, dino_heads: int,
                 mlp_ratio: float = 4.0, attention_bias: bool = True, bias_hidden: int = 16,
                 layer_norm_eps: float = 1e-5, forensic_width: int | None = None, grid: int | None = None,
                 image_size: int | None = None, name_groups: int = 0, forensic_residual: int = 0,
                 forensic_jpeg: bool = False, forensic_boundary: bool = False, forensic_members: int = 1,
                 forensic_histogram: bool = False, forensic_resampling: bool = False):
        super().__init__()
        assert fusion_dim % num_heads == 0, "fusion_dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = fusion_dim // num_heads
        self.query_norm = nn.LayerNorm(clip_dim, eps=layer_norm_eps)
        self.key_value_norm = nn.LayerNorm(dino_dim, eps=layer_norm_eps)
        self.q_proj = nn.Linear(clip_dim, fusion_dim)
        self.k_proj = nn.Linear(dino_dim, fusion_dim)
        self.v_proj = nn.Linear(dino_dim, fusion_dim)
        self.o_proj = nn.Linear(fusion_dim, clip_dim)
        self.attention_bias = AttentionMapBias(dino_heads, num_heads, bias_hidden) if attention_bias else None
        self.ffn_norm = nn.LayerNorm(clip_dim, eps=layer_norm_eps)
        self.fc1 = nn.Linear(clip_dim, int(fusion_dim * mlp_ratio))
        self.fc2 = nn.Linear(int(fusion_dim * mlp_ratio), clip_dim)
        if forensic_width and not (grid and image_size):
            raise ValueError("ForgeryAwareFusion: the forensic stream needs the patch grid and image size "
                             "(grid=..., image_size=...)")
        self.forensic = (ForensicEncoder(forensic_width, clip_dim, grid, image_size, groups=name_groups,
                                         residual=forensic_residual, jpeg=forensic_jpeg,
                                         boundary=forensic_boundary, members=forensic_members,
                                         histogram=forensic_histogram, resampling=forensic_resampling)
                         if forensic_width else None)
        self.forensic_logit: torch.Tensor | None = None

    def forward(self, clip_tokens: torch.Tensor, dino_tokens: torch.Tensor,
                dino_attention: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fused tokens ``(B, N, clip_dim)`` and the fusion attention ``(B, heads, N, N)``
        (the explainer's heatmap). ``pixel_values`` ``(B, 3, S, S)`` in [0, 1]: the forensic stream's
        input (needed when it is on); its logit ``(B,)`` is then kept in ``self.forensic_logit``
        until the model's forward reads it for the forensic loss."""
        batch, n_query, _ = clip_tokens.shape
        n_key = dino_tokens.shape[1]
        query_in, key_value_in = self.query_norm(clip_tokens), self.key_value_norm(dino_tokens)
        q = self.q_proj(query_in).view(batch, n_query, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key_value_in).view(batch, n_key, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(key_value_in).view(batch, n_key, self.num_heads, self.head_dim).transpose(1, 2)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5
        if self.attention_bias is not None:
            if dino_attention is None:
                raise ValueError("ForgeryAwareFusion: attention bias is on but no DINO attention map was given")
            logits = logits + self.attention_bias(dino_attention.to(logits.dtype))
        probs = logits.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        attended = torch.matmul(probs, v).transpose(1, 2).reshape(batch, n_query, -1)
        hidden = clip_tokens + self.o_proj(attended)
        if self.forensic is not None:
            if pixel_values is None:
                raise ValueError("ForgeryAwareFusion: the forensic stream is on but no pixel_values were given")
            forensic_tokens, self.forensic_logit = self.forensic(pixel_values)
            hidden = hidden + forensic_tokens.to(hidden.dtype)
        hidden = hidden + self.fc2(F.gelu(self.fc1(self.ffn_norm(hidden))))
        return hidden, probs

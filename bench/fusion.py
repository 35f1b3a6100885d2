"""Fusion cost: ForenX fuses at the vision width, FakeReasoning at the LM width.

Measures, in one run, the parameters and the forward time of the forgery-aware fusion built
(a) at the vision width (ForenX: CLIP tokens, ``fusion_dim`` = CLIP width, then the projector)
and (b) at the LM width (FakeReasoning: both towers projected to the LM width first, fused there)
on the ``medium`` preset, and prints the ratios. Then the parameter counts of both placements at
the ``fakereasoning-13b`` preset (meta device, no memory). Figures only; nothing is asserted.

    python bench/fusion.py                       # medium preset, batch 1, 10 timed repeats
    python bench/fusion.py --batch 2 --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from forenx.modeling.fusion import ForgeryAwareFusion
from forenx.modeling.presets import component_parameters, meta_model, preset_config


def fusion_pair(config) -> dict[str, ForgeryAwareFusion]:
    """The fusion at the vision width (ForenX) and at the LM width (FakeReasoning) for ``config``."""
    clip, dino, lm = config.vision_config, config.dino_config, config.text_config
    common = {"dino_heads": dino.num_attention_heads, "mlp_ratio": config.fusion_mlp_ratio,
                  "bias_hidden": config.fusion_bias_hidden}
    return {
        "vision width (ForenX)": ForgeryAwareFusion(clip.hidden_size, dino.hidden_size, config.fusion_dim,
                                                    config.fusion_heads, **common),
        "LM width (FakeReasoning)": ForgeryAwareFusion(lm.hidden_size, lm.hidden_size, lm.hidden_size,
                                                       lm.num_attention_heads, **common),
    }


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def forward_seconds(fusion: ForgeryAwareFusion, tokens: int, dino_heads: int, batch: int, repeats: int) -> float:
    """Median wall time of one fusion forward on random inputs of the right shapes."""
    clip_dim, dino_dim = fusion.q_proj.in_features, fusion.k_proj.in_features
    clip = torch.randn(batch, tokens, clip_dim)
    dino = torch.randn(batch, tokens, dino_dim)
    attention = torch.randn(batch, dino_heads, tokens, tokens).softmax(-1)
    fusion(clip, dino, attention)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fusion(clip, dino, attention)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = preset_config(args.preset)
    tokens, dino_heads = config.num_image_tokens, config.dino_config.num_attention_heads
    print(f"preset {args.preset}: {tokens} tokens, vision width {config.vision_config.hidden_size}, "
          f"LM width {config.text_config.hidden_size}, batch {args.batch}, {args.threads} thread(s)")
    results = {}
    for name, fusion in fusion_pair(config).items():
        seconds = forward_seconds(fusion.eval(), tokens, dino_heads, args.batch, args.repeats)
        results[name] = (parameters(fusion), seconds)
        print(f"  {name:26s} {parameters(fusion):>13,d} params  {1000 * seconds:9.2f} ms/forward")
    (vision_params, vision_s), (lm_params, lm_s) = results.values()
    print(f"  ratio LM/vision width:     {lm_params / vision_params:.1f}x params, {lm_s / vision_s:.1f}x time")

    big = preset_config("fakereasoning-13b")
    counts = component_parameters(meta_model(big))
    with torch.device("meta"):
        at_13b = {name: parameters(f) for name, f in fusion_pair(big).items()}
    print("preset fakereasoning-13b (meta device):")
    for name, count in counts.items():
        print(f"  {name:10s} {count['total']:>15,d}")
    forenx, fakereasoning = at_13b.values()
    print(f"  fusion at vision width {forenx:,} vs at LM width {fakereasoning:,} "
          f"(FakeReasoning reports ~315M): {fakereasoning / forenx:.1f}x fewer")


if __name__ == "__main__":
    main()

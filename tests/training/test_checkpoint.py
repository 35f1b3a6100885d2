"""forenx.training.checkpoint: the model a training run starts from."""

from __future__ import annotations

import json

import pytest
import torch

from forenx.modeling.forensic import MapCache
from forenx.training.checkpoint import build_training_model
from forenx.training.config import ModelArguments, SFTConfigError

STREAM = {"forensic_width": 8}


def _args(**kwargs) -> ModelArguments:
    return ModelArguments(model_name_or_path="tiny", **kwargs)


def test_training_model_seeds_the_rng_and_gets_its_map_cache():
    # New weights drawn after the build (LoRA adapters) come from the global RNG: the seed fixes them.
    draws = []
    for seed in (3, 3, 4):
        torch.randn(5)  # whatever ran before must not matter: the seed is set inside
        model, _ = build_training_model(_args(tiny_overrides=json.dumps(STREAM), forensic_map_cache=16), seed=seed)
        draws.append(torch.randn(8))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    caches = [m.map_cache for m in model.modules() if getattr(m, "map_cache", None) is not None]
    assert len(caches) == 1 and isinstance(caches[0], MapCache) and caches[0].capacity == 16
    plain, _ = build_training_model(_args(tiny_overrides=json.dumps(STREAM)), seed=0)
    assert not [m for m in plain.modules() if getattr(m, "map_cache", None) is not None]


def test_map_cache_without_a_stream_is_refused():
    with pytest.raises(SFTConfigError, match="no forensic stream"):
        build_training_model(_args(forensic_map_cache=8), seed=0)

"""SFT with the forensic stream's map cache (forensic_map_cache): each image's maps are computed once,
and the run is the same run as without the cache."""

from __future__ import annotations

import json

import pytest

from forenx.training.config import SFTConfigError
from forenx.training.sft import build_trainer, run_sft
from tests.training.test_sft import sft_args

JPEG_STREAM = json.dumps({"forensic_width": 8, "forensic_jpeg": True})


def test_cached_run_computes_each_image_once_and_trains_exactly_as_without(paired, tmp_path):
    common = ("--tiny_overrides", JPEG_STREAM, "--max_steps", "10", "--eval_strategy", "steps",
              "--eval_steps", "5", "--max_eval_samples", "6")
    plain = run_sft(*sft_args(paired, tmp_path / "plain", *common))
    cached = run_sft(*sft_args(paired, tmp_path / "cached", *common, "--forensic_map_cache", "1000"))
    # peft keeps the fusion's original beside the trained copy (modules_to_save): the copy has its own cache.
    caches = [m.map_cache for m in cached.model.modules() if getattr(m, "map_cache", None) is not None]
    assert len(caches) == 2 and sorted(c.misses > 0 for c in caches) == [False, True]
    cache = max(caches, key=lambda c: c.misses)
    train, evaluated = len(cached.train_dataset), len(cached.eval_dataset)
    # 10 steps of 4 = 40 training rows over fewer images (a second epoch), 3 evaluations of the same 6 images.
    assert 40 > train and cache.misses == len(cache) <= train + evaluated
    assert cache.hits >= 40 - train + 2 * evaluated
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (plain, cached)]
    assert len(losses[0]) == 10 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    evals = [[e["eval_verdict_auc"] for e in t.state.log_history if "eval_verdict_auc" in e] for t in (plain, cached)]
    assert evals[1] == pytest.approx(evals[0], abs=1e-6)


def test_map_cache_setting_is_checked(paired, tmp_path):
    with pytest.raises(SFTConfigError, match="forensic_map_cache=-1"):
        sft_args(paired, tmp_path / "a", "--forensic_map_cache", "-1")
    with pytest.raises(SFTConfigError, match="no forensic stream"):
        build_trainer(*sft_args(paired, tmp_path / "b", "--forensic_map_cache", "8"))

"""SFT with the anomaly-name head on ForgerySynth: its loss is logged and joins the loss, and the
head learns (forenx.modeling.names)."""

from __future__ import annotations

import json

import pytest
import torch

from forenx.data.synth import synthesize
from forenx.modeling.names import resolve_name_groups
from forenx.training.sft import build_trainer
from tests.training.test_sft import sft_args

NAMED = json.dumps({"forensic_width": 8, "forensic_names": "forgerysynth", "forensic_name_weight": 0.5})


def test_name_head_trains_and_is_logged(tmp_path):
    torch.set_num_threads(1)
    synthesize(tmp_path / "fs", n=24, seed=0, size=64, workers=1)
    trainer = build_trainer(*sft_args(tmp_path / "fs" / "records.jsonl", tmp_path / "run", "--tiny_overrides", NAMED,
                                      "--max_steps", "3"))
    head = next(m for n, m in trainer.model.named_modules()
                if n.endswith(".group_head") and m.weight.requires_grad)
    before = head.weight.detach().clone()
    trainer.train()
    logged = [e for e in trainer.state.log_history if "name_loss" in e]
    assert len(logged) == 3 and all(e["name_loss"] > 0 for e in logged)
    for e in logged:  # loss = LM + mapper + forensic + 0.5 x name
        assert e["loss"] == pytest.approx(e["lm_loss"] + e["mapper_loss"] + e["forensic_loss"] + 0.5 * e["name_loss"],
                                          rel=1e-3)
    assert not torch.equal(before, head.weight)
    config = trainer.model.config
    assert resolve_name_groups(config.forensic_names)["sharpening"][0] == "Local oversharpening"
    assert len(config.forensic_name_ids) == 10

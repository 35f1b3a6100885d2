"""SFT on paired ForgerySynth data (each real is the untouched original of one forgery) with the
forensic stream's pair ranking loss: the sampler, the batches, the loss, the checks."""

from __future__ import annotations

import json

import pytest
import torch

from forenx.data.synth import synthesize
from forenx.training.config import SFTConfigError
from forenx.training.sft import PairedRandomSampler, build_trainer, pair_keys, run_sft
from tests.training.test_sft import sft_args

STREAM = json.dumps({"forensic_width": 8})


def test_sampler_keeps_pairs_in_one_batch_and_is_fixed_by_seed_and_epoch():
    keys = ["a", "a", "b", "c", "c", "d", "d", "e", "f", "f"]  # b and e are lone records
    sampler = PairedRandomSampler(keys, batch_size=4, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(keys)))
    batches = [[keys[i] for i in order[s:s + 4]] for s in range(0, len(order), 4)]
    for key in ("a", "c", "d", "f"):
        assert sum(batch.count(key) for batch in batches if key in batch) == 2
        assert sum(key in batch for batch in batches) == 1, (key, batches)  # never split across batches
    assert list(PairedRandomSampler(keys, 4, seed=3)) == order
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(sampler) == list(range(len(keys)))


def test_paired_run_ranks_each_forgery_above_its_original(paired, tmp_path):
    trainer = build_trainer(*sft_args(paired, tmp_path / "run", "--tiny_overrides", STREAM,
                                      "--forensic_pair_weight", "2.0", "--max_steps", "3"))
    keys = pair_keys(trainer.train_dataset)
    assert len(set(keys)) < len(keys)  # the synth set's train split is paired
    assert isinstance(trainer._get_train_sampler(), PairedRandomSampler)
    batch = next(iter(trainer.get_train_dataloader()))
    ids = batch["pair_ids"].tolist()
    assert len(ids) == 4 and all(ids.count(i) == 2 for i in ids)  # two pairs, each forgery with its original
    # The trained copy of the stream (peft keeps the fusion's original beside it, frozen).
    stream = next(m for n, m in trainer.model.named_modules()
                  if n.endswith(".forensic") and any(p.requires_grad for p in m.parameters()))
    before = {n: p.detach().clone() for n, p in stream.named_parameters()}
    trainer.train()
    logged = [e for e in trainer.state.log_history if "pair_loss" in e]
    assert len(logged) == 3 and all(e["pair_loss"] > 0 and e["paired_rows"] == 1.0 for e in logged)
    # The logged loss holds the ranking term: loss = LM + mapper + forensic + 2 x pair (the model's part
    # is what lm/mapper/forensic say, with the default weights of 1).
    for e in logged:
        assert e["loss"] == pytest.approx(e["lm_loss"] + e["mapper_loss"] + e["forensic_loss"] + 2 * e["pair_loss"],
                                          rel=1e-3)
    assert any(not torch.equal(before[n], p) for n, p in stream.named_parameters())


def test_pair_weight_refuses_unpaired_data_a_model_without_stream_and_odd_batches(paired, tmp_path):
    unpaired = tmp_path / "plain"
    synthesize(unpaired, n=12, seed=0, size=64, workers=1)
    with pytest.raises(SFTConfigError, match="--paired train"):
        build_trainer(*sft_args(unpaired / "records.jsonl", tmp_path / "a", "--tiny_overrides", STREAM,
                                "--forensic_pair_weight", "1"))
    with pytest.raises(SFTConfigError, match="no forensic stream"):
        build_trainer(*sft_args(paired, tmp_path / "b", "--forensic_pair_weight", "1"))
    with pytest.raises(SFTConfigError, match="must be even"):
        sft_args(paired, tmp_path / "c", "--forensic_pair_weight", "1", "--per_device_train_batch_size", "3")
    with pytest.raises(SFTConfigError, match=">= 0"):
        sft_args(paired, tmp_path / "d", "--forensic_pair_weight", "-1")


def test_paired_data_without_the_weight_trains_as_before(paired, tmp_path):
    trainer = run_sft(*sft_args(paired, tmp_path / "run", "--tiny_overrides", STREAM, "--max_steps", "1"))
    assert not isinstance(trainer._get_train_sampler(), PairedRandomSampler)
    assert "pair_ids" not in trainer.data_collator([trainer.train_dataset[0]])
    assert not any("pair_loss" in e for e in trainer.state.log_history)


def test_an_ensemble_stream_ranks_each_members_pairs(paired, tmp_path):
    """forensic_members: 2 -- the pair ranking loss is the mean of each member's own ranking loss."""
    from forenx.modeling.heads import pair_ranking_loss, verdict_targets

    stream = json.dumps({"forensic_width": 8, "forensic_members": 2})
    trainer = build_trainer(*sft_args(paired, tmp_path / "run", "--tiny_overrides", stream,
                                      "--forensic_pair_weight", "2.0", "--max_steps", "1"))
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    loss = trainer.compute_loss(model, dict(batch))
    outputs = model(**{k: v for k, v in batch.items() if k != "pair_ids"})  # no dropout: the same forward
    members = outputs.forensic_member_logits
    assert members.shape == (4, 2)
    _, is_fake, _ = verdict_targets(batch["labels"], trainer.verdict_token_ids, trainer.answer_prefix_ids)
    pairs = [pair_ranking_loss(members[:, k], is_fake.float(), batch["pair_ids"]) for k in range(2)]
    assert pairs[0] != pairs[1]
    torch.testing.assert_close(loss, outputs.loss + 2.0 * (pairs[0] + pairs[1]) / 2)
    trainer.train()
    assert [e for e in trainer.state.log_history if "pair_loss" in e]

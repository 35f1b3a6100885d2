"""A tiny saved model and a small ForgerySynth set, made once per session (no network, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from forenx.modeling import tiny_model

    model, processor = tiny_model(0)
    path = tmp_path_factory.mktemp("eval-model") / "tiny"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def synth_records(tmp_path_factory) -> Path:
    """12 ForgerySynth samples (64 px), real and fake, three splits; returns records.jsonl."""
    from forenx.data.synth import synthesize

    out = tmp_path_factory.mktemp("eval-synth") / "forgerysynth"
    synthesize(out, 12, seed=0, size=64, workers=1)
    return out / "records.jsonl"

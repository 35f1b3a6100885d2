"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forenx.data.synth import synthesize


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    """A small paired ForgerySynth set (each training real is the untouched original of one forgery)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("paired") / "fs"
    synthesize(folder, n=40, seed=0, size=64, workers=1, paired="train")
    return folder / "records.jsonl"

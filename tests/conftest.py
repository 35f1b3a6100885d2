"""Shared test settings: offline, small thread counts, fixtures folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"

# Fixture folders hold data and helper scripts, not tests (and --doctest-modules must not import them).
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES

"""Tiny local encoders for the metric tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT with the real WordPiece vocabulary of all-MiniLM-L6-v2, saved to disk."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from forenx.metrics.scorers import default_sentence_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(default_sentence_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory) -> Path:
    """A 3-layer DistilBERT (the official encoder's architecture) with a real WordPiece vocabulary."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from forenx.metrics.scorers import default_sentence_model_path

    folder = tmp_path_factory.mktemp("tiny-distilbert")
    tokenizer = AutoTokenizer.from_pretrained(default_sentence_model_path())
    torch.manual_seed(1)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=3, n_heads=2, hidden_dim=64)
    DistilBertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

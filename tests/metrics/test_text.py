"""ROUGE-L, BLEU-1 and CSS (with a tiny CLIP text encoder built here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forenx.metrics.text import CLIPTextSimilarity, bleu1, rouge_l, text_metrics


def test_rouge_l_is_stemmed_f_measure():
    assert rouge_l("the cats were running", "the cat was running") == pytest.approx(0.75)  # cats->cat, running->run
    assert rouge_l("a b c", "a b c") == 1.0
    assert rouge_l("", "a b") == 0.0


def test_bleu1_clips_counts_and_penalises_brevity():
    assert bleu1("the the the", "the cat") == pytest.approx(1 / 3)  # clipped to one "the"
    assert bleu1("cat", "the cat sat") == pytest.approx(np.exp(1 - 3))  # precision 1, brevity e^(1-3)
    assert bleu1("", "x") == 0.0
    assert bleu1("a b", "a b") == 1.0


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        for token in (ch, ch + "</w>"):
            vocab[token] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModelWithProjection(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_css_is_the_cosine_of_clip_text_embeddings(tiny_clip):
    css = CLIPTextSimilarity(str(tiny_clip))
    scores = css(["a hand with six fingers", "a hand with six fingers"], ["a hand with six fingers", "blurry sky"])
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert -1.0 <= scores[1] < 0.999
    # CLIP reads 77 tokens: texts that differ only after that are the same text to it.
    long_a, long_b = "x" * 100 + " cat", "x" * 100 + " dog"
    assert css([long_a], [long_b])[0] == pytest.approx(1.0, abs=1e-6)
    assert css(["x cat"], ["x dog"])[0] < 0.999
    # Embeddings are unit vectors and each text is encoded once.
    vectors = css.embed(["a", "b", "a"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(css._cache) == len({"a hand with six fingers", "blurry sky", long_a, long_b, "x cat", "x dog", "a", "b"})


def test_text_metrics_averages_over_pairs(tiny_clip):
    result = text_metrics(["a b", "c"], ["a b", "d"], clip_encoder=str(tiny_clip))
    assert result["n"] == 2 and result["rouge_l"] == 0.5 and result["bleu1"] == 0.5
    assert 0.5 <= result["css"] <= 1.0
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        text_metrics(["a", "b"], ["a"])

"""The unsharp-mask trace: it finds ForgerySynth's sharpened region on a real photograph and nothing
on the untouched photo, noise or flat images; its filters are scipy's; the model adds it, weighted,
to the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from forenx.data.synth.manipulations import jpeg_roundtrip, manipulation
from forenx.inference.generation import generate_answers
from forenx.modeling import tiny_model
from forenx.modeling.sharpening import (
    SHARPENING_AMOUNTS,
    SHARPENING_RADII,
    _gaussian_response,
    sharpening_maps,
    sharpening_score,
)
from tests.modeling.regions import inside_and_far


def _pixels(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _inside_outside(maps: torch.Tensor, box: list[int]) -> tuple[float, float]:
    """Mean of a (H/8, W/8) map on the blocks well inside ``box`` (pixels) and its largest value far outside."""
    inside, far = inside_and_far(maps, box)
    return float(maps[inside].mean()), float(maps[far].max())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])  # amounts 0.83, 2.41, 0.96, 1.79; radii 2.2, 1.5, 1.9, 1.1
def test_the_map_finds_forgerysynths_sharpened_region_and_nothing_else(big_photo, seed):
    """Measured on these seeds: inside 0.38 - 0.72, the largest block far outside and anywhere on the
    untouched photo 0.18; a JPEG save (quality 95) afterwards takes the trace away (0.24)."""
    forged = manipulation("sharpening")(big_photo, np.random.default_rng(seed))
    box = forged.params["region_box"]
    maps = sharpening_maps(_pixels(forged.forged, big_photo))
    assert tuple(maps.shape) == (2, 1, 32, 32)
    inside, outside = _inside_outside(maps[0, 0], box)
    assert inside > 0.3 and outside < 0.25 and maps[1].max() < 0.25, (forged.params, inside, outside)
    scores = sharpening_score(_pixels(forged.forged, big_photo, jpeg_roundtrip(forged.forged, 95)))
    assert scores[0] == pytest.approx(float(maps[0].max())) and scores[0] > 0.4
    assert scores[1] < 0.25 and scores[2] < 0.3


def test_noise_flat_and_small_images_score_nothing_and_bad_shapes_are_named():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    flat = np.full((64, 64, 3), 120, np.uint8)
    assert sharpening_score(_pixels(noise)) < 0.1 and sharpening_score(_pixels(flat)) == 0  # flat: every filter fits
    small = torch.rand(2, 3, 24, 40)
    assert sharpening_score(small).tolist() == [0.0, 0.0] and sharpening_maps(small).abs().sum() == 0
    assert sharpening_score(torch.rand(1, 3, 50, 45)).shape == (1,)  # any size for the score
    with pytest.raises(ValueError, match="multiples of 8"):
        sharpening_maps(torch.rand(1, 3, 50, 45))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        sharpening_score(torch.rand(3, 64, 64))


def test_the_filters_undo_scipys_unsharp_mask_exactly_on_a_circular_image():
    """The tested filters are the unsharp mask ForgerySynth applies (scipy's truncated Gaussian): applied
    in frequency they equal scipy's result with wrap-around edges, and undoing them gives the pixels back."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (48, 40))
    for radius, amount in ((1.0, 0.8), (1.7, 1.3), (2.5, 2.5)):
        assert radius in SHARPENING_RADII and amount in SHARPENING_AMOUNTS
        g = _gaussian_response(radius, 48)[:, None] * _gaussian_response(radius, 40)[None, :]
        sharpened = np.fft.ifft2(np.fft.fft2(x) * (1 + amount * (1 - g))).real
        reference = x + amount * (x - ndimage.gaussian_filter(x, radius, mode="wrap"))
        np.testing.assert_allclose(sharpened, reference, atol=1e-9)
        np.testing.assert_allclose(np.fft.ifft2(np.fft.fft2(reference) / (1 + amount * (1 - g))).real, x, atol=1e-9)


def test_the_model_adds_the_weighted_trace_to_the_verdict(big_photo):
    """P(fake) = sigmoid((difference + bias + weight * trace) / temperature), in predict_proba and in the
    verdict the model writes; weight 0 leaves the model as it was."""
    model, processor = tiny_model(seed=0)
    forged = manipulation("sharpening")(big_photo, np.random.default_rng(1)).forged
    images = [Image.fromarray(forged[:56, :56]), Image.fromarray(big_photo[:56, :56])]
    inputs = processor.verdict_inputs(images)
    trace = sharpening_score(inputs["pixel_values"])
    base = model.predict_proba(**inputs)
    model.config.sharpening_evidence_weight, model.config.mapper_temperature = 3.0, 2.0
    p = model.predict_proba(**inputs)
    torch.testing.assert_close(model(**inputs, logits_to_keep=1).sharpening_trace, trace)  # the output carries it
    logit = lambda q: torch.log(q / (1 - q))  # noqa: E731
    torch.testing.assert_close(logit(p), (logit(base) + 3.0 * trace) / 2.0, atol=1e-4, rtol=1e-4)
    # Generation that encodes the images apart (the explainer's and run_eval's path) gets the same trace.
    features = model.model.get_image_features(inputs["pixel_values"])
    answers = generate_answers(model, inputs["input_ids"], inputs["attention_mask"], image_outputs=features,
                               max_new_tokens=1)
    torch.testing.assert_close(model.prob_fake_from_logits(answers.first_logits), p, atol=1e-5, rtol=1e-5)
    _, generated = model.generate_with_proba(**inputs, max_new_tokens=1, do_sample=False)
    torch.testing.assert_close(generated, p, atol=1e-5, rtol=1e-5)
    assert model.model.sharpening_trace is None  # taken: never left for a later batch
    model.config.sharpening_evidence_weight, model.config.mapper_temperature = 0.0, 1.0
    torch.testing.assert_close(model.predict_proba(**inputs), base)

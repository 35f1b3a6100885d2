"""The forensic stream: each map responds to the edit it is meant for, on a real photograph, and
the stream trains, saves and loads as part of the fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F
from transformers import AutoModelForImageTextToText

from forenx.data.synth.manipulations import jpeg_roundtrip, manipulation
from forenx.data.synth.photos import default_photos, load_photos
from forenx.modeling import ForenXConfig, build_model, tiny_model
from forenx.modeling.forensic import (
    BOUNDARY_CHANNELS,
    FORENSIC_CHANNELS,
    HISTOGRAM_CHANNELS,
    JPEG_CHANNELS,
    MAP_NAMES,
    RESAMPLING_CHANNELS,
    ForensicEncoder,
    MapCache,
    ResidualBranch,
    boundary_maps,
    duplicate_maps,
    forensic_maps,
    histogram_maps,
    jpeg_grid_maps,
    map_names,
    resampling_maps,
    stream_maps,
    use_map_cache,
    window_dct,
)
from forenx.modeling.heads import prefix_ends
from tests.modeling.regions import inside_and_far

NOISE, CHROMA_NOISE, COLUMN_PHASE = 2, 6, slice(11, 19)  # channel indices (see the module docstring)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 128 px crop of a shipped photograph (textured, with sensor noise)."""
    arrays, _ = load_photos([p for p in default_photos() if p.name == "chelsea"], 128)
    return np.ascontiguousarray(arrays["chelsea"][100:228, 150:278])


def _pixels(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def test_duplicates_mark_a_copied_patch_and_nothing_else(photo):
    forged = photo.copy()
    forged[80:120, 72:112] = photo[0:40, 8:48]  # block-aligned target and source
    maps = duplicate_maps(_pixels(photo, forged) * 255)
    assert maps[0].sum() == 0  # a photograph does not repeat itself
    textured = maps[1, 0]
    assert textured[10:15, 9:14].mean() > 0.9 and textured[0:5, 1:6].mean() > 0.9  # target and source
    outside = textured.clone()
    outside[10:15, 9:14] = 0
    outside[0:5, 1:6] = 0
    assert outside.max() == 0


def test_noise_and_blur_move_the_noise_map_inside_the_region_only(photo):
    rng = np.random.default_rng(0)
    noisy, blurred = photo.astype(np.float64), photo.astype(np.float64)
    noisy[32:96, 32:96] += rng.normal(0, 12, (64, 64, 3))
    blurred[32:96, 32:96] = ndimage.gaussian_filter(blurred, (2, 2, 0))[32:96, 32:96]
    maps = forensic_maps(_pixels(photo, *(np.clip(np.rint(x), 0, 255).astype(np.uint8) for x in (noisy, blurred))))
    change = maps[1:] - maps[0]
    inside = (slice(5, 11), slice(5, 11))
    # Colour noise shows in the chroma-noise map, blur as a drop of the luminance noise map.
    assert change[0, CHROMA_NOISE][inside].mean() > 1.0 and change[1, NOISE][inside].mean() < -1.0
    ring = torch.ones(16, 16, dtype=torch.bool)
    ring[3:13, 3:13] = False
    for k, channel in ((0, CHROMA_NOISE), (1, NOISE)):  # relative maps: the untouched surroundings stay put
        assert change[k, channel][ring].abs().mean() < 0.3


def test_column_phase_peaks_on_the_jpeg_grid_it_was_compressed_on(photo):
    aligned = jpeg_roundtrip(photo, 40)
    shifted = photo.copy()
    shifted[:, 3:] = jpeg_roundtrip(np.ascontiguousarray(photo[:, 3:]), 40)  # grid starts at column 3
    maps = forensic_maps(_pixels(aligned, shifted))
    peaks = maps[:, COLUMN_PHASE].mean((2, 3)).argmax(1).tolist()
    # The block edge between columns 7 and 8 is phase 7; after a 3 px shift it is between 10 and 11: phase 2.
    assert peaks == [7, 2]


def test_maps_shape_and_bad_input():
    maps = forensic_maps(torch.rand(1, 3, 40, 24))
    assert maps.shape == (1, FORENSIC_CHANNELS, 5, 3) and maps.isfinite().all()
    with pytest.raises(ValueError, match="multiples of 8"):
        forensic_maps(torch.rand(1, 3, 36, 36))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        forensic_maps(torch.rand(1, 1, 32, 32))


def test_forward_maps_is_forward_from_precomputed_maps():
    """The probe (eval/stream_probe.py) computes the maps once and calls forward_maps: same tokens,
    same logit, same name logits as forward on the pixels."""
    torch.manual_seed(0)
    encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, groups=3).eval()
    pixels = torch.rand(2, 3, 64, 64)
    tokens, logit = encoder(pixels)
    groups = encoder.group_logits
    tokens2, logit2 = encoder.forward_maps(forensic_maps(pixels))
    assert torch.equal(tokens, tokens2) and torch.equal(logit, logit2) and torch.equal(groups, encoder.group_logits)


def _inside_outside(maps: torch.Tensor, box: list[int]) -> tuple[float, float]:
    """Mean of a (H/8, W/8) map on the blocks well inside ``box`` (x0, y0, x1, y1 in pixels) and far outside it."""
    inside, far = inside_and_far(maps, box)
    return float(maps[inside].mean()), float(maps[far].mean())


@pytest.mark.parametrize(("seed", "drop"), [(0, 1.5), (3, 0.6)])  # second quality 51 and 82
def test_jpeg_grid_maps_find_a_region_recompressed_on_a_shifted_grid(big_photo, seed, drop):
    """ForgerySynth's double JPEG (a region compressed on the image's grid, then on one shifted by
    (dx, dy)): the shifted-grid DC channel drops inside the region, not around it (less at a higher
    second quality, whose DC step is smaller); the shifted-grid zeroed-AC channel rises there by
    about as much at either quality."""
    forged = manipulation("double_jpeg")(big_photo, np.random.default_rng(seed))
    box = forged.params["region_box"]
    maps = jpeg_grid_maps(_pixels(forged.forged))[0]
    inside, outside = _inside_outside(maps[0], box)
    assert inside < outside - drop, (forged.params, inside, outside)
    clean = jpeg_grid_maps(_pixels(big_photo))[0]
    assert _inside_outside(clean[0], box)[0] > inside + drop  # the same blocks of the untouched photo
    zeros_inside, zeros_outside = _inside_outside(maps[2], box)
    assert zeros_inside > zeros_outside + 0.25, (forged.params, zeros_inside, zeros_outside)
    assert _inside_outside(clean[2], box)[0] < zeros_inside - 0.25


def test_jpeg_grid_maps_find_a_region_saved_as_jpeg_on_the_image_grid(big_photo):
    """A region pasted from a JPEG save of the photo on its own grid lowers the aligned channel only there."""
    box = [64, 96, 192, 192]
    forged = big_photo.copy()
    forged[96:192, 64:192] = jpeg_roundtrip(big_photo, 70)[96:192, 64:192]
    maps = jpeg_grid_maps(_pixels(forged))[0]
    inside, outside = _inside_outside(maps[1], box)
    assert inside < outside - 1.0, (inside, outside)
    zeros_inside, zeros_outside = _inside_outside(maps[3], box)  # the own-grid zeroed-AC channel
    assert zeros_inside > zeros_outside + 0.2, (zeros_inside, zeros_outside)


def test_jpeg_grid_maps_say_nothing_on_flat_or_noise_images():
    """Flat windows (saturated sky: the same DC on every phase, a multiple of 8; all AC zero on every
    phase) are not taken for quantized, and unquantized noise gives no region; shapes, names and the
    maps the stream reads."""
    flat = jpeg_grid_maps(torch.ones(1, 3, 64, 64))
    assert flat.abs().max() < 1e-6
    noise = jpeg_grid_maps(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert tuple(noise.shape) == (2, JPEG_CHANNELS, 8, 8) and noise.abs().max() < 1.0
    assert noise[:, 2:].abs().max() < 0.05  # noise has no zeroed AC coefficients on any phase
    pixels = torch.rand(1, 3, 64, 64)
    assert stream_maps(pixels).shape[1] == FORENSIC_CHANNELS
    every = stream_maps(pixels, jpeg=True, boundary=True, histogram=True, resampling=True)
    assert len(MAP_NAMES) == len(set(MAP_NAMES)) == every.shape[1]
    assert torch.equal(stream_maps(pixels, jpeg=True)[:, FORENSIC_CHANNELS:], jpeg_grid_maps(pixels))
    for jpeg, boundary, histogram in ((False, True, False), (True, False, True), (False, False, False)):
        assert len(map_names(jpeg, boundary, histogram)) == stream_maps(pixels, jpeg, boundary, histogram).shape[1]
    assert torch.equal(stream_maps(pixels, boundary=True)[:, FORENSIC_CHANNELS:], boundary_maps(pixels))
    assert torch.equal(stream_maps(pixels, histogram=True)[:, FORENSIC_CHANNELS:], histogram_maps(pixels))
    assert torch.equal(every[:, -RESAMPLING_CHANNELS - HISTOGRAM_CHANNELS:-RESAMPLING_CHANNELS], histogram_maps(pixels))
    assert torch.equal(stream_maps(pixels, resampling=True)[:, FORENSIC_CHANNELS:], resampling_maps(pixels))
    assert torch.equal(every[:, -RESAMPLING_CHANNELS:], resampling_maps(pixels))
    assert len(map_names(resampling=True)) == FORENSIC_CHANNELS + RESAMPLING_CHANNELS
    with pytest.raises(ValueError, match="multiples of 8"):
        jpeg_grid_maps(torch.rand(1, 3, 60, 64))


def _unsharp(image: np.ndarray, box: list[int], amount: float = 1.5, radius: float = 1.5) -> np.ndarray:
    """``image`` with ForgerySynth's unsharp mask applied inside ``box`` (x0, y0, x1, y1) only."""
    base = image.astype(np.float64)
    sharp = np.clip(np.rint(base + amount * (base - ndimage.gaussian_filter(base, (radius, radius, 0)))), 0, 255)
    out = image.copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = sharp[y0:y1, x0:x1].astype(np.uint8)
    return out


def test_boundary_maps_step_inwards_all_around_a_sharpened_region(big_photo):
    """A rectangle sharpened in a photo: more fine energy inside, and the row / column steps are
    positive on its top / left outline and negative on its bottom / right one, more so than the
    photo's own maps on the same lines."""
    box = [64, 72, 176, 192]
    forged = boundary_maps(_pixels(_unsharp(big_photo, box)))[0]
    clean = boundary_maps(_pixels(big_photo))[0]
    assert tuple(forged.shape) == (BOUNDARY_CHANNELS, 32, 32)
    inside, outside = _inside_outside(forged[0] - clean[0], box)
    assert inside > outside + 0.5, (inside, outside)
    x0, y0, x1, y1 = (v // 8 for v in box)
    across = slice(x0 + 1, x1 - 1), slice(y0 + 1, y1 - 1)  # along each side, away from the corners
    top, bottom = forged[1, y0, across[0]].mean(), forged[1, y1, across[0]].mean()
    left, right = forged[2, across[1], x0].mean(), forged[2, across[1], x1].mean()
    assert top > 0.2 and bottom < -0.2 and left > 0.2 and right < -0.2, (top, bottom, left, right)
    # against the same lines of the untouched photo (measured: +0.34, -0.36, +0.38, -0.37)
    changes = (top - clean[1, y0, across[0]].mean(), bottom - clean[1, y1, across[0]].mean(),
               left - clean[2, across[1], x0].mean(), right - clean[2, across[1], x1].mean())
    assert changes[0] > 0.2 and changes[1] < -0.2 and changes[2] > 0.2 and changes[3] < -0.2, changes
    flat = boundary_maps(torch.full((1, 3, 64, 64), 0.5))
    assert flat.abs().max() < 1e-6  # no detail, no step


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("family", "maps_of", "channels"),
                         [("lighting", histogram_maps, HISTOGRAM_CHANNELS),
                          ("resampling", resampling_maps, RESAMPLING_CHANNELS)])
def test_trace_maps_find_their_manipulated_region(big_photo, seed, family, maps_of, channels):
    """ForgerySynth's lighting forgery (a rectangle or ellipse scaled by a gain of 0.6-0.85 or 1.2-1.6,
    rounded again) raises the histogram-comb map, its resampling forgery (a rectangle replaced by its
    centre enlarged 1.25 - 2.5 times with bilinear interpolation) the interpolation-fit map (measured on
    these seeds: channel 0 inside 1.8 - 4.2, outside and on the untouched photo 0 - 0.1): on the region's
    blocks, not far from it, and not on the same blocks of the untouched photo; both channels do."""
    forged = manipulation(family)(big_photo, np.random.default_rng(seed))
    box = forged.params["region_box"]
    maps = maps_of(_pixels(forged.forged))[0]
    clean = maps_of(_pixels(big_photo))[0]
    assert tuple(maps.shape) == (channels, 32, 32)
    for channel in range(channels):
        inside, outside = _inside_outside(maps[channel], box)
        assert inside > outside + 1.0, (forged.params, channel, inside, outside)
        assert inside > _inside_outside(clean[channel], box)[0] + 1.0


def test_histogram_maps_take_a_photograph_stretched_all_over_as_it_is():
    """A photograph whose whole histogram was stretched once (combed everywhere) scores high on the
    absolute channel everywhere and about 0 on the relative one; flat, dark or tiny windows score 0."""
    noise = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    smooth = (noise * 40 + 128).round().clamp(0, 255)  # a smooth histogram: about 1 z^2 a level, log1p 0.7 - 0.8
    assert histogram_maps(smooth / 255)[0, 0].max() < 1.0
    stretched = histogram_maps(((smooth * 0.6).round() * 1.5).round().clamp(max=255) / 255)[0]
    assert stretched[0].min() > 2.0 and stretched[1].abs().max() < 0.3  # against about 2.9 where combed
    assert histogram_maps(torch.full((1, 3, 64, 64), 0.5)).abs().max() == 0
    assert histogram_maps(torch.rand(1, 3, 16, 16) * 0.02).abs().max() == 0  # std under 10 grey levels
    with pytest.raises(ValueError, match="multiples of 8"):
        histogram_maps(torch.rand(1, 3, 60, 64))


def test_resampling_maps_see_an_enlargement_by_any_factor_and_not_flat_or_small_images():
    """An image enlarged all over fits one phase everywhere (absolute channel high at every factor tested,
    relative about 0); noise, a flat image and an image smaller than a window score (about) 0."""
    noise = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    quantized = (noise * 255).round() / 255
    plain = resampling_maps(quantized)[0]
    assert plain.abs().max() == 0  # noise fits no interpolation
    for factor in (1.3, 1.6, 2.0, 2.5):
        side = round(80 * factor) // 8 * 8
        enlarged = F.interpolate(quantized, size=(side, side), mode="bilinear", align_corners=False)
        maps = resampling_maps((enlarged * 255).round() / 255)[0]
        assert maps[0].min() > 2.0, (factor, maps[0].min())  # measured 2.9 - 7.6
        assert torch.equal(maps[1], maps[0] - maps[0].median())
    assert resampling_maps(torch.full((1, 3, 64, 64), 0.5)).abs().max() == 0
    assert resampling_maps(torch.rand(2, 3, 24, 40)).abs().max() == 0  # smaller than a 32 px window
    with pytest.raises(ValueError, match="multiples of 8"):
        resampling_maps(torch.rand(1, 3, 60, 64))


def test_residual_filters_see_residuals_not_brightness(photo):
    """The learned branch's first filters are zero-sum whatever their weights: a flat image gives no
    residual, and brightening the photo by a constant leaves the residuals away from the border as
    they were; the branch lands on the block grid."""
    torch.manual_seed(0)
    branch = ResidualBranch(width=8)
    with torch.no_grad():
        branch.filters.weight.add_(1.0)  # far from zero-sum before the constraint
        flat = branch.residuals(torch.full((1, 3, 32, 32), 0.5))
        assert flat[..., 2:-2, 2:-2].abs().max() < 1e-2  # a filter of these weights not made zero-sum: ~1e4
        pixels = _pixels(np.clip(photo.astype(int), 0, 200).astype(np.uint8))
        shifted = branch.residuals(pixels + 30 / 255)
        assert torch.allclose(branch.residuals(pixels)[..., 2:-2, 2:-2], shifted[..., 2:-2, 2:-2], atol=1e-2)
        assert tuple(branch(pixels).shape) == (1, 8, 16, 16)


def test_encoder_with_the_residual_branch_needs_the_pixels():
    torch.manual_seed(0)
    encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, residual=8).eval()
    pixels = torch.rand(2, 3, 64, 64)
    tokens, logit = encoder(pixels)
    tokens2, logit2 = encoder.forward_maps(forensic_maps(pixels), pixels)
    assert torch.equal(tokens, tokens2) and torch.equal(logit, logit2)
    with pytest.raises(ValueError, match="residual branch needs pixel_values"):
        encoder.forward_maps(forensic_maps(pixels))


def test_localisation_head_gives_a_logit_per_block():
    encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, localize=True)
    encoder(torch.rand(2, 3, 64, 64))
    assert tuple(encoder.mask_logits.shape) == (2, 8, 8)
    assert ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64).mask_head is None


def test_config_rejects_a_stream_that_cannot_run():
    towers = {"clip_config": {"hidden_size": 32, "patch_size": 10, "num_hidden_layers": 1, "num_attention_heads": 2,
                              "intermediate_size": 64},
              "dino_config": {"hidden_size": 24, "patch_size": 10, "num_hidden_layers": 1, "num_attention_heads": 2}}
    with pytest.raises(ValueError, match="multiple of 8"):
        ForenXConfig(image_size=60, forensic_width=16, **towers)
    with pytest.raises(ValueError, match="multiple of 4"):
        ForenXConfig(image_size=80, forensic_width=6, **towers)
    assert ForenXConfig(image_size=80, forensic_width=16, **towers).forensic_width == 16
    with pytest.raises(ValueError, match="forensic_residual=6"):
        ForenXConfig(image_size=80, forensic_width=16, forensic_residual=6, **towers)
    with pytest.raises(ValueError, match="needs the forensic stream"):
        ForenXConfig(image_size=80, forensic_residual=8, **towers)
    with pytest.raises(ValueError, match="forensic_jpeg=True"):
        ForenXConfig(image_size=80, forensic_jpeg=True, **towers)
    with pytest.raises(ValueError, match="forensic_boundary=True"):
        ForenXConfig(image_size=80, forensic_boundary=True, **towers)
    with pytest.raises(ValueError, match="forensic_histogram=True"):
        ForenXConfig(image_size=80, forensic_histogram=True, **towers)
    with pytest.raises(ValueError, match="forensic_resampling=True"):
        ForenXConfig(image_size=80, forensic_resampling=True, **towers)


def test_ensemble_encoder_is_the_mean_of_its_members_and_keeps_each():
    """members=3: two more conv nets of their own weights over the same maps; tokens, logit, group and
    mask logits are the members' means, each member's logits are kept; the first member's weights keep
    the single stream's names, so a one-stream checkpoint's keys are a subset."""
    with pytest.raises(ValueError, match="members=0"):
        ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, members=0)
    torch.manual_seed(0)
    encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, groups=5, localize=True, members=3)
    single = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, groups=5, localize=True)
    assert len(encoder.members) == 2 and single.members is not None and len(single.members) == 0
    assert set(single.state_dict()) < set(encoder.state_dict())
    assert not torch.equal(encoder.head.weight, encoder.members[0].head.weight)
    pixels = torch.rand(2, 3, 64, 64)
    tokens, logit = encoder(pixels)
    maps = stream_maps(pixels)
    parts = [encoder._forward_member(maps, pixels)] + [m._forward_member(maps, pixels) for m in encoder.members]
    groups = [encoder.group_logits, *(m.group_logits for m in encoder.members)]  # of the _forward_member calls
    assert tuple(encoder.member_logits.shape) == (2, 3) and tuple(encoder.member_group_logits.shape) == (3, 2, 5)
    for k, (member_tokens, member_logit) in enumerate(parts):
        torch.testing.assert_close(encoder.member_logits[:, k], member_logit)
        torch.testing.assert_close(encoder.member_group_logits[k], groups[k])
    torch.testing.assert_close(logit, encoder.member_logits.mean(-1))
    torch.testing.assert_close(tokens, torch.stack([t for t, _ in parts]).mean(0))
    encoder(pixels)
    torch.testing.assert_close(encoder.group_logits, encoder.member_group_logits.mean(0))
    assert tuple(encoder.mask_logits.shape) == (2, 8, 8)
    assert all(m.group_logits is None and m.mask_logits is None for m in encoder.members)  # nothing left behind
    assert single(pixels)[1].shape == (2,) and single.member_logits is None
    model = torch.nn.Sequential(encoder, single)
    assert use_map_cache(model, 4) == 2 and all(m.map_cache is None for m in encoder.members)


def test_ensemble_model_trains_each_member_by_its_own_losses(images, tmp_path):
    """forensic_members=3 in the model: the verdict evidence is the members' mean logit, forensic_loss
    and name_loss are the means of each member's own, every member gets gradients, and it saves and
    reloads; the config refuses members < 1 and an ensemble without the stream."""
    from forenx.modeling.heads import forensic_loss
    from forenx.modeling.names import NameTrie
    from tests.modeling.test_modeling import training_batch
    from tests.modeling.test_names import ANSWERS as NAMED

    with pytest.raises(ValueError, match="forensic_members=0"):
        tiny_model(seed=0, forensic_width=8, forensic_members=0)
    with pytest.raises(ValueError, match="forensic_members=2"):
        tiny_model(seed=0, forensic_members=2)
    model, processor = tiny_model(seed=0, forensic_width=8, forensic_members=3, forensic_verdict=True,
                                  forensic_names="forgerysynth")
    batch = training_batch(processor, images, NAMED)  # answers that name ForgerySynth anomalies
    out = model(**batch)
    members = out.forensic_member_logits
    assert tuple(members.shape) == (3, 3)
    torch.testing.assert_close(out.forensic_logit, members.mean(-1))
    ids, prefix = model.config.verdict_token_ids, model.config.answer_prefix_ids
    torch.testing.assert_close(out.forensic_loss, torch.stack(
        [forensic_loss(members[:, k], batch["labels"], ids, prefix) for k in range(3)]).mean())
    stream = model.model.fusion.forensic
    with torch.no_grad():
        stream(batch["pixel_values"])
    targets = model._name_trie.targets(batch["labels"])
    assert (targets >= 0).sum() == 2
    torch.testing.assert_close(out.name_loss, torch.stack(
        [NameTrie.loss(stream.member_group_logits[k], targets) for k in range(3)]).mean())
    out.loss.backward()
    for part in (stream, *stream.members):
        assert part.head.weight.grad.abs().sum() > 0 and part.group_head.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert loaded.config.forensic_members == 3 and len(loaded.model.fusion.forensic.members) == 2
    inputs = processor.verdict_inputs(images)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_proba(**inputs), loaded.predict_proba(**inputs), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("residual", "jpeg", "boundary", "histogram"),
                         [(0, False, False, False), (8, False, False, False), (0, True, True, True)])
def test_tiny_model_with_the_stream_trains_saves_and_reloads(images, tmp_path, residual, jpeg, boundary, histogram):
    resampling = histogram  # the last case has every map
    model, processor = tiny_model(seed=0, forensic_width=8, forensic_residual=residual, forensic_jpeg=jpeg,
                                  forensic_boundary=boundary, forensic_histogram=histogram,
                                  forensic_resampling=resampling)
    stream = model.model.fusion.forensic
    assert stream is not None and (stream.residual is not None) == bool(residual)
    assert (stream.jpeg, stream.boundary, stream.histogram, stream.resampling) == (jpeg, boundary, histogram, resampling)
    assert stream.stem[0][0].in_channels == (FORENSIC_CHANNELS + JPEG_CHANNELS * jpeg + BOUNDARY_CHANNELS * boundary
                                             + HISTOGRAM_CHANNELS * histogram + RESAMPLING_CHANNELS * resampling
                                             + residual)
    inputs = processor.verdict_inputs(images)
    out = model(**inputs)
    out.logits[:, -1].logsumexp(-1).sum().backward()
    grads = {n: p.grad for n, p in model.model.fusion.forensic.named_parameters()}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert loaded.config.forensic_width == 8 and loaded.config.forensic_residual == residual
    assert loaded.config.forensic_jpeg == jpeg and loaded.config.forensic_boundary == boundary
    assert loaded.config.forensic_histogram == histogram and loaded.model.fusion.forensic.histogram == histogram
    assert loaded.config.forensic_resampling == resampling and loaded.model.fusion.forensic.resampling == resampling
    reloaded = loaded.state_dict()
    assert all(torch.equal(value, reloaded[name]) for name, value in model.state_dict().items())
    with torch.no_grad():  # same weights; oneDNN may pick another kernel for differently aligned copies (~1e-7)
        torch.testing.assert_close(model(**inputs).logits, loaded(**inputs).logits, rtol=0, atol=1e-5)
    assert model._take_forensic_logit() is None  # each forward reads and clears it
    # The stream reads the float32 pixels even when the model runs in bfloat16.
    half = loaded.to(torch.bfloat16)
    with torch.no_grad():
        assert half(**inputs).logits.isfinite().all()


def test_forensic_loss_joins_the_loss_also_under_peft(images):
    """With labels the forensic logit gets its own BCE against the written verdict, logged apart
    and added with its weight; the same through a PEFT model whose fusion is in modules_to_save."""
    from peft import LoraConfig, get_peft_model

    from tests.modeling.test_modeling import LORA_TARGETS, training_batch

    model, processor = tiny_model(seed=0, forensic_width=8, forensic_loss_weight=0.5)
    batch = training_batch(processor, images)
    with torch.no_grad():
        out = model(**batch)
    assert out.forensic_loss > 0
    torch.testing.assert_close(out.loss, out.lm_loss + model.config.mapper_loss_weight * out.mapper_loss
                               + 0.5 * out.forensic_loss)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=LORA_TARGETS,
                                                  modules_to_save=["fusion", "multi_modal_projector"]))
    wrapped = peft_model(**batch)
    torch.testing.assert_close(wrapped.forensic_loss, out.forensic_loss)
    wrapped.loss.backward()
    head = [p for n, p in peft_model.named_parameters() if "forensic.head" in n and p.requires_grad]
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    no_stream, _ = tiny_model(seed=0)
    with torch.no_grad():
        assert no_stream(**batch).forensic_loss is None


def test_build_from_llava_initialises_the_stream(images, tmp_path):
    """The LLaVA path builds the fusion on the meta device; the stream's convolutions must be
    materialised and initialised with it."""
    from transformers import (
        CLIPVisionConfig,
        Dinov2Config,
        Dinov2Model,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from forenx.modeling.tokenizer import load_tokenizer
    from forenx.prompts import IMAGE_TOKEN
    from tests.modeling.test_builder import CLIP, DINO, llama_config  # the saved-parts helpers

    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**DINO)).save_pretrained(tmp_path / "dino")
    LlavaForConditionalGeneration(LlavaConfig(
        vision_config=CLIPVisionConfig(**CLIP), text_config=llama_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=16)).save_pretrained(tmp_path / "llava")
    tokenizer.save_pretrained(tmp_path / "llava")
    model, processor = build_model(llava=tmp_path / "llava", dino=tmp_path / "dino", fusion_heads=4, forensic_width=8)
    for name, parameter in model.model.fusion.forensic.named_parameters():
        assert not parameter.is_meta and parameter.isfinite().all(), name
    assert model.predict_proba(**processor.verdict_inputs(images)).isfinite().all()


def test_forensic_verdict_puts_the_stream_logit_into_the_verdict_slot(images):
    """forensic_verdict: P(fake) = sigmoid(LM difference + forensic logit) at the verdict slot, the
    same in predict_proba, generate, the explainer's cached path and the training loss; nothing
    else changes, and the mapper loss alone trains the stream."""
    import copy

    from forenx.inference.explainer import Explainer
    from tests.modeling.test_modeling import training_batch

    with pytest.raises(ValueError, match="forensic_verdict"):
        tiny_model(seed=0, forensic_verdict=True)
    model, processor = tiny_model(seed=0, forensic_width=8, forensic_verdict=True, forensic_loss_weight=0.0)
    plain = copy.deepcopy(model)
    plain.config.forensic_verdict = False
    inputs = processor.verdict_inputs(images)
    with torch.no_grad():
        evidence = model.model.fusion.forensic(inputs["pixel_values"])[1]
        p_with, p_plain = model.predict_proba(**inputs), plain.predict_proba(**inputs)
        logits, logits_plain = model(**inputs).logits, plain(**inputs).logits
    assert evidence.abs().min() > 0
    torch.testing.assert_close(torch.logit(p_with.double()), torch.logit(p_plain.double()) + evidence.double(),
                               atol=1e-4, rtol=0)
    changed = (logits != logits_plain).nonzero()
    # Only where the input ends with the answer prefix: the slot (the end of the prompt), and the
    # format example inside the prompt (harmless: no label and no generation reads it).
    ends = prefix_ends(inputs["input_ids"], model.config.answer_prefix_ids)
    assert set(changed[:, 1].tolist()) == set(ends.nonzero()[:, 1].tolist()) and ends[:, -1].all()
    assert set(changed[:, 2].tolist()) <= set(model.config.verdict_token_ids)
    _, p_generated = model.generate_with_proba(**inputs, max_new_tokens=1, do_sample=False)
    torch.testing.assert_close(p_generated, p_with)
    reports = Explainer(model, processor, batch_size=len(images), max_new_tokens=2, evidence=False)(images)
    torch.testing.assert_close(torch.tensor([r.prob_fake for r in reports]), p_with, atol=1e-5, rtol=0)

    batch = training_batch(processor, images)
    out, out_plain = model(**batch), plain(**batch)
    evidence = evidence[: len(batch["input_ids"])].detach()
    torch.testing.assert_close(torch.logit(out.prob_fake.detach().double()),
                               torch.logit(out_plain.prob_fake.detach().double()) + evidence.double(), atol=1e-4, rtol=0)
    assert out.lm_loss != out_plain.lm_loss  # the LM loss sees the slot as written too
    out.mapper_loss.backward()
    head = model.model.fusion.forensic.head.weight
    assert head.grad is not None and head.grad.abs().sum() > 0


def test_window_dct_is_jpegs_forward_dct_of_every_window():
    """Each 8 x 8 window's coefficients are scipy's orthonormal 2-D DCT-II of it (JPEG's FDCT), channel 8 u + v."""
    from scipy.fft import dctn

    luma = torch.rand(1, 1, 12, 14, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 255
    coefficients = window_dct(luma)
    assert tuple(coefficients.shape) == (1, 64, 5, 7)
    for y, x in ((0, 0), (3, 5), (4, 6)):
        reference = dctn(luma[0, 0, y:y + 8, x:x + 8].numpy(), norm="ortho")  # [v (rows), u (columns)]
        assert np.allclose(coefficients[0, :, y, x].view(8, 8).numpy(), reference.T, atol=1e-9)


def test_map_cache_returns_what_a_fresh_computation_gives_and_keeps_the_most_recent():
    torch.manual_seed(0)
    images = torch.rand(5, 3, 64, 64)
    images[3] = images[1]  # the same image twice in one batch is computed once
    fresh = stream_maps(images, jpeg=True)
    cache = MapCache(capacity=3)
    first = cache.maps(images[:4], jpeg=True)
    assert (cache.misses, cache.hits, len(cache)) == (3, 1, 3)
    assert torch.allclose(first, fresh[:4], atol=1e-5)  # each image alone or in a batch: the same maps
    again = cache.maps(images[[2, 1, 0]], jpeg=True)
    assert (cache.misses, cache.hits) == (3, 4) and torch.equal(again, first[[2, 1, 0]])
    cache.maps(images[4:], jpeg=True)  # a fourth image drops the least recently used one (image 2)
    assert len(cache) == 3 and cache.key(images[2], True) not in cache._maps
    assert cache.key(images[0], True) in cache._maps and cache.key(images[1], True) in cache._maps
    # Other maps asked for make another entry (other channels), never a wrong hit.
    assert cache.maps(images[:1], jpeg=False).shape[1] == FORENSIC_CHANNELS and cache.misses == 5
    assert cache.maps(images[:1], boundary=True).shape[1] == FORENSIC_CHANNELS + BOUNDARY_CHANNELS
    assert cache.misses == 6
    assert cache.maps(images[:1], histogram=True).shape[1] == FORENSIC_CHANNELS + HISTOGRAM_CHANNELS
    assert cache.misses == 7
    assert cache.maps(images[:1], resampling=True).shape[1] == FORENSIC_CHANNELS + RESAMPLING_CHANNELS
    assert cache.misses == 8
    with pytest.raises(ValueError, match="capacity=0"):
        MapCache(0)


def test_map_cache_keys_on_the_exact_values_and_copies_start_empty():
    import copy

    image = torch.rand(3, 32, 32)
    nudged = image.clone()
    nudged[0, 0, 0] += 1 / 255
    assert MapCache.key(image, False) != MapCache.key(nudged, False)
    assert MapCache.key(image, False) == MapCache.key(image.clone(), False)
    assert MapCache.key(image, False) != MapCache.key(image.to(torch.bfloat16), False)
    cache = MapCache(4)
    cache.maps(image[None], jpeg=False)
    copied = copy.deepcopy(cache)
    assert len(copied) == 0 and copied.capacity == 4 and len(cache) == 1


def test_encoder_with_a_map_cache_gives_the_same_tokens_and_gradients(big_photo):
    torch.manual_seed(0)
    encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64, jpeg=True)
    pixels = _pixels(big_photo[:64, :64], big_photo[64:128, 64:128], big_photo[128:192, 192:])

    def run():
        encoder.zero_grad()
        tokens, logit = encoder(pixels)
        (tokens.square().mean() + logit.sum()).backward()
        return tokens.detach(), [p.grad.clone() for p in encoder.parameters()]

    plain_tokens, plain_grads = run()
    holder = torch.nn.Sequential(encoder)
    assert use_map_cache(holder, 16) == 1 and encoder.map_cache is not None
    for _ in range(2):  # a miss, then a hit
        tokens, grads = run()
        assert torch.allclose(tokens, plain_tokens, atol=1e-5)
        assert all(torch.allclose(g, p, atol=1e-5) for g, p in zip(grads, plain_grads))
    assert (encoder.map_cache.misses, encoder.map_cache.hits) == (len(pixels), len(pixels))
    assert use_map_cache(holder, 0) == 1 and encoder.map_cache is None
    assert use_map_cache(torch.nn.Linear(2, 2), 8) == 0

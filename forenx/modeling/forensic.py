"""The forensic stream: fixed forensic feature maps and the small conv net that reads them.

A ViT that starts from RGB has to discover noise residuals, JPEG grids and pixel-exact
duplicates by itself; trained from scratch on a dozen photographs it learns the photographs
instead (measured on ForgerySynth: held-out verdict accuracy at chance). The forensic stream
hands the model what the forensics literature measures, as maps on the 8 x 8 block grid:

- duplicates (2 channels): blocks covered by an 8 x 8 window whose pixels occur, exactly, somewhere
  else in the image (copy-move, clone stamp); windows flatter than a grey-level std of 2 / 0.5 are
  ignored (flat sky repeats without being cloned);
- local statistics (9 channels, each relative to the image's own median, so a noisy camera is
  not "noisier than usual"): noise level (mean and local-minimum |Laplacian|), gradient energy,
  Laplacian-to-gradient ratio (sharpness), chroma noise, brightness, chroma (2), colourfulness;
- JPEG grid phase (16 channels): for each of the 8 column and 8 row phases, the share of the
  local gradient energy on that phase, against the local mean (an 8 x 8 grid that does not line
  up with the image's own grid shows as an off-phase peak).

With ``jpeg=True`` four more maps test JPEG quantization directly (:func:`jpeg_grid_maps`), each on
the image's own 8 x 8 grid and on the best of the 63 shifted grids (a region recompressed on a
shifted grid): whether the luma DC coefficients of the windows are multiples of one quantization
step, and how many of their 63 AC coefficients are zero (JPEG zeroes most of them; a window that
straddles two JPEG blocks does not).

With ``boundary=True`` three more maps look for the outline of a region whose fine detail was
changed (:func:`boundary_maps`): the fine-scale energy, and how much it steps up across every
horizontal and every vertical line. Sharpening, added noise or a splice raises the energy inside a
region and the step stops at its outline, where a natural change of texture rarely runs straight.

With ``histogram=True`` two more maps look for the comb that a change of gain leaves in the
histogram of the pixel values (:func:`histogram_maps`): scaling 8-bit values by 1.3 and rounding
never produces some levels and by 0.7 produces some twice, so the histogram of a region lit or
darkened after the fact has gaps or spikes one level apart, where a photograph's is smooth.

With ``resampling=True`` two more maps test whether a window is a linear interpolation of a smaller
image (:func:`resampling_maps`): an enlargement by a factor between 1.25 and 2.6 makes every column
(and row) of the window exactly piecewise linear between knots one factor apart, so for the right
factor and knot phase the window fits that subspace to within the rounding, and for the other
phases it does not; a photograph fits no phase much better than the others.

:class:`ForensicEncoder` turns the maps into one token per image patch (at the fusion width)
and a forensic logit (its own real / fake guess, pooled over the image); the logit is trained
against the answer's verdict (``forensic_loss``) and written into every token along one learnt
direction, so the language model has a strong, easily read summary next to the spatial tokens.
The model adds the tokens to the fused tokens. The maps are computed on the device from
``pixel_values`` in [0, 1], in float32 whatever the model's dtype (duplicates are matched on the
exact 8-bit values, which bfloat16 would not keep).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BLOCK", "BOUNDARY_CHANNELS", "FORENSIC_CHANNELS", "HISTOGRAM_CHANNELS", "JPEG_CHANNELS", "MAP_NAMES",
           "RESAMPLING_CHANNELS", "ForensicEncoder", "MapCache", "ResidualBranch", "boundary_maps", "duplicate_maps",
           "each_member", "forensic_maps", "histogram_maps", "jpeg_grid_maps", "map_names", "resampling_maps",
           "stream_maps", "use_map_cache", "window_dct"]

#: Side of the blocks the maps are computed on (the JPEG block).
BLOCK = 8
#: Channels of :func:`forensic_maps`.
FORENSIC_CHANNELS = 2 + 9 + 16
#: Channels of :func:`jpeg_grid_maps`.
JPEG_CHANNELS = 4
#: Channels of :func:`boundary_maps`.
BOUNDARY_CHANNELS = 3
#: Channels of :func:`histogram_maps`.
HISTOGRAM_CHANNELS = 2
#: Channels of :func:`resampling_maps`.
RESAMPLING_CHANNELS = 2
_FORENSIC_NAMES = (
    "duplicate windows (std > 2)", "duplicate windows (std > 0.5)",
    "noise |Laplacian|", "noise local-min |Laplacian|", "gradient energy", "Laplacian / gradient",
    "chroma noise", "brightness", "chroma R-G", "chroma B-G", "colourfulness",
    *(f"column phase {i}" for i in range(BLOCK)), *(f"row phase {i}" for i in range(BLOCK)),
)
_JPEG_NAMES = ("JPEG DC steps, shifted grid", "JPEG DC steps, own grid", "JPEG zeroed AC, shifted grid",
               "JPEG zeroed AC, own grid")
_BOUNDARY_NAMES = ("fine energy", "fine energy step across rows", "fine energy step across columns")
_HISTOGRAM_NAMES = ("histogram comb", "histogram comb, relative")
_RESAMPLING_NAMES = ("resampling fit", "resampling fit, relative")


def map_names(jpeg: bool = False, boundary: bool = False, histogram: bool = False,
              resampling: bool = False) -> tuple[str, ...]:
    """One name per channel of :func:`stream_maps` with these options, in order."""
    return (_FORENSIC_NAMES + _JPEG_NAMES * jpeg + _BOUNDARY_NAMES * boundary + _HISTOGRAM_NAMES * histogram
            + _RESAMPLING_NAMES * resampling)


#: Every map's name: the channels of :func:`stream_maps` with every option on.
MAP_NAMES = map_names(jpeg=True, boundary=True, histogram=True, resampling=True)
#: The DC quantization steps tested: those of the standard (IJG) luminance table at qualities 50-95.
_DC_STEPS = tuple(float(step) for step in range(2, 17))
_LUMA = (0.299, 0.587, 0.114)
#: |AC coefficient| (grey levels) below which it counts as zero: about twice the std of the error
#: that rounding the decoded RGB to 8 bits leaves in the luma (0.19).
_ZERO_AC = 0.4
_FLAT_VAR = 1.0  # luma variance (grey levels^2) below which a window is flat
_DUP_STD = (2.0, 0.5)
_EPS = 0.5
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _hash_weights(device: torch.device) -> torch.Tensor:
    """Two rows of 8 odd 62-bit multipliers: one across a window's columns, one down its rows."""
    generator = torch.Generator().manual_seed(0x5EED)
    weights = torch.randint(1, 2**62, (2, BLOCK), generator=generator, dtype=torch.int64)
    return (weights | 1).to(device)


def _largest_covering(scores: torch.Tensor, window: tuple[int, int], stride: int, rows: int, cols: int) -> torch.Tensor:
    """Window scores ``(B, C, h, w)`` (at least 0; windows ``window`` cells tall and wide, every ``stride``
    cells: pixels or blocks) onto the ``rows`` x ``cols`` grid of cells: each cell the largest score of the
    windows over it; a cell past the last window repeats the cell before it."""
    spread = scores.repeat_interleave(stride, 2).repeat_interleave(stride, 3) if stride > 1 else scores
    reach = (window[0] - stride, window[1] - stride)
    covered = F.max_pool2d(F.pad(spread, (reach[1], reach[1], reach[0], reach[0])), (reach[0] + 1, reach[1] + 1), 1)
    return F.pad(covered, (0, cols - covered.shape[3], 0, rows - covered.shape[2]), mode="replicate")


def duplicate_maps(pixels: torch.Tensor) -> torch.Tensor:
    """Share of each 8 x 8 block covered by a window that repeats, pixel for pixel, elsewhere.

    ``pixels``: ``(B, 3, H, W)`` 8-bit values (float or integer). Returns ``(B, 2, H/8, W/8)``,
    one channel per texture threshold (window grey-level std above 2 and above 0.5).

    >>> image = torch.randint(0, 256, (1, 3, 32, 32)).float()
    >>> duplicate_maps(image).sum().item()
    0.0
    >>> image[..., 16:28, 16:28] = image[..., 0:12, 0:12]
    >>> maps = duplicate_maps(image)
    >>> maps[0, 0, 0, 0].item(), maps[0, 0, 2, 2].item(), maps[0, 0, 0, 3].item()  # source, copy, elsewhere
    (1.0, 1.0, 0.0)
    """
    batch, _, height, width = pixels.shape
    values = pixels.round().to(torch.int64).clamp(0, 255)
    packed = (values[:, 0] << 16) | (values[:, 1] << 8) | values[:, 2]  # (B, H, W)
    rows, cols = height - BLOCK + 1, width - BLOCK + 1
    weights = _hash_weights(pixels.device)
    # A separable polynomial hash mod 2**64 (int64 products wrap around): along rows, then columns.
    across = sum(packed[:, :, j:j + cols] * weights[0, j] for j in range(BLOCK))
    digest = sum(across[:, i:i + rows] * weights[1, i] for i in range(BLOCK))
    # One unique() for the batch: the image index goes into the hash so images never match each other.
    digest = digest + torch.arange(batch, device=pixels.device).view(-1, 1, 1) * 0x1E3779B97F4A7C15
    _, inverse, counts = torch.unique(digest.flatten(), return_inverse=True, return_counts=True)
    repeated = (counts[inverse] > 1).view(batch, 1, rows, cols)
    grey = pixels.float().mean(1, keepdim=True)
    mean = F.avg_pool2d(grey, BLOCK, 1)
    std = (F.avg_pool2d(grey * grey, BLOCK, 1) - mean * mean).clamp_min(0).sqrt()
    maps = []
    for threshold in _DUP_STD:
        windows = (repeated & (std > threshold)).float()
        # A pixel is covered when any window starting up to 7 px above / left of it repeats.
        covered = _largest_covering(windows, (BLOCK, BLOCK), 1, height, width)
        maps.append(F.avg_pool2d(covered, BLOCK))
    return torch.cat(maps, 1)


def _relative(maps: torch.Tensor) -> torch.Tensor:
    """Each channel minus its median over the image."""
    return maps - maps.flatten(2).median(2).values[..., None, None]


def _phase_maps(energy: torch.Tensor, dim: int) -> torch.Tensor:
    """Log share of ``energy`` ``(B, 1, H, W)`` on each of the 8 phases along ``dim`` (3: columns,
    2: rows), per block, smoothed over a 5 x 5 block window, against the window's mean."""
    batch, _, height, width = energy.shape
    grid = energy.view(batch, height // BLOCK, BLOCK, width // BLOCK, BLOCK)
    per_phase = grid.sum(2) if dim == 3 else grid.sum(4).transpose(2, 3)  # (B, H/8, W/8, 8)
    per_phase = per_phase.permute(0, 3, 1, 2) / BLOCK  # (B, 8, H/8, W/8): mean energy on the phase
    local = F.avg_pool2d(per_phase, 5, 1, 2, count_include_pad=False) + 0.1
    return (local / local.mean(1, keepdim=True)).log()


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    """The 4-neighbour Laplacian of each channel of ``x`` ``(B, C, H, W)``, borders reflected."""
    kernel = _LAPLACE.to(x).view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])


def _check_pixels(pixel_values: torch.Tensor, where: str) -> None:
    _, channels, height, width = pixel_values.shape
    if channels != 3 or height % BLOCK or width % BLOCK:
        raise ValueError(f"{where}: need (B, 3, H, W) with H and W multiples of {BLOCK}, "
                         f"got {tuple(pixel_values.shape)}")


def forensic_maps(pixel_values: torch.Tensor) -> torch.Tensor:
    """The forensic feature maps of ``pixel_values`` ``(B, 3, H, W)`` in [0, 1]: ``(B, 27, H/8, W/8)``.

    ``H`` and ``W`` must be multiples of 8. See the module docstring for the channels.

    >>> maps = forensic_maps(torch.rand(2, 3, 64, 48))
    >>> tuple(maps.shape), bool(maps.isfinite().all())
    ((2, 27, 8, 6), True)
    """
    _check_pixels(pixel_values, "forensic_maps")
    pixels = (pixel_values.float() * 255).round()
    grey = pixels.mean(1, keepdim=True)
    lap = _laplacian(grey).abs()
    lap_min = -F.max_pool2d(-lap, 3, 1, 1)
    dx = F.pad((grey[..., :, 1:] - grey[..., :, :-1]).abs(), (0, 1))
    dy = F.pad((grey[..., 1:, :] - grey[..., :-1, :]).abs(), (0, 0, 0, 1))
    chroma = torch.cat([pixels[:, :1] - pixels[:, 1:2], pixels[:, 2:] - pixels[:, 1:2]], 1)
    chroma_lap = _laplacian(chroma).abs()

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, BLOCK)

    log_lap, log_grad = (pool(lap) + _EPS).log(), (pool(dx + dy) + _EPS).log()
    local = torch.cat([
        log_lap, (pool(lap_min) + _EPS).log(), log_grad, log_lap - log_grad,
        (pool(chroma_lap).sum(1, keepdim=True) + _EPS).log(),
        (pool(grey) + 1).log(), pool(chroma) / 32, (pool(chroma.abs()).sum(1, keepdim=True) + 1).log(),
    ], 1)
    return torch.cat([duplicate_maps(pixels), _relative(local), _phase_maps(dx, 3), _phase_maps(dy, 2)], 1)


def _box_mean(x: torch.Tensor, side: int) -> torch.Tensor:
    """Mean of ``x`` ``(..., h, w)`` over ``side`` x ``side`` windows, cut at the borders (two banded matmuls)."""

    def band(n: int) -> torch.Tensor:
        index = torch.arange(n, device=x.device)
        near = ((index[:, None] - index[None, :]).abs() <= side // 2).to(x.dtype)
        return near / near.sum(1, keepdim=True)

    return band(x.shape[-2]) @ x @ band(x.shape[-1]).T


def window_dct(luma: torch.Tensor) -> torch.Tensor:
    """The orthonormal 8 x 8 DCT-II (JPEG's forward DCT) of every 8 x 8 window of ``luma`` ``(B, 1, H, W)``:
    ``(B, 64, H - 7, W - 7)``, channel ``8 u + v`` for horizontal frequency ``u`` and vertical ``v`` (0: DC).
    Separable: 8 row transforms, then 8 column transforms of each (576 multiply-adds a pixel, not 4,096).

    >>> image = torch.rand(1, 1, 8, 8) * 255
    >>> coefficients = window_dct(image)
    >>> tuple(coefficients.shape), abs(coefficients[0, 0, 0, 0].item() / 8 - image.mean().item()) < 1e-3  # DC: 8 x mean
    ((1, 64, 1, 1), True)
    >>> bool(torch.isclose(coefficients.square().sum(), image.square().sum()))  # orthonormal: energy kept
    True
    """
    index = torch.arange(BLOCK, dtype=torch.float64)
    scale = torch.full((BLOCK, 1), (2 / BLOCK) ** 0.5, dtype=torch.float64)
    scale[0] = (1 / BLOCK) ** 0.5
    cosines = (scale * torch.cos((2 * index[None, :] + 1) * index[:, None] * torch.pi / (2 * BLOCK))).to(luma)  # (u, x)
    rows = F.conv2d(luma, cosines.view(BLOCK, 1, 1, BLOCK))  # (B, 8 u, H, W - 7)
    return F.conv2d(rows, cosines.repeat(BLOCK, 1).view(BLOCK * BLOCK, 1, BLOCK, 1), groups=BLOCK)


def jpeg_grid_maps(pixel_values: torch.Tensor, pool: int = 7, zero_pool: int = 5) -> torch.Tensor:
    """JPEG quantization on the 8 x 8 grids of ``pixel_values`` ``(B, 3, H, W)`` in [0, 1]: ``(B, 4, H/8, W/8)``.

    A JPEG stores each 8 x 8 block's DCT coefficients as multiples of a quantization step; after
    decoding, the windows on that grid keep the trace, while the windows on any other grid phase
    (which straddle two blocks) do not. Two tests, each on every window (all 64 grid phases):

    - DC steps (channels 0, 1): the DC coefficient (8 x the window's mean luma, less 1024) divided
      by every DC step of the standard tables at qualities 50-95 (2-16); the squared distance to
      the nearest integer, averaged over the ``pool`` x ``pool`` neighbouring blocks at the same
      phase (unquantized: about 1/12; quantized: near 0), smallest over the steps; flat windows
      (saturated sky: the same DC on every phase) are ignored. As logs relative to the image's
      median: lower is more quantized.
    - Zeroed AC coefficients (channels 2, 3): the share of a window's 63 AC coefficients below
      :data:`_ZERO_AC` in magnitude (JPEG at qualities up to 90 zeroes most of them; a window across
      two blocks carries the blocks' edges), averaged over the ``zero_pool`` x ``zero_pool``
      neighbouring blocks at the same phase, against the mean over the 64 phases (a smooth area has
      zeros on every phase, so it says nothing); relative to the image's median: higher is more
      quantized. It needs no quality table and sees the textured regions the DC test misses:
      untrained, the mean of its 4 largest blocks on the shifted grids separates ForgerySynth's
      double-JPEG forgeries on the nano val and test photos from their reals at AUC 1.000
      (``eval/map_scores.py``; the DC channel: 0.878 / 0.939).

    Channels 0 and 2 take the most quantized of the 63 shifted phases (a region recompressed on a
    grid that does not line up with the image's: double JPEG, a pasted JPEG); channels 1 and 3 the
    image's own grid (a JPEG save). Relative to the image, so a JPEG-saved photo is not "quantized
    everywhere".

    >>> maps = jpeg_grid_maps(torch.rand(2, 3, 64, 48))
    >>> tuple(maps.shape), bool(maps.isfinite().all())
    ((2, 4, 8, 6), True)
    """
    _check_pixels(pixel_values, "jpeg_grid_maps")
    pixels = pixel_values.float() * 255
    luma = (pixels * pixels.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True) - 128
    mean = F.avg_pool2d(luma, BLOCK, 1)
    flat = F.avg_pool2d(luma.square(), BLOCK, 1) - mean.square() < _FLAT_VAR
    grid = (0, BLOCK - 1, 0, BLOCK - 1)
    # (B, 64 phases, H/8, W/8): the DC of the window at phase (py, px) of every block.
    dc = F.pixel_unshuffle(F.pad(mean * BLOCK, grid, mode="replicate"), BLOCK)
    flat = F.pixel_unshuffle(F.pad(flat.float(), grid, value=1.0), BLOCK).bool()
    ratio = dc.unsqueeze(1) / pixels.new_tensor(_DC_STEPS).view(1, -1, 1, 1, 1)
    # A flat window (saturated sky) has the same DC on every phase, often a multiple of 8: it says nothing.
    residual = (ratio - ratio.round()).square_().masked_fill_(flat.unsqueeze(1), 1 / 12)
    residual = _box_mean(residual, pool)  # (B, steps, 64, H/8, W/8)
    dc_maps = torch.stack([residual[:, :, 1:].amin((1, 2)), residual[:, :, 0].amin(1)], 1)
    # The share of zeroed AC coefficients of every window, per phase, pooled over same-phase neighbours.
    zeros = (window_dct(luma)[:, 1:].abs() < _ZERO_AC).float().mean(1, keepdim=True)
    zeros = F.pixel_unshuffle(F.pad(zeros, grid, mode="replicate"), BLOCK)
    zeros = F.avg_pool2d(zeros, zero_pool, 1, zero_pool // 2, count_include_pad=False)
    zeros = zeros - zeros.mean(1, keepdim=True)
    zero_maps = torch.stack([zeros[:, 1:].amax(1), zeros[:, 0]], 1)
    return _relative(torch.cat([dc_maps.clamp_min(1e-4).log(), zero_maps], 1))


def boundary_maps(pixel_values: torch.Tensor, band: int = 5) -> torch.Tensor:
    """Where fine detail steps up across a line, in ``pixel_values`` ``(B, 3, H, W)`` in [0, 1]: ``(B, 3, H/8, W/8)``.

    The fine-scale energy of every pixel is the log of the Laplacian's square summed over R, G and B,
    averaged over 3 x 3 (channel 0). Its step across the line between rows ``y - 1`` and ``y`` is the
    mean energy of the ``band`` rows from ``y`` down minus that of the ``band`` rows above (channel 1;
    positive: more detail below), and likewise across columns (channel 2; positive: more to the right),
    each divided by its spread over the image and squashed by tanh. A region sharpened, noised or
    pasted has a step all around its outline, with opposite signs on opposite sides; a natural change
    of texture rarely runs along a straight line or an ellipse. Averaged over the 8 x 8 blocks and
    relative to the image's median. On the stream alone with the JPEG maps (``eval/stream_probe.py
    --jpeg --boundary``, 3 seeds) they took the nano val / test AUC from 0.885 / 0.916 to 0.887 / 0.930.

    >>> maps = boundary_maps(torch.rand(2, 3, 64, 48))
    >>> tuple(maps.shape), bool(maps.isfinite().all())
    ((2, 3, 8, 6), True)
    """
    _check_pixels(pixel_values, "boundary_maps")
    pixels = pixel_values.float() * 255
    energy = _laplacian(pixels).square().sum(1, keepdim=True)
    energy = F.avg_pool2d(F.pad(energy, (1, 1, 1, 1), mode="reflect"), 3, 1).add(0.1).log()  # (B, 1, H, W)

    def step(dim: int) -> torch.Tensor:
        # mean of the band from each line on, minus that of the band before it; 0 where a band would leave the image
        kernel = (band, 1) if dim == 2 else (1, band)
        ahead = F.avg_pool2d(energy, kernel, 1)  # index y: rows y .. y + band - 1
        size = energy.shape[dim]
        diff = ahead.narrow(dim, band, size - 2 * band + 1) - ahead.narrow(dim, 0, size - 2 * band + 1)
        pad = [0, 0, 0, 0]
        pad[2 * (3 - dim):2 * (3 - dim) + 2] = [band, band - 1]
        diff = F.pad(diff, pad)
        return torch.tanh(diff / diff.std((2, 3), keepdim=True).clamp_min(1e-6))

    maps = F.avg_pool2d(torch.cat([energy, step(2), step(3)], 1), BLOCK)
    return _relative(maps)


_HISTOGRAM_MIN_STD = 10.0  # grey levels: a window narrower than this has a peaky histogram without any gain
_HISTOGRAM_MIN_COUNT = 6.0  # expected pixels at a level for it to be tested


def histogram_maps(pixel_values: torch.Tensor, window: int = 8) -> torch.Tensor:
    """The comb a gain leaves in the histogram, in ``pixel_values`` ``(B, 3, H, W)`` in [0, 1]: ``(B, 2, H/8, W/8)``.

    Every ``window`` x ``window``-block window (64 x 64 pixels; the whole image if it is smaller) gets the
    histogram of each colour channel's 256 levels. A photograph's is smooth from one level to the next;
    values scaled by a gain and rounded again are not: 1.3 never produces about one level in four, 0.7
    produces about two in five twice. Each level's count is compared with the cubic through its four
    neighbours (z^2 = (count - expected)^2 / (1.9 expected + 1), about 1 for Poisson counts), over the levels
    expected at least 6 times; the window's score is the mean z^2 over them (0 for a window whose std is
    under 10 grey levels: its histogram is peaky anyway), averaged over R, G and B, log1p. Each block takes
    the largest score of the windows over it (channel 0) and that minus the image's median (channel 1;
    a photograph whose histogram was stretched once is combed all over). Untrained (the mean of each image's
    4 largest blocks), channel 0 separates ForgerySynth's lighting forgeries from the reals at AUC 0.94 on
    the nano val photographs and 1.00 on `flower`, where the trained stream without them reached 0.66 and 0.57.

    >>> maps = histogram_maps(torch.rand(2, 3, 64, 48))
    >>> tuple(maps.shape), bool(maps.isfinite().all())
    ((2, 2, 8, 6), True)
    >>> noise = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    >>> smooth = (noise * 40 + 128).round().clamp(0, 255) / 255  # a smooth histogram
    >>> gained = (smooth * 255 * 0.7).round() / 255  # scaled by 0.7: some levels twice as often
    >>> round(histogram_maps(smooth)[0, 0].mean().item(), 1), bool(histogram_maps(gained)[0, 0].min() > 2)
    (0.8, True)
    """
    _check_pixels(pixel_values, "histogram_maps")
    pixels = (pixel_values.float() * 255).round().clamp(0, 255).long()
    batch, channels, height, width = pixels.shape
    rows, cols = height // BLOCK, width // BLOCK
    device = pixels.device
    # one histogram per block and channel, by a single bincount: (B * 3, 256, rows, cols)
    block = (torch.arange(height, device=device) // BLOCK)[:, None] * cols + (torch.arange(width, device=device) // BLOCK)
    plane = torch.arange(batch * channels, device=device).view(batch, channels, 1, 1) * (rows * cols)
    index = ((plane + block) * 256 + pixels).flatten()
    hist = torch.bincount(index, minlength=batch * channels * rows * cols * 256).float()
    hist = hist.view(batch * channels, rows, cols, 256).permute(0, 3, 1, 2)
    side = (min(window, rows), min(window, cols))
    hist = F.avg_pool2d(hist, side, 1) * (side[0] * side[1])  # each window's histogram
    levels = torch.arange(256, device=device, dtype=hist.dtype).view(1, 256, 1, 1)
    count = hist.sum(1, keepdim=True)
    mean = (hist * levels).sum(1, keepdim=True) / count
    std = ((hist * (levels - mean).square()).sum(1, keepdim=True) / count).sqrt()
    expected = ((4 * (hist[:, 1:-3] + hist[:, 3:-1]) - hist[:, :-4] - hist[:, 4:]) / 6).clamp_min(0)
    tested = expected >= _HISTOGRAM_MIN_COUNT
    tested[:, 0] = tested[:, -1] = False  # levels 2 and 253: next to the clipped ends
    z2 = (hist[:, 2:-2] - expected).square() / (1.9 * expected + 1)
    used = tested.sum(1, keepdim=True)
    score = (z2 * tested).sum(1, keepdim=True) / used.clamp_min(1)
    score = torch.where((used >= 10) & (std >= _HISTOGRAM_MIN_STD), score, torch.zeros_like(score))
    score = score.view(batch, channels, *score.shape[-2:]).mean(1, keepdim=True).log1p()
    per_block = _largest_covering(score, side, 1, rows, cols)
    return torch.cat([per_block, _relative(per_block)], 1)


_RESAMPLING_WINDOW = 32  # pixels: the side of the windows tested (every 16 pixels)
_RESAMPLING_SCALES = 124  # source-to-window scales tested, evenly from 1 / 2.6 to 1 / 1.25
_RESAMPLING_PHASES = 16  # knot phases tested for each scale


@functools.lru_cache(maxsize=4)
def _interpolation_projections(side: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(side * side, scales * phases)``: column ``(s, c)`` is the flattened projection onto the signals of
    length ``side`` that are linear between knots at the window positions ``y`` where ``s * y + c`` is whole;
    and ``(scales, phases)``: the dimensions outside each subspace."""
    scales = torch.linspace(1 / 2.6, 1 / 1.25, _RESAMPLING_SCALES, dtype=torch.float64)
    phases = torch.arange(_RESAMPLING_PHASES, dtype=torch.float64) / _RESAMPLING_PHASES
    y = torch.arange(side, dtype=torch.float64)
    projections, outside = [], []
    for scale in scales:
        for phase in phases:
            x = scale * y + phase  # each window position in the source's pixel units
            knots = torch.arange(int(x[0].floor()), int(x[-1].ceil()) + 1, dtype=torch.float64)
            hats = (1 - (x[:, None] - knots[None]).abs()).clamp_min(0)  # linear interpolation's weights
            basis = torch.linalg.qr(hats).Q
            projections.append((basis @ basis.T).flatten())
            outside.append(side - len(knots))
    shape = (_RESAMPLING_SCALES, _RESAMPLING_PHASES)
    return torch.stack(projections, 1).to(device), torch.tensor(outside, dtype=torch.float64, device=device).view(shape)


def _interpolation_fit(luma: torch.Tensor, side: int, stride: int) -> torch.Tensor:
    """Per ``side`` x ``side`` window of ``luma`` ``(B, H, W)`` (every ``stride`` pixels): ``(B, h, w,
    scales)``, for each scale minus the log of the best phase's residual over the phases' median, for
    the window's columns (the residual energy outside the interpolation subspace, plus a floor), less
    the log of how many times the best residual exceeds 4 times what 8-bit rounding leaves there; at
    least 0."""
    windows = luma.unfold(1, side, stride).unfold(2, side, stride)  # (B, h, w, rows, columns)
    batch, rows, cols = windows.shape[:3]
    columns = windows.reshape(-1, side, side).double()
    columns = columns - columns.mean(1, keepdim=True)  # a constant lies in every subspace
    gram = columns @ columns.transpose(1, 2)  # over the window's columns
    total = gram.diagonal(dim1=1, dim2=2).sum(-1, keepdim=True)
    projections, outside = _interpolation_projections(side, str(luma.device))
    residual = (total - gram.flatten(1) @ projections).clamp_min(0).view(-1, _RESAMPLING_SCALES, _RESAMPLING_PHASES)
    best, phase = residual.min(-1)
    ratio = (best + side / 8) / (residual.median(-1).values + side / 8)
    # 8-bit rounding of R, G and B (and of a first pass): about 1/24 grey level^2 a pixel in the luma
    rounding = outside.gather(1, phase.T).T * side / 24
    excess = (best / (4 * rounding)).clamp_min(1).log()  # 0 for a fit to within 4 times the rounding
    return (-ratio.log() - excess).clamp_min(0).float().view(batch, rows, cols, _RESAMPLING_SCALES)


def resampling_maps(pixel_values: torch.Tensor) -> torch.Tensor:
    """Whether windows of ``pixel_values`` ``(B, 3, H, W)`` in [0, 1] are enlarged copies: ``(B, 2, H/8, W/8)``.

    An image enlarged with linear interpolation (bilinear: first along rows, then along columns) by a
    factor ``f`` is, along every column, linear between knots ``f`` pixels apart: each window's columns
    lie, to within the 8-bit rounding, in the subspace of such signals for the right factor and knot
    phase. For every 32 x 32 window (every 16 pixels) of the luma (the mean of R, G and B: it keeps the
    linear structure and averages the rounding), 124 factors from 1.25 to 2.6 and 16 phases each are
    tested on its columns: the energy left outside each subspace, and for each factor the best phase's
    against the median phase's (a floor of 1/8 grey level^2 a column added to both). A photograph's
    window fits no phase much better than the others; an enlarged one fits one phase to the rounding.
    The factor's score is minus the log of that ratio, less the log of how many times the best residual
    exceeds 4 times the rounding's (a window that fits one phase far better than the others but far
    from exactly is not an interpolation), at least 0; the window's is the best factor's, the smaller
    of its columns' and its rows' (the transposed window; a straight edge fits one phase in one
    direction only). Each block takes the largest score of the windows over it (channel 0) and that
    minus the image's median (channel 1). Images smaller than a window score 0. Untrained (the mean of
    each image's 8 largest blocks), it separates ForgerySynth's resampling forgeries (bilinear, factors
    1.25 - 2.5) from the reals at AUC 0.93 on the nano val photographs and 0.97 on the test ones; 35 ms
    an image of 256 px on 2 cores.

    >>> noise = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    >>> enlarged = F.interpolate(noise, size=(64, 64), mode="bilinear", align_corners=False)
    >>> photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    >>> quantized = lambda x: (x * 255).round() / 255
    >>> maps = resampling_maps(torch.cat([quantized(enlarged), quantized(photo)]))
    >>> tuple(maps.shape), bool(maps[0, 0].min() > maps[1, 0].max() + 1)
    ((2, 2, 8, 8), True)
    """
    _check_pixels(pixel_values, "resampling_maps")
    if pixel_values.device.type == "mps":  # the fit needs float64, which MPS lacks
        return resampling_maps(pixel_values.cpu()).to(pixel_values.device)
    batch, _, height, width = pixel_values.shape
    side, stride = _RESAMPLING_WINDOW, _RESAMPLING_WINDOW // 2
    rows, cols = height // BLOCK, width // BLOCK
    if height < side or width < side:
        return pixel_values.new_zeros(batch, RESAMPLING_CHANNELS, rows, cols, dtype=torch.float32)
    luma = (pixel_values.float() * 255).round().mean(1)
    along_columns = _interpolation_fit(luma, side, stride).amax(-1)
    along_rows = _interpolation_fit(luma.transpose(1, 2), side, stride).amax(-1).transpose(1, 2)
    score = torch.minimum(along_columns, along_rows)[:, None]  # (B, 1, h, w), window i at pixel 16 i
    per_block = _largest_covering(score, (side // BLOCK, side // BLOCK), stride // BLOCK, rows, cols)
    return torch.cat([per_block, _relative(per_block)], 1)


def stream_maps(pixel_values: torch.Tensor, jpeg: bool = False, boundary: bool = False,
                histogram: bool = False, resampling: bool = False) -> torch.Tensor:
    """The maps the forensic stream reads: :func:`forensic_maps`, then :func:`jpeg_grid_maps` with ``jpeg``,
    :func:`boundary_maps` with ``boundary``, :func:`histogram_maps` with ``histogram`` and
    :func:`resampling_maps` with ``resampling`` (:func:`map_names` names them)."""
    maps = [forensic_maps(pixel_values)]
    maps += [jpeg_grid_maps(pixel_values)] if jpeg else []
    maps += [boundary_maps(pixel_values)] if boundary else []
    maps += [histogram_maps(pixel_values)] if histogram else []
    maps += [resampling_maps(pixel_values)] if resampling else []
    return torch.cat(maps, 1) if len(maps) > 1 else maps[0]


class MapCache:
    """The :func:`stream_maps` of images already seen, by a hash of their pixels: training passes over
    the same images every epoch (and evaluates the same ones at every evaluation), and the maps have no
    weights, so each image's maps are computed once. At most ``capacity`` images are kept, the least
    recently used dropped first; an image's maps take ``(27 + 4 jpeg + 3 boundary + 2 histogram + 2 resampling) x (S / 8)^2`` floats
    (127 KB at 256 px with the JPEG maps). Each image is computed alone or in a batch of misses: the maps of
    an image never depend on the rest of its batch, so a hit returns what a fresh computation would.

    >>> cache = MapCache(capacity=8)
    >>> images = torch.rand(2, 3, 32, 32)
    >>> first = cache.maps(images)
    >>> second = cache.maps(images.flip(0))  # the same two images, in the other order
    >>> bool(torch.equal(second, first.flip(0))), (cache.hits, cache.misses)
    (True, (2, 2))
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"MapCache: capacity={capacity} must be at least 1 image")
        self.capacity = capacity
        self.hits = self.misses = 0
        self._maps: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._maps)

    def __deepcopy__(self, memo: dict) -> MapCache:
        # A copied model (a reference model, an EMA copy) starts with its own empty cache.
        return MapCache(self.capacity)

    @staticmethod
    def key(image: torch.Tensor, jpeg: bool = False, boundary: bool = False, histogram: bool = False,
            resampling: bool = False) -> bytes:
        """The hash of one image ``(3, H, W)``'s exact values, shape and dtype, and of the maps asked for."""
        values = image.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy()
        digest = hashlib.blake2b(values.tobytes(), digest_size=16)
        digest.update(f"{tuple(image.shape)} {image.dtype} {jpeg} {boundary} {histogram} {resampling}".encode())
        return digest.digest()

    def maps(self, pixel_values: torch.Tensor, jpeg: bool = False, boundary: bool = False,
             histogram: bool = False, resampling: bool = False) -> torch.Tensor:
        """:func:`stream_maps` of ``pixel_values`` ``(B, 3, H, W)``, from the cache where it holds them."""
        keys = [self.key(image, jpeg, boundary, histogram, resampling) for image in pixel_values]
        missing = list({key: index for index, key in enumerate(keys) if key not in self._maps}.values())
        found = {}
        if missing:
            fresh = stream_maps(pixel_values[missing], jpeg, boundary, histogram, resampling)
            for row, index in enumerate(missing):
                found[keys[index]] = fresh[row].cpu().clone()  # not a view that keeps the whole batch alive
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        rows = []
        for key in keys:
            if key in self._maps:
                self._maps.move_to_end(key)
                rows.append(self._maps[key])
            else:
                rows.append(found[key])
        self._maps.update(found)
        while len(self._maps) > self.capacity:
            self._maps.popitem(last=False)
        return torch.stack(rows).to(pixel_values.device)


def use_map_cache(model: nn.Module, capacity: int) -> int:
    """Give every :class:`ForensicEncoder` in ``model`` a :class:`MapCache` of ``capacity`` images (0: no
    cache); returns how many encoders there were (0: the model has no forensic stream)."""
    encoders = [module for module in model.modules() if isinstance(module, ForensicEncoder)]
    members = {id(member) for encoder in encoders for member in encoder.members}  # they read their encoder's maps
    encoders = [encoder for encoder in encoders if id(encoder) not in members]
    for encoder in encoders:
        encoder.map_cache = MapCache(capacity) if capacity else None
    return len(encoders)


def each_member(value: torch.Tensor, members: torch.Tensor | None, dim: int = 0) -> list[torch.Tensor]:
    """An ensemble's per-member values (``members``, stacked along ``dim``: ``member_logits`` along -1,
    ``member_group_logits`` along 0) as a list, each member trained by its own loss; ``[value]`` for one
    stream (``members`` None).

    >>> [tuple(t.shape) for t in each_member(torch.zeros(4), torch.zeros(4, 3), dim=-1)]
    [(4,), (4,), (4,)]
    >>> [tuple(t.shape) for t in each_member(torch.zeros(4), None)]
    [(4,)]
    """
    return list(members.unbind(dim)) if members is not None else [value]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1),
                         nn.GroupNorm(4, out_channels), nn.GELU())


class ResidualBranch(nn.Module):
    """Learned full-resolution residual filters: ``(B, 3, S, S)`` in [0, 1] -> ``(B, width, S/8, S/8)``.

    The fixed maps measure what the literature knew to measure; this branch learns its own traces
    from the pixels, like the constrained first layer of Bayar & Stamm (2016): its 5 x 5 filters are
    kept zero-sum (each filter's mean is subtracted in every forward), so they see residuals, never
    the image's content or brightness. Three stride-2 convolutions bring it onto the block grid.
    """

    def __init__(self, width: int, filters: int = 8):
        super().__init__()
        self.filters = nn.Conv2d(3, filters, 5, padding=2, bias=False)
        self.body = nn.Sequential(_conv_block(filters, 16, 2), _conv_block(16, 32, 2), _conv_block(32, width, 2))

    def residuals(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The zero-sum filters' responses ``(B, filters, S, S)``, in grey levels."""
        weight = self.filters.weight
        weight = weight - weight.mean((1, 2, 3), keepdim=True)
        return F.conv2d(pixel_values.to(weight.dtype) * 255, weight, padding=2)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.body(self.residuals(pixel_values))


class ForensicEncoder(nn.Module):
    """Forensic maps -> tokens and a logit: ``(B, 3, S, S)`` in [0, 1] -> ``(B, grid * grid, out_dim)``, ``(B,)``.

    Three convolutions at block resolution (``S / 8``), then two more that halve the resolution
    while it stays at least the patch grid (stride 1 otherwise). The logit is a linear map of the
    mean- and max-pooled features; the tokens are a linear map of the features pooled onto the
    patch grid, plus the logit times a learnt direction. With ``groups``, a second linear head gives
    logits over the anomaly-name groups (:mod:`forenx.modeling.names`), kept in ``group_logits``.
    With ``residual``, a :class:`ResidualBranch` of that width learns its own traces from the pixels and
    its maps join the fixed ones. With ``jpeg``, the stream also reads :func:`jpeg_grid_maps`; with ``boundary``,
    :func:`boundary_maps`; with ``histogram``, :func:`histogram_maps`; with ``resampling``, :func:`resampling_maps`. With ``localize``, a 1 x 1 convolution on the block-resolution
    features gives a logit per 8 x 8 block that it was manipulated, kept in ``mask_logits`` (trained
    by ``eval/stream_probe.py --mask-weight``; the model does not use it yet).

    With ``members`` > 1 the encoder is an ensemble: ``members - 1`` more conv nets of the same shape
    (in ``self.members``, each its own initial weights) read the same maps, and tokens, logit, group
    and mask logits are the means over all of them. Each member's own logits are kept too
    (``member_logits`` ``(B, members)``, ``member_group_logits`` ``(members, B, groups)``) so that every
    member is trained by its own losses, as independently trained streams would be.

    >>> encoder = ForensicEncoder(width=16, out_dim=24, grid=4, image_size=64)
    >>> tokens, logit = encoder(torch.rand(2, 3, 64, 64))
    >>> tuple(tokens.shape), tuple(logit.shape)
    ((2, 16, 24), (2,))
    """

    def __init__(self, width: int, out_dim: int, grid: int, image_size: int, groups: int = 0,
                 localize: bool = False, residual: int = 0, jpeg: bool = False, boundary: bool = False,
                 members: int = 1, histogram: bool = False, resampling: bool = False):
        super().__init__()
        if members < 1:
            raise ValueError(f"ForensicEncoder: members={members}; give 1 (one stream) or more (an ensemble)")
        self.grid = grid
        self.jpeg = jpeg
        self.boundary = boundary
        self.histogram = histogram
        self.resampling = resampling
        #: Maps of images already seen (:func:`use_map_cache`; training sets it); None computes them every time.
        self.map_cache: MapCache | None = None
        side, strides = image_size // BLOCK, []
        for _ in range(2):
            strides.append(2 if (side + 1) // 2 >= grid else 1)
            side = (side + 1) // 2 if strides[-1] == 2 else side
        self.residual = ResidualBranch(residual) if residual else None
        maps = len(map_names(jpeg, boundary, histogram, resampling)) + residual
        self.stem = nn.Sequential(_conv_block(maps, width, 1), _conv_block(width, width, 1), _conv_block(width, width, 1))
        self.down = nn.Sequential(_conv_block(width, 2 * width, strides[0]), _conv_block(2 * width, 2 * width, strides[1]))
        self.proj = nn.Linear(2 * width, out_dim)
        self.head = nn.Linear(4 * width, 1)
        self.logit_direction = nn.Linear(1, out_dim, bias=False)
        # The anomaly-name head (forenx.modeling.names): logits over the name groups, from the same pooled features.
        self.group_head = nn.Linear(4 * width, groups) if groups else None
        self.group_logits: torch.Tensor | None = None
        # The localisation head: a logit per 8 x 8 block that it was manipulated, from the block-resolution features.
        self.mask_head = nn.Conv2d(width, 1, 1) if localize else None
        self.mask_logits: torch.Tensor | None = None
        # The ensemble's other members (none for one stream: its weights keep their names).
        self.members = nn.ModuleList(
            ForensicEncoder(width, out_dim, grid, image_size, groups, localize, residual, jpeg, boundary,
                            histogram=histogram, resampling=resampling)
            for _ in range(members - 1))
        self.member_logits: torch.Tensor | None = None
        self.member_group_logits: torch.Tensor | None = None

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.map_cache is not None:
                maps = self.map_cache.maps(pixel_values, self.jpeg, self.boundary, self.histogram, self.resampling)
            else:
                maps = stream_maps(pixel_values, self.jpeg, self.boundary, self.histogram, self.resampling)
        return self.forward_maps(maps, pixel_values)

    def forward_maps(self, maps: torch.Tensor, pixel_values: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` from maps :func:`stream_maps` already computed (they have no weights: a
        probe that trains the stream alone computes them once, ``eval/stream_probe.py``)."""
        tokens, logit = self._forward_member(maps, pixel_values)
        if not len(self.members):
            return tokens, logit
        outputs = [(tokens, logit, self.group_logits, self.mask_logits)]
        for member in self.members:
            outputs.append((*member._forward_member(maps, pixel_values), member.group_logits, member.mask_logits))
            member.group_logits = member.mask_logits = None
        tokens, logits, groups, masks = zip(*outputs)
        self.member_logits = torch.stack(logits, -1)
        self.member_group_logits = torch.stack(groups) if groups[0] is not None else None
        self.group_logits = self.member_group_logits.mean(0) if groups[0] is not None else None
        self.mask_logits = torch.stack(masks).mean(0) if masks[0] is not None else None
        return torch.stack(tokens).mean(0), self.member_logits.mean(-1)

    def _forward_member(self, maps: torch.Tensor, pixel_values: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """This encoder's own conv net (the first member of an ensemble) on ``maps``."""
        maps = maps.to(self.proj.weight.dtype)
        if self.residual is not None:
            if pixel_values is None:
                raise ValueError("ForensicEncoder.forward_maps: the residual branch needs pixel_values")
            maps = torch.cat([maps, self.residual(pixel_values)], 1)
        blocks = self.stem(maps)
        self.mask_logits = self.mask_head(blocks).squeeze(1) if self.mask_head is not None else None
        hidden = self.down(blocks)
        pooled = torch.cat([hidden.mean((2, 3)), hidden.amax((2, 3))], 1)
        logit = self.head(pooled)  # (B, 1)
        # Kept (like the fusion keeps the logit) until the model's forward takes it.
        self.group_logits = self.group_head(pooled) if self.group_head is not None else None
        if hidden.shape[-1] != self.grid or hidden.shape[-2] != self.grid:
            hidden = F.adaptive_avg_pool2d(hidden, self.grid)
        tokens = self.proj(hidden.flatten(2).transpose(1, 2)) + self.logit_direction(logit).unsqueeze(1)
        return tokens, logit.squeeze(-1)

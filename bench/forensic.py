"""Cost of the forensic stream: image-feature time of the nano configuration with and without it.

Builds the nano model shape (recipes/configs/nano_sft.yaml's tiny_overrides, random weights) twice,
without and with ``forensic_width`` (``--width``), and times ``get_image_features`` on random 256 px images in
the same run (the recipe's stream settings, JPEG and boundary maps included when it has them); then the
forensic maps alone, the duplicate hash alone, the JPEG quantization, boundary, histogram and resampling maps
alone, the unsharp-mask trace (``sharpening_evidence_weight``'s input) against the image features, and all maps computed against all maps read from a ``MapCache`` (``forensic_map_cache``); last the conv net
alone on maps already computed, one stream against an ensemble of ``--members`` (``forensic_members``), forward
and forward + backward. Prints ms per image and the ratios. Figures only; nothing is asserted.

    python bench/forensic.py                  # batch 16, 5 timed repeats, 2 threads
    python bench/forensic.py --batch 32 --repeats 10 --threads 1 --members 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from forenx.modeling import tiny_model
from forenx.modeling.forensic import (ForensicEncoder, MapCache, boundary_maps, duplicate_maps, forensic_maps,
                                      histogram_maps, jpeg_grid_maps, resampling_maps, stream_maps)
from forenx.modeling.sharpening import sharpening_score

NANO = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "nano_sft.yaml"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64, help="forensic_width of the stream")
    parser.add_argument("--members", type=int, default=3, help="forensic_members of the ensemble timed against one stream")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = yaml.safe_load(NANO.read_text())["tiny_overrides"]
    # The recipe's stream settings (width, JPEG maps, verdict, name head) go on or off together.
    base = {k: v for k, v in overrides.items() if not k.startswith("forensic_")}
    stream = {**{k: v for k, v in overrides.items() if k.startswith("forensic_")}, "forensic_width": args.width}
    pixels = torch.rand(args.batch, 3, overrides["image_size"], overrides["image_size"])
    print(f"nano shape, {args.batch} images of {overrides['image_size']} px, {args.threads} thread(s)")
    per_image = {}
    extras = "".join(f", {what}" for what, key in (("JPEG maps", "forensic_jpeg"), ("boundary maps", "forensic_boundary"),
                                                   ("histogram maps", "forensic_histogram"),
                                                   ("resampling maps", "forensic_resampling"))
                     if stream.get(key))
    label = f"with the stream (width {args.width}{extras})"
    for name, config in (("without the stream", base), (label, {**base, **stream})):
        model, _ = tiny_model(seed=0, **config)
        model.eval()
        seconds = median_seconds(lambda m=model: m.model.get_image_features(pixels), args.repeats)
        per_image[name] = seconds / args.batch
        print(f"  image features {name:40s} {1000 * per_image[name]:8.2f} ms/image")
    without, with_stream = per_image.values()
    print(f"  ratio with / without: {with_stream / without:.2f}x")
    maps = median_seconds(lambda: forensic_maps(pixels), args.repeats) / args.batch
    dup = median_seconds(lambda: duplicate_maps((pixels * 255).round()), args.repeats) / args.batch
    jpeg = median_seconds(lambda: jpeg_grid_maps(pixels), args.repeats) / args.batch
    boundary = median_seconds(lambda: boundary_maps(pixels), args.repeats) / args.batch
    histogram = median_seconds(lambda: histogram_maps(pixels), args.repeats) / args.batch
    resampling = median_seconds(lambda: resampling_maps(pixels), args.repeats) / args.batch
    print(f"  forensic maps alone: {1000 * maps:.2f} ms/image, of which the duplicate hash {1000 * dup:.2f} ms; "
          f"JPEG quantization maps {1000 * jpeg:.2f} ms/image; boundary maps {1000 * boundary:.2f} ms/image; "
          f"histogram maps {1000 * histogram:.2f} ms/image; resampling maps {1000 * resampling:.2f} ms/image")
    trace = median_seconds(lambda: sharpening_score(pixels), args.repeats) / args.batch
    print(f"  unsharp-mask trace (sharpening_score): {1000 * trace:.2f} ms/image, {trace / with_stream:.2f}x the image "
          "features with the stream")
    # forensic_map_cache: every map of an image seen before comes from the cache (a hash of its pixels).
    cache = MapCache(capacity=args.batch)
    options = {"jpeg": True, "boundary": True, "histogram": True, "resampling": True}
    every_maps = stream_maps(pixels, **options)
    every = median_seconds(lambda: stream_maps(pixels, **options), args.repeats) / args.batch
    cached = median_seconds(lambda: cache.maps(pixels, **options), args.repeats) / args.batch
    print(f"  all maps (JPEG, boundary, histogram and resampling too) {1000 * every:.2f} ms/image; from the map cache {1000 * cached:.2f} "
          f"ms/image ({every / cached:.1f}x)")
    # forensic_members: the conv nets alone, on the maps the cache hands them.
    size, per_net = overrides["image_size"], {}
    for members in (1, args.members):
        torch.manual_seed(0)
        encoder = ForensicEncoder(args.width, out_dim=overrides["clip_config"]["hidden_size"], grid=size // 32,
                                  image_size=size, groups=10, members=members, **options)

        def train_step(e=encoder):
            with torch.enable_grad():  # main runs without autograd
                tokens, logit = e.forward_maps(every_maps)
                (tokens.mean() + logit.mean()).backward()

        forward = median_seconds(lambda e=encoder: e.forward_maps(every_maps), args.repeats) / args.batch
        per_net[members] = (forward, median_seconds(train_step, args.repeats) / args.batch)
    (one, one_train), (ensemble, ensemble_train) = per_net.values()
    print(f"  conv net on cached maps: one stream {1000 * one:.2f} ms/image forward, {1000 * one_train:.2f} with "
          f"backward; {args.members} members {1000 * ensemble:.2f} / {1000 * ensemble_train:.2f} "
          f"({ensemble / one:.1f}x / {ensemble_train / one_train:.1f}x)")


if __name__ == "__main__":
    main()

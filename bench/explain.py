"""Throughput of batched explanation against a loop of single-image ``model.generate`` calls.

    .venv/bin/python bench/explain.py                      # tiny random model, CPU, 1 thread
    .venv/bin/python bench/explain.py --images 64 --max-new-tokens 96 --json bench/explain.json

Both sides use the same tiny ForenX model, the same images (decoded PIL images in memory), the same
prompt and the same ``max_new_tokens``; evidence tools are off (the baseline has none). The
baseline is what a user writes by hand: for each image, ``processor.verdict_inputs([image])`` then
``model.generate(..., do_sample=False)``. The explainer runs at batch sizes 1, 4 and 16. Reported,
all from one run: images/s and the ratio to the baseline, plus plain batched ``model.generate``
at the same batch sizes (what batching alone gives, without the prefix cache and early exit).

Two cases:

* ``full length``: random tiny models almost never emit the end token, so every row runs to
  ``max_new_tokens``: batching and the prefix cache are measured, early exit has nothing to do.
* ``ragged``: extra end-token ids, taken from the greedy outputs themselves, make rows end at
  different lengths (set on ``model.generation_config`` for both sides, so both stop the same
  tokens). Finished rows leave the explainer's batch; ``generate`` keeps computing them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from forenx.inference.explainer import Explainer
from forenx.modeling.builder import tiny_model


def make_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(count)]


def per_image_generate(model, processor, images, max_new_tokens) -> list[list[int]]:
    outputs = []
    for image in images:
        inputs = processor.verdict_inputs([image])
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        outputs.append(sequences[0, inputs["input_ids"].shape[1]:].tolist())
    return outputs


def batched_generate(model, processor, images, max_new_tokens, batch_size) -> None:
    for start in range(0, len(images), batch_size):
        inputs = processor.verdict_inputs(images[start:start + batch_size])
        model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)


def timed_rounds(variants: dict, repeats: int) -> dict:
    """Seconds of each variant per round. The variants run one after another in every round (after
    one warm-up run each), so a change of machine load hits all of them alike; ratios are taken
    within a round."""
    for fn in variants.values():
        fn()
    times: dict = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def ragged_eos(outputs: list[list[int]], base_eos: int, max_new_tokens: int, seed: int = 0) -> list[int]:
    """End-token ids that make the greedy rows stop at spread-out lengths.

    For each row a target length is drawn between a quarter of ``max_new_tokens`` and all of it; the
    token at that step becomes an end token unless it occurs earlier in some row than that quarter
    (it would cut that row short). Rows whose token is rejected, or not reached, run to the limit.
    """
    rng = np.random.default_rng(seed)
    floor = max(1, max_new_tokens // 4)
    first_seen: dict[int, int] = {}
    for tokens in outputs:
        for step, token in enumerate(tokens):
            first_seen[token] = min(first_seen.get(token, step), step)
    ids = {base_eos}
    for tokens in outputs:
        target = int(rng.integers(floor, len(tokens)))
        if first_seen[tokens[target]] >= floor:
            ids.add(tokens[target])
    return sorted(ids)


def run_case(name, model, processor, images, max_new_tokens, batch_sizes, repeats) -> dict:
    variants = {"baseline": lambda: per_image_generate(model, processor, images, max_new_tokens)}
    for batch_size in batch_sizes:
        explainer = Explainer(model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens, evidence=False)
        variants[("explainer", batch_size)] = lambda e=explainer: e(images)
        variants[("generate", batch_size)] = (
            lambda b=batch_size: batched_generate(model, processor, images, max_new_tokens, b))
    times = timed_rounds(variants, repeats)
    baseline = times["baseline"]

    def speed(key):
        return len(images) / statistics.median(times[key])

    def ratio(key):
        return statistics.median(b / t for b, t in zip(baseline, times[key]))

    rows = {"case": name, "baseline_images_per_s": speed("baseline"), "batch_sizes": {}}
    for batch_size in batch_sizes:
        rows["batch_sizes"][batch_size] = {
            "explainer_images_per_s": speed(("explainer", batch_size)),
            "explainer_ratio": ratio(("explainer", batch_size)),
            "plain_generate_images_per_s": speed(("generate", batch_size)),
            "plain_generate_ratio": ratio(("generate", batch_size))}
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, processor = tiny_model()
    images = make_images(args.images)

    results = [run_case("full length", model, processor, images, args.max_new_tokens, args.batch_sizes, args.repeats)]

    base_eos = model.generation_config.eos_token_id
    greedy = per_image_generate(model, processor, images, args.max_new_tokens)
    model.generation_config.eos_token_id = ragged_eos(greedy, base_eos, args.max_new_tokens)
    ragged = run_case("ragged", model, processor, images, args.max_new_tokens, args.batch_sizes, args.repeats)
    stopped = per_image_generate(model, processor, images, args.max_new_tokens)
    eos = set(model.generation_config.eos_token_id)
    lengths = [next((i + 1 for i, tok in enumerate(t) if tok in eos), len(t)) for t in stopped]
    ragged["generated_tokens"] = {"min": min(lengths), "mean": float(np.mean(lengths)), "max": max(lengths)}
    results.append(ragged)
    model.generation_config.eos_token_id = base_eos

    print(f"tiny ForenX, {args.images} images, max_new_tokens={args.max_new_tokens}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved rounds")
    for case in results:
        extra = f"  generated tokens {case['generated_tokens']}" if "generated_tokens" in case else ""
        print(f"\n[{case['case']}] baseline (loop of single-image generate): "
              f"{case['baseline_images_per_s']:.1f} images/s{extra}")
        print(f"{'batch':>6} {'explainer img/s':>16} {'ratio':>7} {'plain generate img/s':>21} {'ratio':>7}")
        for batch_size, row in case["batch_sizes"].items():
            print(f"{batch_size:>6} {row['explainer_images_per_s']:>16.1f} {row['explainer_ratio']:>6.2f}x "
                  f"{row['plain_generate_images_per_s']:>21.1f} {row['plain_generate_ratio']:>6.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"images": args.images, "max_new_tokens": args.max_new_tokens, "threads": args.threads,
                       "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()

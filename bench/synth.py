"""Benchmark ForgerySynth: samples per second and the time for 1,000 samples of 256x256.

    .venv/bin/python bench/synth.py                 # 1,000 samples, 2 workers
    .venv/bin/python bench/synth.py --n 200 --workers 1

The target is 1,000 samples in under a minute on 2 cores. The load average is printed before and
after, since a shared machine slows the figure down.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence

from forenx.data.synth import synthesize


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples to write")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        summary = synthesize(out, args.n, args.seed, size=args.size, workers=args.workers)
    load_after = os.getloadavg()
    rate = args.n / summary.seconds
    print(f"ForgerySynth: {args.n} samples of {args.size}x{args.size} with {summary.workers} worker(s) "
          f"on {os.cpu_count()} CPU(s)")
    print(f"  {summary.seconds:.2f} s total, {rate:.1f} samples/s, {1000 / rate:.1f} s per 1,000 samples")
    print(f"  load average (1/5/15 min) before: {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")


if __name__ == "__main__":
    main()

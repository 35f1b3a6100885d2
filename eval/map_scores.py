"""What each fixed forensic map separates with NO training: one image score per map, AUC per manipulation.

Every channel of :func:`~forenx.modeling.forensic.stream_maps` (with the JPEG, boundary, histogram and resampling maps) becomes an image
score twice: the mean of its ``--top`` largest blocks (``high``: the map is larger somewhere than in the
rest of the image) and of its ``--top`` smallest, negated (``low``). Each score is then an untrained
detector, scored like ``eval/stream_probe.py`` scores the trained stream: AUC over the split, per
family (its forgeries against all the split's reals) and per photo. It shows which map carries which
manipulation before any network reads them, e.g. that the JPEG zeroed-AC map on the shifted grids
separates ForgerySynth's double JPEG from the reals on photos never seen.

    python eval/map_scores.py --data runs/nano/forgerysynth --splits val test --out runs/map_scores.json
    python eval/map_scores.py --maps "JPEG zeroed AC, shifted grid" "Laplacian / gradient"
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from forenx.modeling.forensic import MAP_NAMES


def _probe():
    """eval/stream_probe.py (a script beside this one, not a package module): its loading and scoring."""
    spec = importlib.util.spec_from_file_location("stream_probe", Path(__file__).with_name("stream_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_scores(maps: torch.Tensor, top: int) -> dict[str, torch.Tensor]:
    """``maps`` ``(N, C, h, w)`` -> ``{"<name> high": (N,), "<name> low": (N,)}``: the mean of each channel's
    ``top`` largest blocks, and minus the mean of its ``top`` smallest."""
    flat = maps.flatten(2)
    top = min(top, flat.shape[-1])
    high = flat.topk(top, -1).values.mean(-1)
    low = (-flat).topk(top, -1).values.mean(-1)  # larger when the map dips lower somewhere
    scores = {}
    for channel, name in enumerate(MAP_NAMES[:maps.shape[1]]):
        scores[f"{name} high"], scores[f"{name} low"] = high[:, channel], low[:, channel]
    return scores


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/nano/forgerysynth"), help="a ForgerySynth folder")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--top", type=int, default=4, help="blocks averaged into an image score")
    parser.add_argument("--maps", nargs="+", default=None, metavar="NAME",
                        help=f"only these maps (default: all {len(MAP_NAMES)}): " + "; ".join(MAP_NAMES))
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.maps or ()) - set(MAP_NAMES))
    if unknown:
        parser.error(f"--maps: unknown map(s) {unknown}; the maps are: {'; '.join(MAP_NAMES)}")
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    probe = _probe()
    result: dict[str, Any] = {"config": {"data": str(args.data), "splits": args.splits, "top": args.top}, "splits": {}}
    for split in args.splits:
        loaded = probe.load_split(args.data, split, jpeg=True, boundary=True, histogram=True, resampling=True)
        figures = {name: probe.score_logits(score, loaded) for name, score in image_scores(loaded["maps"], args.top).items()
                   if args.maps is None or name.rsplit(" ", 1)[0] in args.maps}
        result["splits"][split] = figures
        print(f"{split} ({len(loaded['fake'])} images): the best score for each family")
        for family in probe.FAMILIES:
            ranked = sorted(((f["families"].get(family), name) for name, f in figures.items()
                             if f["families"].get(family) is not None), reverse=True)
            if ranked:
                print(f"  {family:15s} " + ", ".join(f"{name} {auc:.3f}" for auc, name in ranked[:2]))
    probe.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

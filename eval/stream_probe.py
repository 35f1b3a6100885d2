"""Train the forensic stream ALONE on a ForgerySynth folder and report how well it separates held-out photos.

The detection figures of forenx-nano come almost entirely from the forensic stream
(:class:`~forenx.modeling.forensic.ForensicEncoder`, whose logit ``forensic_verdict`` adds to the verdict
slot): this probe measures a change to the stream, the data or the losses in minutes instead of a
38-minute ``make nano``, and over several seeds, because one seed is not enough: on the nano data two
seeds of the same recipe gave test AUC 0.885 and 0.902.

It trains the model's own ``ForensicEncoder`` (verdict head and, with ``--name-weight`` > 0, the
anomaly-name head over the ForgerySynth families) with the SFT recipe's stream losses: BCE against the
label, :func:`~forenx.modeling.heads.pair_ranking_loss` on each forgery and its untouched original
(``--paired`` data, batches from the SFT's :class:`~forenx.training.sft.PairedRandomSampler`), and
cross-entropy on the family. The maps (:func:`~forenx.modeling.forensic.stream_maps`, no weights) are
computed once. Every ``--eval-every`` steps it scores the eval splits; the step with the best AUC on
``--select`` (val) is reported, like ``load_best_model_at_end``. For every seed and split: AUC, each
family's AUC against all the split's reals, each photo's AUC; then the mean and spread over seeds, and
the same figures for the seeds' streams as one ensemble (the mean of their logits). ``--members K``
trains each seed's encoder as an ensemble of K streams on the same batches (``forensic_members``), the
way the model trains one. ``--views N`` scores
every eval image as the mean logit over N of its 8 rotations and mirror images.

    python eval/stream_probe.py --data runs/nano/forgerysynth --seeds 0 1 2 --out runs/probe.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from forenx.data.collate import pair_key
from forenx.data.io import read_records, resolve_in_root
from forenx.data.synth.manipulations import FAMILY_NAMES
from forenx.images import load_image
from forenx.modeling.forensic import BLOCK, ForensicEncoder, each_member, stream_maps
from forenx.modeling.heads import pair_ranking_loss

FAMILIES = list(FAMILY_NAMES)


def dihedral(images: torch.Tensor, view: int) -> torch.Tensor:
    """``images`` ``(..., H, W)`` turned by ``view % 4`` quarter turns, then mirrored when ``view >= 4``: views 0-7
    are the 8 symmetries of the square (a 256 px side keeps the 8 x 8 block grid on the block grid)."""
    turned = torch.rot90(images, view % 4, (-2, -1))
    return turned.flip(-1) if view >= 4 else turned


def load_split(data: Path, split: str, chunk: int = 50, jpeg: bool = False, views: int = 1,
               boundary: bool = False, histogram: bool = False, resampling: bool = False) -> dict[str, Any]:
    """The records of ``split`` in ``data/records.jsonl``: maps (with the JPEG maps when ``jpeg``, the boundary maps
    when ``boundary``, the histogram maps when ``histogram``, the resampling maps when ``resampling``), labels, family
    index (-1: real), photo, pair key. With ``views`` > 1 also the maps of the first ``views`` :func:`dihedral`
    views of every image (``view_maps``; test-time augmentation: the score is the mean logit over them)."""
    records = [r for r in read_records(data / "records.jsonl") if r.split == split]
    if not records:
        raise SystemExit(f"stream_probe: {data / 'records.jsonl'} has no records in split {split!r}")
    maps, masks, images = [], [], []
    view_maps: list[list[torch.Tensor]] = [[] for _ in range(1, views)]
    for start in range(0, len(records), chunk):
        pixels = np.stack([np.asarray(load_image(resolve_in_root(data, r.image)), dtype=np.uint8)
                           for r in records[start:start + chunk]])
        images.append(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())  # uint8
        with torch.no_grad():
            unit = images[-1].float() / 255
            maps.append(stream_maps(unit, jpeg, boundary, histogram, resampling))
            for view, kept in enumerate(view_maps, 1):
                kept.append(stream_maps(dihedral(unit, view).contiguous(), jpeg, boundary, histogram, resampling))
        for r in records[start:start + chunk]:
            side = pixels.shape[1]
            mask = (np.asarray(Image.open(resolve_in_root(data, r.mask)).convert("L"), dtype=np.float32) / 255
                    if r.mask else np.zeros((side, side), np.float32))
            masks.append(F.avg_pool2d(torch.from_numpy(mask)[None, None], BLOCK)[0, 0])
    family = [FAMILIES.index(r.generator) if r.label == "fake" and r.generator in FAMILIES else -1 for r in records]
    keys = [pair_key(r.id, r.meta) for r in records]
    codes = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return {"maps": torch.cat(maps), "pixels": torch.cat(images), "masks": torch.stack(masks), "fake": torch.tensor([r.label == "fake" for r in records], dtype=torch.float32),
            "family": torch.tensor(family), "photo": [str(r.meta.get("photo", "?")) for r in records],
            "keys": keys, "pair_ids": torch.tensor([codes[k] for k in keys]), "size": int(pixels.shape[1]),
            "view_maps": [torch.cat(kept) for kept in view_maps]}


def _auc(truth: Sequence[float], score: Sequence[float]) -> float | None:
    """ROC AUC, or None when ``truth`` holds one class only."""
    return round(float(roc_auc_score(truth, score)), 4) if 0 < sum(truth) < len(truth) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@torch.no_grad()
def score(encoder: ForensicEncoder, split: dict[str, Any]) -> dict[str, Any]:
    """AUC of the stream's logit on ``split``: overall, per family (vs all reals), per photo; the logits too."""
    encoder.eval()
    logit = torch.zeros(len(split["fake"]))
    for view, maps in enumerate([split["maps"], *split["view_maps"]]):
        logit += torch.cat([encoder.forward_maps(maps[i:i + 200], dihedral(split["pixels"][i:i + 200], view).float() / 255)[1]
                            for i in range(0, len(split["fake"]), 200)])
    logit /= 1 + len(split["view_maps"])
    encoder.train()
    return {**score_logits(logit, split), "logits": logit}


def score_logits(logit: torch.Tensor, split: dict[str, Any]) -> dict[str, Any]:
    """AUC of ``logit`` (one per image of ``split``): overall, per family (vs all reals), per photo."""
    fake, family = split["fake"], split["family"]
    real_scores = logit[fake == 0].tolist()
    families = {name: _auc([0] * len(real_scores) + [1] * int((family == i).sum()),
                           real_scores + logit[family == i].tolist())
                for i, name in enumerate(FAMILIES) if (family == i).any()}
    photos = {}
    for photo in sorted(set(split["photo"])):
        rows = torch.tensor([p == photo for p in split["photo"]])
        photos[photo] = _auc(fake[rows].tolist(), logit[rows].tolist())
    return {"auc": _auc(fake.tolist(), logit.tolist()), "families": families, "photos": photos}


def train_one(train: dict[str, Any], evals: dict[str, dict[str, Any]], args: argparse.Namespace, seed: int
              ) -> dict[str, Any]:
    """Train one stream with ``seed``; returns the scores at the step with the best ``args.select`` AUC."""
    from transformers import get_cosine_schedule_with_warmup

    from forenx.training.sft import PairedRandomSampler

    torch.manual_seed(seed)
    encoder = ForensicEncoder(args.width, out_dim=8, grid=max(1, train["size"] // 32), image_size=train["size"],
                              groups=len(FAMILIES) if args.name_weight > 0 else 0, localize=args.mask_weight > 0,
                              residual=args.residual, jpeg=args.jpeg, boundary=args.boundary, members=args.members,
                              histogram=args.histogram, resampling=args.resampling)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, args.warmup, args.steps)
    sampler = PairedRandomSampler(train["keys"], args.batch, seed)
    order: list[int] = []
    best: dict[str, Any] = {"step": 0}
    start = time.time()
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            sampler.set_epoch(sampler.epoch + 1)
            order.extend(sampler)
        rows, order = torch.tensor(order[:args.batch]), order[args.batch:]
        _, logit = encoder.forward_maps(train["maps"][rows], train["pixels"][rows].float() / 255)
        fake, family = train["fake"][rows], train["family"][rows]
        # An ensemble's members are each trained by their own losses (as the model trains them).
        losses = []
        for logit, group in zip(each_member(logit, encoder.member_logits, dim=-1),
                                each_member(encoder.group_logits, encoder.member_group_logits)):
            loss = F.binary_cross_entropy_with_logits(logit, fake)
            if args.pair_weight > 0:
                pair = pair_ranking_loss(logit, fake, train["pair_ids"][rows])
                loss = loss + args.pair_weight * pair if pair is not None else loss
            if args.name_weight > 0 and (family >= 0).any():
                loss = loss + args.name_weight * F.cross_entropy(group[family >= 0], family[family >= 0])
            losses.append(loss)
        loss = torch.stack(losses).mean()
        if args.mask_weight > 0:
            loss = loss + args.mask_weight * F.binary_cross_entropy_with_logits(encoder.mask_logits, train["masks"][rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            scores = {name: score(encoder, split) for name, split in evals.items()}
            line = " | ".join(f"{name} AUC {_fmt(s['auc'])}" for name, s in scores.items())
            print(f"  seed {seed} step {step}: {line} ({time.time() - start:.0f} s)", flush=True)
            if (scores[args.select]["auc"] or 0.0) >= (best.get(args.select, {}).get("auc") or -1.0):
                best = {"step": step, **scores}
    return best


def summary(runs: list[dict[str, Any]], splits: Sequence[str]) -> dict[str, Any]:
    """Mean and (sample) standard deviation over seeds of every AUC in ``runs``."""
    def stats(values: list[float | None]) -> dict[str, float | None]:
        values = [v for v in values if v is not None]
        return {"mean": round(statistics.fmean(values), 4) if values else None,
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    out: dict[str, Any] = {}
    for split in splits:
        out[split] = {"auc": stats([r[split]["auc"] for r in runs])}
        for part in ("families", "photos"):
            out[split][part] = {k: stats([r[split][part][k] for r in runs]) for k in runs[0][split][part]}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/nano/forgerysynth"), help="a ForgerySynth folder")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="take the eval splits from this folder instead of --data (compare training sets "
                             "on the same held-out images)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--width", type=int, default=64, help="forensic_width")
    parser.add_argument("--pair-weight", type=float, default=3.0, help="forensic_pair_weight (0: off)")
    parser.add_argument("--name-weight", type=float, default=1.0, help="forensic_name_weight (0: no family head)")
    parser.add_argument("--mask-weight", type=float, default=0.0,
                        help="weight of the localisation loss: per-block BCE against the share of the block the "
                             "record's mask covers (0: no localisation head)")
    parser.add_argument("--residual", type=int, default=0,
                        help="width of the learned full-resolution residual branch (0: none)")
    parser.add_argument("--jpeg", action="store_true", help="the stream also reads the JPEG quantization maps "
                        "(forensic_jpeg)")
    parser.add_argument("--boundary", action="store_true", help="the stream also reads the fine-detail boundary "
                        "maps (forensic_boundary)")
    parser.add_argument("--histogram", action="store_true", help="the stream also reads the histogram-comb maps "
                        "(forensic_histogram)")
    parser.add_argument("--resampling", action="store_true", help="the stream also reads the interpolation-fit "
                        "maps (forensic_resampling)")
    parser.add_argument("--members", type=int, default=1,
                        help="forensic_members: an ensemble of this many streams in one encoder, each trained by "
                             "its own losses on the same batches (1: one stream)")
    parser.add_argument("--views", type=int, default=1, choices=range(1, 9), metavar="{1..8}",
                        help="test-time augmentation: score each eval image as the mean logit over this many of "
                             "its 8 rotations / mirror images (1: the image alone)")
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--eval-splits", nargs="+", default=["val", "test"])
    parser.add_argument("--select", default="val", help="split whose AUC picks the reported step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    if args.select not in args.eval_splits:
        parser.error(f"--select {args.select!r} must be one of --eval-splits {args.eval_splits}")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    maps = {"jpeg": args.jpeg, "boundary": args.boundary, "histogram": args.histogram, "resampling": args.resampling}
    train = load_split(args.data, "train", **maps)
    evals = {name: load_split(args.eval_data or args.data, name, views=args.views, **maps)
             for name in args.eval_splits}
    print(f"maps of {len(train['fake']) + sum(len(s['fake']) for s in evals.values())} images: "
          f"{time.time() - start:.0f} s", flush=True)
    runs = [train_one(train, evals, args, seed) for seed in args.seeds]
    # The seeds' streams as one ensemble: the mean of their logits at each one's selected step.
    ensemble = {name: score_logits(torch.stack([r[name]["logits"] for r in runs]).mean(0), split)
                for name, split in evals.items()}
    for run in runs:
        for name in args.eval_splits:
            run[name].pop("logits")
    result = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "runs": runs, "summary": summary(runs, args.eval_splits), "ensemble": ensemble}
    for split, s in result["summary"].items():
        each = ", ".join(f"{_fmt(r[split]['auc'])} (step {r['step']})" for r in runs)
        print(f"{split}: AUC {_fmt(s['auc']['mean'])} +- {s['auc']['std']:.3f} over {len(runs)} seed(s): {each}")
        print("  families: " + ", ".join(f"{k} {_fmt(v['mean'])}" for k, v in s["families"].items()))
        print("  photos: " + ", ".join(f"{k} {_fmt(v['mean'])}" for k, v in s["photos"].items()))
        if len(runs) > 1:
            e = ensemble[split]
            print(f"  ensemble of the {len(runs)} seeds (mean logit): AUC {_fmt(e['auc'])}; families: "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in e["families"].items())
                  + "; photos: " + ", ".join(f"{k} {_fmt(v)}" for k, v in e["photos"].items()))
    write_json(args.out, result)
    return result


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """``--out``: every figure as JSON at ``path`` (nothing when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

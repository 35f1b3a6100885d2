"""Post-hoc calibration of P(fake) on a held-out split: temperature and bias, written into the model.

A detector trained on a few sources often ranks unseen images well but scores all of them a little
too fake (or too real): its 0.5 threshold sits in the wrong place and its probabilities are
overconfident. :func:`calibrate` measures the verdict slot's fake-minus-real logit difference on a
held-out split (one forward pass per image, no generation), fits a temperature and a bias
(:func:`forenx.metrics.fit_platt`) and writes them into the model's ``config.json`` as
``mapper_temperature`` and ``mapper_bias``. The model applies both at the verdict slot itself, so
P(fake), the verdict it writes and everything it writes after it follow the calibration, in
``forenx explain``, evaluation and serving alike.

With ``sharpening=True`` (``forenx model calibrate --sharpening``) the fit has a third input, the
image's unsharp-mask trace (:func:`forenx.modeling.sharpening.sharpening_score`, untrained), and
writes its weight as ``sharpening_evidence_weight`` (:func:`forenx.metrics.fit_platt_evidence`; 0
where it does not help on the split): the model adds the weighted trace at the verdict slot too.

Calibrate on a split that training did not see and that you do not report on (e.g. ``val``); the
test figures stay honest only if the test split is left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CalibrationError", "calibrate", "verdict_logit_differences"]


class CalibrationError(ValueError):
    """The model or the data cannot be calibrated; the message says which and why."""


def verdict_logit_differences(model, processor, images: list, batch_size: int = 16) -> np.ndarray:
    """The fake-minus-real logit difference at the verdict slot for each image, before the
    temperature, without ``mapper_bias`` and without the weighted unsharp-mask trace (the forensic
    logit, with ``forensic_verdict``, is in it)."""
    return _verdict_inputs(model, processor, images, batch_size, traces=False)[0]


def _verdict_inputs(model, processor, images: list, batch_size: int, traces: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(logit differences as :func:`verdict_logit_differences`, each image's unsharp-mask trace). The
    trace is the one the model's forward pass computed (with a weight), else computed here with
    ``traces``, else 0."""
    import torch

    from forenx.modeling.sharpening import sharpening_score

    ids = list(model.config.verdict_token_ids)
    weight = model.config.sharpening_evidence_weight
    out: list[float] = []
    scores: list[float] = []
    for start in range(0, len(images), batch_size):
        inputs = processor.verdict_inputs(images[start:start + batch_size])
        pixels = inputs["pixel_values"]
        inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.no_grad():
            output = model(**inputs, logits_to_keep=1, use_cache=False)
        logits = output.logits[:, -1, ids].float()
        trace = output.sharpening_trace
        if trace is None:
            trace = sharpening_score(pixels) if traces else torch.zeros(len(pixels))
        trace = trace.to(logits.device)
        out.extend((logits[:, 1] - logits[:, 0] - model.config.mapper_bias - weight * trace).tolist())
        scores.extend(trace.tolist())
    return np.asarray(out, dtype=np.float64), np.asarray(scores, dtype=np.float64)


def _summary(z: np.ndarray, y: np.ndarray, temperature: float, bias: float) -> dict[str, float]:
    """Figures of P(fake) = sigmoid((z + bias) / temperature) (z with any weighted trace in it)."""
    from forenx.metrics.detection import apply_temperature, expected_calibration_error, logistic_nll

    p = apply_temperature(np.stack([np.zeros_like(z), z + bias], 1), temperature)
    labels = ["fake" if v else "real" for v in y]
    return {"nll": logistic_nll((z + bias) / temperature, y), "ece": expected_calibration_error(list(p), labels),
            "accuracy": float(np.mean((p > 0.5) == y.astype(bool))),
            "real_accuracy": float(np.mean(p[y == 0] <= 0.5)), "fake_accuracy": float(np.mean(p[y == 1] > 0.5))}


def calibrate(model_dir: str | os.PathLike, data_file: str | os.PathLike, split: str | None = "val", *,
              data_root: str | os.PathLike | None = None, batch_size: int = 16, limit: int | None = None,
              write: bool = True, sharpening: bool = False) -> dict[str, Any]:
    """Fit ``mapper_temperature`` and ``mapper_bias`` of the model in ``model_dir`` on the real / fake
    records of ``split`` in ``data_file`` (images relative to ``data_root``, default the file's folder)
    and, with ``write``, save them into ``model_dir/config.json``. With ``sharpening``, fit
    ``sharpening_evidence_weight`` too; without, the model's weight stays as it is.

    Returns the fit: ``temperature``, ``bias``, ``sharpening_evidence_weight``, ``n``, ``before`` /
    ``after`` (NLL, ECE, accuracy,
    accuracy on reals and on fakes, all on the fitted split) and ``failed`` (records whose image
    could not be read, with the reason; they are left out, the rest is used).
    """
    from forenx.data.io import read_records
    from forenx.images import ImageLoadError, load_image
    from forenx.metrics import fit_platt, fit_platt_evidence
    from forenx.training.checkpoint import load_checkpoint

    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    if config.get("model_type") != "forenx":
        raise CalibrationError(f"{model_dir}: no ForenX config.json there; calibrate a full model folder (an SFT "
                               "run with full fine-tuning, or `forenx release` output, which merges adapters)")
    root = Path(data_root) if data_root is not None else Path(data_file).parent
    records = [r for r in read_records(data_file) if (split is None or r.split == split) and r.label in ("real", "fake")]
    if limit is not None:
        records = records[:limit]
    images, kept, failed = [], [], []
    for record in records:
        try:
            images.append(load_image(root / record.image))
            kept.append(record)
        except ImageLoadError as error:
            failed.append({"id": record.id, "error": str(error)})
    y = np.array([r.label == "fake" for r in kept], dtype=np.float64)
    if not len(kept) or y.all() or not y.any():
        raise CalibrationError(f"{data_file} split {split!r}: {len(kept)} readable records, "
                               f"{int(y.sum())} fake; calibration needs both real and fake images")
    model, processor = load_checkpoint(model_dir, device="cpu")
    old_temperature, old_bias = model.config.mapper_temperature, model.config.mapper_bias
    old_weight = weight = model.config.sharpening_evidence_weight
    z, trace = _verdict_inputs(model, processor, images, batch_size, traces=sharpening or bool(old_weight))
    labels = ["fake" if v else "real" for v in y]
    # (real, fake) = (0, z) pairs carry z exactly (a probability would saturate for |z| > 36).
    if sharpening:
        temperature, bias, weight = fit_platt_evidence(np.stack([np.zeros_like(z), z], 1), labels, trace)
    else:  # the weight stays: its trace is part of the logit fitted
        temperature, bias = fit_platt(np.stack([np.zeros_like(z), z + weight * trace], 1), labels)
    result = {"temperature": temperature, "bias": bias, "sharpening_evidence_weight": weight, "n": len(kept),
              "split": split, "before": _summary(z + old_weight * trace, y, old_temperature, old_bias),
              "after": _summary(z + weight * trace, y, temperature, bias), "failed": failed}
    if write:
        config.update(mapper_temperature=temperature, mapper_bias=bias, sharpening_evidence_weight=weight)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result


"""``forenx release``: from a training checkpoint to a folder ready for the Hub (and optionally pushed).

The folder holds safetensors weights (sharded past ``max_shard_size``), the full configuration
(sub-configs included), the whole processor (image processor, tokenizer, chat template), the
scrubbed ``forenx_run.yaml``, a model card, and with ``with_code`` the modeling code.

Every release is reload-tested before it is declared done: the model's logits on a fixed probe
image are recorded before saving, the in-memory model is freed, the folder is loaded back the way
users will load it, and the logits must match. Merging is checked the same way against the
unmerged adapter (the largest logit change is reported).
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forenx.hub.card import hub_ids, load_eval_results, model_card
from forenx.hub.errors import ReleaseError
from forenx.hub.merge import (
    RUN_CONFIG_NAME,
    Checkpoint,
    inspect_checkpoint,
    load_checkpoint_model,
    quantization_of,
    refuse_quantised,
    scrub_secrets,
)
from forenx.hub.push import check_repo_id, push_folder
from forenx.hub.remote_code import write_remote_code

__all__ = ["ReleaseResult", "probe_inputs", "probe_logits", "release"]

#: Largest logit change merging may cause (float32 on the CPU: rounding only).
MERGE_TOLERANCE = 1e-3
#: Largest logit difference between the saved-and-reloaded model and the model that was saved.
RELOAD_TOLERANCE = 1e-5
_DATASET_KEYS = {"dataset", "datasets", "dataset_name", "dataset_id", "hub_dataset", "train_dataset",
                 "eval_dataset"}
_BASE_KEYS = ("clip", "dino", "llm", "llava", "model_name_or_path")  # forenx.training.config.ModelArguments


@dataclass
class ReleaseResult:
    """What :func:`release` wrote (and pushed)."""

    folder: Path
    #: "merged" (adapter merged into its base), "adapter" (adapter only) or "full" (a full checkpoint).
    mode: str
    files: list[str] = field(default_factory=list)
    #: Largest |logit| change that merging caused on the probe (None when nothing was merged).
    merge_max_abs_diff: float | None = None
    #: Largest |logit| difference between the released model and the checkpoint (merge rounding, dtype cast).
    checkpoint_max_abs_diff: float | None = None
    #: Largest |logit| difference between the reloaded folder and the model that was saved.
    reload_max_abs_diff: float | None = None
    commit_url: str | None = None
    #: Things the user should know before publishing (e.g. an adapter whose base is a local folder).
    warnings: list[str] = field(default_factory=list)


def probe_inputs(processor):
    """Fixed model inputs (one synthetic image with the forensic prompt) to compare models on."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 96 * 80 * 3).reshape(80, 96, 3)
    pixels = np.clip(ramp + rng.normal(0, 40, ramp.shape), 0, 255).astype("uint8")
    return processor.verdict_inputs([Image.fromarray(pixels)])


def probe_logits(model, inputs, last: int = 8):
    """The float32 logits of the last ``last`` positions on ``inputs``."""
    import torch

    with torch.no_grad():
        return model(**inputs).logits[:, -last:].float()


def _collect(value: Any, keys: set[str] | tuple[str, ...]) -> list[str]:
    """String values (or lists of them) stored under ``keys`` anywhere in a nested configuration."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in keys:
                found += [item] if isinstance(item, str) else [v for v in item if isinstance(v, str)] \
                    if isinstance(item, list) else []
            found += _collect(item, keys)
    elif isinstance(value, list):
        for item in value:
            found += _collect(item, keys)
    return found


def _trace_term(config) -> str:
    """The card's words for the weighted unsharp-mask trace in P(fake) ("" when its weight is 0)."""
    weight = getattr(config, "sharpening_evidence_weight", 0.0)
    return f" + {weight:.3f} x unsharp-mask trace" if weight else ""


def _architecture(config) -> str:
    from forenx.modeling.forensic import FORENSIC_CHANNELS

    clip, dino, text = config.vision_config, config.dino_config, config.text_config
    grid = config.image_size // clip.patch_size
    return (f"- CLIP vision tower: {clip.num_hidden_layers} layers, width {clip.hidden_size}, patch {clip.patch_size}, "
            f"feature layer {config.vision_feature_layer}\n"
            f"- DINOv2 tower: {dino.num_hidden_layers} layers, width {dino.hidden_size}, patch {dino.patch_size}\n"
            f"- Forgery-aware fusion: width {config.fusion_dim}, {config.fusion_heads} heads, DINO attention-map bias "
            f"{'on' if config.fusion_attention_bias else 'off'}\n"
            + (f"- Forensic stream: {FORENSIC_CHANNELS} fixed forensic maps (duplicates, relative noise / colour statistics, JPEG grid "
               f"phases) on the 8 px block grid"
               + (f" and a learned full-resolution residual branch of width {config.forensic_residual} (zero-sum 5 x 5 "
                  "filters)" if getattr(config, "forensic_residual", 0) else "")
               + (" and 4 JPEG quantization maps (luma DC steps and zeroed AC coefficients on the image's own and on "
                  "shifted 8 x 8 grids)"
                  if getattr(config, "forensic_jpeg", False) else "")
               + (" and 3 fine-detail boundary maps (fine-scale energy and its steps across rows and columns)"
                  if getattr(config, "forensic_boundary", False) else "")
               + (" and 2 histogram-comb maps (the gaps and spikes that a gain leaves in the histogram of 64 x 64 "
                  "windows)" if getattr(config, "forensic_histogram", False) else "")
               + (" and 2 resampling maps (how much better 32 x 32 windows fit one linear-interpolation phase than "
                  "the others)" if getattr(config, "forensic_resampling", False) else "")
               + (f", read by a conv net of width {config.forensic_width}"
                  if getattr(config, "forensic_members", 1) == 1 else
                  f", read by an ensemble of {config.forensic_members} conv nets of width {config.forensic_width} "
                  "(each trained by its own losses, their outputs averaged)") + " into the fused "
               f"tokens, with its own verdict loss (weight {config.forensic_loss_weight})"
               + ("; its logit is added to the verdict slot's fake-minus-real logit difference (forensic_verdict)"
                  if getattr(config, "forensic_verdict", False) else "") + "\n"
               if getattr(config, "forensic_width", None) else "")
            + (f"- Probability mapper: P(fake) = sigmoid((logit difference {'-' if config.mapper_bias < 0 else '+'} "
               f"{abs(config.mapper_bias):.3f}{_trace_term(config)}) / {config.mapper_temperature:.3f}), "
               f"temperature{', bias and weight' if _trace_term(config) else ' and bias'} from "
               f"post-hoc calibration (forenx model calibrate{' --sharpening' if _trace_term(config) else ''})"
               + ("; the unsharp-mask trace is an untrained test of whether a 32 x 32 window is an unsharp mask of "
                  "8-bit pixels (forenx.modeling.sharpening)" if _trace_term(config) else "") + "\n"
               if getattr(config, "mapper_bias", 0.0) or config.mapper_temperature != 1.0 or _trace_term(config)
               else "")
            + f"- Projector: {config.projector_hidden_act} MLP into the language model width {text.hidden_size}\n"
            f"- Language model: {text.model_type}, {text.num_hidden_layers} layers\n"
            f"- Image: {config.image_size} px, {grid}x{grid} = {config.num_image_tokens} image tokens")


def _target_dtype(dtype: str | None, saved_dtype: str | None):
    """``--dtype``, else the dtype the checkpoint (or the adapter's base) was saved in, else float32."""
    import torch

    name = dtype or saved_dtype or "float32"
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ReleaseError(f"--dtype {name!r} is not a torch dtype; use float32, bfloat16 or float16.")
    return getattr(torch, name)


def _cast_weights(model, dtype) -> None:
    """Cast parameters and saved buffers only, as loading a saved model does: ``model.to(dtype)`` would
    also cast non-persistent buffers (e.g. rotary frequencies, which transformers keeps in float32),
    and the model in memory would no longer be the one users load."""
    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None and parameter.is_floating_point():
                parameter.data = parameter.data.to(dtype)
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_floating_point() and name not in module._non_persistent_buffers_set:
                module._buffers[name] = buffer.to(dtype)


def _save(model, processor, checkpoint: Checkpoint, folder: Path, *, mode: str, base_name: str | None,
          max_shard_size: str | int, with_code: bool) -> None:
    """Weights (or the adapter), processor, scrubbed run config and, with ``with_code``, the modeling code."""
    if mode == "adapter":
        model.save_pretrained(folder)
        if base_name:  # where users find the base: transformers and peft read this field
            adapter_config = folder / "adapter_config.json"
            data = json.loads(adapter_config.read_text(encoding="utf-8"))
            data["base_model_name_or_path"] = base_name
            adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    else:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
    processor.save_pretrained(folder)
    if checkpoint.run_config is not None:
        text = yaml.safe_dump(scrub_secrets(checkpoint.run_config), sort_keys=False)
        (folder / RUN_CONFIG_NAME).write_text(text, encoding="utf-8")
    if with_code:
        write_remote_code(folder)


def _reload_difference(folder: Path, inputs, expected, *, base_model, with_code: bool) -> float:
    """Load ``folder`` as users will and return the largest logit difference from ``expected``;
    a difference above :data:`RELOAD_TOLERANCE`, or a processor that prepares the probe differently,
    is an error."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    reloaded_inputs = probe_inputs(AutoProcessor.from_pretrained(folder, trust_remote_code=with_code))
    if not all(torch.equal(inputs[k], reloaded_inputs[k]) for k in inputs):
        raise ReleaseError("the released processor prepares the probe image differently from the checkpoint's; "
                           "the release is incomplete (report this as a ForenX bug).")
    if base_model is not None:
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(base_model, folder)
    else:
        reloaded = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=with_code, dtype="auto")
    difference = float((probe_logits(reloaded.eval(), reloaded_inputs) - expected).abs().max())
    if difference > RELOAD_TOLERANCE:
        raise ReleaseError(f"reloading the release changes the logits by {difference:.2e}; it was not published "
                           "(report this as a ForenX bug).")
    return difference


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReleaseError(f"--out {out} already exists and is not empty; choose another folder or remove it.")


def release(
    checkpoint: str | Path,
    repo_id: str,
    *,
    out: str | Path | None = None,
    merge: bool = False,
    adapter_only: bool = False,
    with_code: bool = False,
    eval_results: str | Path | None = None,
    eval_dataset: str | None = None,
    base: str | None = None,
    base_models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    license: str = "apache-2.0",
    max_shard_size: str | int = "5GB",
    dtype: str | None = None,
    verify: bool = True,
    push: bool = False,
    private: bool = False,
) -> ReleaseResult:
    """Write the release folder of ``checkpoint`` for ``repo_id`` (and upload it when ``push``).

    An adapter checkpoint is merged into its base by default; ``adapter_only`` publishes the
    adapter instead. ``out`` defaults to ``releases/<repo name>``.
    """
    from transformers import AutoProcessor

    import forenx.modeling  # noqa: F401  (registers ForenX with the Auto classes)

    if merge and adapter_only:
        raise ReleaseError("--merge and --adapter-only exclude each other: merge the adapter into the model, "
                           "or publish the adapter alone.")
    if with_code and adapter_only:
        raise ReleaseError("--with-code ships the modeling code with full weights; an adapter-only release "
                           "loads on its base with peft. Drop --adapter-only (the adapter is merged) or --with-code.")
    check_repo_id(repo_id)
    if dtype is not None:
        _target_dtype(dtype, None)  # a bad --dtype fails before any loading
    if eval_dataset is not None and eval_results is None:
        raise ReleaseError("--eval-dataset names the data set of --eval-results; give the metrics.json too.")
    results = load_eval_results(eval_results, eval_dataset) if eval_results is not None else None
    ckpt = inspect_checkpoint(checkpoint)
    if adapter_only and not ckpt.is_adapter:
        raise ReleaseError(f"--adapter-only: {ckpt.path} is a full model, not a PEFT adapter; release it without "
                           "--adapter-only.")
    if not ckpt.is_adapter and quantization_of(ckpt.config):
        refuse_quantised(f"checkpoint {ckpt.path}", quantization_of(ckpt.config), merging=False)
    out = Path(out) if out is not None else Path("releases") / repo_id.split("/")[-1]
    _check_out(out)

    try:
        processor = AutoProcessor.from_pretrained(ckpt.path)
    except (OSError, ValueError, TypeError) as error:
        raise ReleaseError(f"{ckpt.path}: cannot load the processor ({error}). Every checkpoint must carry the whole "
                           "processor (processor_config.json, tokenizer, chat template): save it with "
                           "processor.save_pretrained(checkpoint_dir).") from None
    loaded = load_checkpoint_model(ckpt, base=base)
    model, base_name, saved_dtype = loaded.model, loaded.base_name, loaded.saved_dtype
    del loaded  # `model` must be the only reference, so the verification can free it
    mode = "adapter" if adapter_only else "merged" if ckpt.is_adapter else "full"
    result = ReleaseResult(folder=out, mode=mode)
    inputs = probe_inputs(processor)
    reference = probe_logits(model, inputs)
    if mode == "merged":
        model = model.merge_and_unload()
        result.merge_max_abs_diff = float((probe_logits(model, inputs) - reference).abs().max())
        if result.merge_max_abs_diff > MERGE_TOLERANCE:
            raise ReleaseError(f"merging changed the logits by {result.merge_max_abs_diff:.2e} (> "
                               f"{MERGE_TOLERANCE}); the adapter and its base do not match. Nothing was written.")
    if mode != "adapter":
        _cast_weights(model, _target_dtype(dtype, saved_dtype))
    expected = probe_logits(model, inputs)
    result.checkpoint_max_abs_diff = float((expected - reference).abs().max())

    # Written under a temporary name and renamed at the end: a failed release leaves no half folder.
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _save(model, processor, ckpt, staging, mode=mode, base_name=base_name, max_shard_size=max_shard_size,
              with_code=with_code)
        if mode == "adapter" and not hub_ids([base_name]):
            result.warnings.append(
                f"the adapter's base is {base_name or 'built from forenx_run.yaml'}, not a Hub model: users cannot "
                "load the adapter from the Hub alone. Publish the base first and re-run with --base NAMESPACE/BASE.")
        run = ckpt.run_config or {}
        config = model.get_base_model().config if mode == "adapter" else model.config
        model_card(repo_id, adapter_only=mode == "adapter", with_code=with_code,
                   base_models=hub_ids([*base_models, base_name] if mode == "adapter" else
                                       [*base_models, *_collect(run.get("model", {}), _BASE_KEYS), base_name]),
                   datasets=hub_ids([*datasets, *_collect(run, _DATASET_KEYS)]), eval_results=results,
                   license=license, architecture=_architecture(config),
                   with_run_config=ckpt.run_config is not None).save(staging / "README.md")
        if verify:
            base_model = model.unload() if mode == "adapter" else None
            del model
            gc.collect()
            result.reload_max_abs_diff = _reload_difference(staging, inputs, expected, base_model=base_model,
                                                            with_code=with_code)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if push:
        result.commit_url = push_folder(out, repo_id, repo_type="model", private=private,
                                        commit_message=f"Release {repo_id.split('/')[-1]} with forenx")
    return result

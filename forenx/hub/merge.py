"""Reading a training checkpoint and turning it into the model to release.

A ForenX checkpoint folder holds either

* a full model (``config.json`` + safetensors weights, from ``save_pretrained``), or
* a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``): LoRA on the language
  model plus the fully trained fusion, projector and probability mapper (peft's ``modules_to_save``),

and, either way, the whole processor and ``forenx_run.yaml`` (the resolved training configuration).

An adapter's base model is found, in this order, from the ``base`` argument (``--base``), the
``model`` section of ``forenx_run.yaml`` (the SFT recipe's :class:`~forenx.training.config.ModelArguments`,
rebuilt by :func:`forenx.training.checkpoint.build_base_model`: ``tiny``, a ForenX folder, or
clip/dino/llm parts), or the adapter's ``base_model_name_or_path``. Merging happens on the CPU in
float32 into an unquantised base: a QLoRA run's base is rebuilt without 4-bit, and a base that is
itself a saved 4-bit model is refused (merging into 4-bit weights would round the LoRA update away).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forenx.hub.errors import ReleaseError
from forenx.training.run_config import RUN_CONFIG_NAME, RunConfigError, read_run_config

__all__ = [
    "RUN_CONFIG_NAME",
    "Checkpoint",
    "inspect_checkpoint",
    "load_base_model",
    "load_checkpoint_model",
    "quantization_of",
    "refuse_quantised",
    "scrub_secrets",
]

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_key|apikey)$", re.IGNORECASE)


@dataclass
class Checkpoint:
    """What a checkpoint folder holds."""

    path: Path
    #: "full" (save_pretrained model) or "adapter" (PEFT adapter).
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    adapter_config: dict[str, Any] | None = None
    #: The resolved training configuration (forenx_run.yaml), when present.
    run_config: dict[str, Any] | None = None

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReleaseError(f"{path}: not valid JSON ({error}); the checkpoint is damaged.") from None


def scrub_secrets(value: Any) -> Any:
    """A copy of a configuration with credential-like entries (``hub_token``, ``*_secret``, ...) removed,
    so nothing secret reaches a card or a published file.

    >>> scrub_secrets({"hub_token": "hf_x", "training": {"push_to_hub_token": "hf_y", "max_new_tokens": 8}})
    {'training': {'max_new_tokens': 8}}
    """
    if isinstance(value, dict):
        return {k: scrub_secrets(v) for k, v in value.items()
                if not (isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str))}
    if isinstance(value, list):
        return [scrub_secrets(v) for v in value]
    return value


def inspect_checkpoint(path: str | Path) -> Checkpoint:
    """Classify ``path`` as a full model or an adapter checkpoint; clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise ReleaseError(f"checkpoint {path} does not exist. Give the folder a training run saved "
                           "(e.g. outputs/sft/checkpoint-500 or its final output folder).")
    if not path.is_dir():
        raise ReleaseError(f"checkpoint {path} is a file; give the checkpoint folder that holds it.")
    try:
        run_config = read_run_config(path)
    except RunConfigError as error:
        raise ReleaseError(str(error)) from None
    if (path / "adapter_config.json").is_file():
        if not any((path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
            raise ReleaseError(f"{path} has adapter_config.json but no adapter_model.safetensors: the adapter "
                               "weights are missing (an interrupted save?).")
        _check_not_empty(path / "adapter_model.safetensors")
        config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
        return Checkpoint(path, "adapter", config, _read_json(path / "adapter_config.json"), run_config)
    if (path / "config.json").is_file():
        if not any((path / name).is_file() for name in _WEIGHTS):
            raise ReleaseError(f"{path} has config.json but no safetensors weights (model.safetensors or "
                               "model.safetensors.index.json); save the model with save_pretrained.")
        config = _read_json(path / "config.json")
        if config.get("model_type") != "forenx":
            raise ReleaseError(f"{path} holds a {config.get('model_type')!r} model, not a ForenX one "
                               "(config.json model_type must be 'forenx').")
        return Checkpoint(path, "full", config, None, run_config)
    raise ReleaseError(f"{path} is not a ForenX checkpoint: it has neither adapter_config.json (a LoRA "
                       "adapter) nor config.json with safetensors weights (a full model).")


def _check_not_empty(weights: Path) -> None:
    """An adapter saved under DeepSpeed ZeRO-3 without gathering holds empty (0-element) tensors."""
    from safetensors import safe_open

    if not weights.is_file():
        return
    with safe_open(weights, "pt") as f:
        names = f.keys()  # safe_open is not iterable
        empty = [key for key in names if 0 in f.get_slice(key).get_shape()]
    if empty:
        raise ReleaseError(f"{weights} holds {len(empty)} empty tensors (e.g. {empty[0]}): the adapter was saved "
                           "from ZeRO-3 partitions without gathering them. Save it again with the weights gathered "
                           "(accelerate's get_state_dict / zero3_save_16bit_model).")


def quantization_of(config: dict[str, Any]) -> str | None:
    """"4-bit" / "8-bit" when a saved config.json was quantised with bitsandbytes, else None."""
    quant = config.get("quantization_config") or {}
    if quant.get("load_in_4bit") or quant.get("_load_in_4bit"):
        return "4-bit"
    if quant.get("load_in_8bit") or quant.get("_load_in_8bit"):
        return "8-bit"
    return "quantised" if quant else None


def refuse_quantised(where: str, quantisation: str, *, merging: bool) -> None:
    """Raise the error that explains why quantised weights are never merged into or republished."""
    if merging:
        why = ("ForenX never merges LoRA into quantised weights: the update would be rounded into the "
               "quantisation grid. Merge into the unquantised base instead: pass --base with the original float "
               "ForenX model (a QLoRA adapter merges into it exactly).")
    else:
        why = ("ForenX does not republish quantised weights: release the unquantised model (a QLoRA run's "
               "adapter, or the float checkpoint); users quantise at load time with BitsAndBytesConfig.")
    raise ReleaseError(f"{where} is {quantisation} (bitsandbytes). {why}")


def _dtype_name(value: Any) -> str | None:
    return str(value).replace("torch.", "") if value is not None else None


def _base_from_path(spec: str):
    """A saved ForenX model (folder or Hub id) as the base, in float32."""
    import torch
    from transformers import AutoConfig

    from forenx.modeling import ForenXForConditionalGeneration

    if not Path(spec).exists() and spec.count("/") != 1:
        raise ReleaseError(f"base model {spec!r} is neither a local folder nor a Hub id; pass --base.")
    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as error:
        raise ReleaseError(f"cannot load the base model {spec!r}: {error}. Pass --base PATH_OR_ID.") from None
    quantisation = quantization_of(config.to_dict())
    if quantisation:
        refuse_quantised(f"the adapter's base model {spec}", quantisation, merging=True)
    # Merge in float32 on the CPU: exact enough to match the unmerged model, and no GPU needed.
    model = ForenXForConditionalGeneration.from_pretrained(spec, dtype=torch.float32, device_map="cpu")
    return model, spec, _dtype_name(getattr(config, "dtype", None))


def _base_from_run_config(checkpoint: Checkpoint, section: dict[str, Any]):
    """The run's base rebuilt the way training built it, unquantised and in float32."""
    from forenx.training.checkpoint import build_base_model
    from forenx.training.config import ModelArguments

    source = section.get("model_name_or_path")
    config_file = Path(source) / "config.json" if source else None
    if config_file is not None and config_file.is_file():
        quantisation = quantization_of(_read_json(config_file))
        if quantisation:
            refuse_quantised(f"the adapter's base model {source}", quantisation, merging=True)
    try:
        args = ModelArguments(**{**section, "load_in_4bit": False, "torch_dtype": "float32"})
    except (TypeError, ValueError) as error:
        raise ReleaseError(f"{checkpoint.path / RUN_CONFIG_NAME}: its `model` section cannot be read ({error}); "
                           "pass --base PATH_OR_ID (the unquantised ForenX model the adapter was trained on).") from None
    try:
        model, _ = build_base_model(args)
    except (OSError, ValueError) as error:
        raise ReleaseError(f"cannot rebuild the base model from {checkpoint.path / RUN_CONFIG_NAME}: {error}. "
                           "Pass --base PATH_OR_ID.") from None
    name = source if source and source != "tiny" else None
    return model, name, _dtype_name(section.get("torch_dtype"))


def load_base_model(checkpoint: Checkpoint, base: str | None = None):
    """The unquantised float32 base model of an adapter checkpoint, on the CPU.

    Returns ``(model, name_or_path, saved_dtype)``: the base's Hub id or folder (None when built from
    parts or ``tiny``) and the dtype the run's weights were in (the release keeps it).
    """
    if base:
        return _base_from_path(base)
    section = (checkpoint.run_config or {}).get("model")
    if isinstance(section, dict):
        return _base_from_run_config(checkpoint, section)
    recorded = (checkpoint.adapter_config or {}).get("base_model_name_or_path")
    if recorded:
        return _base_from_path(recorded)
    raise ReleaseError(
        f"{checkpoint.path}: cannot tell which base model this adapter belongs to: it has no {RUN_CONFIG_NAME} "
        "with a `model` section and adapter_config.json has no base_model_name_or_path. "
        "Pass --base PATH_OR_ID (the unquantised ForenX model the adapter was trained on).")


@dataclass
class LoadedCheckpoint:
    """A checkpoint's model as trained, in float32 on the CPU."""

    #: The full model, or a :class:`peft.PeftModel` (base + adapter, unmerged).
    model: Any
    #: The adapter's base model (Hub id or folder); None for a full model or a base built from parts.
    base_name: str | None
    #: The dtype the weights were saved in (``"bfloat16"``, ...), when recorded.
    saved_dtype: str | None


def load_checkpoint_model(checkpoint: Checkpoint, *, base: str | None = None) -> LoadedCheckpoint:
    """Load the checkpoint's model (see :class:`LoadedCheckpoint`), refusing quantised weights."""
    import torch

    from forenx.modeling import ForenXForConditionalGeneration

    if not checkpoint.is_adapter:
        quantisation = quantization_of(checkpoint.config)
        if quantisation:
            refuse_quantised(f"checkpoint {checkpoint.path}", quantisation, merging=False)
        model = ForenXForConditionalGeneration.from_pretrained(checkpoint.path, dtype=torch.float32,
                                                               device_map="cpu")
        return LoadedCheckpoint(model.eval(), None, _dtype_name(checkpoint.config.get("dtype")))
    from peft import PeftModel

    base_model, base_name, saved_dtype = load_base_model(checkpoint, base)
    try:
        model = PeftModel.from_pretrained(base_model, checkpoint.path, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ReleaseError(f"the adapter in {checkpoint.path} does not fit its base model "
                           f"{base_name or '(built from forenx_run.yaml)'}: {error}") from None
    return LoadedCheckpoint(model.eval(), base_name, saved_dtype)

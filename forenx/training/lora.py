"""What a run trains: freezing, LoRA / QLoRA adapters (peft) on the LM, fully trained modules.

* ``stage=align``: everything frozen except ``modules_to_save`` (fusion, projector).
* ``stage=sft`` + ``finetuning=lora|qlora``: peft LoRA on the language model's linear layers
  (never the towers' or the fusion's, which share names such as ``q_proj``), ``modules_to_save``
  trained in full and stored with the adapter.
* ``stage=sft`` + ``finetuning=full``: the LM and ``modules_to_save`` trained in full.

The vision towers stay frozen unless ``freeze_vision`` is false; ``freeze_modules`` names more modules
kept frozen whatever else is trained (e.g. ``forensic``, the forensic stream inside the fusion, to go on
training the language model of a checkpoint whose stream was chosen on validation). After setting up, the trainable
parameter count is checked to be > 0 (LoRA + gradient checkpointing silently trains nothing when
input embeddings do not require grad, so that is switched on too).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from forenx.training.config import ForenXSFTConfig, SFTConfigError

__all__ = ["VISION_TOWERS", "apply_finetuning", "lm_linear_names", "trainable_parameters"]

#: The two vision towers of ForenX (CLIP, DINOv2).
VISION_TOWERS = ("vision_tower", "dino_tower")
#: Where the language model lives in ForenXForConditionalGeneration.
LM_PREFIX = "model.language_model."


def _is_linear(module: nn.Module) -> bool:
    # bitsandbytes' Linear4bit subclasses nn.Linear; checking the class name keeps peft-free imports.
    return isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def lm_linear_names(model: nn.Module) -> list[str]:
    """Sorted leaf names of the language model's linear layers (the default LoRA targets).

    >>> from forenx.modeling.builder import tiny_model
    >>> lm_linear_names(tiny_model()[0])
    ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']
    """
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if name.startswith(LM_PREFIX) and _is_linear(module)})


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _check_module_names(model: nn.Module, names: list[str], option: str = "modules_to_save") -> None:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [name for name in names if name not in present]
    if unknown:
        raise SFTConfigError(f"{option}: {unknown} are not modules of the model; use some of fusion, "
                             "multi_modal_projector, lm_head, vision_tower, dino_tower"
                             + (", forensic (the forensic stream), language_model." if option == "freeze_modules"
                                else "."))


def _freeze(model: nn.Module, names: list[str]) -> None:
    """Turn off the gradients of every module named (last name component) in ``names``."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in names:
            module.requires_grad_(False)


def apply_finetuning(model: nn.Module, args: ForenXSFTConfig) -> nn.Module:
    """Freeze / wrap ``model`` for ``args.stage`` and ``args.finetuning``; returns the model to train.

    >>> from forenx.modeling.builder import tiny_model
    >>> args = ForenXSFTConfig(output_dir="/tmp/x", report_to="none", lora_r=2)
    >>> peft_model = apply_finetuning(tiny_model()[0], args)
    >>> type(peft_model).__name__, trainable_parameters(peft_model)[0] > 0
    ('PeftModelForCausalLM', True)
    """
    trained_modules = list(args.modules_to_save)
    if not args.freeze_vision:
        trained_modules += [tower for tower in VISION_TOWERS if tower not in trained_modules]
    frozen = list(args.freeze_modules)
    _check_module_names(model, trained_modules)
    _check_module_names(model, frozen, "freeze_modules")
    model.requires_grad_(False)
    if args.stage == "align" or args.finetuning == "full":
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in trained_modules:
                module.requires_grad_(True)
        if args.stage == "sft":  # full fine-tuning: the LM and its head too
            model.model.language_model.requires_grad_(True)
            model.lm_head.requires_grad_(True)
        _freeze(model, frozen)
        wrapped = model
    else:
        wrapped = _wrap_lora(model, args, [m for m in trained_modules if m not in frozen])
        _freeze(wrapped, frozen)
    if args.activation_checkpointing:
        # Checkpointed blocks whose inputs do not require grad give LoRA no gradient (PITFALLS).
        wrapped.enable_input_require_grads()
    trainable, _ = trainable_parameters(wrapped)
    if trainable == 0:
        raise RuntimeError("no trainable parameters after setting up fine-tuning; check stage, finetuning and "
                           "modules_to_save.")
    return wrapped


def _wrap_lora(model: nn.Module, args: ForenXSFTConfig, trained_modules: list[str]) -> nn.Module:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    available = lm_linear_names(model)
    targets = list(args.lora_target_modules or available)
    unknown = [name for name in targets if name not in available]
    if unknown:
        raise SFTConfigError(f"lora_target_modules: {unknown} are not linear layers of the language model; "
                             f"available: {' '.join(available)}.")
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.activation_checkpointing,
                                                gradient_checkpointing_kwargs=args.activation_checkpointing_kwargs)
        model.requires_grad_(False)
    # A regex keeps the adapters inside the LM: the towers and the fusion have q_proj/k_proj too.
    pattern = re.escape(LM_PREFIX) + r".*\.(" + "|".join(re.escape(t) for t in targets) + r")"
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=pattern, modules_to_save=trained_modules, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16) and "lora_" in name:
            param.data = param.data.float()  # adapters in float32 train stably under autocast
    return peft_model

"""Training ForenX: SFT settings, fine-tuning setup, trainer, checkpoints.

* :mod:`forenx.training.config` — the settings of an SFT run (TRL parser, YAML + overrides).
* :mod:`forenx.training.lora` — what is trained: align stage, LoRA / QLoRA, full.
* :mod:`forenx.training.sft` — data preparation, :class:`~forenx.training.sft.ForenXTrainer`, :func:`run_sft`.
* :mod:`forenx.training.checkpoint` — :func:`load_checkpoint` for inference, GRPO and release.
"""

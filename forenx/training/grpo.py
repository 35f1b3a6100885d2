"""GRPO for ForenX with forensic rewards, on TRL's ``GRPOTrainer``.

:func:`run_grpo` is what ``recipes/grpo.py`` calls: it reads the records, builds the model from an
SFT checkpoint (a LoRA adapter is merged into its base) or a base model, puts new LoRA / QLoRA
adapters on the LM (:func:`forenx.training.lora.apply_finetuning`, as in SFT), and trains with the
rewards of :mod:`forenx.training.rewards`, weighted by ``reward_weights``.

What TRL does unchanged: sampling ``num_generations`` completions per prompt, the group-relative
advantages, the loss, the VLM plumbing (images column -> ``pixel_values`` for generation and for
the log-probabilities), DDP / DeepSpeed, checkpoints and resuming, and the logs
(``rewards/<reward>/mean`` per reward, ``frac_reward_zero_std``, ``completions/clipped_ratio``).

What :class:`ForenXGRPOTrainer` changes, and why (three small overrides):

* ``_tokenize_prompts``: the prompt is the SFT / inference prompt (:func:`forenx.data.collate.render_record`,
  i.e. :func:`forenx.prompts.build_messages` through the chat template, tokenised as the SFT collator
  does) followed by :data:`forenx.schema.ANSWER_PREFIX`, exactly what ``forenx explain`` feeds the model.
  TRL renders conversations with ``add_generation_prompt=True`` and cannot append text after it, so
  the completion would start at ``{"verdict"`` instead of at the verdict word. Starting at the verdict
  keeps the probability mapper's slot where training and inference put it, and the rewards read
  ``ANSWER_PREFIX + completion``.
* ``_calculate_rewards``: only when the ``calibration`` reward is configured, adds a ``prob_fake``
  column (the mapper's P(fake), one forward pass per distinct prompt image).
* ``save_model``: also writes ``forenx_run.yaml`` (the resolved run configuration; checkpoints get it
  from :class:`~forenx.training.callbacks.RunConfigCallback`), so
  :func:`~forenx.training.checkpoint.load_checkpoint` rebuilds the SFT base and applies the GRPO adapter.

:class:`GroupHealthCallback` warns when many groups have zero reward variance (no learning signal)
or many completions hit ``max_completion_length``.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from forenx.data.collate import render_record
from forenx.data.io import default_root, read_records, records_to_dataset
from forenx.data.records import Record
from forenx.data.validate import require_valid
from forenx.images import load_image
from forenx.prompts import build_messages
from forenx.schema import ANSWER_PREFIX
from forenx.training import rewards as forensic_rewards
from forenx.training.callbacks import RunConfigCallback, write_run_config
from forenx.training.checkpoint import FullWeightsReload, build_training_model
from forenx.training.config import DataArguments, ModelArguments, resolved_run_config
from forenx.training.grpo_config import ForenXGRPOConfig, GRPOConfigError
from forenx.training.lora import apply_finetuning, trainable_parameters
from forenx.training.sft import ensure_synth

__all__ = ["ForenXGRPOTrainer", "GroupHealthCallback", "build_grpo_trainer", "build_reward_funcs", "grpo_dataset",
           "grpo_prompt", "run_grpo"]

logger = logging.getLogger(__name__)

_REWARD_CALLABLES: dict[str, Callable[..., list[float | None]]] = {
    "format": forensic_rewards.format_reward,
    "verdict": forensic_rewards.verdict_reward,
    "explanation": forensic_rewards.explanation_reward,
    "severity": forensic_rewards.severity_reward,
    "calibration": forensic_rewards.calibration_reward,
}


def build_reward_funcs(args: ForenXGRPOConfig, scorer: Any = None) -> list[Callable[..., list[float | None]]]:
    """The reward callables named in ``args.reward_funcs``, in order. The explanation and severity
    rewards share ONE scorer (and so one embedding cache); ``functools.partial`` binds it, the alpha
    and the thresholds (TRL logs each under the function's own name, e.g. ``rewards/explanation_reward/mean``).
    """
    needs_scorer = any(name in ("explanation", "severity") for name in args.reward_funcs)
    if needs_scorer and scorer is None:
        from forenx.metrics.scorers import build_scorer

        scorer = build_scorer(args.scorer, args.scorer_model)
    funcs = []
    for name in args.reward_funcs:
        func = _REWARD_CALLABLES[name] if name in _REWARD_CALLABLES else _import_reward(name)
        if name in ("explanation", "severity"):
            func = functools.partial(func, scorer=scorer, alpha=args.explanation_alpha,
                                     thresholds=tuple(args.explanation_thresholds))
        funcs.append(func)
    return funcs


def _import_reward(path: str) -> Callable[..., list[float | None]]:
    module_name, _, attribute = path.rpartition(".")
    try:
        func = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise GRPOConfigError(f"reward_funcs: cannot import {path!r} ({exc}); give package.module.function of an "
                              "importable TRL-style reward function") from exc
    if not callable(func):
        raise GRPOConfigError(f"reward_funcs: {path!r} is not callable")
    return func


def grpo_prompt(processor: Any) -> str:
    """The GRPO prompt text: the SFT / inference prompt (same for every image) + the answer prefix.

    >>> from forenx.modeling.builder import tiny_model
    >>> grpo_prompt(tiny_model()[1]).endswith('assistant\\n{"verdict": "')
    True
    """
    return render_record(Record(id="grpo", image="<in memory>", label="unknown"), processor,
                         prompt_only=True).prompt + ANSWER_PREFIX


def _with_prompt(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """datasets transform: decode the images (forenx.images.load_image) and add the chat prompt."""
    out = dict(batch)
    out["image"] = [load_image(cell.get("bytes") or cell["path"]) if isinstance(cell, dict) else load_image(cell)
                    for cell in batch["image"]]
    out["prompt"] = [build_messages() for _ in batch["image"]]
    return out


def grpo_dataset(records: Sequence[Record], root: str | Path):
    """A ``datasets.Dataset`` for GRPOTrainer: the record columns (``label``, ``quadruples``, ...
    reach the rewards as keyword arguments), ``image`` decoded on access and the conversational
    ``prompt`` of :func:`forenx.prompts.build_messages`."""
    return records_to_dataset(records, root).with_transform(_with_prompt)


def _records(path: str, root: str | None, split: str | None, limit: int | None, check_images: bool,
             what: str) -> tuple[list[Record], Path]:
    root_path = Path(root) if root is not None else default_root(path)
    require_valid(path, root_path, check_images=check_images)
    records = [r for r in read_records(path) if (split is None or r.split == split) and r.label in ("real", "fake")]
    if limit is not None:
        records = records[:limit]
    if not records:
        raise GRPOConfigError(f"{what}: no labelled (real/fake) records with split={split!r} in {path}; the rewards "
                              "need labels. Set the split field to one the file has (or empty for all).")
    return records, root_path


class GroupHealthCallback(TrainerCallback):
    """Warn (once per log) when GRPO's learning signal is thin: the share of prompt groups whose
    completions all got the same reward (TRL's ``frac_reward_zero_std``) above ``zero_std_warning``,
    or the share of completions cut at ``max_completion_length`` (``completions/clipped_ratio``)
    above ``clipped_warning``."""

    def __init__(self, zero_std_warning: float = 0.5, clipped_warning: float = 0.2):
        self.zero_std_warning, self.clipped_warning = zero_std_warning, clipped_warning
        self.warnings: list[str] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        zero_std = logs.get("frac_reward_zero_std")
        if zero_std is not None and zero_std > self.zero_std_warning:
            self._warn(f"step {state.global_step}: {zero_std:.0%} of prompt groups got identical rewards for all "
                       f"{args.num_generations} completions, so they teach nothing; raise temperature or "
                       "num_generations, or weight the graded rewards (explanation, severity) higher. If every reward "
                       "is 0, the starting model does not write valid answers yet: train the SFT stage longer.")
        clipped = logs.get("completions/clipped_ratio")
        if clipped is not None and clipped > self.clipped_warning:
            self._warn(f"step {state.global_step}: {clipped:.0%} of completions hit max_completion_length="
                       f"{args.max_completion_length} (a cut answer scores 0 on format); raise max_completion_length.")
        return control

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning(message)


class ForenXGRPOTrainer(FullWeightsReload, GRPOTrainer):
    """TRL's GRPOTrainer with the ForenX prompt (ending in the answer prefix) and, when asked, the
    mapper's P(fake) for the calibration reward. See the module docstring for why."""

    def __init__(self, *args: Any, run_config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._prompt_text = grpo_prompt(self.processing_class)
        self._needs_prob_fake = "calibration_reward" in self.reward_func_names
        self.run_config = run_config
        if run_config is not None:
            self.add_callback(RunConfigCallback(run_config))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as the Trainer does, plus ``forenx_run.yaml`` (checkpoints get it from :class:`RunConfigCallback`)."""
        super().save_model(output_dir, _internal_call)
        if not _internal_call and self.run_config is not None and self.is_world_process_zero():
            write_run_config(output_dir or self.args.output_dir, self.run_config)

    def _tokenize_prompts(self, prompts: list):
        images = []
        for prompt in prompts:
            found = [part["image"] for message in prompt if isinstance(message.get("content"), list)
                     for part in message["content"] if isinstance(part, dict) and part.get("type") == "image"]
            if len(found) != 1:
                raise ValueError(f"a ForenX GRPO prompt takes exactly one image, got {len(found)}")
            images.append(found)
        # Exactly as the SFT collator tokenises (the template writes the special tokens), left padded.
        batch = self.processing_class(text=[self._prompt_text] * len(prompts), images=[i[0] for i in images],
                                      padding=True, padding_side="left", add_special_tokens=False,
                                      return_tensors="pt")
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        multimodal_fields = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        return prompt_ids, images, multimodal_fields

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._needs_prob_fake:
            self._add_prob_fake(inputs)
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    @torch.no_grad()
    def _add_prob_fake(self, inputs: list[dict[str, Any]]) -> None:
        # P(fake) depends on the prompt only (it ends with the answer prefix): once per distinct record.
        first: dict[str, int] = {}
        for k, example in enumerate(inputs):
            first.setdefault(str(example.get("id", k)), k)
        rows = list(first.values())
        batch = self.processing_class(text=[self._prompt_text] * len(rows), images=[inputs[k]["image"] for k in rows],
                                      padding=True, padding_side="left", add_special_tokens=False,
                                      return_tensors="pt").to(self.accelerator.device)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        outputs = model(**batch, logits_to_keep=1, use_cache=False)
        model.train(was_training)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        probs = base.prob_fake_from_logits(outputs.logits[:, -1]).float().cpu().tolist()
        by_id = {key: probs[i] for i, key in enumerate(first)}
        for k, example in enumerate(inputs):
            example["prob_fake"] = by_id[str(example.get("id", k))]


def _run_config(model_args: ModelArguments, data_args: DataArguments, grpo_args: ForenXGRPOConfig) -> dict[str, Any]:
    config = resolved_run_config(model_args, data_args, grpo_args)  # type: ignore[arg-type]
    source = config["model"].get("model_name_or_path")
    if source and source != "tiny" and Path(source).exists():
        # The checkpoint rebuilds its base from here (load_checkpoint): make it independent of the cwd.
        config["model"]["model_name_or_path"] = str(Path(source).resolve())
    config["stage"] = "grpo"
    return config


def build_grpo_trainer(model_args: ModelArguments, data_args: DataArguments, grpo_args: ForenXGRPOConfig,
                       scorer: Any = None) -> ForenXGRPOTrainer:
    """Validate the data, build the model (base or SFT checkpoint + new adapters), rewards and trainer."""
    with grpo_args.main_process_first(local=False, desc="ForgerySynth data"):
        ensure_synth(data_args)
    train_records, train_root = _records(data_args.train_file, data_args.data_root, data_args.train_split,
                                         data_args.max_train_samples, data_args.validate_images, "train_file")
    reward_funcs = build_reward_funcs(grpo_args, scorer)  # an unknown reward fails before the model is built
    base_model, processor = build_training_model(model_args, grpo_args.seed)
    prompt_tokens = len(processor(text=[grpo_prompt(processor)], images=[load_image(train_root / train_records[0].image)],
                                  add_special_tokens=False)["input_ids"][0])
    if prompt_tokens + grpo_args.max_completion_length > data_args.max_length:
        raise GRPOConfigError(
            f"prompt ({prompt_tokens} tokens, image tokens included) + max_completion_length "
            f"{grpo_args.max_completion_length} > max_length {data_args.max_length}; lower max_completion_length or "
            "raise max_length (within the model's context).")
    base_model.config.freeze_vision = grpo_args.freeze_vision
    model = apply_finetuning(base_model, grpo_args)  # type: ignore[arg-type]
    trainable, total = trainable_parameters(model)
    logger.warning("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    return ForenXGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=grpo_args,
        train_dataset=grpo_dataset(train_records, train_root), processing_class=processor,
        callbacks=[GroupHealthCallback(grpo_args.zero_std_warning, grpo_args.clipped_warning)],
        run_config=_run_config(model_args, data_args, grpo_args))


def run_grpo(model_args: ModelArguments, data_args: DataArguments, grpo_args: ForenXGRPOConfig,
             scorer: Any = None) -> ForenXGRPOTrainer:
    """Train, then save the final adapter (or weights), processor and ``forenx_run.yaml`` to
    ``output_dir`` (:meth:`ForenXGRPOTrainer.save_model`); returns the trainer (``state.log_history`` holds every logged figure).
    The output opens with :func:`forenx.training.checkpoint.load_checkpoint`."""
    trainer = build_grpo_trainer(model_args, data_args, grpo_args, scorer)
    trainer.train(resume_from_checkpoint=grpo_args.resume_from_checkpoint)
    trainer.save_model(grpo_args.output_dir)
    return trainer

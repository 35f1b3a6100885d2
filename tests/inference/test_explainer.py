"""The batched explainer and its fast generation loop, on a tiny random ForenX model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from forenx.inference import explainer as explainer_module
from forenx.inference.explainer import Explainer, fusion_heatmaps
from forenx.inference.generation import generate_answers, prefix_cache
from forenx.inference.report import render_html
from forenx.modeling.builder import tiny_model
from forenx.schema import ANSWER_PREFIX, Quadruple, Verdict, render_answer


@pytest.fixture(scope="module")
def model_and_processor():
    torch.set_num_threads(1)
    return tiny_model(seed=0)


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(count)]


def reference(model, inputs, **kwargs) -> list[list[int]]:
    """``model.generate`` greedy continuations, cut after the first end token (generate pads after it)."""
    sequences = model.generate(**inputs, do_sample=False, **kwargs)
    eos = kwargs.get("eos_token_id", model.generation_config.eos_token_id)
    eos = {eos} if isinstance(eos, int) else set(eos)
    out = []
    for row in sequences[:, inputs["input_ids"].shape[1]:].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        out.append(row[:end])
    return out


def test_fast_loop_equals_generate_on_a_left_padded_batch(model_and_processor):
    model, processor = model_and_processor
    prompts = [processor.prompt() + ANSWER_PREFIX, processor.prompt(system=None) + ANSWER_PREFIX,
               processor.prompt(question="Real or fake?") + ANSWER_PREFIX]
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=images(3), text=prompts, padding=True, return_tensors="pt")
    processor.tokenizer.padding_side = "right"
    assert len(set(inputs["attention_mask"].sum(-1).tolist())) == 3  # really padded, to three lengths

    expected = reference(model, inputs, max_new_tokens=12)
    got = generate_answers(model, inputs["input_ids"], inputs["attention_mask"],
                           pixel_values=inputs["pixel_values"], max_new_tokens=12)
    assert got.tokens == expected
    assert torch.allclose(got.first_logits, model(**inputs, logits_to_keep=1).logits[:, -1], atol=1e-5)

    # End tokens taken from the outputs make the rows stop at different steps; finished rows leave
    # the batch, and the tokens still equal generate's.
    eos = [expected[0][3], expected[1][6]]
    expected = reference(model, inputs, max_new_tokens=12, eos_token_id=eos)
    got = generate_answers(model, inputs["input_ids"], inputs["attention_mask"],
                           pixel_values=inputs["pixel_values"], max_new_tokens=12, eos_token_id=eos)
    assert got.tokens == expected
    assert min(len(t) for t in got.tokens) < 12
    assert got.rows_computed < 3 * got.forward_passes  # rows really left the batch


def test_prefix_cache_path_equals_generate(model_and_processor):
    model, processor = model_and_processor
    inputs = processor.verdict_inputs(images(4, seed=1))
    ids = inputs["input_ids"]
    start = int((ids[0] == model.config.image_token_id).nonzero()[0])
    prefix = prefix_cache(model, ids[0, :start])
    got = generate_answers(model, ids, inputs["attention_mask"], pixel_values=inputs["pixel_values"],
                           prefix=prefix, max_new_tokens=16)
    assert got.tokens == reference(model, inputs, max_new_tokens=16)
    with pytest.raises(ValueError, match="do not start with the cached prefix"):
        generate_answers(model, ids[:, 1:], pixel_values=inputs["pixel_values"], prefix=prefix, max_new_tokens=2)


def test_batched_and_one_by_one_give_the_same_reports(model_and_processor, tmp_path):
    model, processor = model_and_processor
    pictures = images(5, seed=2)
    pictures[0].save(tmp_path / "first.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    sources = [str(tmp_path / "first.png"), pictures[1], str(tmp_path / "broken.jpg"), *pictures[2:],
               str(tmp_path / "missing.png")]
    batched = Explainer(model, processor, batch_size=4, max_new_tokens=10)(sources)
    single = Explainer(model, processor, batch_size=1, max_new_tokens=10)(sources)

    def comparable(report):  # P(fake) is compared apart: a batched matmul may differ in the last bits
        return {k: v for k, v in report.to_dict().items() if k not in ("timing", "prob_fake")}

    assert [comparable(r) for r in batched] == [comparable(r) for r in single]
    assert [r.prob_fake for r in batched] == pytest.approx([r.prob_fake for r in single], abs=1e-6)
    assert [r.image for r in batched][:3] == [str(tmp_path / "first.png"), "<image 2>", str(tmp_path / "broken.jpg")]
    assert "not an image file" in batched[2].error and "file not found" in batched[-1].error
    ok = [r for r in batched if r.error is None]
    assert len(ok) == 5 and all(0.0 <= r.prob_fake <= 1.0 for r in ok)
    # Each explained image carries the model's raw answer (it starts at the forced verdict slot),
    # the timing of every stage, and the file's evidence.
    assert all(r.raw_text.startswith(ANSWER_PREFIX) for r in ok)
    assert {"decode_s", "evidence_s", "preprocess_s", "vision_s", "generate_s", "total_s"} <= set(ok[0].timing)
    assert any(q.source.startswith("evidence:") for q in ok[0].evidence)


def test_prob_fake_is_the_mapper_at_the_verdict_slot_even_when_sampling(model_and_processor):
    model, processor = model_and_processor
    pictures = images(3, seed=3)
    expected = model.predict_proba(**processor.verdict_inputs(pictures))
    greedy = Explainer(model, processor, batch_size=3, max_new_tokens=6, evidence=False)(pictures)
    sampled = Explainer(model, processor, batch_size=3, max_new_tokens=6, evidence=False, do_sample=True,
                        temperature=1.5, seed=7)(pictures)
    again = Explainer(model, processor, batch_size=3, max_new_tokens=6, evidence=False, do_sample=True,
                      temperature=1.5, seed=7)(pictures)
    for report, probability in zip(greedy, expected.tolist()):
        assert report.prob_fake == pytest.approx(probability, abs=1e-5)
    assert [r.prob_fake for r in sampled] == pytest.approx([r.prob_fake for r in greedy], abs=1e-6)
    assert [r.raw_text for r in sampled] == [r.raw_text for r in again]  # the seed makes sampling repeatable
    assert [r.raw_text for r in sampled] != [r.raw_text for r in greedy]


def test_views_carry_heatmap_ela_and_rotated_image(model_and_processor, tmp_path):
    model, processor = model_and_processor
    photo = images(1, seed=4)[0].resize((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    view, = Explainer(model, processor, max_new_tokens=4).explain([str(tmp_path / "rotated.jpg")])
    assert view.image.size == (40, 80)  # decoded with the EXIF orientation applied
    assert view.heatmap.shape == (4, 4) and view.heatmap.sum() == pytest.approx(1.0, abs=1e-5)
    assert view.ela_map is not None and view.spectrum is not None
    page = render_html([view])
    assert 'class="heatmap"' in page and 'class="ela"' in page


def test_fusion_heatmaps_average_heads_and_queries():
    attention = torch.zeros(1, 2, 4, 4)
    attention[0, :, :, 3] = 1.0  # every query of every head looks at the last patch
    heatmap, = fusion_heatmaps(attention, (2, 2))
    assert heatmap.tolist() == [[0.0, 0.0], [0.0, 1.0]]


def test_from_pretrained_loads_a_saved_model_and_explains(model_and_processor, tmp_path):
    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    loaded = Explainer.from_pretrained(tmp_path / "model", device="cpu", batch_size=2, max_new_tokens=5,
                                       evidence=False)
    pictures = images(2, seed=5)
    original = Explainer(model, processor, batch_size=2, max_new_tokens=5, evidence=False)
    assert [r.raw_text for r in loaded(pictures)] == [r.raw_text for r in original(pictures)]
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Explainer.from_pretrained(tmp_path, device="cpu")


def test_explaining_with_a_saved_model_leaves_the_training_stack_unimported(model_and_processor, tmp_path):
    # transformers' Trainer utilities import peft, and peft imports bitsandbytes, which on CPUs with
    # AVX512-BF16 tries to fetch a kernel from the Hub and logs a failure on every offline start of
    # `forenx explain`. Explaining with a full-weights model needs none of them.
    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    script = (
        "import sys\n"
        "from forenx.inference.explainer import Explainer\n"
        f"explainer = Explainer.from_pretrained({str(tmp_path / 'model')!r}, max_new_tokens=4)\n"
        f"assert len(explainer([{str(tmp_path / 'a.png')!r}])) == 1\n"
        "print(sorted(m for m in ('peft', 'bitsandbytes', 'trl', 'transformers.trainer') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "kernels-community" not in done.stderr


def test_missing_default_model_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(explainer_module, "DEFAULT_MODEL_DIR", tmp_path / "nano")
    with pytest.raises(FileNotFoundError) as caught:
        Explainer.from_pretrained(device="cpu")
    message = str(caught.value)
    assert "forenx-nano" in message and str(tmp_path / "nano") in message and "--model" in message


def test_bad_settings_are_refused(model_and_processor):
    model, processor = model_and_processor
    with pytest.raises(ValueError, match="batch_size"):
        Explainer(model, processor, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        Explainer(model, processor, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"unknown evidence tool\(s\) \['exif'\]"):
        Explainer(model, processor, evidence=["ela", "exif"])
    only_ela = Explainer(model, processor, max_new_tokens=2, evidence=["ela"])(images(1))[0]
    assert {q.source for q in only_ela.evidence} <= {"evidence:ela"}
    assert "evidence_ela_s" in only_ela.timing and "evidence_spectrum_s" not in only_ela.timing


class ForceAnswer(LogitsProcessor):
    """Constrained decoding to a fixed token sequence (stands in for a trained model's answer)."""

    def __init__(self, token_ids: list[int], prompt_length: int):
        self.token_ids, self.prompt_length = token_ids, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_ids[min(step, len(self.token_ids) - 1)]] = 0.0
        return forced


def test_a_well_formed_answer_becomes_verdict_anomalies_and_summary(model_and_processor):
    model, processor = model_and_processor
    answer = render_answer("fake", [Quadruple("Fused fingers", "six fingers on the left hand",
                                              "hands have five fingers", 85)], "Generated.")
    continuation = processor.tokenizer(answer[len(ANSWER_PREFIX):], add_special_tokens=False)["input_ids"]
    plain = Explainer(model, processor, batch_size=2, max_new_tokens=80, evidence=False)
    forcing = ForceAnswer(continuation + [processor.tokenizer.eos_token_id], len(plain.prompt_ids))
    forced = Explainer(model, processor, batch_size=2, max_new_tokens=80, evidence=False,
                       logits_processor=LogitsProcessorList([forcing]))
    pictures = images(2, seed=6)
    reports = forced(pictures)
    for report, unforced in zip(reports, plain(pictures)):
        assert report.parse_error is None, report.raw_text
        assert report.verdict is Verdict.FAKE and report.summary == "Generated."
        assert [(q.name, q.severity, q.source) for q in report.anomalies] == [("Fused fingers", 85, "model")]
        assert report.prob_fake == pytest.approx(unforced.prob_fake, abs=1e-6)  # the mapper, not the text

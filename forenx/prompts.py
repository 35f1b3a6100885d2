"""The forensic prompt: built by ONE function, used by training, GRPO, evaluation and explain.

The prompt names the forgery-indicative attributes the model must check (anatomy, physics and
lighting, text and symbols, texture and noise, geometry and perspective, boundaries and blending)
and states the answer format of :mod:`forenx.schema`.
"""

from __future__ import annotations

from typing import Any

from forenx.schema import render_answer  # noqa: F401  (the format the prompt describes)

__all__ = ["IMAGE_TOKEN", "SYSTEM_PROMPT", "FORENSIC_ATTRIBUTES", "forensic_question", "build_messages"]

#: The placeholder the processor expands into the fused image tokens.
IMAGE_TOKEN = "<image>"

SYSTEM_PROMPT = (
    "You are an image forensics expert. You decide whether an image is real or AI-generated / "
    "manipulated and justify the decision with concrete, checkable anomalies."
)

#: (attribute, what to look for) — the forgery-indicative attributes the model checks.
FORENSIC_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("anatomy", "hands, faces, eyes, teeth, limbs and their counts and joints"),
    ("physics and lighting", "shadows, reflections and light directions that agree with each other"),
    ("text and symbols", "legible, consistent lettering, logos and signs"),
    ("texture and noise", "sensor noise, compression and texture that are uniform across the image"),
    ("geometry and perspective", "straight lines, vanishing points, repeated or impossible structures"),
    ("boundaries and blending", "edges, seams, halos and resampling traces around objects"),
)


def forensic_question() -> str:
    """The user's instruction that follows the image."""
    attributes = "; ".join(f"{name} ({what})" for name, what in FORENSIC_ATTRIBUTES)
    return (
        "Is this image real or fake? Check: " + attributes + ". "
        'Answer with JSON: {"verdict": "real" or "fake", "anomalies": [{"name", "phenomenon", '
        '"reasoning", "severity" 0-100}], "summary"}.'
    )


def build_messages(answer: str | None = None, *, system: str | None = SYSTEM_PROMPT,
                   question: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for one image, in the transformers multimodal chat format.

    With ``answer`` the assistant turn is included (training); without it the conversation ends
    at the user turn and generation continues from there (inference). ``system=None`` drops the
    system turn (for chat templates that have none).

    >>> [m["role"] for m in build_messages("{}")]
    ['system', 'user', 'assistant']
    """
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": question or forensic_question()}],
    })
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages

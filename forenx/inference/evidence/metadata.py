"""Metadata evidence: what the file says about where it came from.

Reads EXIF (Software, Make/Model, capture vs. modification date, UserComment), XMP / IPTC
``DigitalSourceType`` and the text chunks image generators write (AUTOMATIC1111 / Forge
"parameters", ComfyUI "prompt" / "workflow", NovelAI "Comment" / "Software", InvokeAI).

Severities are kept honest: a declared AI source or a generator's own parameters are strong
evidence; missing camera EXIF is not (almost every website strips it), so it is only a note.

>>> import io
>>> from PIL import Image
>>> from PIL.PngImagePlugin import PngInfo
>>> info = PngInfo(); info.add_text("parameters", "a cat\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
>>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
>>> [q.name for q in metadata_evidence(buf.getvalue())]
['Generator parameters in the file']
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from forenx.schema import Quadruple

__all__ = ["DIGITAL_SOURCE_TYPES", "GENERATOR_SOFTWARE", "metadata_evidence", "read_source_bytes"]

SOURCE = "evidence:metadata"

#: IPTC DigitalSourceType terms (http://cv.iptc.org/newscodes/digitalsourcetype/) that declare
#: generated or partly generated media, with the severity a declaration of each deserves.
DIGITAL_SOURCE_TYPES: dict[str, tuple[int, str]] = {
    "trainedalgorithmicmedia": (90, "made by a trained generative model (AI-generated)"),
    "compositewithtrainedalgorithmicmedia": (80, "a composite that includes AI-generated elements"),
    "algorithmicmedia": (70, "made purely by an algorithm, not captured"),
    "compositesynthetic": (70, "a composite of synthetic elements"),
    "digitalcreation": (40, "digitally created (not a camera capture)"),
    "algorithmicallyenhanced": (35, "a capture enhanced by an algorithm"),
    "datadrivenmedia": (60, "generated from data by an algorithm"),
    "virtualrecording": (40, "a recording of a virtual scene"),
}

#: Lower-case fragments of Software / generator names that only image generators write.
GENERATOR_SOFTWARE = (
    "stable diffusion", "stablediffusion", "automatic1111", "comfyui", "novelai", "midjourney",
    "dall-e", "dall·e", "dalle", "firefly", "imagen", "invokeai", "fooocus", "leonardo", "flux",
    "sdxl", "diffusers", "ideogram",
)

#: Software that edits photos: not evidence of generation, but worth knowing.
EDITING_SOFTWARE = ("photoshop", "gimp", "lightroom", "affinity", "pixelmator", "snapseed", "paint.net",
                    "capture one", "darktable", "krita", "canva", "picsart", "facetune")

_EXIF_SOFTWARE, _EXIF_MAKE, _EXIF_MODEL, _EXIF_DATETIME = 0x0131, 0x010F, 0x0110, 0x0132
_EXIF_IFD, _EXIF_DATETIME_ORIGINAL, _EXIF_USER_COMMENT = 0x8769, 0x9003, 0x9286
_EXIF_IMAGE_DESCRIPTION = 0x010E

_A1111_KEYS = re.compile(r"\b(Steps|Sampler|CFG scale|Seed|Model|Model hash|Size|Schedule type)\s*:\s*([^,\n]+)")
_XMP_PACKET = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>", re.DOTALL)
_SOURCE_TYPE = re.compile(r"digitalsourcetype/([A-Za-z]+)", re.IGNORECASE)


def read_source_bytes(source: str | Path | bytes) -> tuple[str, bytes]:
    """``(name, bytes)`` of a path or of bytes; OSError / ValueError name the file on failure."""
    if isinstance(source, (bytes, bytearray)):
        return "<image>", bytes(source)
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file (0 bytes)")
    return str(path), data


def _clip(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_user_comment(raw: Any) -> str:
    """EXIF UserComment: an 8-byte charset header, then the text (A1111 writes UNICODE = UTF-16)."""
    if isinstance(raw, str):
        return raw.strip("\x00 ")
    if not isinstance(raw, (bytes, bytearray)):
        return ""
    header, body = bytes(raw[:8]), bytes(raw[8:])
    if header.startswith(b"UNICODE"):
        for codec in ("utf-16-be", "utf-16-le"):
            text = body.decode(codec, errors="replace")
            if sum(ch.isprintable() or ch.isspace() for ch in text) >= 0.9 * max(len(text), 1):
                return text.strip("\x00 ")
        return ""
    if header.startswith((b"ASCII", b"\x00" * 8)):
        return body.decode("latin-1").strip("\x00 ")
    return bytes(raw).decode("utf-8", errors="replace").strip("\x00 ")


def _generator_parameters(text: str) -> dict[str, str]:
    """The A1111 / Forge "parameters" fields (Steps, Sampler, CFG scale, Seed, Model...)."""
    return {key: value.strip() for key, value in _A1111_KEYS.findall(text)}


def _comfyui_nodes(text: str) -> list[str]:
    """The node types of a ComfyUI "prompt" (API graph) or "workflow" (UI graph) JSON."""
    try:
        graph = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return []
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):  # workflow
        return [str(n.get("type")) for n in graph["nodes"] if isinstance(n, dict) and n.get("type")]
    if isinstance(graph, dict):  # prompt: {"3": {"class_type": "KSampler", ...}}
        return [str(n["class_type"]) for n in graph.values() if isinstance(n, dict) and "class_type" in n]
    return []


def _parse_exif_date(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _text_chunks(image: Image.Image) -> dict[str, str]:
    """PNG tEXt/iTXt/zTXt chunks (and other string-valued info entries)."""
    chunks: dict[str, str] = {}
    for key, value in image.info.items():
        if isinstance(value, bytes) and key not in ("exif", "icc_profile", "xmp"):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and key not in ("xmp",):
            chunks[str(key)] = value
    return chunks


def _generator_quadruples(chunks: dict[str, str], user_comment: str) -> Iterable[Quadruple]:
    parameter_text = chunks.get("parameters") or (user_comment if "Steps:" in user_comment else "")
    if parameter_text:
        fields = _generator_parameters(parameter_text)
        where = "a PNG \"parameters\" text chunk" if chunks.get("parameters") else "the EXIF UserComment"
        shown = ", ".join(f"{k}: {v}" for k, v in fields.items()) or _clip(parameter_text, 120)
        yield Quadruple(
            name="Generator parameters in the file",
            phenomenon=f"{where} holds Stable Diffusion web UI settings ({_clip(shown)}).",
            reasoning="AUTOMATIC1111/Forge write the prompt, sampler, steps, CFG scale and seed into the "
                      "image they generate; a camera never writes these.",
            severity=95 if fields else 75, source=SOURCE)
    for key in ("prompt", "workflow"):
        nodes = _comfyui_nodes(chunks.get(key, ""))
        if nodes:
            samplers = sorted({n for n in nodes if "sampler" in n.lower() or "checkpoint" in n.lower()})
            yield Quadruple(
                name="ComfyUI workflow in the file",
                phenomenon=f"a PNG \"{key}\" chunk holds a ComfyUI graph of {len(nodes)} nodes"
                           + (f" ({', '.join(samplers[:4])})" if samplers else "") + ".",
                reasoning="ComfyUI embeds the generation graph in every image it saves; it describes "
                          "how the image was generated.",
                severity=95 if samplers else 85, source=SOURCE)
            break
    software = chunks.get("Software", "")
    comment = chunks.get("Comment", "")
    if "novelai" in software.lower() or ('"steps"' in comment and '"sampler"' in comment):
        try:
            settings = json.loads(comment) if comment else {}
        except json.JSONDecodeError:
            settings = {}
        shown = ", ".join(f"{k}: {settings[k]}" for k in ("steps", "sampler", "scale", "seed") if k in settings)
        yield Quadruple(
            name="NovelAI generation metadata",
            phenomenon=f"Software \"{_clip(software, 60)}\"" + (f" and generation settings ({shown})" if shown else "")
                       + " in the PNG text chunks.",
            reasoning="NovelAI records its generator and sampling settings in the images it produces.",
            severity=95, source=SOURCE)
    for key in ("invokeai_metadata", "sd-metadata", "Dream"):
        if chunks.get(key):
            yield Quadruple(
                name="InvokeAI generation metadata",
                phenomenon=f"a PNG \"{key}\" chunk holds generation settings ({_clip(chunks[key], 120)}).",
                reasoning="InvokeAI writes its generation settings into the images it saves.",
                severity=95, source=SOURCE)
            break


def _xmp_quadruples(data: bytes, chunks: dict[str, str]) -> Iterable[Quadruple]:
    """DigitalSourceType declarations in XMP packets: in the raw bytes (JPEG APP1, WebP, TIFF) or in
    a PNG iTXt chunk, which may be zlib-compressed and then only readable once decoded."""
    seen: set[str] = set()
    packets = [p.decode("utf-8", errors="replace") for p in _XMP_PACKET.findall(data)]
    packets += [value for value in chunks.values() if "xmpmeta" in value]
    for text in packets:
        for term in _SOURCE_TYPE.findall(text):
            key = term.lower()
            if key in seen or key not in DIGITAL_SOURCE_TYPES:
                continue
            seen.add(key)
            severity, meaning = DIGITAL_SOURCE_TYPES[key]
            yield Quadruple(
                name="Declared digital source type",
                phenomenon=f"the XMP metadata declares IPTC DigitalSourceType \"{term}\": {meaning}.",
                reasoning="Generators and editing tools that follow the IPTC standard label their output "
                          "this way; the label is a declaration by the producing software.",
                severity=severity, source=SOURCE)


def _exif_quadruples(image: Image.Image) -> tuple[list[Quadruple], str, bool]:
    """EXIF findings, the decoded UserComment, and whether camera EXIF (Make/Model) is present."""
    found: list[Quadruple] = []
    try:
        exif = image.getexif()
        sub = exif.get_ifd(_EXIF_IFD) if exif else {}
    except Exception:  # noqa: BLE001 -- a malformed EXIF block is worth a note, never a crash
        found.append(Quadruple(
            name="Malformed EXIF block", phenomenon="the EXIF metadata cannot be parsed.",
            reasoning="Broken EXIF often comes from tools rewriting metadata; it proves nothing by itself.",
            severity=15, source=SOURCE))
        return found, "", False
    software = str(exif.get(_EXIF_SOFTWARE, "")).strip("\x00 ")
    make = str(exif.get(_EXIF_MAKE, "")).strip("\x00 ")
    model = str(exif.get(_EXIF_MODEL, "")).strip("\x00 ")
    description = str(exif.get(_EXIF_IMAGE_DESCRIPTION, "")).strip("\x00 ")
    user_comment = _decode_user_comment(sub.get(_EXIF_USER_COMMENT))
    lowered = software.lower()
    if any(name in lowered for name in GENERATOR_SOFTWARE):
        found.append(Quadruple(
            name="Generator named as the creating software",
            phenomenon=f"EXIF Software is \"{_clip(software, 80)}\".",
            reasoning="The software field names an image generator, which records itself as the creator.",
            severity=85, source=SOURCE))
    elif any(name in lowered for name in EDITING_SOFTWARE):
        found.append(Quadruple(
            name="Processed with editing software",
            phenomenon=f"EXIF Software is \"{_clip(software, 80)}\""
                       + (f" on a {make} {model} photo" if make or model else "") + ".",
            reasoning="The file was last written by an image editor; editing is common and legitimate, "
                      "but the pixels may not be as the camera captured them.",
            severity=30, source=SOURCE))
    if "Steps:" not in user_comment and any(name in description.lower() for name in GENERATOR_SOFTWARE):
        found.append(Quadruple(
            name="Generator named in the description",
            phenomenon=f"EXIF ImageDescription is \"{_clip(description, 120)}\".",
            reasoning="The description names an image generator.", severity=70, source=SOURCE))
    original = _parse_exif_date(sub.get(_EXIF_DATETIME_ORIGINAL))
    modified = _parse_exif_date(exif.get(_EXIF_DATETIME))
    if original and modified and (modified - original).total_seconds() > 60:
        found.append(Quadruple(
            name="Modified after capture",
            phenomenon=f"EXIF ModifyDate {modified:%Y-%m-%d %H:%M:%S} is later than DateTimeOriginal "
                       f"{original:%Y-%m-%d %H:%M:%S}.",
            reasoning="The file was rewritten after the photo was taken (an edit, a crop, or an export); "
                      "this is ordinary for edited photos and proves no manipulation by itself.",
            severity=20, source=SOURCE))
    elif original and modified and (original - modified).total_seconds() > 60:
        found.append(Quadruple(
            name="Inconsistent EXIF dates",
            phenomenon=f"EXIF ModifyDate {modified:%Y-%m-%d %H:%M:%S} is earlier than DateTimeOriginal "
                       f"{original:%Y-%m-%d %H:%M:%S}.",
            reasoning="A file cannot be modified before it was captured; the dates were written by hand or "
                      "by a tool that rewrote metadata.",
            severity=35, source=SOURCE))
    return found, user_comment, bool(make or model)


def metadata_evidence(source: str | Path | bytes, image: Image.Image | None = None) -> list[Quadruple]:
    """Quadruples from a file's EXIF, XMP and text chunks (``image`` is unused: metadata lives in
    the file, not the pixels). Raises ValueError / OSError for unreadable files."""
    name, data = read_source_bytes(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened = Image.open(io.BytesIO(data))  # lazy: headers and metadata only, no pixel decode
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name}: not an image file ({exc.__class__.__name__})") from exc
    with opened:
        chunks = _text_chunks(opened)
        exif_found, user_comment, has_camera = _exif_quadruples(opened)
        found = list(_generator_quadruples(chunks, user_comment))
        found += list(_xmp_quadruples(data, chunks))
        found += exif_found
        if not has_camera and not found:
            found.append(Quadruple(
                name="No camera metadata",
                phenomenon="the file carries no camera make/model EXIF.",
                reasoning="Generated images usually lack camera EXIF, but so do most photos shared online "
                          "(platforms strip it); on its own this is not evidence of fakery.",
                severity=5, source=SOURCE))
    return found

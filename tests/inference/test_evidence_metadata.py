"""Metadata evidence on files the tests write: generator text chunks, XMP DigitalSourceType, EXIF."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from forenx.inference.evidence.metadata import metadata_evidence

A1111_PARAMETERS = (
    "a photo of an astronaut riding a horse\nNegative prompt: blurry\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly")

COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8, "sampler_name": "euler"}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}},
}

XMP_TEMPLATE = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
    '<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/{term}'
    "</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>')


def _png(**chunks: str) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 120, 150)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg(exif: Image.Exif | None = None, xmp: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    options = {}
    if exif is not None:
        options["exif"] = exif
    if xmp is not None:
        options["xmp"] = xmp
    Image.new("RGB", (32, 32), (200, 100, 50)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _by_name(quadruples):
    return {q.name: q for q in quadruples}


def test_a1111_parameters_chunk_gives_the_settings(tmp_path):
    path = tmp_path / "txt2img.png"
    path.write_bytes(_png(parameters=A1111_PARAMETERS))
    found = _by_name(metadata_evidence(path))
    quadruple = found["Generator parameters in the file"]
    assert quadruple.severity >= 90 and quadruple.source == "evidence:metadata"
    for expected in ("Steps: 28", "Sampler: DPM++ 2M Karras", "CFG scale: 6.5", "Seed: 1234567",
                     "Model: v1-5-pruned-emaonly"):
        assert expected in quadruple.phenomenon
    assert "No camera metadata" not in found  # the strong finding replaces the weak note


def test_comfyui_prompt_and_workflow_chunks():
    workflow = {"nodes": [{"id": 3, "type": "KSampler"}, {"id": 9, "type": "SaveImage"}], "links": []}
    found = _by_name(metadata_evidence(_png(prompt=json.dumps(COMFY_PROMPT), workflow=json.dumps(workflow))))
    quadruple = found["ComfyUI workflow in the file"]
    assert quadruple.severity >= 90
    assert "3 nodes" in quadruple.phenomenon and "KSampler" in quadruple.phenomenon
    only_workflow = _by_name(metadata_evidence(_png(workflow=json.dumps(workflow))))
    assert "ComfyUI workflow in the file" in only_workflow


def test_novelai_software_and_comment():
    comment = json.dumps({"prompt": "a fox", "steps": 28, "sampler": "k_euler_ancestral", "scale": 11, "seed": 42})
    found = _by_name(metadata_evidence(_png(Software="NovelAI", Comment=comment, Source="NovelAI Diffusion V3")))
    quadruple = found["NovelAI generation metadata"]
    assert quadruple.severity >= 90 and "sampler: k_euler_ancestral" in quadruple.phenomenon


def test_jpeg_exif_user_comment_with_parameters():
    exif = Image.Exif()
    # A1111 writes the parameters as EXIF UserComment in "UNICODE" (UTF-16 big-endian) encoding.
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_PARAMETERS.encode("utf-16-be")
    found = _by_name(metadata_evidence(_jpeg(exif=exif)))
    quadruple = found["Generator parameters in the file"]
    assert "EXIF UserComment" in quadruple.phenomenon and "Seed: 1234567" in quadruple.phenomenon


def test_webp_exif_user_comment_ascii():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + A1111_PARAMETERS.encode("ascii")
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "WEBP", exif=exif)
    assert "Generator parameters in the file" in _by_name(metadata_evidence(buffer.getvalue()))


@pytest.mark.parametrize("term, minimum", [("trainedAlgorithmicMedia", 85),
                                           ("compositeWithTrainedAlgorithmicMedia", 75),
                                           ("algorithmicMedia", 65)])
def test_jpeg_xmp_digital_source_type(tmp_path, term, minimum):
    path = tmp_path / "declared.jpg"
    path.write_bytes(_jpeg(xmp=XMP_TEMPLATE.format(term=term).encode("utf-8")))
    with Image.open(path) as written:  # Pillow really wrote the XMP packet (APP1)
        assert "digitalsourcetype" in written.info["xmp"].decode("utf-8").lower()
    quadruple = _by_name(metadata_evidence(path))["Declared digital source type"]
    assert f'"{term}"' in quadruple.phenomenon and quadruple.severity >= minimum


def test_png_compressed_xmp_chunk_digital_source_type():
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_TEMPLATE.format(term="trainedAlgorithmicMedia"), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "PNG", pnginfo=info)
    assert b"digitalsourcetype" not in buffer.getvalue().lower()  # only readable once inflated
    found = metadata_evidence(buffer.getvalue())
    assert [q.name for q in found] == ["Declared digital source type"]


def test_digital_capture_declaration_is_not_an_anomaly():
    found = metadata_evidence(_jpeg(xmp=XMP_TEMPLATE.format(term="digitalCapture").encode("utf-8")))
    assert all(q.name != "Declared digital source type" for q in found)


def test_camera_photo_edited_later():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    exif[0x0131] = "Adobe Photoshop 25.0 (Windows)"
    exif[0x0132] = "2024:06:02 18:30:00"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 09:15:00"
    found = _by_name(metadata_evidence(_jpeg(exif=exif)))
    assert set(found) == {"Processed with editing software", "Modified after capture"}
    # Editing is legitimate: honest, moderate severities.
    assert found["Processed with editing software"].severity <= 40
    assert found["Modified after capture"].severity <= 30
    assert "Canon EOS R5" in found["Processed with editing software"].phenomenon


def test_generator_named_as_software():
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    assert _by_name(metadata_evidence(_jpeg(exif=exif)))["Generator named as the creating software"].severity >= 80


def test_plain_camera_photo_has_no_anomaly():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "NIKON CORPORATION", "NIKON Z 6"
    exif[0x0132] = "2024:06:01 09:15:00"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 09:15:00"
    assert metadata_evidence(_jpeg(exif=exif)) == []


def test_missing_exif_is_only_a_note():
    found = metadata_evidence(_jpeg())
    assert [q.name for q in found] == ["No camera metadata"]
    assert found[0].severity <= 10 and "not evidence of fakery" in found[0].reasoning


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"hello, I am text", "not an image")])
def test_unreadable_files_raise_a_named_error(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason) as raised:
        metadata_evidence(path)
    assert "photo.jpg" in str(raised.value)

"""The HTML report in headless Chromium: it renders, the anomalies are in the DOM, the screenshot
shows a real page. Chromium is required (CI installs Debian's package); without it these FAIL."""

from __future__ import annotations

import numpy as np
import pytest
from tests.inference.browser import chromium_binary, dump_dom, screenshot
from PIL import Image

from forenx.inference.evidence import run_evidence
from forenx.inference.report import ReportView, write_report
from forenx.schema import ForensicReport, Quadruple, Verdict

pytestmark = pytest.mark.slow  # spawns a browser

HOSTILE_NAME = 'Shadow mismatch <script>document.title="pwned"</script>'


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, natural_image, jpeg_roundtrip):
    folder = tmp_path_factory.mktemp("html_report")
    # A composite: an uncompressed region pasted into a JPEG, so ELA has something to show.
    pixels = np.array(jpeg_roundtrip(natural_image(240, 320, 1), 90))
    pixels[80:160, 120:240] = np.array(natural_image(240, 320, 2))[80:160, 120:240]
    image = Image.fromarray(pixels)
    evidence = run_evidence(image)
    heatmap = np.random.default_rng(0).random((16, 16)) * 0.3
    heatmap[5:10, 6:12] += 1.0
    fake = ForensicReport(
        verdict=Verdict.FAKE, prob_fake=0.88, image="composite.jpg", summary='The face was pasted in ("splice").',
        anomalies=[Quadruple(HOSTILE_NAME, "light comes from the left on the face, the right elsewhere",
                             "one sun casts one shadow direction", 80),
                   Quadruple("Skin texture", "pores are smeared", "generators over-smooth skin", 40)],
        evidence=evidence.quadruples)
    views = [ReportView(fake, image=image, heatmap=heatmap, ela_map=evidence.maps["ela"],
                        spectrum=evidence.maps["spectrum"]),
             ForensicReport(None, image="empty.jpg", error="empty.jpg: empty file (0 bytes)"),
             ForensicReport(Verdict.REAL, prob_fake=0.05, image="beach.png", summary="No anomalies.")]
    path = write_report(views, folder / "report.html", "html")
    return path, fake, folder


def test_chromium_is_installed():
    assert chromium_binary()


def test_report_renders_with_the_anomalies_in_the_dom(report_page):
    path, fake, folder = report_page
    dom = dump_dom(path, folder / "profile-dom")
    assert "<script" not in dom.lower() and "pwned" not in dom.split("<title>")[1].split("</title>")[0]
    assert dom.count('class="anomaly"') == len(fake.anomalies) + len(fake.evidence)
    assert "Shadow mismatch &lt;script&gt;" in dom  # the hostile name is text in the DOM
    assert "Skin texture" in dom and "Inconsistent error level" in dom
    assert "empty.jpg: empty file (0 bytes)" in dom
    assert dom.count("data:image/png;base64,") == 4  # image, heatmap overlay, ELA map, spectrum


def test_screenshot_is_a_real_page(report_page):
    path, _, folder = report_page
    png = screenshot(path, folder / "report.png", folder / "profile-shot", width=1280, height=1400)
    shot = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    assert shot.shape == (1400, 1280, 3)
    assert shot.std() > 25  # not a blank page
    colours = np.unique(shot.reshape(-1, 3) // 8, axis=0)
    assert len(colours) > 500  # embedded pictures were decoded and painted
    saturation = shot.max(axis=2) - shot.min(axis=2)
    assert (saturation > 80).mean() > 0.01  # the verdict badge, severity bars and heatmap are in colour

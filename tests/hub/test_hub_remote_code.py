"""`--with-code`: the released folder loads with trust_remote_code=True in a Python where forenx is not importable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch
from transformers import AutoProcessor

from forenx.hub.release import release
from forenx.hub.remote_code import AUTO_MAP, bundle_modules

# Runs under `python -I -S`: no site hooks, so the editable install's finder for forenx is never
# installed; site-packages is added by hand for torch and transformers.
ISOLATED_SCRIPT = textwrap.dedent('''
    import os, sys
    site_packages, folder, inputs_path, out_path = sys.argv[1:5]
    sys.path.append(site_packages)
    try:
        import forenx
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"forenx is importable from {forenx.__file__}: the test proves nothing")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = torch.load(inputs_path)
    with torch.no_grad():
        logits = model(**inputs).logits
    sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=8, do_sample=False)
    torch.save({"logits": logits, "sequences": sequences, "prob_fake": prob_fake,
                "model_class": type(model).__module__ + "." + type(model).__name__,
                "processor_class": type(processor).__module__ + "." + type(processor).__name__}, out_path)
    # The model card's usage code, as a user without forenx runs it.
    os.chdir(os.path.dirname(out_path))
    exec(compile(open(os.path.join(os.path.dirname(out_path), "usage.py")).read(), "usage.py", "exec"), {})
    print("forenx modules loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "forenx"))
''')


def test_bundle_is_self_contained():
    files = bundle_modules()
    assert {"configuration_forenx", "modeling_forenx", "processing_forenx", "schema", "prompts"} <= set(files)
    for name, source in files.items():
        for line in source.splitlines():
            stripped = line.strip()
            assert not re.match(r"(from|import)\s+forenx\b", stripped), (name, line)
    for target in AUTO_MAP.values():
        module, _, cls = target.partition(".")
        assert f"class {cls}(" in files[module], target


@pytest.mark.slow
def test_with_code_release_loads_without_forenx(adapter_checkpoint, checkpoint_model, images, photo, tmp_path):
    result = release(adapter_checkpoint, "my-lab/forenx-tiny-code", out=tmp_path / "release", with_code=True)
    processor = AutoProcessor.from_pretrained(adapter_checkpoint)
    inputs = dict(processor.verdict_inputs(images))
    torch.save(inputs, tmp_path / "inputs.pt")
    readme = (result.folder / "README.md").read_text()
    usage = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    (tmp_path / "usage.py").write_text(usage.replace('"my-lab/forenx-tiny-code"', repr(str(result.folder))))
    (tmp_path / "photo.jpg").write_bytes(photo.read_bytes())

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ISOLATED_SCRIPT, sysconfig.get_paths()["purelib"], str(result.folder),
         str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "forenx modules loaded: []" in completed.stdout
    assert re.search(r"P\(fake\) = 0\.\d{3}", completed.stdout), completed.stdout

    outputs = torch.load(tmp_path / "outputs.pt")
    assert outputs["model_class"].startswith("transformers_modules.") and \
        outputs["model_class"].endswith("modeling_forenx.ForenXForConditionalGeneration")
    assert outputs["processor_class"].endswith("processing_forenx.ForenXProcessor")
    reference = checkpoint_model(adapter_checkpoint)
    with torch.no_grad():
        expected = reference(**inputs).logits
    assert torch.allclose(outputs["logits"], expected, atol=1e-5, rtol=0), (outputs["logits"] - expected).abs().max()
    sequences, prob_fake = reference.generate_with_proba(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(outputs["sequences"], sequences)
    assert torch.allclose(outputs["prob_fake"], prob_fake, atol=1e-6)

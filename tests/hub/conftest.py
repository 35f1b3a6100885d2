"""Checkpoints shaped like the SFT recipe's, built here on the tiny model, for the release tests.

- ``base_model_dir``: the tiny ForenX model saved with ``save_pretrained`` (the adapter's base);
- ``adapter_checkpoint``: a PEFT LoRA adapter on the LM's linear layers with the fusion and the
  projector in ``modules_to_save`` (trained weights simulated by a seeded perturbation), plus
  the processor and ``forenx_run.yaml``;
- ``full_checkpoint``: a full model (perturbed tiny model) with processor and run config;
- ``quantized_checkpoint``: the base loaded in 4 bit (bitsandbytes, CPU) and saved.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

torch.set_num_threads(1)

FIXTURES = Path(__file__).parents[1] / "fixtures"
LM_LINEAR_LAYERS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
TRAINED_MODULES = ["fusion", "multi_modal_projector"]
#: A fake Hub token written into the run config: it must never reach a release or an upload.
RUN_CONFIG_TOKEN = "hf_RUNCONFIGSECRETxxxxxxxxxxxxxxxxxxxxxx"


@pytest.fixture(scope="session")
def run_config_token() -> str:
    return RUN_CONFIG_TOKEN


@pytest.fixture(scope="session")
def hub_server_class():
    """``HubServer`` from tests/fixtures/hub_server.py (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("hub_server", FIXTURES / "hub_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hub_server"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module.HubServer


def _perturb(parameters, seed: int) -> None:
    """Stand-in for training: move the trainable weights by a seeded random step (LoRA B starts at 0,
    so without this the adapter would be a no-op and merging would prove nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _run_config(base: str) -> dict:
    """A forenx_run.yaml as the SFT recipe writes it (model = forenx.training.config.ModelArguments).
    The base loads from model_name_or_path; clip/dino/llm record the parts it was built from (Hub ids,
    which the model card lists as base models)."""
    return {"forenx_version": "0.1.0",
            "model": {"model_name_or_path": base, "clip": "openai/clip-vit-large-patch14-336",
                      "dino": "facebook/dinov2-large", "llm": "lmsys/vicuna-7b-v1.5", "torch_dtype": "float32",
                      "load_in_4bit": False},
            "data": {"train_file": "data/train.jsonl", "dataset": "my-lab/forgerysynth-v1"},
            "training": {"learning_rate": 2e-4, "lora_r": 4, "hub_token": RUN_CONFIG_TOKEN}}


@pytest.fixture(scope="session")
def tiny():
    from forenx.modeling import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, tiny) -> Path:
    model, processor = tiny
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def adapter_checkpoint(tmp_path_factory, base_model_dir) -> Path:
    from peft import LoraConfig, get_peft_model

    from forenx.modeling import ForenXForConditionalGeneration, ForenXProcessor

    base = ForenXForConditionalGeneration.from_pretrained(base_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LM_LINEAR_LAYERS,
                                            modules_to_save=TRAINED_MODULES))
    _perturb([p for p in model.parameters() if p.requires_grad], seed=1)
    folder = tmp_path_factory.mktemp("adapter_checkpoint")
    model.save_pretrained(folder)
    ForenXProcessor.from_pretrained(base_model_dir).save_pretrained(folder)
    (folder / "forenx_run.yaml").write_text(yaml.safe_dump(_run_config(str(base_model_dir))))
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_model_dir), config["base_model_name_or_path"]
    assert set(config["modules_to_save"]) == set(TRAINED_MODULES)
    return folder


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory, base_model_dir) -> Path:
    from forenx.modeling import ForenXForConditionalGeneration, ForenXProcessor

    model = ForenXForConditionalGeneration.from_pretrained(base_model_dir)
    _perturb(model.parameters(), seed=2)
    folder = tmp_path_factory.mktemp("full_checkpoint")
    model.save_pretrained(folder)
    ForenXProcessor.from_pretrained(base_model_dir).save_pretrained(folder)
    (folder / "forenx_run.yaml").write_text(yaml.safe_dump(_run_config(str(base_model_dir))))
    return folder


@pytest.fixture(scope="session")
def quantized_checkpoint(tmp_path_factory, base_model_dir) -> Path:
    from forenx.modeling import ForenXForConditionalGeneration, ForenXProcessor
    from forenx.modeling.builder import lm_4bit_config

    model = ForenXForConditionalGeneration.from_pretrained(base_model_dir,
                                                           quantization_config=lm_4bit_config(torch.float32))
    folder = tmp_path_factory.mktemp("quantized_checkpoint")
    model.save_pretrained(folder)
    ForenXProcessor.from_pretrained(base_model_dir).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["quantization_config"]["load_in_4bit"]
    return folder


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A photo-like test image (the usage snippets open "photo.jpg")."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("photo")
    path = folder / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def checkpoint_model(base_model_dir):
    """Loads a checkpoint as training left it: base + adapter (unmerged, with peft) or the full model."""

    def load(checkpoint: Path):
        from peft import PeftModel

        from forenx.modeling import ForenXForConditionalGeneration

        if (checkpoint / "adapter_config.json").is_file():
            base = ForenXForConditionalGeneration.from_pretrained(base_model_dir)
            return PeftModel.from_pretrained(base, checkpoint).eval()
        return ForenXForConditionalGeneration.from_pretrained(checkpoint).eval()

    return load


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 50), (64, 64))]

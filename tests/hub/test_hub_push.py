"""`forenx release --push` and `forenx data push` against a local Hub (tests/fixtures/hub_server.py).

The commands run in a subprocess, as a user runs them: huggingface_hub reads HF_ENDPOINT and the
offline switches when it is imported, and the subprocess's stdout / stderr (with huggingface_hub's
debug logging on) are what a user would see and what a CI log would keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import DatasetCard, ModelCard
from PIL import Image

FAKE_TOKEN = "hf_TESTTOKENdoNotLeakThisAnywhere0123456789"
FORENX = "from forenx.cli import main; main()"  # what the `forenx` console script runs
DATA_PUSH = ("import typer; from forenx.hub.cli import push_dataset_command; "
             "typer.run(push_dataset_command)")


def _env(tmp_path: Path, endpoint: str, token: str | None = FAKE_TOKEN, *, login: bool = False) -> dict[str, str]:
    """The uploading process's environment: the local Hub, debug logging, and the token in HF_TOKEN or, with
    ``login``, in the file `hf auth login` writes (HF_HOME/token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_HOME=str(tmp_path / "hf_home"),
               HF_HUB_VERBOSITY="debug", HF_MODULES_CACHE=str(tmp_path / "modules"), COLUMNS="200")
    if token is not None and login:
        (tmp_path / "hf_home").mkdir(exist_ok=True)
        (tmp_path / "hf_home" / "token").write_text(token)
    elif token is not None:
        env["HF_TOKEN"] = token
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_token_only_in_auth_headers(hub, completed, *folders: Path) -> None:
    token = FAKE_TOKEN.encode()
    assert FAKE_TOKEN not in completed.stdout and FAKE_TOKEN not in completed.stderr
    for repo in hub.repos.values():
        for name, content in repo.files.items():
            assert token not in content, f"token uploaded in {name}"
    for folder in folders:
        for name, content in _folder_files(folder).items():
            assert token not in content, f"token written into {name}"
    for request in hub.requests:
        assert token not in request.body, f"token in the body of {request.method} {request.path}"
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert all(FAKE_TOKEN not in v for k, v in headers.items() if k != "authorization"), request.path
    writes = [r for r in hub.requests if r.method == "POST"]
    assert writes and all({k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {FAKE_TOKEN}"
                          for r in writes)


@pytest.mark.slow
def test_release_push_uploads_the_release_folder(adapter_checkpoint, hub_server_class, tmp_path):
    out = tmp_path / "release"
    with hub_server_class() as hub:
        completed = _run(["-c", FORENX, "release", str(adapter_checkpoint), "--repo-id", "my-lab/forenx-tiny",
                          "--push", "--private", "--out", str(out)], _env(tmp_path, hub.endpoint), tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"Pushed: {hub.endpoint}/my-lab/forenx-tiny/commit/" in completed.stdout
    repo = hub.repos["my-lab/forenx-tiny", "model"]
    assert repo.private and len(repo.commits) == 1
    assert repo.files == _folder_files(out)  # names and bytes: exactly the release folder
    assert {"model.safetensors", "config.json", "README.md", "processor_config.json"} <= set(repo.files)
    card = ModelCard(repo.files["README.md"].decode())
    assert card.data.pipeline_tag == "image-text-to-text"
    routes = [(r.method, r.path.split("?")[0]) for r in hub.requests if r.method == "POST"]
    assert routes == [("POST", "/api/repos/create"), ("POST", "/api/validate-yaml"),
                      ("POST", "/api/models/my-lab/forenx-tiny/preupload/main"),
                      ("POST", "/api/models/my-lab/forenx-tiny/commit/main")]
    create = json.loads(hub.requests[[r.path for r in hub.requests].index("/api/repos/create")].body)
    assert create == {"name": "forenx-tiny", "organization": "my-lab", "visibility": "private", "type": "model"}
    _assert_token_only_in_auth_headers(hub, completed, out)


@pytest.mark.slow
def test_push_without_a_token_says_how_to_log_in(full_checkpoint, hub_server_class, tmp_path):
    with hub_server_class() as hub:
        completed = _run(["-c", FORENX, "release", str(full_checkpoint), "--repo-id", "my-lab/x", "--push",
                          "--no-verify", "--out", str(tmp_path / "release")], _env(tmp_path, hub.endpoint, None),
                         tmp_path)
    assert completed.returncode == 1
    assert "no Hugging Face token. Set the HF_TOKEN environment variable or run `hf auth login`" in \
        " ".join(completed.stderr.split())
    assert not hub.repos and all(r.method == "GET" for r in hub.requests)
    assert (tmp_path / "release" / "README.md").is_file()  # the folder is ready to upload later


def _data_folder(root: Path, with_card: bool) -> Path:
    """A tiny data set as ForgerySynth writes one: records.jsonl, images (and masks), optionally a card."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / "images" / "real_0.png")
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / "images" / "fake_0.png")
    Image.fromarray(np.zeros((32, 40), dtype=np.uint8)).save(root / "masks" / "fake_0.png")
    records = [
        {"id": "real_0", "image": "images/real_0.png", "label": "real", "source": "forgerysynth", "split": "train"},
        {"id": "fake_0", "image": "images/fake_0.png", "label": "fake", "source": "forgerysynth",
         "generator": "copy_move", "split": "train", "mask": "masks/fake_0.png",
         "quadruples": [{"name": "Duplicated region", "phenomenon": "a patch repeats at (4, 4) and (20, 12)",
                         "reasoning": "camera noise never repeats exactly", "severity": 80}]},
    ]
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if with_card:
        (root / "README.md").write_text("---\nlicense: cc-by-4.0\npretty_name: Tiny forgeries\n---\n\n# Tiny\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("with_card,login", [(False, False), (True, True)])
def test_data_push_publishes_a_dataset_repo(with_card, login, hub_server_class, tmp_path):
    folder = _data_folder(tmp_path / "tiny_forgeries", with_card)
    with hub_server_class() as hub:
        completed = _run(["-c", DATA_PUSH, str(folder), "--repo-id", "my-lab/tiny-forgeries", "--private"],
                         _env(tmp_path, hub.endpoint, login=login), tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"{hub.endpoint}/datasets/my-lab/tiny-forgeries/commit/" in completed.stdout
    repo = hub.repos["my-lab/tiny-forgeries", "dataset"]
    assert repo.private
    assert set(repo.files) == {"records.jsonl", "images/real_0.png", "images/fake_0.png", "masks/fake_0.png",
                               "README.md"}
    assert repo.files == _folder_files(folder)
    card = DatasetCard(repo.files["README.md"].decode())
    if with_card:
        assert card.data.license == "cc-by-4.0"  # the user's card, unchanged
    else:  # written from the records
        assert card.data.configs == [{"config_name": "default",
                                      "data_files": [{"split": "records", "path": "records.jsonl"}]}]
        assert "| fake | 1 |" in card.text and "| copy_move | 1 |" in card.text
    assert any(r.path.startswith("/api/datasets/my-lab/tiny-forgeries/commit/") for r in hub.requests)
    _assert_token_only_in_auth_headers(hub, completed, folder)


@pytest.mark.slow
def test_data_push_refuses_invalid_data(hub_server_class, tmp_path):
    folder = _data_folder(tmp_path / "broken", with_card=True)
    (folder / "images" / "fake_0.png").unlink()
    with hub_server_class() as hub:
        completed = _run(["-c", DATA_PUSH, str(folder), "--repo-id", "my-lab/broken"], _env(tmp_path, hub.endpoint),
                         tmp_path)
    assert completed.returncode == 1
    message = " ".join(completed.stderr.split())
    assert "refusing to publish invalid data" in message and "line 2 (id 'fake_0')" in message
    assert not hub.repos and not [r for r in hub.requests if r.method == "POST"]


@pytest.mark.slow
def test_data_push_publishes_forgerysynth_output(hub_server_class, tmp_path):
    from forenx.data.synth.generator import synthesize

    folder = tmp_path / "forgerysynth"
    synthesize(folder, n=6, seed=0, size=64, workers=1)
    with hub_server_class() as hub:
        completed = _run(["-c", DATA_PUSH, str(folder), "--repo-id", "my-lab/forgerysynth-mini"],
                         _env(tmp_path, hub.endpoint), tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    repo = hub.repos["my-lab/forgerysynth-mini", "dataset"]
    assert not repo.private
    assert repo.files == _folder_files(folder)  # records, images/<split>/, masks/<split>/, the card
    assert sum(name.startswith("images/") for name in repo.files) == 6
    assert DatasetCard(repo.files["README.md"].decode()).data.pretty_name == "ForgerySynth"
    _assert_token_only_in_auth_headers(hub, completed, folder)

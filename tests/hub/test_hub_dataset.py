"""Preparing a data folder for the Hub: validation first, a card written from the records when missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from forenx.hub.dataset import prepare_dataset_folder
from forenx.hub.errors import ReleaseError


def _folder(root, records):
    root.mkdir()
    (root / "img").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "img" / "a.png")
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_card_is_written_from_the_records(tmp_path):
    folder = _folder(tmp_path / "data", [
        {"id": "a", "image": "img/a.png", "label": "fake", "generator": "splice", "source": "mine", "split": "test",
         "quadruples": [{"name": "Edge", "phenomenon": "a hard seam", "reasoning": "pasted", "severity": 60}]}])
    assert prepare_dataset_folder(folder, "my-lab/mine") is True
    card = DatasetCard.load(folder / "README.md")
    assert card.data.pretty_name == "mine" and card.data.size_categories == "n<1K"
    assert "image-text-to-text" in card.data.task_categories
    assert "| splice | 1 |" in card.text and "| test | 1 |" in card.text
    assert 'snapshot_download("my-lab/mine", repo_type="dataset")' in card.text
    # A second run keeps the card it wrote (or the user's own).
    assert prepare_dataset_folder(folder, "my-lab/mine") is False


def test_folder_problems_are_clear(tmp_path):
    with pytest.raises(ReleaseError, match="no such folder"):
        prepare_dataset_folder(tmp_path / "nope", "my-lab/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReleaseError, match=r"holds no record file \(\*\.jsonl\)"):
        prepare_dataset_folder(tmp_path / "empty", "my-lab/x")
    folder = _folder(tmp_path / "bad", [{"id": "a", "image": "img/a.png", "label": "real"},
                                        {"id": "b", "image": "../outside.png", "label": "maybe"}])
    with pytest.raises(ReleaseError, match=r"(?s)refusing to publish invalid data.*line 2 \(id 'b'\)"):
        prepare_dataset_folder(folder, "my-lab/x")
    assert not (folder / "README.md").exists()


def test_broken_card_yaml_is_refused(tmp_path):
    folder = _folder(tmp_path / "data", [{"id": "a", "image": "img/a.png", "label": "real"}])
    (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# x\n")
    with pytest.raises(ReleaseError, match="YAML metadata does not parse"):
        prepare_dataset_folder(folder, "my-lab/x")

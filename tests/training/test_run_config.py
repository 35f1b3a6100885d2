"""The run configuration saved with every checkpoint: written atomically, read back, broken files named."""

from __future__ import annotations

import pytest

from forenx.training.run_config import RUN_CONFIG_NAME, RunConfigError, read_run_config, write_run_config


def test_written_config_reads_back_in_order(tmp_path):
    path = write_run_config(tmp_path, {"model": {"llm": "tiny"}, "training": {"lr": 1e-4}})
    assert path == tmp_path / RUN_CONFIG_NAME
    assert not list(tmp_path.glob("*.partial"))
    assert list(read_run_config(tmp_path)) == ["model", "training"]
    assert read_run_config(tmp_path)["training"]["lr"] == 1e-4


def test_missing_and_empty_files(tmp_path):
    assert read_run_config(tmp_path) is None
    (tmp_path / RUN_CONFIG_NAME).write_text("")
    assert read_run_config(tmp_path) == {}


@pytest.mark.parametrize("text, reason", [("model: [unclosed\n", "not valid YAML"),
                                          ("- just\n- a list\n", "expected a mapping of run settings, got list")])
def test_broken_file_is_named(tmp_path, text, reason):
    (tmp_path / RUN_CONFIG_NAME).write_text(text)
    with pytest.raises(RunConfigError, match=reason) as caught:
        read_run_config(tmp_path)
    assert str(tmp_path / RUN_CONFIG_NAME) in str(caught.value)
    assert isinstance(caught.value, ValueError)

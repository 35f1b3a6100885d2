"""Trainer callbacks of ForenX runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

__all__ = ["RUN_CONFIG_NAME", "RunConfigCallback", "write_run_config"]

#: File name of the resolved run configuration inside every checkpoint and output folder.
RUN_CONFIG_NAME = "forenx_run.yaml"


def write_run_config(folder: str | os.PathLike, run_config: dict[str, Any]) -> Path:
    """Write ``run_config`` as ``folder/forenx_run.yaml`` (atomically) and return its path."""
    path = Path(folder) / RUN_CONFIG_NAME
    partial = path.with_suffix(".yaml.partial")
    partial.write_text(yaml.safe_dump(run_config, sort_keys=False), encoding="utf-8")
    os.replace(partial, path)
    return path


class RunConfigCallback(TrainerCallback):
    """Store the resolved run configuration in each ``checkpoint-N`` folder the Trainer saves, so a
    checkpoint loads (:func:`forenx.training.checkpoint.load_checkpoint`) with no re-specification."""

    def __init__(self, run_config: dict[str, Any]):
        self.run_config = run_config

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_run_config(folder, self.run_config)
        return control

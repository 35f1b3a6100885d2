"""Trainer callbacks of ForenX runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from forenx.training.run_config import RUN_CONFIG_NAME, write_run_config

__all__ = ["RUN_CONFIG_NAME", "RunConfigCallback", "write_run_config"]


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

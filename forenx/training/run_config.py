"""The resolved run configuration (``forenx_run.yaml``) saved with every checkpoint and output folder.

Kept apart from the trainer code: inference and release read it without importing transformers'
``Trainer`` stack (which imports peft and, through it, bitsandbytes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RUN_CONFIG_NAME", "RunConfigError", "read_run_config", "write_run_config"]

#: File name of the resolved run configuration inside every checkpoint and output folder.
RUN_CONFIG_NAME = "forenx_run.yaml"


class RunConfigError(ValueError):
    """A ``forenx_run.yaml`` that is not valid YAML or not a mapping."""


def write_run_config(folder: str | os.PathLike, run_config: dict[str, Any]) -> Path:
    """Write ``run_config`` as ``folder/forenx_run.yaml`` (atomically) and return its path."""
    path = Path(folder) / RUN_CONFIG_NAME
    partial = path.with_suffix(".yaml.partial")
    partial.write_text(yaml.safe_dump(run_config, sort_keys=False), encoding="utf-8")
    os.replace(partial, path)
    return path


def read_run_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``forenx_run.yaml`` of a checkpoint folder, or None when it has none.

    An empty file reads as ``{}``; a file that is not YAML, or holds something other than a
    mapping, raises :class:`RunConfigError` naming it.
    """
    file = Path(path) / RUN_CONFIG_NAME
    if not file.is_file():
        return None
    try:
        run_config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RunConfigError(f"{file}: not valid YAML ({error}).") from None
    if run_config is None:
        return {}
    if not isinstance(run_config, dict):
        raise RunConfigError(f"{file}: expected a mapping of run settings, got {type(run_config).__name__}.")
    return run_config

"""What the 2-process tests share: the `accelerate` executable, a free port, and the environment of a
CPU launch (gloo on loopback, one thread per process, nothing fetched from the Hub)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for ``--main_process_port``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(**extra: str) -> dict[str, str]:
    """This process's environment plus the settings of an offline 2-process CPU run, then ``extra``."""
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            # A rank that dies of a signal (SIGABRT from gloo at exit was seen once in many runs) prints
            # every thread's Python stack to stderr, which the failing test's message shows.
            "PYTHONFAULTHANDLER": "1", **extra}

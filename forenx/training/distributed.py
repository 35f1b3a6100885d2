"""Ending a multi-process run cleanly.

A process that leaves Python with its process group still up can take the group's threads down with
it while another process still talks to them: gloo then aborts that process at exit ("terminate
called without an active exception", SIGABRT) although the run itself succeeded. Every entry point
that ``accelerate launch`` starts (recipes/sft.py, recipes/grpo.py, eval/run_eval.py) therefore ends
with :func:`close_process_group`.

Objects of the finished run that only a reference cycle keeps alive (a trainer, a wrapped model, the
handles of asynchronous collectives) may otherwise be freed during interpreter finalization, when a
gloo worker thread that still holds their tensors can no longer take the GIL and aborts the process the
same way; :func:`close_process_group` therefore collects them first, while the group and the
interpreter are both alive.
"""

from __future__ import annotations

__all__ = ["close_process_group"]


def close_process_group(*, wait: bool = True) -> None:
    """Free the finished run's unreachable objects, wait for every process (``wait=True``), then destroy
    the default process group.

    Does nothing when no process group was started (one process, or torch without distributed).

    >>> close_process_group()  # a single process: nothing to close
    """
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    if wait:
        dist.barrier()
    dist.destroy_process_group()

"""eval/run_eval.py under `accelerate launch --multi_gpu --num_processes 2` (two gloo processes on the CPU):
the same metrics and predictions as one process, and a SIGKILLed rank resumed without loss or repeats.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.launch import ACCELERATE, free_port, launch_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "eval" / "run_eval.py"
PAUSE_ENV = "FORENX_EVAL_PAUSE_AFTER_BATCH"

pytestmark = pytest.mark.slow


def _args(model: Path, records: Path, out: Path) -> list[str]:
    return [str(SCRIPT), "--config", str(REPO / "eval" / "configs" / "tiny_synth.yaml"), "--model", str(model),
            "--data_file", str(records), "--output_dir", str(out), "--batch_size", "2", "--max_new_tokens", "12"]


def _two_processes(model: Path, records: Path, out: Path) -> list[str]:
    return [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            *_args(model, records, out)]


def _run(command: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=launch_env(), capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _comparable_lines(path: Path) -> list[dict]:
    return [{k: (pytest.approx(v, abs=1e-5) if k == "prob_fake" else v) for k, v in line.items() if k != "timing"}
            for line in _jsonl(path)]


def _comparable_metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    for key in ("run", "config", "notes"):  # how the run went, not what it measured
        metrics.pop(key)
    return metrics


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, synth_records, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-1proc")
    _run([sys.executable, *_args(tiny_model_dir, synth_records, out)])
    return out


def test_two_processes_give_the_same_metrics_and_predictions(one_process, tiny_model_dir, synth_records, tmp_path):
    out = tmp_path / "two"
    _run(_two_processes(tiny_model_dir, synth_records, out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["world_size"] == 2
    # Sharded by id: each process wrote its own half, nothing twice.
    rank0, rank1 = _jsonl(out / "predictions.rank0.jsonl"), _jsonl(out / "predictions.rank1.jsonl")
    assert len(rank0) == len(rank1) == 6 and not {r["id"] for r in rank0} & {r["id"] for r in rank1}
    assert _comparable_metrics(out / "metrics.json") == _comparable_metrics(one_process / "metrics.json")
    assert _comparable_lines(out / "predictions.jsonl") == _comparable_lines(one_process / "predictions.jsonl")
    assert (out / "predictions_anomreason.json").read_text() == (one_process / "predictions_anomreason.json").read_text()


def _rank_process(launcher: subprocess.Popen, local_rank: str) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("LOCAL_RANK") == local_rank and any("run_eval.py" in a for a in child.cmdline()):
                return child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_sigkilled_rank_resumes_with_every_sample_exactly_once(one_process, tiny_model_dir, synth_records, tmp_path):
    out = tmp_path / "killed"
    # Each process pauses after every batch it has written, so the kill lands mid-run at a known point.
    launcher = subprocess.Popen(_two_processes(tiny_model_dir, synth_records, out), cwd=REPO,
                                env=launch_env(**{PAUSE_ENV: "3"}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rank1_file = out / "predictions.rank1.jsonl"
    deadline = time.monotonic() + 180
    try:
        while not (rank1_file.is_file() and rank1_file.read_text().count("\n") >= 1):
            assert launcher.poll() is None, "the run ended before rank 1 wrote anything"
            assert time.monotonic() < deadline, "rank 1 wrote nothing in 180 s"
            time.sleep(0.1)
        victim = _rank_process(launcher, "1")
        assert victim is not None, "rank 1's process was not found"
        os.kill(victim.pid, signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0  # the launcher reports the dead rank and stops the other
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not (out / "metrics.json").exists()
    written = [line["id"] for name in ("predictions.rank0.jsonl", "predictions.rank1.jsonl")
               for line in _jsonl(out / name)]
    assert 1 <= len(written) < 12 and len(set(written)) == len(written)

    _run(_two_processes(tiny_model_dir, synth_records, out))
    metrics = json.loads((out / "metrics.json").read_text())
    # The restart generated only what was missing ...
    assert metrics["run"]["resumed"] == len(written)
    assert metrics["run"]["generated_this_run"] == 12 - len(written)
    # ... and every sample is there exactly once, in the rank files and in the merged file.
    all_lines = [line["id"] for name in ("predictions.rank0.jsonl", "predictions.rank1.jsonl")
                 for line in _jsonl(out / name)]
    assert len(all_lines) == 12 and len(set(all_lines)) == 12
    assert _comparable_lines(out / "predictions.jsonl") == _comparable_lines(one_process / "predictions.jsonl")
    assert _comparable_metrics(out / "metrics.json") == _comparable_metrics(one_process / "metrics.json")


def test_a_failing_rank_is_reported_not_left_hanging(tiny_model_dir, synth_records, tmp_path):
    """Only rank 1 fails (its prediction file cannot be opened): both processes stop and name it."""
    out = tmp_path / "rank1-fails"
    (out / "predictions.rank1.jsonl").mkdir(parents=True)  # a folder where rank 1's file should be
    started = time.monotonic()
    result = subprocess.run(_two_processes(tiny_model_dir, synth_records, out), cwd=REPO, env=launch_env(),
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode != 0
    assert "generation failed on process 1: IsADirectoryError" in result.stderr
    assert "run the same command again to resume" in result.stderr
    assert _jsonl(out / "predictions.rank0.jsonl")  # rank 0 kept what it finished
    assert not (out / "metrics.json").exists()
    assert time.monotonic() - started < 200  # reported at once, not after the 30-minute timeout

"""Every benchmark in bench/ runs, at its smallest size, and prints its figures.

The benchmarks measure speed and memory against a baseline in the same run and assert nothing; this
only keeps them runnable (bench/forensic.py once stopped with a TypeError when the nano config grew
the stream keys it also passed itself, and nothing noticed).
"""

from __future__ import annotations

import pytest

from tests.scripts import load_script

# Each benchmark's smallest arguments, and a word its printed figures contain.
SMALL = {
    "forensic": (["--batch", "2", "--repeats", "1", "--threads", "1", "--members", "2"], "2 members"),
    "fusion": (["--preset", "medium", "--batch", "1", "--repeats", "1"], "ms"),
    "synth": (["--n", "12", "--size", "64", "--workers", "1"], "samples"),
    "rewards": (["--completions", "16", "--group", "4", "--baseline-completions", "2"], "completions"),
    # --skip fixture: the fixture pass scores the whole AnomReason fixture (100 s).
    "metrics": (["--images", "20", "--baseline-images", "2", "--bert-baseline-images", "2", "--threads", "1",
                 "--skip", "fixture"], "images"),
    "explain": (["--images", "2", "--max-new-tokens", "8", "--batch-sizes", "1", "2", "--repeats", "1"], "batch"),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_benchmark_runs_and_prints_its_figures(name, capsys):
    args, word = SMALL[name]
    load_script(f"bench/{name}.py").main(args)
    out = capsys.readouterr().out
    assert word in out, out


@pytest.mark.slow
def test_training_benchmark_runs(tmp_path, capsys):
    load_script("bench/train.py").main(["--configs", "tiny", "--steps", "2", "--batch-size", "2", "--n", "24",
                                        "--data", str(tmp_path / "synth")])
    assert "tiny" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_scaling_benchmark_runs_one_and_two_processes(tmp_path, capsys):
    load_script("bench/eval_scaling.py").main(["--n", "8", "--max-new-tokens", "8", "--repeats", "1",
                                               "--work", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert "1 process" in out and "2 processes" in out

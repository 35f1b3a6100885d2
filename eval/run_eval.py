"""Batch reasoning evaluation of a ForenX model: generate on every process, merge, score.

One CPU or GPU (the tiny model on ForgerySynth: make both first, see eval/configs/tiny_synth.yaml)::

    python eval/run_eval.py --config eval/configs/tiny_synth.yaml
    python eval/run_eval.py --config eval/configs/tiny_synth.yaml --limit 8 --output_dir runs/eval-tiny-8

Several processes on one machine (GPUs; on a CPU-only machine ``--multi_gpu`` runs gloo processes —
``--cpu --num_processes 2`` would start only one)::

    accelerate launch --multi_gpu --num_processes 2 eval/run_eval.py --config eval/configs/tiny_synth.yaml
    accelerate launch --multi_gpu --num_processes 8 eval/run_eval.py --config eval/configs/anomreason.yaml

Several machines (accelerate's own multi-node launch; run on every machine, machine_rank 0..M-1;
``output_dir`` must be a folder all machines share, e.g. NFS or Lustre, because the main process
merges every process's predictions.rank{R}.jsonl from it)::

    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 \\
        eval/run_eval.py --config eval/configs/mmfr.yaml --output_dir /shared/runs/eval-mmfr
    # on the second machine: the same with --machine_rank 1

Killed or crashed? Run the same command again: the finished samples in ``output_dir`` are kept and
only the rest are generated, with any number of processes.

Every field of the YAML can be overridden as ``--field value`` (``--thresholds 0.5 0.6``); the fields
are documented in ``forenx/evaluation/config.py`` and in the YAML files. The outputs:
``predictions.jsonl`` (merged), ``metrics.json``, ``report.md``, ``predictions_anomreason.json``.
"""

from forenx.evaluation import parse_eval_args, run_evaluation


def main(args: list[str] | None = None) -> None:
    metrics = run_evaluation(parse_eval_args(args))
    if metrics is not None:
        print(f"wrote {metrics['config']['output_dir']}/metrics.json and report.md")


if __name__ == "__main__":
    main()

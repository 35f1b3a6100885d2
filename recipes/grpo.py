"""GRPO of ForenX with forensic rewards (format, verdict, explanation SemF1, severity), on TRL's GRPOTrainer.

One CPU: the tiny model, from an SFT run of sft_tiny.yaml (or from the random tiny model)::

    python recipes/sft.py --config recipes/configs/sft_tiny.yaml
    python recipes/grpo.py --config recipes/configs/grpo_tiny.yaml
    python recipes/grpo.py --config recipes/configs/grpo_tiny.yaml --model_name_or_path tiny --max_steps 10

Two processes on a CPU (gloo) or GPUs; DeepSpeed ZeRO-2 / ZeRO-3 (the configs of recipes/accelerate/)::

    accelerate launch --multi_gpu --num_processes 2 recipes/grpo.py --config recipes/configs/grpo_tiny.yaml --max_steps 2
    accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/grpo.py --config recipes/configs/grpo.yaml
    accelerate launch --config_file recipes/accelerate/zero3.yaml recipes/grpo.py --config recipes/configs/grpo.yaml

Resume a stopped run (optimizer, scheduler, RNG and data position)::

    python recipes/grpo.py --config recipes/configs/grpo_tiny.yaml --resume_from_checkpoint runs/grpo-tiny/checkpoint-50

Every field of the YAML can be overridden as ``--field value``; the fields are documented in
``forenx/training/grpo_config.py`` (and TRL's ``GRPOConfig``) and in the YAML files. The output folder
(and each checkpoint-N in it) opens with ``forenx.training.checkpoint.load_checkpoint``.
"""

from forenx.training.distributed import close_process_group
from forenx.training.grpo import run_grpo
from forenx.training.grpo_config import parse_grpo_args


def main(args: list[str] | None = None) -> None:
    model_args, data_args, grpo_args = parse_grpo_args(args)
    run_grpo(model_args, data_args, grpo_args)
    close_process_group()  # all processes meet, then the process group ends before Python does


if __name__ == "__main__":
    main()

"""Supervised fine-tuning of ForenX (LoRA, QLoRA or full; align or SFT stage).

One CPU (the tiny model on ForgerySynth; makes the data on first use)::

    python recipes/sft.py --config recipes/configs/sft_tiny.yaml
    python recipes/sft.py --config recipes/configs/sft_tiny.yaml --max_steps 20 --output_dir runs/sft-tiny-20

Two processes on a CPU (gloo) or GPUs; DeepSpeed ZeRO-2 / ZeRO-3; several nodes::

    accelerate launch --multi_gpu --num_processes 2 recipes/sft.py --config recipes/configs/sft_tiny.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/sft.py --config recipes/configs/sft_lora.yaml
    accelerate launch --config_file recipes/accelerate/zero3.yaml recipes/sft.py --config recipes/configs/sft_full.yaml
    accelerate launch --config_file recipes/accelerate/multi_node.yaml recipes/sft.py --config recipes/configs/sft_lora.yaml

Resume a stopped run exactly (optimizer, scheduler, RNG and data position)::

    python recipes/sft.py --config recipes/configs/sft_tiny.yaml --resume_from_checkpoint runs/sft-tiny/checkpoint-50

Every field of the YAML can be overridden as ``--field value``; the fields are documented in
``forenx/training/config.py`` and in the YAML files. The output folder (and each checkpoint-N in
it) opens with ``forenx.training.checkpoint.load_checkpoint``.
"""

from forenx.training.config import parse_sft_args
from forenx.training.distributed import close_process_group
from forenx.training.sft import run_sft


def main(args: list[str] | None = None) -> None:
    model_args, data_args, sft_args = parse_sft_args(args)
    run_sft(model_args, data_args, sft_args)
    close_process_group()  # all processes meet, then the process group ends before Python does


if __name__ == "__main__":
    main()

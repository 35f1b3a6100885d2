"""Publishing a ForenX data set (ForgerySynth output or a converted public set) as a Hub dataset repo.

A publishable folder holds the record files (``*.jsonl``, one :class:`~forenx.data.records.Record`
per line, image and mask paths relative to the folder), the images they name, and a README.md
dataset card. Every record is validated first (:func:`forenx.data.validate.require_valid`) so a
broken data set never reaches the Hub; a folder without a card gets one written from its records.
"""

from __future__ import annotations

from pathlib import Path

from forenx.hub.errors import ReleaseError
from forenx.hub.push import check_repo_id, push_folder

__all__ = ["dataset_card", "prepare_dataset_folder", "push_dataset", "record_files"]


def record_files(folder: str | Path) -> list[Path]:
    """The record files (``*.jsonl``) at the top of ``folder``, sorted; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReleaseError(f"{folder}: no such folder. Give the folder that holds records.jsonl and its images "
                           "(e.g. the output of `forenx data synth`).")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ReleaseError(f"{folder} holds no record file (*.jsonl): nothing to publish. Convert or synthesise "
                           "a data set into it first (`forenx data convert` / `forenx data synth`).")
    return files


def dataset_card(folder: str | Path, repo_id: str, *, license: str = "other"):
    """A :class:`~huggingface_hub.DatasetCard` written from the records of ``folder``: counts per label,
    source, generator and split, the record format, and a ``configs`` entry per record file."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from forenx.data.io import read_records
    from forenx.data.stats import compute_stats

    files = record_files(folder)
    records = [record for path in files for record in read_records(path)]
    stats = compute_stats(records)
    n = stats["records"]
    size = "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K"
    data = DatasetCardData(
        license=license, pretty_name=repo_id.split("/")[-1], size_categories=size,
        task_categories=["image-text-to-text", "image-classification"],
        tags=["forenx", "image-forensics", "explainable-ai", "deepfake-detection"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": path.stem, "path": path.name} for path in files]}],
    )

    def table(title: str, counts: dict[str, int]) -> list[str]:
        return [f"| {title} | records |", "|---|---|", *(f"| {k} | {v} |" for k, v in counts.items()), ""]

    body = [
        f"# {repo_id.split('/')[-1]}", "",
        ("A data set for explainable image forensics in the ForenX record "
         "format: one JSON object per line with `id`, `image` (a path in this repository), `label` "
         "(`real` / `fake`), `generator`, `source`, `split`, and `quadruples`, the anomalies that prove a forgery "
         "(name, phenomenon, reasoning, severity 0 = negligible .. 100 = physically impossible), plus an optional "
         "`mask`."), "",
        f"{n} records, {stats['anomalies']} anomalies, {stats['with_mask']} with a mask.", "",
        *table("label", stats["labels"]), *table("source", stats["sources"]),
        *table("generator", stats["generators"]), *table("split", stats["splits"]),
        "## Use", "", "```python", "from huggingface_hub import snapshot_download",
        "from forenx.data.io import load_records_dataset", "",
        f'folder = snapshot_download("{repo_id}", repo_type="dataset")',
        f'dataset = load_records_dataset(f"{{folder}}/{files[0].name}")  # images decoded from the folder',
        "```", "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def prepare_dataset_folder(folder: str | Path, repo_id: str) -> bool:
    """Validate every record file of ``folder`` and make sure it has a README.md card.

    Returns True when a card was written. Raises :class:`ReleaseError` listing the bad records.
    """
    import yaml
    from huggingface_hub import DatasetCard

    from forenx.data.validate import InvalidDataError, require_valid

    folder = Path(folder)
    check_repo_id(repo_id)
    for path in record_files(folder):
        try:
            require_valid(path, folder)
        except InvalidDataError as error:
            raise ReleaseError(f"refusing to publish invalid data:\n{error}") from None
    readme = folder / "README.md"
    if readme.is_file():
        try:
            DatasetCard.load(readme)
        except (ValueError, yaml.YAMLError) as error:
            raise ReleaseError(f"{readme}: the dataset card's YAML metadata does not parse ({error}); fix it "
                               "or delete the file to have ForenX write one.") from None
        return False
    dataset_card(folder, repo_id).save(readme)
    return True


def push_dataset(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Validate ``folder``, write its card if missing, and upload it as dataset repo ``repo_id``;
    return the commit URL."""
    prepare_dataset_folder(folder, repo_id)
    return push_folder(folder, repo_id, repo_type="dataset", private=private,
                       commit_message="Upload data set with forenx")

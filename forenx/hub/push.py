"""Upload a release or data folder to the Hugging Face Hub with huggingface_hub.

The token is never handled here: :class:`huggingface_hub.HfApi` resolves it itself (the
``HF_TOKEN`` environment variable, then the login saved by ``hf auth login``), so it cannot end up
in a file, a log line or the console. ``HF_ENDPOINT`` selects another Hub (a private mirror, or the
local test server in ``tests/fixtures/hub_server.py``).
"""

from __future__ import annotations

from pathlib import Path

from forenx.hub.errors import ReleaseError

__all__ = ["check_repo_id", "push_folder"]


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` when it is a valid ``namespace/name`` Hub id; raise :class:`ReleaseError` otherwise.

    >>> check_repo_id("forenx/forenx-7b")
    'forenx/forenx-7b'
    >>> check_repo_id("forenx-7b")
    Traceback (most recent call last):
    ...
    forenx.hub.errors.ReleaseError: --repo-id 'forenx-7b' must be 'namespace/name' (your user or organisation, then the repo name), e.g. 'my-lab/forenx-7b'.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise ReleaseError(f"--repo-id {repo_id!r} must be 'namespace/name' (your user or organisation, then "
                           "the repo name), e.g. 'my-lab/forenx-7b'.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ReleaseError(f"--repo-id {repo_id!r} is not a valid Hub id: {error}") from None
    return repo_id


def push_folder(folder: str | Path, repo_id: str, *, repo_type: str = "model", private: bool = False,
                commit_message: str | None = None) -> str:
    """Create ``repo_id`` (if needed) and upload every file of ``folder`` in one commit; return the commit URL.

    ``repo_type`` is ``"model"`` or ``"dataset"``. ``private`` applies when the repo is created
    (an existing repo keeps its visibility, as on the Hub).
    """
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    check_repo_id(repo_id)
    if not (folder / "README.md").is_file():
        raise ReleaseError(f"{folder} has no README.md: the Hub shows it as the {repo_type} card; write one first.")
    if constants.is_offline_mode():
        raise ReleaseError("cannot push: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set); "
                           "unset it to upload, or publish the folder later with `hf upload`.")
    if get_token() is None:
        raise ReleaseError("cannot push: no Hugging Face token. Set the HF_TOKEN environment variable or run "
                           "`hf auth login` once; the token is read by huggingface_hub and never stored by ForenX.")
    api = HfApi()
    try:
        repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private or None, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_url.repo_id, folder_path=folder, repo_type=repo_type,
            commit_message=commit_message or f"Upload {repo_type} with forenx",
        )
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        hint = {401: "the token was refused: check HF_TOKEN or run `hf auth login` again",
                403: f"the token may not write to {repo_id.split('/')[0]!r}: use a write token or a namespace you own",
                404: f"{repo_type} repo {repo_id} was not found after creation: check the namespace"}.get(status, "")
        raise ReleaseError(f"upload of {folder} to {repo_type} repo {repo_id} failed"
                           f"{f' (HTTP {status})' if status else ''}: {hint or error}") from None
    return commit.commit_url

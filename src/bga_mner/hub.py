"""The Hugging Face Hub through ``huggingface_hub``: where a model named by a folder or a hub id
lies on disk, whether a hub id can be had at all, and the upload of an exported folder.

* :func:`fetch`: a local folder as it is; a hub id (``org/name``) through ``snapshot_download``,
  the local cache first. With ``HF_HUB_OFFLINE=1`` only the cache is read; without it one
  request is made. A hub id that is neither cached nor reachable is a :class:`HubUnavailableError`
  at once: one line, no retries, nothing downloaded half.
* :func:`check_available` is the same check without the download, for ``bga-mner fit``: a hub-id
  encoder that cannot be had stops the command before any run folder is created.
* :func:`push_folder`: ``HfApi.create_repo`` + ``HfApi.upload_folder`` of a folder as it is.

Imports nothing from the package but ``errors`` (``huggingface_hub`` is light: no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bga_mner.errors import UserError, one_line


class HubUnavailableError(UserError, OSError):
    """A model named by a hub id that is not on this machine and cannot be downloaded now."""


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is shaped like a hub repository id (``name`` or ``org/name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)



GIVE_FOLDER = "give the folder instead"


def fetch(name_or_path: str | Path, what: str = "model", allow_patterns: Sequence[str] | None = None,
          revision: str | None = None) -> Path:
    """The local folder of a model named by a folder or a hub id.

    Args:
        name_or_path: an existing folder, or a hub id (downloaded into the Hugging Face cache).
        what: what is fetched, for messages (``model``, ``text encoder``, ...).
        allow_patterns: the files of the repository to download (None: all).
        revision: a branch, tag or commit of the repository.

    Raises:
        FileNotFoundError: neither a folder nor shaped like a hub id.
        HubUnavailableError: a hub id that is not cached and cannot be downloaded (offline, no
            network, no such repository, no access).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if not is_hub_id(name):
        raise FileNotFoundError(f"{name}: no such folder (and not a hub id like org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=list(allow_patterns)
                                      if allow_patterns is not None else None))
    except LocalEntryNotFoundError as err:
        raise HubUnavailableError(_unavailable(name, what, err, GIVE_FOLDER)) from None
    except (HfHubHTTPError, OSError) as err:  # 404, 401, a refused or dropped connection
        raise HubUnavailableError(_unavailable(name, what, err, GIVE_FOLDER)) from None


def _unavailable(name: str, what: str, err: BaseException, hint: str) -> str:
    why = ("HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face cache" if _offline()
           else f"the Hugging Face Hub could not give it ({one_line(err)})")
    return (f"{what} {name!r}: not a local folder, and {why}; download it where there is a network "
            f"(`hf download {name} --local-dir DIR`) and {hint}")


def check_available(name: str, what: str, hint: str = GIVE_FOLDER, filename: str = "config.json") -> None:
    """Raise :class:`HubUnavailableError` unless the hub id ``name`` can be loaded now: its
    ``filename`` is in the Hugging Face cache, or (online) the Hub answers for it. A local
    folder, or a name that is not a hub id, passes (the loader reports those).

    Args:
        name: a hub id, or anything else (passes).
        what: for the message (``model.text_encoder``, ...).
        hint: what to do instead, for the message.
        filename: a file that every revision of the repository has.
    """
    if Path(name).expanduser().exists() or not is_hub_id(name):
        return
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(try_to_load_from_cache(name, filename), str):
        return
    try:
        hf_hub_download(name, filename)  # online: one request (and the file is needed anyway)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise HubUnavailableError(_unavailable(name, what, err, hint)) from None


def push_folder(folder: str | Path, repo_id: str, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload bga-mner model", endpoint: str | None = None) -> str:
    """Upload a folder as it is to a model repository of the Hub (created when absent).

    Args:
        folder: the folder (``bga-mner export``'s).
        repo_id: ``org/name``.
        private: create the repository private (None: the account's default).
        token: a Hub token (None: ``HF_TOKEN`` or the one saved by ``hf auth login``).
        commit_message: the commit's message.
        endpoint: another Hub endpoint (None: ``HF_ENDPOINT`` or huggingface.co).

    Returns:
        the URL of the commit.

    Raises:
        HubUnavailableError: offline, unreachable, refused (no token, no access).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if _offline():
        raise HubUnavailableError(f"push {repo_id!r}: HF_HUB_OFFLINE=1 is set; nothing was uploaded")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo.repo_id, repo_type="model",
                                   commit_message=commit_message)
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as err:
        raise HubUnavailableError(f"push {repo_id!r}: the Hub refused or could not be reached "
                                  f"({one_line(err)}); nothing was uploaded") from None
    return str(getattr(commit, "commit_url", commit))

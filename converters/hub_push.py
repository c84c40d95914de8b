"""--push-to-hub ORG/NAME on the export commands: the finished, verified export is uploaded with huggingface_hub
(create_repo, then upload_folder; a token as huggingface_hub reads it). Its flags are checked before any work, and
without a network (HF_HUB_OFFLINE) the command stops there in one line."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from exhubert_jax.errors import ExhubertError, one_line
from exhubert_jax.hub.repos import HUB_ID
from exhubert_jax.process.options import Check, option

REPO_ID = Check(lambda v: bool(HUB_ID.fullmatch(v)) and "@" not in v, "must be a Hub repo id ORG/NAME (a branch goes "
                "to --revision)")
PUSH_ONLY = ("private", "revision", "commit_message")


class PushError(ExhubertError, ValueError):
    """An export that cannot be uploaded as asked."""


@dataclasses.dataclass
class HubOptions:
    """The model card's license and where the export goes on the Hub (a --config file's keys are these names)."""

    license: str | None = option(None, help="the model card's license (a Hub license id, e.g. cc-by-nc-sa-4.0)")
    push_to_hub: str | None = option(None, metavar="ORG/NAME", check=REPO_ID,
                                     help="upload the export, once written and verified, to this Hub model repo "
                                          "(created if missing) and print its URL")
    private: bool = option(False, action="store_true", help="--push-to-hub: create the repo private")
    revision: str | None = option(None, help="--push-to-hub: the branch to commit to (created if missing; default "
                                             "main)")
    commit_message: str | None = option(None, help="--push-to-hub: the commit's message")


def check(args) -> None:
    """Before any work: the push flags need --push-to-hub, and a push needs the Hub (HF_HUB_OFFLINE unset)."""
    from huggingface_hub import constants

    given = [f"--{name.replace('_', '-')}" for name in PUSH_ONLY if getattr(args, name, None)]
    if given and not args.push_to_hub:
        raise PushError(f"{given[0]} applies with --push-to-hub ORG/NAME only")
    if args.push_to_hub and constants.HF_HUB_OFFLINE:
        raise PushError(f"--push-to-hub {args.push_to_hub}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset "
                        "it, or leave --push-to-hub out (nothing was exported)")


def push(folder: Path, args, kind: str, files: list[str] | None = None) -> str:
    """Upload `folder` (or only `files` in it) to args.push_to_hub and return the commit's URL; the local export
    stays as it is whatever happens."""
    from huggingface_hub import HfApi, errors

    repo = args.push_to_hub
    api = HfApi()
    try:
        api.create_repo(repo, private=args.private or None, exist_ok=True)
        if args.revision:
            api.create_branch(repo, branch=args.revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=str(folder), revision=args.revision,
                                 commit_message=args.commit_message or f"Upload {kind} export from exhubert-jax",
                                 allow_patterns=files)
    except (errors.HfHubHTTPError, errors.LocalTokenNotFoundError, errors.OfflineModeIsEnabled, OSError) as e:
        raise PushError(f"--push-to-hub {repo}: the upload failed ({one_line(e)}); log in (`hf auth login`) or set "
                        f"HF_TOKEN with write access, and run the command again (the export in {folder} is "
                        "complete)") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}")


@contextlib.contextmanager
def staged(files: dict[str, Path]) -> Iterator[Path]:
    """A temporary folder beside the first file holding `files` under their repo names (hard links where the file
    system allows, else copies): a single-file export (ONNX) uploads as a folder of its own."""
    first = next(iter(files.values()))
    tmp = Path(tempfile.mkdtemp(prefix=f".{first.name}.", suffix=".push", dir=first.parent))
    try:
        for name, path in files.items():
            try:
                os.link(path, tmp / name)
            except OSError:
                shutil.copy2(path, tmp / name)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Hugging Face Hub ids wherever a checkpoint is read: the one place that turns `org/name[@revision]` into a local
exhubert-jax checkpoint directory.

A local path always wins over an id of the same spelling. An id goes through huggingface_hub (its cache, HF_HOME,
HF_HUB_OFFLINE and token, as huggingface_hub reads them): a repo holding an exhubert-jax checkpoint (params/ +
config.json) is used as it is downloaded; one holding a transformers checkpoint (HuBERT, our exports, the released
ExHuBERT) is converted on first use (exhubert_jax.hub.conversion) and the converted checkpoint kept in
$EXHUBERT_CACHE (default HF_HOME/exhubert-jax/converted), keyed by repo and commit, written whole or not at all
(save_pretrained), so the next use of the same commit reads it without converting or downloading the weights again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from exhubert_jax.errors import ExhubertError, one_line
from exhubert_jax.hub.exhubert_config import MODEL_TYPE
from exhubert_jax.hub.torch_io import WEIGHT_FILES
from exhubert_jax.pretrained import CONFIG_FILE, PARAMS_DIR
from exhubert_jax.process.atomic_files import write_text
from exhubert_jax.process.run_folders import resolve_checkpoint_dir

# org/name, optionally @revision (a branch, tag or commit); the Hub's own rules for the names.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<revision>[\w./-]+))?")
# Bump when a conversion gives other parameters or config than before: older converted checkpoints are not reused.
CONVERSION_VERSION = 1
SOURCE_JSON = "source.json"  # in a converted checkpoint: the repo, revision and commit it came from
# What the weights of each transformers layout are called (WEIGHT_FILES order: safetensors first).
WEIGHT_PATTERNS = {"model.safetensors": ["model.safetensors"],
                   "model.safetensors.index.json": ["model.safetensors.index.json", "*.safetensors"],
                   "pytorch_model.bin": ["pytorch_model.bin"],
                   "pytorch_model.bin.index.json": ["pytorch_model.bin.index.json", "pytorch_model-*.bin"]}
FLAX_PATTERNS = [CONFIG_FILE, f"{PARAMS_DIR}/*"]
MODEL_TYPES = ("hubert", MODEL_TYPE)


class HubError(ExhubertError, ValueError):
    """A Hub id that cannot be turned into a checkpoint."""


class HubOfflineError(HubError):
    """The Hub cannot be reached (no network, or HF_HUB_OFFLINE) and what is asked for is not in the cache."""


class HubRepoNotFound(HubError):
    """No such repo or revision on the Hub (or a private repo without a token)."""


class HubAccessError(HubError):
    """A gated repo, and no token with access to it."""


class UnknownLayoutError(HubError):
    """A repo holding neither a checkpoint transformers' HuBERT describes nor an exhubert-jax checkpoint."""


@dataclass(frozen=True)
class HubId:
    """A Hub model repo and an optional revision."""

    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(spec: str | os.PathLike) -> HubId | None:
    """The Hub id that `spec` spells, or None: when a local path of that spelling exists (a local path always wins),
    when its first part is a local folder (then it names a missing path inside it), or when it is no
    `org/name[@revision]`."""
    text = os.fspath(spec)
    match = HUB_ID.fullmatch(text)
    if not match or ".." in text or "--" in match.group("repo"):
        return None
    if Path(text).exists() or Path(match.group("repo").split("/")[0]).is_dir():
        return None  # a local path, or a missing one inside a local folder (runs/finetune with runs/ there)
    return HubId(match.group("repo"), match.group("revision"))


def resolve_checkpoint(spec: str | os.PathLike, log: Callable[[str], None] | None = None) -> tuple[Path, str | None]:
    """(checkpoint directory, which) of a local checkpoint directory or training workdir (its best/, else final/;
    which = "best"/"final", see resolve_checkpoint_dir), or of a Hub id (its checkpoint, converted and cached on
    first use; which = None). A missing local path that is no Hub id is a FileNotFoundError naming it."""
    hub = parse_hub_id(spec)
    if hub is None:
        return resolve_checkpoint_dir(spec)
    return checkpoint_of(hub, log or _stderr), None


def from_pretrained(path_or_id: str | os.PathLike, *, dtype=None, remat: bool = False,
                    log: Callable[[str], None] | None = None):
    """(model, params) of a checkpoint directory (save_pretrained's, converters.torch_to_flax's), or of a Hub repo
    `org/name[@revision]`: `exhubert_jax.from_pretrained("amiriparian/ExHuBERT")` downloads the released model once,
    converts it once, and loads it. `log` gets the lines of a first-use conversion (default: stderr)."""
    from exhubert_jax import pretrained

    hub = parse_hub_id(path_or_id)
    directory = path_or_id if hub is None else checkpoint_of(hub, log or _stderr)
    return pretrained.from_pretrained(directory, dtype=dtype, remat=remat)


def _stderr(line: str) -> None:
    """Print one progress line to stderr."""
    print(line, file=sys.stderr, flush=True)


def huggingface_hub():
    """The huggingface_hub module (the "torch" extra), or a one-line HubError saying how to install it."""
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors  # submodules: attributes of the package once imported
    except ImportError:
        raise HubError("Hub ids need huggingface_hub: pip install 'exhubert-jax[torch]' (or pass a local checkpoint "
                       "directory)") from None
    return huggingface_hub


def cache_root() -> Path:
    """Where converted Hub checkpoints are kept: $EXHUBERT_CACHE, else HF_HOME/exhubert-jax/converted."""
    return Path(os.environ.get("EXHUBERT_CACHE") or Path(huggingface_hub().constants.HF_HOME) / "exhubert-jax"
                / "converted")


def converted_dir(hub: HubId, commit: str) -> Path:
    """The converted checkpoint of one commit of a repo (the conversion's version in the path)."""
    return cache_root() / f"v{CONVERSION_VERSION}" / ("models--" + hub.repo.replace("/", "--")) / commit


def is_checkpoint(directory: Path) -> bool:
    """Whether a folder holds an exhubert-jax checkpoint (config.json and params/)."""
    return (directory / CONFIG_FILE).is_file() and (directory / PARAMS_DIR).is_dir()


def checkpoint_of(hub: HubId, log: Callable[[str], None]) -> Path:
    """The local exhubert-jax checkpoint of a Hub id: the repo's own (params/), or its transformers checkpoint
    converted, from the cache when that commit was converted before (no weights are downloaded then)."""
    snapshot = download(hub, [CONFIG_FILE])
    commit = snapshot.name
    out = converted_dir(hub, commit)
    if is_checkpoint(out):
        return out
    snapshot = with_weights(hub, snapshot)
    if is_checkpoint(snapshot):
        return snapshot
    from exhubert_jax.hub.conversion import load_source
    from exhubert_jax.pretrained import save_pretrained

    log(f"{hub}: converting commit {commit} to an exhubert-jax checkpoint (first use) in {out}")
    params, config, report = load_source(snapshot, None, None)
    save_pretrained(out, config, params)
    del params
    write_text(out / SOURCE_JSON, json.dumps({"repo": hub.repo, "revision": hub.revision, "commit": commit,
                                              "conversion": CONVERSION_VERSION, "report": report.lines()}, indent=1))
    for line in report.lines():
        log(f"{hub}: {line}")
    return out


def source_of(spec: str | os.PathLike) -> Path:
    """A converter's source: a local path as given, or a Hub repo's snapshot folder with its config.json and
    weights (the files transformers would load), downloaded when missing."""
    hub = parse_hub_id(spec)
    return Path(spec) if hub is None else with_weights(hub, download(hub, [CONFIG_FILE]))


def with_weights(hub: HubId, snapshot: Path) -> Path:
    """The snapshot folder of the commit that `snapshot` (holding config.json) is, with its weights fetched: an
    exhubert-jax checkpoint's params/, or the first transformers layout; another kind of model is refused."""
    if not (snapshot / CONFIG_FILE).is_file():
        raise UnknownLayoutError(f"{hub}: the repo has no {CONFIG_FILE}; from_pretrained reads transformers HuBERT "
                                 "checkpoints, the released ExHuBERT and exhubert-jax checkpoints")
    commit = snapshot.name
    snapshot = download(HubId(hub.repo, commit), weight_patterns(hub, commit, snapshot))
    if not is_checkpoint(snapshot):
        check_model_type(hub, snapshot / CONFIG_FILE)
    return snapshot


def weight_patterns(hub: HubId, commit: str, snapshot: Path) -> list[str]:
    """The files to fetch: an exhubert-jax checkpoint's, else the first transformers weight layout (WEIGHT_FILES
    order) the snapshot already holds, else the first the repo holds (listed on the Hub)."""
    here = {str(p.relative_to(snapshot)) for p in snapshot.rglob("*")}
    names = here if here & {*WEIGHT_FILES, PARAMS_DIR} else {*here, *remote_files(hub, commit)}
    if any(n == PARAMS_DIR or n.startswith(f"{PARAMS_DIR}/") for n in names):
        return FLAX_PATTERNS
    layout = next((name for name in WEIGHT_FILES if name in names), None)
    if layout is None:
        shown = ", ".join(sorted(names)[:12]) or "nothing"
        raise UnknownLayoutError(f"{hub}: the repo holds none of {', '.join(WEIGHT_FILES)} and no exhubert-jax "
                                 f"checkpoint ({PARAMS_DIR}/); it holds {shown}")
    return [CONFIG_FILE, *WEIGHT_PATTERNS[layout]]


def remote_files(hub: HubId, commit: str) -> list[str]:
    """The names of a commit's weight files on the Hub (a dry run of the download: nothing is fetched)."""
    patterns = [p for patterns in WEIGHT_PATTERNS.values() for p in patterns] + [f"{PARAMS_DIR}/*"]
    with hub_errors(hub):
        return [f.filename for f in huggingface_hub().snapshot_download(hub.repo, revision=commit,
                                                                        allow_patterns=patterns, dry_run=True)]


def download(hub: HubId, patterns: list[str]) -> Path:
    """The repo's snapshot folder in the Hugging Face cache with these files, fetched when missing (the cache alone
    when offline)."""
    with hub_errors(hub):
        return Path(huggingface_hub().snapshot_download(hub.repo, revision=hub.revision, allow_patterns=patterns))


def check_model_type(hub: HubId, config_file: Path) -> None:
    """Refuse a repo whose config.json describes another kind of model, before any weight is read."""
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise UnknownLayoutError(f"{hub}: its {CONFIG_FILE} cannot be read ({one_line(e)})") from None
    if model_type not in MODEL_TYPES:
        raise UnknownLayoutError(f"{hub}: {CONFIG_FILE} says model_type {model_type!r}; from_pretrained reads "
                                 f"{' and '.join(MODEL_TYPES)} checkpoints (transformers HuBERT, the released "
                                 "ExHuBERT, our exports) and exhubert-jax checkpoints")


def offline_hint(hub: HubId) -> str:
    """What to do when the Hub cannot be reached and the cache lacks the files."""
    constants = huggingface_hub().constants
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "no network, or the Hub is down"
    return (f"{hub} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the Hub cannot be reached "
            f"({why}): download it first with `hf download {hub.repo}` (`huggingface-cli download {hub.repo}` in "
            "older huggingface_hub) where there is a network, or unset HF_HUB_OFFLINE")


@contextlib.contextmanager
def hub_errors(hub: HubId) -> Iterator[None]:
    """huggingface_hub's errors as one-line HubErrors naming the repo and what to do."""
    errors = huggingface_hub().errors
    try:
        yield
    except errors.GatedRepoError:
        raise HubAccessError(f"{hub.repo} is a gated repo and no token with access to it was given: accept its "
                             f"conditions at https://huggingface.co/{hub.repo}, then log in (`hf auth login`) or set "
                             "HF_TOKEN") from None
    except errors.RepositoryNotFoundError:
        raise HubRepoNotFound(f"{hub}: no such local folder, and no Hub repo {hub.repo} (or it is private and no "
                              "token with access was given: `hf auth login` or HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise HubRepoNotFound(f"{hub.repo} has no revision {hub.revision!r} on the Hub") from None
    except (errors.LocalEntryNotFoundError, errors.DryRunError, errors.OfflineModeIsEnabled):
        raise HubOfflineError(offline_hint(hub)) from None
    except errors.HfHubHTTPError as e:
        raise HubError(f"{hub}: the Hub refused the request ({one_line(e)})") from None

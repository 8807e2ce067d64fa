"""Models from the Hugging Face hub: named ones, and any CLIP by its hub id.

`--model openai/clip-vit-base-patch32` (or `org/name@revision`) lists the repository's
files once, tells its layout from them, and fetches only the files that layout needs into
huggingface_hub's cache (never every weight format a repository holds):

- transformers CLIPModel: config.json (model_type "clip"), model.safetensors (preferred)
  or pytorch_model.bin, and preprocessor_config.json;
- open_clip: open_clip_config.json and open_clip_model.safetensors (preferred) or
  open_clip_pytorch_model.bin;
- sentence-transformers: modules.json naming a CLIPModel module, whose folder holds the
  transformers layout;
- Apple's MobileCLIP2 repositories: a bare open_clip state dict (`mobileclip2_l14.pt`...),
  whose name says the architecture open_clip builds for it.

Offline (HF_HUB_OFFLINE=1, or the hub's name does not resolve) the cache alone answers,
at once: no minute of retries, and a message that says what to download.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..core.errors import WeightsError
from .configs import config_file
from .pretrained import APPLE_CHECKPOINTS, Pretrained, cached_file, weight_files

HUB_ID = re.compile(r"^(?P<repo>[\w][\w.-]*/[\w][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CANDIDATES = (
    "config.json",
    "preprocessor_config.json",
    "open_clip_config.json",
    "modules.json",
    *HF_WEIGHTS,
    *OPEN_CLIP_WEIGHTS,
    *APPLE_CHECKPOINTS,
)
CLIP_MODULE = "sentence_transformers.models.CLIPModel"


class HubError(WeightsError):
    """A hub model that cannot be had; the message says what to do."""


def is_hub_id(spec: str) -> bool:
    """`org/name` or `org/name@revision` that is not a path on this machine."""
    return bool(HUB_ID.match(spec)) and not Path(spec).expanduser().exists()


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached, when that can be told at once (offline
    mode, or its host name does not resolve); None when a download is worth trying.
    Through a proxy the client never resolves the hub's name itself, so it is not checked."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return f"{host} cannot be found: no network here?"
    return None


def download(p: Pretrained) -> str:
    """A named model's weights file, fetched once into huggingface_hub's cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    if local := cached_file(p):
        return local
    try:
        if why := hub_unreachable():  # at once, not after a minute of retries
            raise ConnectionError(why)
        preferred, older = weight_files(p)
        try:
            return hf_hub_download(p.repo, preferred)
        except EntryNotFoundError:
            return hf_hub_download(p.repo, older)
    except Exception as e:  # offline, DNS, HTTP errors: all mean "not available here"
        raise HubError(
            f"{p.name} is not downloaded yet and could not be ({type(e).__name__}: "
            f"{str(e)[:100]}); on a machine with internet run `hf download {p.repo} "
            f"{p.filename}` (then copy ~/.cache/huggingface here), or fetch {p.url} and pass "
            f"the file with --model /path/to/{p.filename}"
        ) from None


def fetch(spec: str) -> Path:
    """The local folder (in the hub cache) holding what a hub id's layout needs."""
    m = HUB_ID.match(spec)
    repo, revision = m["repo"], m["revision"]
    why = hub_unreachable()
    files = _cached_files(repo, revision) if why else _listed_files(repo, revision)
    if why and not files:
        raise HubError(
            f"{spec}: no such file or folder here, and as a Hugging Face hub id it is not in "
            f"the cache and the hub cannot be reached ({why}); "
            f'on a machine with internet run `hf download {repo} --include "*.json" '
            f'"*.safetensors"`{f" --revision {revision}" if revision else ""}, then copy '
            "~/.cache/huggingface here, or pass a local folder with --model /path/to/model"
        )
    offline = why is not None
    needed = _layout(repo, revision, files, offline)
    paths = [_download(repo, revision, name, offline) for name in needed]
    return paths[0].parent  # the weights' folder, beside their configs


def _layout(repo: str, revision: str | None, files: set[str], offline: bool) -> list[str]:
    """The files the repository's layout needs, weights first."""
    if "config.json" in files and (weights := _first(HF_WEIGHTS, files)):
        with config_file(_download(repo, revision, "config.json", offline)) as config:
            is_clip = config.get("model_type") == "clip"
        if is_clip:
            extra = ["preprocessor_config.json"] if "preprocessor_config.json" in files else []
            return [weights, "config.json", *extra]
    if "open_clip_config.json" in files and (weights := _first(OPEN_CLIP_WEIGHTS, files)):
        return [weights, "open_clip_config.json"]
    if weights := _first(tuple(APPLE_CHECKPOINTS), files):  # Apple's MobileCLIP2 repositories
        return [weights, *(["config.json"] if "config.json" in files else [])]
    if "modules.json" in files:
        with config_file(_download(repo, revision, "modules.json", offline)) as modules:
            clip = [m for m in modules if m.get("type") == CLIP_MODULE]
        if clip:
            sub = clip[0].get("path", "").strip("/")
            inside = {f[len(sub) + 1 :] if sub else f for f in files if f.startswith(sub)}
            weights = _first(HF_WEIGHTS, inside)
            if weights:
                names = [weights, "config.json", "preprocessor_config.json"]
                return [f"{sub}/{n}" if sub else n for n in names if n in inside]
        raise HubError(
            f"{repo} is a sentence-transformers model without a CLIP module (a text-only "
            "multilingual tower, say); clipsearch loads whole CLIP models"
        )
    shown = ", ".join(sorted(files)[:12]) or "none"
    raise HubError(
        f"{repo} holds no CLIP clipsearch can read (files: {shown}); it reads a transformers "
        "CLIPModel (config.json + model.safetensors), open_clip (open_clip_config.json + "
        "open_clip_model.safetensors) or a sentence-transformers CLIP"
    )


def _first(names: tuple[str, ...], files: set[str]) -> str | None:
    return next((n for n in names if n in files), None)


def _listed_files(repo: str, revision: str | None) -> set[str]:
    from huggingface_hub import HfApi

    try:
        return set(HfApi().list_repo_files(repo, revision=revision))
    except Exception as e:
        raise HubError(_hub_failure(repo, revision, e)) from None


def _cached_files(repo: str, revision: str | None) -> set[str]:
    """The candidate files the cache holds for the repository (listing needs the hub)."""
    from huggingface_hub import try_to_load_from_cache

    found = {
        name
        for name in CANDIDATES
        if isinstance(try_to_load_from_cache(repo, name, revision=revision), str)
    }
    if "modules.json" in found:
        modules = Path(try_to_load_from_cache(repo, "modules.json", revision=revision))
        with config_file(modules) as listed:
            subs = [module.get("path", "").strip("/") for module in listed]
        for sub in subs:
            for name in CANDIDATES:
                cached = try_to_load_from_cache(repo, f"{sub}/{name}", revision=revision)
                if sub and isinstance(cached, str):
                    found.add(f"{sub}/{name}")
    return found


def _download(repo: str, revision: str | None, filename: str, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=offline))
    except Exception as e:
        raise HubError(_hub_failure(repo, revision, e, filename)) from None


def _hub_failure(repo: str, revision: str | None, e: Exception, filename: str = "") -> str:
    """One line for what the hub said."""
    kind = type(e).__name__
    what = f"{repo}{'@' + revision if revision else ''}{' ' + filename if filename else ''}"
    if kind == "RevisionNotFoundError":
        return f"{repo} has no revision {revision!r}; give a branch, tag or commit it has"
    if kind in ("GatedRepoError", "RepositoryNotFoundError") or "401" in str(e):
        return (
            f"{repo}: no such file or folder here, and on the Hugging Face hub it is private, "
            "gated or missing; if it is gated, accept its terms on huggingface.co and log in "
            "with `hf auth login` (or set HF_TOKEN)"
        )
    if kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return f"{what} is not in the Hugging Face cache, and the hub cannot be reached"
    return f"{what}: the hub could not give it ({kind}: {str(e)[:120]})"

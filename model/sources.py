"""Where a checkpoint comes from: a built-in name, a local path or a Hugging Face Hub id; and its licence."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from model.errors import CheckpointError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUILTIN = {"motion-demo": WEIGHTS_DIR / "motion-demo"}
ORIGINAL_SUFFIXES = (".pyth", ".pth", ".pt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PATTERNS = ["config.json", "preprocessor_config.json", "model.safetensors", "model.safetensors.index.json",
                "model-*.safetensors", "pytorch_model.bin", "README.md"]
# licences of well-known weights, by hub id prefix (the model cards say so)
KNOWN_LICENSES = (("facebook/timesformer", "CC-BY-NC-4.0"),)
ORIGINAL_LICENSE = "CC-BY-NC-4.0"  # the facebookresearch/TimeSformer release (code and weights)


@dataclass(frozen=True)
class Resolved:
    """A source turned into a local path: ``kind`` is 'folder' (HF layout) or 'original' (.pyth/.pth file)."""

    kind: str
    path: Path
    name: str
    hub_id: str | None = None


def resolve(source: str | Path) -> Resolved:
    """Built-in name -> ``model/weights/<name>``; existing path -> itself; ``org/name`` -> hub download."""
    text = str(source)
    if text in BUILTIN:
        folder = BUILTIN[text]
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"built-in model {text!r} is not installed: {folder} has no config.json "
                "(reinstall the package, or train it with the demo training script)"
            )
        return Resolved("folder", folder, text)
    path = Path(text).expanduser()
    if path.is_dir():
        return Resolved("folder", path, path.name)
    if path.is_file():
        if path.suffix in ORIGINAL_SUFFIXES:
            return Resolved("original", path, path.stem)
        if path.name in ("model.safetensors", "pytorch_model.bin", "config.json"):
            return Resolved("folder", path.parent, path.parent.name)
        raise CheckpointError(
            f"{path}: not a checkpoint this loader knows; pass a Hugging Face folder or a .pyth/.pth file"
        )
    if HUB_ID.match(text) and not text.startswith((".", "~")) and not Path(text.split("/")[0]).exists():
        return Resolved("folder", download(text), text, hub_id=text)
    raise CheckpointError(
        f"checkpoint {text!r} not found: pass an existing folder or .pyth/.pth file, a hub id such as "
        f"facebook/timesformer-base-finetuned-k400, or a built-in name ({', '.join(BUILTIN)})"
    )


def download(repo_id: str) -> Path:
    """The hub snapshot's local folder (cached by huggingface_hub); one-line CheckpointError when impossible."""
    how = (f"download it where the network is (huggingface-cli download {repo_id} --local-dir DIR) "
           "and pass DIR instead")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"cannot fetch {repo_id!r}: huggingface_hub is not installed (pip install 'timesformer-stream[hub]'), "
            f"or {how}"
        ) from None
    try:
        folder = snapshot_download(repo_id, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # network, auth, offline mode, missing repo: all end the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot fetch {repo_id!r} from the Hugging Face Hub ({reason[:160]}); {how}") from None
    return Path(folder)


def find_license(folder: Path | None, name: str, hub_id: str | None = None, original: bool = False) -> str:
    """Licence from the model card's front matter (``license:``), else known ids, else 'unknown'."""
    if folder is not None:
        card = folder / "README.md"
        if card.is_file():
            found = _card_license(card.read_text(encoding="utf-8", errors="replace"))
            if found:
                return found
    for candidate in (hub_id, name):
        for prefix, licence in KNOWN_LICENSES:
            if candidate and candidate.startswith(prefix):
                return licence
    if original:
        return ORIGINAL_LICENSE
    return "unknown"


def _card_license(text: str) -> str | None:
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    for line in front.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"").upper() if value.strip().lower().startswith("cc") else value.strip()
    return None

"""Where a checkpoint comes from: a built-in name, a local path or a Hugging Face Hub id; what is known
about well-known checkpoints that their files do not say (licence, training clip sampling)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from model.config import Sampling
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

# The clip sampling of facebook's hub checkpoints, whose config.json does not declare it (configs/hf/*.yaml
# say the same). Kinetics: the original configs' NUM_FRAMES x SAMPLING_RATE frames of 30 fps video
# (divST_8x32_224: 8 x 32 / 30 = 8.533 s; divST_16x16_448: 16 x 16 / 30; divST_96x4_224: 96 x 4 / 30 =
# 12.8 s), kept as a duration so any camera frame rate samples the same span. Something-Something-v2:
# segment sampling over short gestures (2-6 s at 12 fps), taken as 4 s; the large ssv2 model's frame
# count is left to its config.json (the conversion wrote 96; the original trained on 64).
_KINETICS = {"base": Sampling(8, span_s=8.533), "hr": Sampling(16, span_s=8.533), "large": Sampling(96, span_s=12.8)}
_SSV2 = {"base": Sampling(8, span_s=4.0), "hr": Sampling(16, span_s=4.0), "large": Sampling(None, span_s=4.0)}
KNOWN_SAMPLING: dict[str, Sampling] = {
    **{f"facebook/timesformer-{size}-finetuned-{data}": s for size, s in _KINETICS.items() for data in ("k400", "k600")},
    **{f"facebook/timesformer-{size}-finetuned-ssv2": s for size, s in _SSV2.items()},
}


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


def known_sampling(hub_id: str | None) -> Sampling | None:
    """The training sampling of a well-known hub checkpoint (:data:`KNOWN_SAMPLING`), else None."""
    return KNOWN_SAMPLING.get(hub_id) if hub_id else None


def download_command(entry_points: set[str]) -> str:
    """The download command of a huggingface_hub that installs these console scripts: ``hf download``
    since 0.34 (``huggingface-cli`` is deprecated there), ``huggingface-cli download`` before."""
    return "huggingface-cli download" if "huggingface-cli" in entry_points and "hf" not in entry_points \
        else "hf download"


def _installed_download_command() -> str:
    """:func:`download_command` of the installed huggingface_hub (``hf download`` when none is installed:
    what installing it now gives)."""
    from importlib import metadata

    try:
        names = {ep.name for ep in metadata.distribution("huggingface_hub").entry_points}
    except metadata.PackageNotFoundError:
        names = set()
    return download_command(names)


def download(repo_id: str) -> Path:
    """The hub snapshot's local folder (cached by huggingface_hub); one-line CheckpointError when impossible."""
    how = (f"download it where the network is ({_installed_download_command()} {repo_id} --local-dir DIR) "
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

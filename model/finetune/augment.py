"""Augmentations that keep labels honest: a flip, transpose or time reversal is used only when the data
declares how each label changes under it.

``symmetries.json`` in the data folder (or ``--symmetries FILE``)::

    {"hflip": {"move_left": "move_right", "move_right": "move_left"},   # mirrored left-right
     "vflip": {...}, "transpose": {...},                                # top-bottom, x <-> y
     "reverse": {"open_door": "close_door"}}                            # frames played backwards

Labels a map does not name stay as they are; a transform the file does not name is never applied
(a "door opens" clip reversed is not a "door opens" clip). Each declared transform is applied to
each training clip with probability 1/2. The spatial ones also go into the checkpoint's
``label_symmetries``, so the pipeline can average over the mirrored views (model/views.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.config import SPATIAL_TRANSFORMS
from model.errors import CheckpointError, ConfigError
from model.views import TRANSFORMS, label_permutation

KINDS = (*SPATIAL_TRANSFORMS, "reverse")


@dataclass(frozen=True)
class Symmetries:
    """Declared label maps: ``maps[kind] = {label: label it becomes}``; ``perms[kind][i]``: class i becomes."""

    maps: dict[str, dict[str, str]]
    perms: dict[str, tuple[int, ...]]

    @property
    def spatial(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """The ``label_symmetries`` of :class:`model.config.TimesformerConfig`."""
        return tuple((k, tuple(m.items())) for k, m in self.maps.items() if k in SPATIAL_TRANSFORMS)

    def apply(self, clips: torch.Tensor, labels: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """Each declared transform on each clip with probability 1/2. ``clips``: ``(B, T, 3, h, w)``."""
        return self._draw(clips, labels, rng, self.perms)

    def with_reversed(self, clips: torch.Tensor, labels: np.ndarray,
                      rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """``--reverse-pairs``: the declared flips as in :meth:`apply`, then every clip twice, as it is and
        played backwards with its reversed label (``2B`` clips). A pair looks the same and differs only in
        time order, so the direction of a motion is the one thing that tells the pair's labels apart."""
        spatial = {k: p for k, p in self.perms.items() if k != "reverse"}
        clips, labels = self._draw(clips, labels, rng, spatial)
        reverse = np.asarray(self.perms["reverse"])
        return torch.cat([clips, clips.flip(1)]), np.concatenate([labels, reverse[labels]])

    @staticmethod
    def _draw(clips: torch.Tensor, labels: np.ndarray, rng: np.random.Generator,
              perms: dict[str, tuple[int, ...]]) -> tuple[torch.Tensor, np.ndarray]:
        out, new = [], labels.copy()
        draws = rng.integers(0, 2, size=(len(labels), len(perms)))  # one draw per clip and kind
        for i, clip in enumerate(clips):  # clip: (T, 3, h, w)
            for use, (kind, perm) in zip(draws[i], perms.items()):
                if use:
                    clip = clip.flip(0) if kind == "reverse" else TRANSFORMS[kind](clip)
                    new[i] = perm[new[i]]
            out.append(clip)
        return torch.stack(out), new


def read_symmetries(path: Path | None, labels: tuple[str, ...], square: bool) -> Symmetries:
    """The declared maps of ``path`` (None: no augmentation), checked against ``labels``."""
    if path is None:
        return Symmetries({}, {})
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the symmetries JSON ({exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(m, dict) for m in raw.values()):
        raise ConfigError(f'{path}: expected {{"hflip": {{"label": "label"}}, ...}} with kinds {", ".join(KINDS)}')
    maps, perms = {}, {}
    for kind, mapping in raw.items():
        if kind not in KINDS:
            raise ConfigError(f"{path}: {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "transpose" and not square:
            raise ConfigError(f"{path}: transpose needs a square model input; drop it")
        unknown = sorted({str(n) for pair in mapping.items() for n in pair} - set(labels))
        if unknown:
            raise ConfigError(f"{path}: {kind} names {', '.join(unknown)}, which are not labels of the data")
        try:
            perm = label_permutation({str(a): str(b) for a, b in mapping.items()}, labels, kind)
        except CheckpointError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if any(perm[p] != i for i, p in enumerate(perm)):
            raise ConfigError(f"{path}: {kind} must undo itself (if a becomes b, b becomes a)")
        maps[kind], perms[kind] = {str(a): str(b) for a, b in mapping.items()}, perm
    return Symmetries(maps, perms)

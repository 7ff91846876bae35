"""The demo model's training data: rendered clips as model-sized tensors, and the label-aware augmentation.

Clips come from :func:`model.demo.render.clips.sample_clip` (far wider variety than the documented
videos). Frames are kept uint8 until :func:`normalize`, exactly as ``model.Preprocessor`` resizes and
normalizes them in the pipeline.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.config import Sampling
from model.demo.render.actions import CLASSES, DOCUMENTED, HFLIP, REVERSED, TRANSPOSE, VFLIP, WIDE
from model.demo.render.clips import sample_clip
from model.preprocess import TIMESFORMER_MEAN, TIMESFORMER_STD

INDEX = {name: i for i, name in enumerate(CLASSES)}
STEP_S = 0.16  # seconds between the window's frames: 8 x 0.16 = 1.28 s, the sampling the checkpoint declares
#: config.json ``label_symmetries``: the pipeline averages over these views (model/views.py)
SYMMETRIES = tuple((name, tuple(m.items())) for name, m in (("hflip", HFLIP), ("vflip", VFLIP),
                                                            ("transpose", TRANSPOSE)))


def sampling(frames: int) -> Sampling:
    """The clip sampling of training and validation: ``frames`` frames ``STEP_S`` apart."""
    return Sampling(num_frames=frames, span_s=round(frames * STEP_S, 6))


def _perm(mapping: dict[str, str]) -> torch.Tensor:
    return torch.tensor([INDEX[mapping.get(name, name)] for name in CLASSES])


# class index permutations under the image symmetries and time reversal
PERM_H, PERM_V, PERM_T, PERM_R = _perm(HFLIP), _perm(VFLIP), _perm(TRANSPOSE), _perm(REVERSED)


def to_model_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 BGR ``(T, H, W, 3)`` -> uint8 RGB ``(T, 3, size, size)``, resized as model.Preprocessor does."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).flip(1)  # (T, 3, H, W) RGB uint8
    x = F.interpolate(x.contiguous(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x  # (T, 3, size, size) uint8


class ClipStream(torch.utils.data.IterableDataset):
    """Endless clips from a seed; each worker draws from its own seed stream."""

    def __init__(self, seed: int, size: int, frames: int, documented_share: float = 0.0,
                 later_share: float = 0.0, later_segments: int = 4) -> None:
        self.seed, self.size, self.frames, self.documented_share = seed, size, frames, documented_share
        self.later_share, self.later_segments = later_share, later_segments

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            # a later segment (shapes where earlier actions left them); no draw at all when the share is 0,
            # so the clip stream of runs without --later-share is what it was
            later = self.later_share > 0 and rng.uniform() < self.later_share
            index = int(rng.integers(1, self.later_segments + 1)) if later else 0
            if rng.uniform() < self.documented_share:  # the documented look, still degraded
                clip, label = sample_clip(rng, self.frames, DOCUMENTED, short=(96, 480), segment_index=index)
            else:
                clip, label = sample_clip(rng, self.frames, segment_index=index)
            yield to_model_frames(clip, self.size), INDEX[label]


def make_split(seed: int, count: int, size: int, frames: int, documented: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed validation set; ``documented`` uses the documented ranges and look, else the wide one."""
    rng = np.random.default_rng([seed, 7])
    xs, ys = [], []
    for _ in range(count):
        if documented:
            clip, label = sample_clip(rng, frames, DOCUMENTED, step_s=(STEP_S, STEP_S), short=(96, 480), augment=False)
        else:
            clip, label = sample_clip(rng, frames, WIDE)
        xs.append(to_model_frames(clip, size))
        ys.append(INDEX[label])
    return torch.stack(xs), torch.tensor(ys)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, 3, H, W)`` -> float, ``(x / 255 - mean) / std`` as model.Preprocessor does."""
    mean = torch.tensor(TIMESFORMER_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(TIMESFORMER_STD).view(1, 1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def flip_and_reverse(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip twice: a random flip/transpose, then as is and time-reversed, labels changed to match.
    ``(B, T, 3, H, W)`` -> 2B."""
    out_x, out_y = [], []
    for clip, label in zip(x, y):  # clip (T, 3, H, W)
        flips = torch.randint(0, 2, (3,), generator=gen).tolist()
        if flips[0]:
            clip, label = clip.flip(-1), PERM_H[label]
        if flips[1]:
            clip, label = clip.flip(-2), PERM_V[label]
        if flips[2]:
            clip, label = clip.transpose(-1, -2), PERM_T[label]
        out_x += [clip, clip.flip(0)]  # flip(0): time reversed
        out_y += [label, PERM_R[label]]
    return torch.stack(out_x), torch.stack([torch.as_tensor(v) for v in out_y])

"""The motion-demo's fixed front end, as ``python -m model.finetune --prior motion-demo`` installs it.

On a freshly initialized network (the ``scratch:small`` geometry: hidden 128, 8 heads, 8 frames),
:func:`install` sets the motion prior (:mod:`model.demo.motion_prior`: time code, previous-frame and
difference heads, motion energy, appearing/fading units) and the turn detector
(:mod:`model.demo.turn_prior`: edge orientation and its turn), and returns the masks (1 = trainable,
0 = kept as set) that fine-tuning applies after every step. docs/DEMO_MODEL.md says why.
:func:`install_regions` (``--prior motion-demo-regions``, on ``scratch:small-wide``: hidden 192, 12 heads)
sets the turn detector that sums orientation over 8-pixel regions instead of 16-pixel patches.
"""

from __future__ import annotations

import torch

from model.demo.motion_prior import motion_prior_init, motion_prior_masks, motion_prior_units
from model.demo.turn_prior import PATCH, REGIONS, Design, turn_prior_init, turn_prior_masks
from model.timesformer import TimeSformer


@torch.no_grad()
def install(model: TimeSformer, design: Design = PATCH) -> dict[str, torch.Tensor]:
    """Set the fixed front end on ``model`` (draws one random projection from torch's generator)."""
    motion_prior_init(model, energy_gain=1.0, product_gain=1.0)
    masks = motion_prior_masks(model, products=True)
    units = motion_prior_units(model)
    turn_prior_init(model, units, design)
    return turn_prior_masks(model, units, masks, design)


def install_regions(model: TimeSformer) -> dict[str, torch.Tensor]:
    """``--prior motion-demo-regions``: the motion prior and the 8-pixel-region turn detector
    (:data:`model.demo.turn_prior.REGIONS`; needs the 192-wide ``scratch:small-wide``)."""
    return install(model, REGIONS)

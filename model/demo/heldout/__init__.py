"""Held-out renderers: other drawing code and other looks than the training renderer, same nine actions.

The demo model is trained only on :mod:`model.demo.render`'s data; these score how far it
generalizes (docs/DEMO_MODEL.md). Nothing in training imports them. Both draw the documented motion
ranges (:mod:`model.demo.heldout.timeline`, written apart from the training renderer's scene logic):

* ``sdf`` (:mod:`.sdf`): signed-distance shapes, analytic anti-aliasing, lit, rimmed, with a drop
  shadow, over paper, wood, sky or plaid;
* ``studio`` (:mod:`.studio`): OpenCV's own rasterizers without anti-aliasing at 2x, shrunk; sticker
  shapes with white borders and printed patterns in a room, on a desk or at night.

    python -m model.demo.heldout --renderer sdf --seed 3 --seconds 40 --out sdf-3.mp4
"""

from __future__ import annotations

from model.demo.heldout.sdf import SdfRenderer
from model.demo.heldout.studio import StudioRenderer
from model.demo.heldout.video import write_heldout

RENDERERS = {"sdf": SdfRenderer, "studio": StudioRenderer}

__all__ = ["RENDERERS", "SdfRenderer", "StudioRenderer", "write_heldout"]

"""Symmetric views: average a model's answer over the image symmetries its labels declare.

A checkpoint may declare how its labels change when the frames are mirrored or transposed
(``config.json`` ``label_symmetries``; the motion demo: a horizontal flip turns ``move_left`` into
``move_right`` and ``rotate_cw`` into ``rotate_ccw``). :class:`SymmetricViews` runs the model on
every view in the group those transforms generate (for ``hflip``, ``vflip`` and ``transpose``: the
8 symmetries of the square), maps each view's class scores back to the original labels and
averages the log-probabilities. The answer is then exactly equivariant: mirroring the video mirrors
the label. The cost is one forward pass per view, in one batch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from model.errors import CheckpointError, ConfigError
from model.loaded import LoadedModel

#: Spatial transforms of a batch of clips ``(B, T, C, H, W)``; each is its own inverse.
TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "transpose": lambda x: x.transpose(-1, -2),
}


def label_permutation(mapping: dict[str, str], labels: tuple[str, ...], transform: str) -> tuple[int, ...]:
    """``perm[i]``: the class that class ``i`` becomes under ``transform`` (unlisted labels stay)."""
    index = {name: i for i, name in enumerate(labels)}  # names were checked by TimesformerConfig
    perm = tuple(index[mapping.get(name, name)] for name in labels)
    if len(set(perm)) != len(perm):
        raise CheckpointError(f"label_symmetries.{transform}: two labels map to the same label; "
                              "each transform must swap labels in pairs or leave them")
    return perm


def symmetry_group(symmetries: dict[str, dict[str, str]], labels: tuple[str, ...]
                   ) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Every composition of the declared transforms, once: ``[(transforms applied in order, perm)]``.

    The identity comes first. Two compositions are the same view when they move pixels alike (checked
    on a small index image); declarations under which one view would map labels two ways (a flip
    whose map, done twice, is not the identity) are refused, so there are at most 8 views.
    """
    gens = [(name, label_permutation(mapping, labels, name)) for name, mapping in symmetries.items()]
    probe = torch.arange(12.0).view(1, 1, 1, 3, 4)[..., :3]  # 3x3, asymmetric: tells all 8 apart

    def pixels(ops: tuple[str, ...]) -> tuple[float, ...]:
        x = probe
        for op in ops:
            x = TRANSFORMS[op](x)
        return tuple(x.flatten().tolist())

    identity = ((), tuple(range(len(labels))))
    group, seen, frontier = [identity], {pixels(()): identity[1]}, [identity]
    while frontier:
        grown = []
        for ops, perm in frontier:
            for name, g in gens:
                new = (ops + (name,), tuple(g[p] for p in perm))
                where = pixels(new[0])
                known = seen.get(where)
                if known is None:
                    seen[where] = new[1]
                    group.append(new)
                    grown.append(new)
                elif known != new[1]:
                    raise CheckpointError(f"label_symmetries are inconsistent: {' then '.join(new[0])} moves pixels "
                                          "as another composition does but maps labels differently; each flip's "
                                          "map must undo itself")
        frontier = grown
    return group


class SymmetricViews(nn.Module):
    """``net`` run on every symmetric view of its input; returns mean log-probabilities ``(B, L)``."""

    def __init__(self, net: nn.Module, symmetries: dict[str, dict[str, str]], labels: tuple[str, ...]) -> None:
        super().__init__()
        self.net = net
        self.views = symmetry_group(symmetries, labels)
        # gather index per view: column c of the averaged output reads column perm[c] of that view's output;
        # made on the model's device (no copy inside a CUDA graph capture, no .to() on an int8 model)
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        self.register_buffer("gather", torch.tensor([perm for _, perm in self.views], device=device),
                             persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W)
        b = pixel_values.shape[0]
        views = []
        for ops, _ in self.views:
            x = pixel_values
            for op in ops:
                x = TRANSFORMS[op](x)
            views.append(x)
        groups: dict[torch.Size, list[int]] = {}  # one batch per input shape: one batch when H == W
        for i, v in enumerate(views):
            groups.setdefault(v.shape[-2:], []).append(i)  # a transpose of a non-square clip is another shape
        logits: list[torch.Tensor | None] = [None] * len(views)
        for members in groups.values():
            for i, out in zip(members, self.net(torch.cat([views[i] for i in members])).split(b)):
                logits[i] = out
        logp = torch.log_softmax(torch.stack(logits).float(), dim=-1)  # (V, B, L)
        index = self.gather[:, None, :].expand(-1, b, -1)
        return torch.gather(logp, 2, index).mean(0)


def with_views(loaded: LoadedModel, views: str) -> LoadedModel:
    """``loaded`` as configured by ``model.views``: ``auto``, ``single`` or ``symmetric``."""
    declared = loaded.config.symmetries
    if views == "single" or (views == "auto" and not declared):
        return loaded
    if not declared:  # views: symmetric
        raise ConfigError(f"model.views: symmetric, but {loaded.name} declares no label_symmetries in its "
                          "config.json; use views: auto or single")
    network = SymmetricViews(loaded.network, declared, loaded.config.labels)
    return dataclasses.replace(loaded, network=network, views=len(network.views))


__all__ = ["SymmetricViews", "TRANSFORMS", "label_permutation", "symmetry_group", "with_views"]

"""The folded model traces whole: no graph break under torch.compile, and torch.export exports it."""

from __future__ import annotations

import pytest
import torch

from model import load_model
from model.config import TimesformerConfig
from model.timesformer import TimeSformer

BASE = dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072)


def _base() -> TimeSformer:
    """A base-geometry model with plain random weights (the truncated-normal init of 86M weights is slow)."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = TimeSformer(TimesformerConfig(labels=tuple(map(str, range(400))), **BASE))
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    assert model.fold() == BASE["num_hidden_layers"]
    return model


@pytest.mark.parametrize("which", ["demo", "base"])
def test_dynamo_sees_no_graph_break(which):
    model = load_model("motion-demo").network if which == "demo" else _base()
    size = 64  # the demo's own size; the base model resizes its position embeddings to it (cheaper to run)
    x = torch.randn(1, model.config.num_frames, 3, size, size)
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_torch_export_runs_and_matches():
    model = load_model("motion-demo").network
    x = torch.randn(2, 8, 3, 64, 64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))

"""The analytic FLOP count of benchmarks/bench_model.py against a brute-force count (FlopCounterMode).

FlopCounterMode counts matmuls, convolutions and (on CUDA) the fused attention kernels, not CPU SDPA:
ours runs its plain attention path here (``set_fused_attention(False)``, the same weights and the
same products as a plain bmm), so every multiply-add is seen.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_model  # noqa: E402  (benchmarks/bench_model.py)
from model.config import TimesformerConfig  # noqa: E402
from model.timesformer import TimeSformer  # noqa: E402

# T=4 frames and N=16 patches differ, so a T/N mix-up in the formula cannot cancel out
GEOMETRY = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=64, num_hidden_layers=3,
                num_attention_heads=4, intermediate_size=96)
KINDS = ("divided_space_time", "space_only", "joint_space_time")


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def relative_error(got: int, expected: int) -> float:
    return abs(got - expected) / expected


@pytest.mark.parametrize("kind", KINDS)
def test_executed_count_matches_ours_under_inference_mode(kind):
    """shortcuts=True: the folded temporal linear and the cls-only last block, as ours runs them after load."""
    cfg = TimesformerConfig(attention_type=kind, labels=tuple("abcde"), **GEOMETRY)
    torch.manual_seed(0)
    net = TimeSformer(cfg).eval()
    net.set_fused_attention(False)
    x = torch.randn(2, 4, 3, 32, 32)
    net.fold()  # what load_model does: temporal_attn.proj and temporal_fc as one linear
    with torch.inference_mode():
        flops = counted(lambda: net(x))
    assert relative_error(flops, 2 * bench_model.model_flops(cfg, shortcuts=True)) < 0.02


@pytest.mark.parametrize("kind", ["divided_space_time", "joint_space_time"])
def test_architecture_count_matches_the_transformers_model(hf, kind):
    """shortcuts=False: the plain architecture, as transformers' eager implementation runs it.
    (space_only is left out: transformers classifies every frame there, a different head.)"""
    ref = hf.make(attention_type=kind, **GEOMETRY)
    cfg = TimesformerConfig(attention_type=kind, labels=tuple("abcde"), **GEOMETRY)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        flops = counted(lambda: ref(pixel_values=x))
    assert relative_error(flops, 2 * bench_model.model_flops(cfg)) < 0.02


def test_base_geometry_count():
    """ViT-B/16, 8 x 224: ~196 G multiply-adds per clip, as the TimeSformer paper reports (0.59 T for 3 views)."""
    cfg = bench_model.geometry_config(bench_model.BASE)
    nominal, executed = bench_model.model_flops(cfg), bench_model.model_flops(cfg, shortcuts=True)
    assert 190e9 < nominal / 2 < 200e9
    assert 0.85 < executed / nominal < 0.95

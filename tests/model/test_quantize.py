"""Precision transforms (model/quantize/): what each replaces, agreement with fp32, size, refusals.

Random weights give nearly tied logits, which would make top-1 agreement meaningless, so the agreement
test uses a task whose classes are genuinely separable: clips are 8 random prototype videos plus noise
as strong as the prototypes themselves (std 1), and the classifier is fitted in closed form (nearest
class mean of the fp32 model's features on 400 training clips). The fp32 model then classifies held-out
clips well above chance but not perfectly, so its decisions have real, varied margins, and the test
asks whether each 8-bit backend keeps them.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from model import load_model
from model.config import TimesformerConfig
from model.errors import QuantizationError
from model.quantize import apply_precision, quantize, quantized_as, resolve, weight_bytes
from model.quantize.x86 import Int8Linear, has_vnni, weight_max
from model.timesformer import TimeSformer

K = 8
GEOMETRY = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=96, num_hidden_layers=3,
                num_attention_heads=4, intermediate_size=384)
LINEARS_PER_FOLDED_BLOCK = 6  # temporal qkv, folded temporal proj, qkv, proj, fc1, fc2


def _clips(protos, n, generator):
    labels = torch.randint(0, K, (n,), generator=generator)
    return protos[labels] + torch.randn((n, *protos.shape[1:]), generator=generator), labels


@torch.no_grad()
def _features(model, x):
    head, model.head = model.head, nn.Identity()
    try:
        return torch.cat([model(x[i:i + 100]) for i in range(0, len(x), 100)])
    finally:
        model.head = head


@pytest.fixture(scope="module")
def separable():
    """(fp32 model with a fitted head, folded, held-out clips, their labels)."""
    torch.manual_seed(0)
    model = TimeSformer(TimesformerConfig(labels=tuple(f"class{i}" for i in range(K)), **GEOMETRY)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    g = torch.Generator().manual_seed(1)
    protos = torch.randn(K, 4, 3, 32, 32, generator=g)
    train_x, train_y = _clips(protos, 400, g)
    feats = _features(model, train_x)
    means = torch.stack([feats[train_y == k].mean(0) for k in range(K)])  # (K, D)
    with torch.no_grad():  # nearest class mean as a linear classifier
        model.head.weight.copy_(means)
        model.head.bias.copy_(-0.5 * (means**2).sum(1))
    model.fold()
    test_x, test_y = _clips(protos, 200, g)
    return model, test_x, test_y


def _logits(model, x):
    with torch.inference_mode():
        return torch.cat([model(x[i:i + 50]).float() for i in range(0, len(x), 50)])


@pytest.mark.parametrize("backend", ["int8-x86", "int8-bnb"])
def test_8bit_top1_agrees_with_fp32_on_200_clips(separable, backend):
    if backend == "int8-bnb":
        pytest.importorskip("bitsandbytes")
    model, x, y = separable
    q = copy.deepcopy(model)
    quantize(q, backend)
    fp32, int8 = _logits(model, x), _logits(q, x)
    accuracy = (fp32.argmax(1) == y).float().mean().item()
    assert 0.9 <= accuracy  # the task is learnable, so top-1 means something (measured: 0.985)
    assert (int8 - fp32).abs().max() > 1e-3  # the 8-bit model really is a different computation
    agreement = (int8.argmax(1) == fp32.argmax(1)).float().mean().item()
    # measured: int8-bnb 1.0; int8-x86 0.99 with 8-bit weights (VNNI, simulated), 0.985 with the 7-bit
    # weights a CPU without VNNI needs (8-bit ones saturate there: mean logit error 0.29 instead of 0.04)
    assert agreement >= (0.99 if backend == "int8-bnb" or has_vnni() else 0.98)


def test_int8_x86_replaces_every_linear_but_the_classifier_and_logs_it(separable, caplog):
    q = copy.deepcopy(separable[0])
    with caplog.at_level(logging.INFO, logger="model.quantize"):
        count = quantize(q, "int8-x86")
    assert count == LINEARS_PER_FOLDED_BLOCK * GEOMETRY["num_hidden_layers"]
    assert type(q.head) is nn.Linear and q.head.weight.dtype == torch.float32
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == count
    assert not any(type(m) is nn.Linear for n, m in q.named_modules() if n != "head")
    assert f"int8-x86: replaced {count} nn.Linear layers; kept in full precision: head" in caplog.text
    assert quantized_as(q) == "int8-x86"


def test_skip_list_keeps_named_layers_and_nothing_left_is_an_error(separable):
    q = copy.deepcopy(separable[0])
    count = quantize(q, "int8-x86", skip=("head", "blocks.0", "blocks.1.mlp.fc2"))
    assert count == LINEARS_PER_FOLDED_BLOCK * (GEOMETRY["num_hidden_layers"] - 1) - 1
    assert type(q.blocks[0].attn.qkv) is nn.Linear and type(q.blocks[1].mlp.fc2) is nn.Linear
    assert isinstance(q.blocks[1].mlp.fc1, Int8Linear)
    with pytest.raises(QuantizationError, match="no nn.Linear layer to replace"):
        quantize(nn.Sequential(nn.Conv2d(3, 3, 1)), "int8-x86")


def test_quantizing_twice_or_moving_fails_clearly(separable):
    q = copy.deepcopy(separable[0])
    quantize(q, "int8-x86", skip=("head", "blocks.0"))  # layers are left that a second pass could take
    with pytest.raises(QuantizationError, match=r"already quantized \(int8-x86\)"):
        quantize(q, "int8-x86")
    with pytest.raises(QuantizationError, match="cannot be moved or cast"):
        q.to(torch.bfloat16)
    with pytest.raises(QuantizationError, match="cannot be moved or cast"):
        q.to("meta")
    assert q.blocks[0].attn.qkv.weight.device.type == "cpu"  # nothing moved half-way
    with pytest.raises(QuantizationError, match="cannot be moved or cast"):
        q.blocks[1].mlp.fc1.to("meta")  # a single int8 layer refuses too


def test_weight_max_follows_vnni():
    assert weight_max() == (127 if has_vnni() else 63)  # 7 bits where u8 x s8 pairs saturate int16


def test_weight_bytes_at_most_03_of_fp32():
    torch.manual_seed(0)
    base_4_layers = TimeSformer(TimesformerConfig(num_hidden_layers=4, labels=tuple(map(str, range(400))))).eval()
    fp32 = weight_bytes(base_4_layers)
    base_4_layers.fold()
    quantize(base_4_layers, "int8-x86")
    ratio = weight_bytes(base_4_layers) / fp32
    assert ratio <= 0.3  # measured 0.27 (4 layers): conv, embeddings, LayerNorms and head stay fp32


def test_batch_effect_is_bounded(separable):
    """The same clip alone and inside a batch of 8. int8-x86 quantizes each activation per tensor, so a
    clip's neighbours move its scale a little: measured max logit difference 0.02 (logits span ~10)."""
    model, x, _ = separable
    q = copy.deepcopy(model)
    quantize(q, "int8-x86")
    with torch.inference_mode():
        batch = q(x[:8])
        alone = torch.cat([q(x[i:i + 1]) for i in range(8)])
    assert (alone - batch).abs().max().item() <= 0.1
    assert torch.equal(alone.argmax(1), batch.argmax(1))


@pytest.mark.parametrize("precision, tolerance", [("fp32", 0.0), ("bf16", 0.15), ("int8", 0.15), ("int8-bnb", 0.15)])
def test_every_cpu_precision_equals_fp32_within_tolerance_on_the_demo(precision, tolerance):
    """The motion-demo in each CPU precision against fp32 on random clips (logits span ~15): stated
    tolerance on the mean absolute logit difference; the same top-1 on >= 90 % of them."""
    if precision == "int8-bnb":
        pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    x = torch.randn(16, 8, 3, 64, 64)
    reference = _logits(load_model("motion-demo").network, x)
    model = load_model("motion-demo", precision=precision)
    assert model.precision == resolve(precision, "cpu")
    got = _logits(model.network, x)
    assert (got - reference).abs().mean().item() <= tolerance
    assert (got.argmax(1) == reference.argmax(1)).float().mean().item() >= 0.9


def test_last_block_is_cls_only_in_every_precision(tmp_path, hf):
    """The cls-only last block (its patch outputs skipped) runs folded and quantized alike."""
    hf.save(hf.make(), tmp_path)
    x = torch.randn(2, 4, 3, 32, 32)
    expected = hf.logits(hf.make(), x)
    for precision, tolerance in (("fp32", 1e-5), ("bf16", 0.1), ("int8", 0.1)):
        with torch.inference_mode():
            got = load_model(tmp_path, precision=precision).network(x).float()
        assert (got - expected).abs().max().item() < tolerance, precision


def test_resolve_names_the_backend():
    assert resolve("int8", "cpu") == "int8-x86" and resolve("int8", "cuda:0") == "int8-ao"
    assert resolve("int8-bnb", "cpu") == "int8-bnb" and resolve("bf16", "cpu") == "bf16"
    with pytest.raises(QuantizationError, match="'int4' is not one of"):
        resolve("int4", "cpu")


def test_int8_x86_refuses_cuda_and_cuda_paths_refuse_cpu():
    model = TimeSformer(TimesformerConfig(labels=("a", "b"), **GEOMETRY)).eval()
    with pytest.raises(QuantizationError, match="int8-x86 runs on CPU only"):
        apply_precision(model, "int8-x86", "cuda")
    for name in ("int8-ao", "fp8"):
        with pytest.raises(QuantizationError, match="runs on CUDA only"):
            apply_precision(model, name, "cpu")

"""int8 (bitsandbytes Linear8bitLt on CPU): what is replaced, size, agreement with fp32, batch invariance.

Random weights give nearly tied logits, which would make top-1 agreement meaningless, so the agreement
test uses a task whose classes are genuinely separable: clips are 8 random prototype videos plus noise
as strong as the prototypes themselves (std 1), and the classifier is fitted in closed form (nearest
class mean of the fp32 model's features on 400 training clips). The fp32 model then classifies held-out
clips well above chance but not perfectly, so its decisions have real, varied margins, and the test
asks whether int8 keeps them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model import load_model, quantize_int8
from model.config import TimesformerConfig
from model.errors import QuantizationError
from model.loaded import weight_bytes
from model.timesformer import TimeSformer

bnb = pytest.importorskip("bitsandbytes")

K = 8
GEOMETRY = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=96, num_hidden_layers=3,
                num_attention_heads=4, intermediate_size=384)


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
    """(fp32 model with a fitted head, held-out clips, their labels)."""
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
    test_x, test_y = _clips(protos, 200, g)
    return model, test_x, test_y


def test_int8_top1_agrees_with_fp32_on_200_clips(separable):
    model, x, y = separable
    q = copy.deepcopy(model)
    quantize_int8(q)
    with torch.no_grad():
        fp32 = torch.cat([model(x[i:i + 50]) for i in range(0, 200, 50)])
        int8 = torch.cat([q(x[i:i + 50]) for i in range(0, 200, 50)])
    accuracy = (fp32.argmax(1) == y).float().mean().item()
    assert 0.9 <= accuracy  # the task is learnable, so top-1 means something (measured: 0.985)
    assert (int8 - fp32).abs().max() > 1e-3  # the int8 model really is a different computation
    agreement = (int8.argmax(1) == fp32.argmax(1)).float().mean().item()
    assert agreement >= 0.99  # measured: 1.0 (smallest fp32 top-1 margin 0.017, median 0.84)


def test_replaces_every_linear_but_the_classifier(separable, caplog):
    q = copy.deepcopy(separable[0])
    with caplog.at_level("INFO", logger="model.quantize"):
        count = quantize_int8(q, threshold=4.0)
    assert count == 7 * GEOMETRY["num_hidden_layers"]  # qkv, proj, temporal qkv/proj/fc, fc1, fc2
    assert type(q.head) is nn.Linear and q.head.weight.dtype == torch.float32
    int8_layers = [m for m in q.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(int8_layers) == count
    assert all(m.weight.dtype == torch.int8 and m.state.threshold == 4.0 for m in int8_layers)
    assert f"replaced {count} nn.Linear" in caplog.text
    with pytest.raises(QuantizationError, match="no nn.Linear"):
        quantize_int8(q)  # nothing left to replace


def test_weight_bytes_at_most_03_of_fp32():
    torch.manual_seed(0)
    base_4_layers = TimeSformer(TimesformerConfig(num_hidden_layers=4, labels=tuple(map(str, range(400))))).eval()
    fp32 = weight_bytes(base_4_layers)
    quantize_int8(base_4_layers)
    ratio = weight_bytes(base_4_layers) / fp32
    assert ratio <= 0.3  # measured 0.27 (4 layers), 0.26 (12 layers): conv, embeddings, head stay fp32


@pytest.mark.parametrize("threshold", [6.0, 0.0])
def test_batch_invariance(separable, threshold):
    """The same clip alone and inside a batch of 8. Measured max difference: 1.5e-5 on these clips.
    Rows are quantized independently, but the fp16 outlier columns (threshold > 0) are chosen over the
    whole batch, and the fp32 kernels may sum in another order, so the tolerance is 1e-4, not 0."""
    model, x, _ = separable
    q = copy.deepcopy(model)
    quantize_int8(q, threshold=threshold)
    with torch.no_grad():
        batch = q(x[:8])
        alone = torch.cat([q(x[i:i + 1]) for i in range(8)])
    assert (alone - batch).abs().max().item() <= 1e-4


def test_load_model_int8_on_cpu(tmp_path, hf):
    hf.save(hf.make(), tmp_path)
    fp32 = load_model(tmp_path)
    loaded = load_model(tmp_path, precision="int8", int8_threshold=5.0)
    q = loaded.network
    assert loaded.precision == "int8" and not q.training and loaded.input_dtype == torch.float32
    assert isinstance(q.blocks[0].attn.qkv, bnb.nn.Linear8bitLt) and type(q.head) is nn.Linear
    assert loaded.weight_bytes() < 0.6 * fp32.weight_bytes()  # int8 weights and their scales, counted once
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(q(x), fp32.network(x), atol=0.1)


def test_no_linear_is_an_error():
    with pytest.raises(QuantizationError, match="no nn.Linear"):
        quantize_int8(nn.Sequential(nn.Conv2d(3, 3, 1)))

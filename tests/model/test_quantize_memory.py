"""int8 loading saves memory: in a fresh process, getting base-geometry weights ready in int8 peaks no
higher than in fp32, and the int8 model holds at most half the fp32 model's memory. safetensors maps the
file: fp32 weights become resident as they are first used (each test touches every weight once, as a first
forward would), and the int8 path must not keep the mapped fp32 pages once it has quantized them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import save_pretrained
from model.config import TimesformerConfig
from model.timesformer import TimeSformer

REPO = Path(__file__).resolve().parents[2]
WORKER = """
import gc, json, sys
import torch
from model import load_model

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

before = kb("VmRSS")
model = load_model(sys.argv[1], precision=sys.argv[2]).network
with torch.no_grad():  # use every weight once, as a first forward does: all of them are resident now
    sum(float(t.float().sum()) for t in list(model.parameters()) + list(model.buffers()))
gc.collect()
print(json.dumps({"peak_mb": (kb("VmHWM") - before) / 1024, "steady_mb": (kb("VmRSS") - before) / 1024}))
"""


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """TimeSformer-base (12 layers, 768 wide, 3072 MLP, 224 px, 400 classes): a 486 MB safetensors file."""
    with torch.device("meta"):
        model = TimeSformer(TimesformerConfig(num_hidden_layers=12, labels=tuple(map(str, range(400)))))
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return save_pretrained(model, tmp_path_factory.mktemp("base4"))


def _load_in_fresh_process(folder: Path, precision: str) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, str(folder), precision], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_int8_load_peaks_no_higher_and_keeps_half_the_memory(base_checkpoint):
    fp32 = _load_in_fresh_process(base_checkpoint, "fp32")
    int8 = _load_in_fresh_process(base_checkpoint, "int8")
    assert fp32["steady_mb"] > 450  # the fp32 weights really are resident (486 MB)
    assert int8["peak_mb"] <= fp32["peak_mb"], (int8, fp32)  # measured 263 vs 520 MB
    assert int8["steady_mb"] <= 0.5 * fp32["steady_mb"], (int8, fp32)  # measured 242 vs 520 MB (0.47)

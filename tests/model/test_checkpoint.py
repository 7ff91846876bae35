"""Checkpoint sources and failures: original .pyth layout, hub ids, built-in names, licences, bad files."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import pickle
import re

import pytest
import torch
import yaml

from model import load_model, save_pretrained, sources
from model.errors import CheckpointError

# transformers name -> facebookresearch/TimeSformer name (vit.py), written out independently of model.keymap
ORIGINAL_NAMES = [
    (r"^timesformer\.embeddings\.cls_token$", "model.cls_token"),
    (r"^timesformer\.embeddings\.position_embeddings$", "model.pos_embed"),
    (r"^timesformer\.embeddings\.time_embeddings$", "model.time_embed"),
    (r"^timesformer\.embeddings\.patch_embeddings\.projection\.", "model.patch_embed.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_before\.", r"model.blocks.\1.norm1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"model.blocks.\1.attn.qkv."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"model.blocks.\1.attn.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_layernorm\.", r"model.blocks.\1.temporal_norm1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.", r"model.blocks.\1.temporal_attn.qkv."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.", r"model.blocks.\1.temporal_attn.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_dense\.", r"model.blocks.\1.temporal_fc."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_after\.", r"model.blocks.\1.norm2."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"model.blocks.\1.mlp.fc1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.output\.dense\.", r"model.blocks.\1.mlp.fc2."),
    (r"^timesformer\.layernorm\.", "model.norm."),
    (r"^classifier\.", "model.head."),
]


def _to_original(state):
    out = {}
    for key, value in state.items():
        for pattern, repl in ORIGINAL_NAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise AssertionError(f"no original name for {key}")
    return out


def _pyth(ref, path, cfg=None):
    ckpt = {"epoch": 15, "model_state": _to_original(ref.state_dict()), "optimizer_state": {"state": {}},
            "cfg": yaml.safe_dump(cfg) if cfg is not None else None}
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("attention_type", ["divided_space_time", "space_only", "joint_space_time"])
def test_original_pyth_layout_loads_and_matches(tmp_path, hf, attention_type):
    ref = hf.make(attention_type, seed=4)
    cfg = {"MODEL": {"NUM_CLASSES": 5}, "DATA": {"NUM_FRAMES": 4, "TRAIN_CROP_SIZE": 32},
           "TIMESFORMER": {"ATTENTION_TYPE": attention_type}}
    ours = load_model(_pyth(ref, tmp_path / "TimeSformer_small.pyth", cfg), num_heads=4)
    assert ours.config.attention_type == attention_type and ours.config.num_frames == 4
    assert ours.license == "CC-BY-NC-4.0"
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert (ours.network(x) - hf.logits(ref, x)).abs().max().item() < 1e-4
    assert ours.sampling is None  # an original file says nothing about its clip sampling


def test_original_pyth_without_cfg_takes_labels_from_arguments(tmp_path, hf):
    path = _pyth(hf.make(seed=5), tmp_path / "m.pth")
    labels = tuple("abcde")
    ours = load_model(path, num_frames=4, num_labels=5, labels=labels, num_heads=4)
    assert ours.labels == labels and ours.network.id2label == dict(enumerate(labels))
    with pytest.raises(CheckpointError, match="7 classes requested but the classifier has 5"):
        load_model(path, num_labels=7, num_heads=4)


def test_hub_id_offline_gives_one_line_error_saying_how_to_get_files(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as info:
        load_model("facebook/timesformer-base-finetuned-k400")
    message = str(info.value)
    assert "\n" not in message
    # the command named is one the installed huggingface_hub has (`hf` since 0.34)
    installed = {ep.name for ep in importlib.metadata.distribution("huggingface_hub").entry_points}
    command = re.search(r"\((\S+) download facebook/timesformer-base-finetuned-k400 --local-dir DIR\)", message)
    assert command and command.group(1) in installed, message


@pytest.mark.parametrize("entry_points, command", [
    ({"hf", "tiny-agents"}, "hf download"),  # huggingface_hub >= 1.0
    ({"hf", "huggingface-cli"}, "hf download"),  # 0.34 - 0.36: both, the old one deprecated
    ({"huggingface-cli"}, "huggingface-cli download"),  # before 0.34
    (set(), "hf download"),  # not installed: what `pip install huggingface_hub` gives now
])
def test_download_command_is_the_one_the_installed_hub_has(entry_points, command):
    assert sources.download_command(entry_points) == command


def test_hub_id_downloads_with_snapshot_download_and_knows_the_licence(tmp_path, hf, monkeypatch, caplog):
    folder = hf.save(hf.make(seed=6), tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        return str(folder)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with caplog.at_level(logging.INFO, logger="model.checkpoint"):
        ours = load_model("facebook/timesformer-small-test")
    assert calls == ["facebook/timesformer-small-test"]
    assert ours.license == "CC-BY-NC-4.0" and ours.name == "facebook/timesformer-small-test"
    assert any("licence: CC-BY-NC-4.0" in r.getMessage() for r in caplog.records)


def test_licence_read_from_model_card(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path / "m")
    assert load_model(folder).license == "unknown"
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- video\n---\n# card\n")
    assert load_model(folder).license == "apache-2.0"


def test_builtin_name_resolves_to_weights_folder(tmp_path, hf, monkeypatch):
    target = tmp_path / "motion-demo"
    monkeypatch.setitem(sources.BUILTIN, "motion-demo", target)
    with pytest.raises(CheckpointError, match="built-in model 'motion-demo' is not installed"):
        load_model("motion-demo")
    ours = load_model(hf.save(hf.make(), tmp_path / "src"))
    save_pretrained(ours.network, target, license="apache-2.0")
    demo = load_model("motion-demo")
    assert demo.name == "motion-demo" and demo.license == "apache-2.0"
    assert sources.BUILTIN["motion-demo"] == target
    assert sources.WEIGHTS_DIR.name == "weights" and sources.WEIGHTS_DIR.parent.name == "model"


def test_precision_attributes(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path)
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        model = load_model(folder, precision=precision)
        assert model.precision == precision and model.network.head.weight.dtype == dtype
        assert model.input_dtype == dtype and model.info()["precision"] == precision
        with torch.no_grad():
            assert model.network(torch.randn(1, 4, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(CheckpointError, match="precision 'int4'"):
        load_model(folder, precision="int4")


# ---- bad checkpoints: one clear CheckpointError, one line, naming the file ----

def _one_line_error(source, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(source, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_path(tmp_path):
    _one_line_error(tmp_path / "nope", "not found")
    _one_line_error(str(tmp_path / "nope.pyth"), "not found")


def test_folder_without_weights_or_config(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path / "m")
    (folder / "model.safetensors").unlink()
    _one_line_error(folder, "no model.safetensors or pytorch_model.bin")
    (folder / "config.json").unlink()
    _one_line_error(folder, "no config.json")


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_truncated_weights(tmp_path, hf, safe):
    folder = hf.save(hf.make(), tmp_path, safe=safe)
    weights = folder / ("model.safetensors" if safe else "pytorch_model.bin")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    message = _one_line_error(folder, "truncated")
    assert weights.name in message


def test_random_bin(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path, safe=False)
    (folder / "pytorch_model.bin").write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    _one_line_error(folder, "not a readable PyTorch checkpoint")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path, safe=False)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    _one_line_error(folder, "not a readable PyTorch checkpoint")


def test_wrong_shapes_are_listed(tmp_path, hf):
    folder = hf.save(hf.make(hidden_size=48, num_attention_heads=4, intermediate_size=96), tmp_path)
    config = (folder / "config.json").read_text().replace('"hidden_size": 48', '"hidden_size": 32')
    (folder / "config.json").write_text(config)
    message = _one_line_error(folder, "shape mismatches")
    assert "cls_token (1, 1, 48) vs (1, 1, 32)" in message


def test_missing_and_unexpected_keys_are_listed(tmp_path, hf):
    from safetensors.torch import load_file, save_file

    folder = hf.save(hf.make(), tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["classifier.bias"]
    state["timesformer.extra.weight"] = torch.zeros(1)
    save_file(state, folder / "model.safetensors")
    message = _one_line_error(folder, "missing 1 keys")
    assert "head.bias" in message and "unexpected 1 keys (timesformer.extra.weight)" in message


def test_unknown_layout(tmp_path, hf):
    from safetensors.torch import save_file

    folder = hf.save(hf.make(), tmp_path)
    save_file({"encoder.weight": torch.zeros(2)}, folder / "model.safetensors")
    _one_line_error(folder, "unknown checkpoint layout")


def test_org_name_shaped_local_path_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a local-looking path must not reach the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    _one_line_error("runs/model-a", "not found")


# ---- what a checkpoint declares about itself: sampling and domain ----

def test_declared_sampling_and_domain_round_trip_and_reach_the_loaded_model(tmp_path, hf):
    from model.config import Sampling

    folder = hf.save(hf.make(), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "sampling": {"span_s": 2.5}, "domain": "kitchens"}))
    loaded = load_model(folder)
    assert loaded.config.sampling == Sampling(span_s=2.5) and loaded.domain == "kitchens"
    assert loaded.sampling == Sampling(4, span_s=2.5)  # frames from the config's num_frames
    assert loaded.info()["domain"] == "kitchens"
    save_pretrained(loaded.network, tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["sampling"] == {"span_s": 2.5} and again["domain"] == "kitchens"
    plain = load_model(hf.save(hf.make(), tmp_path / "plain"))
    assert plain.sampling is None and plain.domain is None and "domain" not in plain.info()


def test_hub_checkpoints_without_declared_sampling_get_their_known_span(tmp_path, hf, monkeypatch):
    import huggingface_hub

    folder = hf.save(hf.make(), tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(folder))
    loaded = load_model("facebook/timesformer-base-finetuned-k400")
    assert (loaded.sampling.num_frames, loaded.sampling.span_s) == (8, 8.533)
    large = load_model("facebook/timesformer-large-finetuned-ssv2")  # frames left to its config.json (here 4)
    assert (large.sampling.num_frames, large.sampling.span_s) == (4, 4.0)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "sampling": {"num_frames": 4, "stride": 2}}))
    declared = load_model("facebook/timesformer-base-finetuned-k400")  # the file's own word wins
    assert (declared.sampling.stride, declared.sampling.span_s) == (2, None)


def test_motion_demo_declares_its_sampling_and_domain():
    demo = load_model("motion-demo")
    assert (demo.sampling.num_frames, demo.sampling.span_s) == (8, 1.28)
    assert demo.domain == "synthetic-shapes" and demo.info()["domain"] == "synthetic-shapes"


@pytest.mark.parametrize("sampling, message", [
    ({"num_frames": 8}, "exactly one of span_s"),
    ({"span_s": 1.0, "stride": 2}, "exactly one of span_s"),
    ({"span_s": -1}, "span_s must be a positive number"),
    ({"stride": 1.5}, "stride must be a positive integer"),
    ({"frames": 8, "span_s": 1}, "sampling must be"),
])
def test_bad_declared_sampling_is_a_one_line_checkpoint_error(tmp_path, hf, sampling, message):
    folder = hf.save(hf.make(), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "sampling": sampling}))
    assert "config.json" in _one_line_error(folder, message)


def test_an_int8_network_is_not_saved(tmp_path, hf):
    pytest.importorskip("bitsandbytes")
    q = load_model(hf.save(hf.make(), tmp_path / "m"), precision="int8")
    with pytest.raises(CheckpointError, match="cannot save an int8 model"):
        save_pretrained(q.network, tmp_path / "out")

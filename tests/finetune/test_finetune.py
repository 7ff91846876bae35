"""``python -m model.finetune``: data discovery, streamer-exact windows, honest augmentation, what stays fixed,
determinism, resume and time budget, and the checkpoint folder it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clipsets import stored_state, weights, write_clip

from model.config import Sampling
from model.errors import ConfigError
from model.finetune import cli
from model.finetune.augment import read_symmetries
from model.finetune.dataset import discover
from model.finetune.run import finetune
from model.finetune.settings import Freeze
from model.sampling import file_windows, nearest, time_targets

TINY = ["--base", "scratch:tiny", "--span-s", "1.28", "--epochs", "1", "--batch", "8", "--threads", "1",
        "--windows-per-video", "2"]


def run(data: Path, out: Path, cache: Path, *extra: str):
    argv = ["--data", str(data), "--out", str(out), "--cache", str(cache), *TINY, *extra]
    return finetune(cli.settings_from(cli.parser().parse_args(argv)), argv)


# ----- windows ---------------------------------------------------------------------------------
def test_file_windows_start_where_the_scheduler_does_and_end_at_the_last_frame():
    ts = np.arange(60) / 25.0  # 2.4 s at 25 fps
    windows = file_windows(ts, 8, 3, span_s=1.28)
    assert windows[0] == [0, 4, 8, 12, 16, 20, 24, 28]  # first end due at 1.28 * 7/8 = 1.12 s: frame 28
    assert windows[-1][-1] == 59 and len(windows) == 3
    for w in windows:  # each window is the scheduler's window for its end frame
        assert w == nearest(ts, time_targets(ts[w[-1]], 8, 1.28)).tolist()
    assert file_windows(ts[:20], 8, 3, span_s=1.28) == []  # 0.8 s: shorter than one window
    assert file_windows(ts, 4, 2, stride=5) == [[0, 5, 10, 15], [44, 49, 54, 59]]


def test_jittery_timestamps_keep_the_span():
    rng = np.random.default_rng(1)
    ts = np.cumsum(rng.uniform(0.02, 0.06, 100))
    for w in file_windows(ts, 8, 5, span_s=1.28):
        assert abs((ts[w[-1]] - ts[w[0]]) - 1.12) < 0.06


# ----- data --------------------------------------------------------------------------------------
def test_folder_and_csv_discovery(tmp_path, small_data):
    splits = discover(small_data)
    assert splits.labels == ("grow", "shrink", "still") and len(splits.train) == 18 and len(splits.val) == 6
    rows = ["path,label,start_s,end_s"] + [f"{c.path},{c.label},0.0,1.5" for c in splits.train]
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    csv_splits = discover(tmp_path / "clips.csv", val_share=0.3)
    assert len(csv_splits.train) + len(csv_splits.val) == 18 and csv_splits.val  # a hash-chosen share held out
    assert {c.end_s for c in csv_splits.train} == {1.5}
    assert discover(tmp_path / "clips.csv", val_share=0.3).val == csv_splits.val  # the same rows every time


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "train").mkdir(parents=True), "holds no videos"),
    (lambda root: root.mkdir(), "no train/ folder"),
    (lambda root: root.write_text("a.mp4,still\n"), "not a folder"),
])
def test_bad_data_is_a_one_line_error(tmp_path, make, message, capsys):
    root = tmp_path / "data"
    make(root)
    code = cli.main(["--data", str(root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err


def test_csv_rows_are_checked_and_ranges_cut_the_video(tmp_path, cache_dir):
    write_clip(tmp_path / "long.mp4", "still", 3, seconds=4.0)
    (tmp_path / "bad.csv").write_text("long.mp4,still,2.0,1.0\n")
    with pytest.raises(ConfigError, match=r"bad.csv:1: need 0 <= start_s < end_s"):
        discover(tmp_path / "bad.csv")
    from model.finetune.dataset import Clip
    from model.finetune.decode import decode
    from model.preprocess import PreprocessConfig, Preprocessor

    frames, ts = decode(Clip(tmp_path / "long.mp4", "still", 1.0, 2.5), Preprocessor(
        PreprocessConfig(shortest_edge=None, size=(32, 32), crop_size=None)))
    assert 1.0 <= ts[0] < 1.05 and 2.45 < ts[-1] < 2.5 and frames.shape[1:] == (3, 32, 32)


# ----- augmentation ------------------------------------------------------------------------------
def test_only_declared_transforms_are_applied_and_labels_follow(tmp_path):
    labels = ("left", "right", "still")
    (tmp_path / "s.json").write_text(json.dumps({"hflip": {"left": "right", "right": "left"}}))
    sym = read_symmetries(tmp_path / "s.json", labels, square=True)
    clips = torch.arange(64, dtype=torch.uint8).view(1, 1, 1, 8, 8).expand(32, 2, 3, 8, 8)
    out, new = sym.apply(clips, np.zeros(32, np.int64), np.random.default_rng(0))
    flipped = [bool(torch.equal(o, clips[0].flip(-1))) for o in out]
    assert 4 < sum(flipped) < 28  # about half
    assert all(torch.equal(o, clips[0]) or f for o, f in zip(out, flipped))  # nothing else happened
    assert new.tolist() == [1 if f else 0 for f in flipped]  # flipped 'left' clips became 'right'
    none = read_symmetries(None, labels, square=True)
    same, kept = none.apply(clips, np.zeros(32, np.int64), np.random.default_rng(0))
    assert torch.equal(same, clips) and kept.tolist() == [0] * 32


def test_reverse_pairs_hold_each_clip_and_its_time_reversal_with_the_reversed_label(tmp_path):
    labels = ("left", "right", "still")
    (tmp_path / "s.json").write_text(json.dumps({"hflip": {"left": "right", "right": "left"},
                                                 "reverse": {"left": "right", "right": "left"}}))
    sym = read_symmetries(tmp_path / "s.json", labels, square=True)
    clips = torch.randint(0, 255, (6, 4, 3, 8, 8), dtype=torch.uint8)
    given = np.array([0, 0, 1, 1, 2, 2])
    out, new = sym.with_reversed(clips, given, np.random.default_rng(1))
    assert out.shape == (12, 4, 3, 8, 8)
    swap = [1, 0, 2]  # left <-> right, still stays (both the flip and the reversal)
    for i in range(6):
        assert torch.equal(out[6 + i], out[i].flip(0))  # the pair differs only in time order
        flipped = torch.equal(out[i], clips[i].flip(-1))
        assert flipped or torch.equal(out[i], clips[i])  # a flip or nothing: never a reversal in the first half
        assert new[i] == (swap[given[i]] if flipped else given[i])
        assert new[6 + i] == swap[new[i]]


def test_reverse_pairs_need_an_even_batch():
    with pytest.raises(ConfigError, match="must be even"):
        cli.settings_from(cli.parser().parse_args(["--data", "d", "--out", "o", "--reverse-pairs", "--batch", "7"]))


@pytest.mark.parametrize("content, message", [
    ({"hflip": {"left": "right", "right": "still", "still": "left"}}, "must undo itself"),
    ({"hflip": {"left": "right"}}, "two labels map to the same label"),
    ({"spin": {}}, "is not one of"),
    ({"reverse": {"left": "up"}}, "not labels of the data"),
    ({"transpose": {}}, "square"),
])
def test_bad_symmetries_are_config_errors(tmp_path, content, message):
    (tmp_path / "s.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        read_symmetries(tmp_path / "s.json", ("left", "right", "still"), square=False)


# ----- runs ----------------------------------------------------------------------------------------
def test_same_seed_same_weights_other_seed_other_weights(tmp_path, small_data, cache_dir):
    a = run(small_data, tmp_path / "a", cache_dir, "--seed", "3")
    b = run(small_data, tmp_path / "b", cache_dir, "--seed", "3")
    c = run(small_data, tmp_path / "c", cache_dir, "--seed", "4")
    wa, wb, wc = weights(a.out), weights(b.out), weights(c.out)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)
    assert a.history.epochs == [{**e, "seconds": a.history.epochs[i]["seconds"]} for i, e in enumerate(b.history.epochs)]


def test_resume_after_a_time_budget_equals_a_straight_run(tmp_path, small_data, cache_dir):
    straight = run(small_data, tmp_path / "straight", cache_dir, "--epochs", "2")
    cut = run(small_data, tmp_path / "cut", cache_dir, "--epochs", "2", "--time-budget", "0.0001")
    assert len(cut.history.epochs) == 1 and "stopped after epoch 1 of 2" in cut.history.stopped_early
    report = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert report["stopped_early"] == cut.history.stopped_early and (tmp_path / "cut" / ".resume").is_dir()
    with pytest.raises(ConfigError, match="other settings"):
        run(small_data, tmp_path / "cut", cache_dir, "--epochs", "2", "--resume", "--seed", "9")
    done = run(small_data, tmp_path / "cut", cache_dir, "--epochs", "2", "--resume")
    assert len(done.history.epochs) == 2 and done.history.stopped_early is None
    assert not (tmp_path / "cut" / ".resume").exists()
    ws, wd = weights(straight.out), weights(done.out)
    assert all(np.array_equal(ws[k], wd[k]) for k in ws)


def test_the_prior_stays_fixed_and_the_rest_trains(tmp_path, small_data, cache_dir):
    from model.finetune import bases

    torch.manual_seed(0)
    begin = bases.start("scratch:small", ("grow", "shrink", "still"), Sampling(8, span_s=1.28), Freeze(),
                        "motion-demo", None)
    before = {k: v.detach().clone() for k, v in begin.model.state_dict().items()}
    out = run(small_data, tmp_path / "prior", cache_dir, "--base", "scratch:small", "--prior", "motion-demo",
              "--seed", "0").out
    trained = stored_state(out)
    fixed = {name: mask == 0 for name, mask in begin.masks.items()}
    assert sum(int(m.sum()) for m in fixed.values()) > 400_000
    for name, keep in fixed.items():
        assert torch.equal(trained[name][keep], before[name][keep]), name
        if not keep.all():  # the trainable part of a partly fixed tensor did train
            assert not torch.equal(trained[name][~keep], before[name][~keep]), name
    assert not torch.equal(trained["head.weight"], before["head.weight"])


def test_freeze_from_a_checkpoint_replaces_the_head_and_keeps_the_backbone(tmp_path, small_data, cache_dir):
    from model import load_model

    base = load_model("motion-demo").network.state_dict()
    out = run(small_data, tmp_path / "frozen", cache_dir, "--base", "motion-demo", "--freeze", "last:1").out
    loaded = load_model(out)
    state = loaded.network.state_dict()
    assert loaded.labels == ("grow", "shrink", "still") and state["head.weight"].shape == (3, 128)
    assert loaded.sampling.span_s == 1.28  # --span-s given; the window is recorded
    for name, value in state.items():
        if name.startswith(("blocks.0.", "blocks.1.", "blocks.2.", "patch_embed", "pos_embed", "time_embed")):
            assert torch.equal(value, base[name]), name
    assert not torch.equal(state["blocks.3.mlp.fc1.weight"], base["blocks.3.mlp.fc1.weight"])


def test_bf16_autocast_trains_on_a_csv_with_cuts(tmp_path, small_data, cache_dir):
    rows = [f"{p},{p.parent.name},0.1,1.7" for p in sorted((small_data / "train").glob("*/*.mp4"))]
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    result = run(tmp_path / "clips.csv", tmp_path / "bf16", cache_dir, "--precision", "bf16", "--val-share", "0.3")
    assert np.isfinite(result.history.epochs[0]["train_loss"])
    report = json.loads((tmp_path / "bf16" / "training.json").read_text())
    assert report["settings"]["precision"] == "bf16" and report["settings"]["sampling"] == {"num_frames": 8,
                                                                                            "span_s": 1.28}
    assert report["data"]["train"]["videos"] + report["data"]["val"]["videos"] == 18


def test_the_cache_is_decoded_once(tmp_path, small_data, cache_dir, monkeypatch):
    run(small_data, tmp_path / "first", cache_dir)
    from model.finetune import cache

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "_build", no_decoding)
    run(small_data, tmp_path / "second", cache_dir, "--seed", "5")  # same data, sampling and preprocessing

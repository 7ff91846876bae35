"""The demo's training data writer (python -m model.demo.dataset): a folder model.finetune reads, every class
alike, the label maps of its symmetries, and the same files whatever the number of workers."""

from __future__ import annotations

import hashlib
import json

import cv2

from model.demo import dataset
from model.demo.render import CLASSES, REVERSED
from model.finetune.augment import read_symmetries
from model.finetune.dataset import discover


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_folder_is_what_finetune_reads_and_workers_change_nothing(tmp_path):
    assert dataset.main(["--out", str(tmp_path / "a"), "--train", "18", "--val", "9", "--seed", "3"]) == 0
    dataset.write_dataset(tmp_path / "b", {"train": 18, "val": 9}, 3, workers=2)
    splits = discover(tmp_path / "a")
    assert set(splits.labels) == set(CLASSES) and len(splits.train) == 18 and len(splits.val) == 9
    assert [c.label for c in splits.train].count("grow") == 2  # labels in turn: every class alike
    assert (tmp_path / "a" / "labels.txt").read_text().split() == list(CLASSES)
    for clip in splits.train + splits.val:
        twin = tmp_path / "b" / clip.path.relative_to(tmp_path / "a")
        assert digest(clip.path) == digest(twin)  # video i depends on (seed, split, i) only
        cap = cv2.VideoCapture(str(clip.path))
        assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) >= 15
        cap.release()
    sym = read_symmetries(tmp_path / "a" / "symmetries.json", CLASSES, square=True)
    assert set(sym.maps) == {"hflip", "vflip", "transpose", "reverse"}
    assert all(REVERSED[a] == b for a, b in sym.maps["reverse"].items())
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["counts"] == {"train": 18, "val": 9}

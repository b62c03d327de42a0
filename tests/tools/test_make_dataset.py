"""tools/make_dataset.py: splits on disk, seeds per sequence, byte-stable ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.make_dataset import main, sequence_seed


def files(root: Path) -> dict[str, bytes]:
    """Every file but the H.264 video (libx264's bytes vary from process to process)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "video.mp4"
    }


def test_writes_splits_deterministically(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--train", "2", "--val", "1", "--frames", "4", "--size", "64x64", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--png-frames"]) == 0
    summary = capsys.readouterr().out
    assert "12 frames (2 train + 1 val sequences x 4) at 64x64" in summary
    assert "frames/s" in summary
    a = tmp_path / "a"
    assert sorted(p.name for p in (a / "train").iterdir()) == ["0000", "0001"]
    assert sorted(p.name for p in (a / "val").iterdir()) == ["0000"]
    for sequence in [a / "train" / "0000", a / "train" / "0001", a / "val" / "0000"]:
        assert (sequence / "video.mp4").stat().st_size > 0
        assert len(list((sequence / "images").glob("*.png"))) == 4
    info = json.loads((a / "val" / "0000" / "annotations.json").read_text())["info"]
    assert info["seed"] == sequence_seed(0, "val", 0) != sequence_seed(0, "train", 0)

    assert main([*args, "--out", str(tmp_path / "b"), "--png-frames"]) == 0
    assert files(a) == files(tmp_path / "b")  # same seed: byte-identical frames and labels
    assert main([*args, "--out", str(tmp_path / "c"), "--png-frames", "--seed", "1"]) == 0
    other = files(tmp_path / "c")
    assert other.keys() == files(a).keys()
    assert all(other[k] != v for k, v in files(a).items() if k.endswith("annotations.json"))


def test_rejects_bad_size() -> None:
    with pytest.raises(SystemExit):
        main(["--size", "63x64"])

"""DensePose chart outputs -> per-box I, U, V, as detectron2's chart-result conversion."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.densepose.postprocess import box_size, chart_result, chart_results, quantize


def test_box_size_truncates_like_make_int_box() -> None:
    assert box_size(torch.tensor([10.7, 20.2, 30.9, 45.99])) == (25, 20)
    assert box_size(torch.tensor([5.0, 5.0, 5.4, 5.2])) == (1, 1)  # at least one pixel


def test_hand_built_person_left_half() -> None:
    s = 112
    coarse = torch.zeros(2, s, s)
    coarse[1, :, : s // 2] = 5.0  # foreground on the left half only
    fine = torch.zeros(25, s, s)
    fine[3] = 4.0  # part 3 (a hand) wins everywhere ...
    u, v = torch.zeros(25, s, s), torch.zeros(25, s, s)
    u[3], v[3] = 0.25, 0.75
    u[5] = 0.9  # ... another part's U must not leak in
    labels, uv = chart_result(torch.tensor([0.0, 0.0, 40.0, 20.0]), coarse, fine, u, v)
    assert labels.shape == (20, 40) and uv.shape == (2, 20, 40)
    assert (labels[:, :19] == 3).all() and (labels[:, 21:] == 0).all()
    assert torch.allclose(uv[0, :, :19], torch.tensor(0.25))
    assert torch.allclose(uv[1, :, :19], torch.tensor(0.75))
    assert (uv[:, :, 21:] == 0).all()
    iuv = quantize(labels, uv)
    assert iuv.dtype == torch.uint8 and iuv[:, 0, 0].tolist() == [3, 64, 191]


def test_matches_a_per_part_loop_on_random_maps() -> None:
    # detectron2 fills U / V part by part; gathering the label's channel must agree.
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[3.2, 4.9, 60.1, 100.7], [0.0, 0.0, 17.5, 9.9]])
    maps = [torch.randn(2, c, 112, 112, generator=generator) for c in (2, 25, 25, 25)]
    for k, (labels, uv) in enumerate(chart_results(boxes, *maps)):
        size = box_size(boxes[k])
        up = [F.interpolate(m[k : k + 1], size=size, mode="bilinear", align_corners=False)[0]
              for m in maps]  # fmt: skip
        expected = up[1].argmax(0) * (up[0].argmax(0) > 0)
        assert torch.equal(labels, expected)
        u, v = torch.zeros(size), torch.zeros(size)
        for part in range(1, 25):
            where = expected == part
            u[where], v[where] = up[2][part][where], up[3][part][where]
        assert torch.equal(uv[0], u) and torch.equal(uv[1], v)

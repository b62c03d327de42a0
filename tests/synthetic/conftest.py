"""A short clip shared by the synthetic-data tests (rendered once per session)."""

from __future__ import annotations

import pytest

from synthetic.generator import SyntheticFrame, generate

CLIP_SEED, CLIP_FRAMES, CLIP_SIZE = 7, 60, (160, 160)


@pytest.fixture(scope="session")
def clip() -> list[SyntheticFrame]:
    """60 frames at 160x160 with plenty going on: 4 things, 2 people, 6 arrivals / 100."""
    width, height = CLIP_SIZE
    return list(generate(CLIP_SEED, CLIP_FRAMES, width, height, arrivals_per_100=6.0))

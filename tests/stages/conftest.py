"""Fixtures shared by the stage tests."""

from __future__ import annotations

import pytest

from stages.render import annotators


@pytest.fixture
def drawn_labels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the annotators write (``cv2.putText``), in order, as they still write it;
    a test clears the list between frames."""
    labels: list[str] = []
    real = annotators.cv2.putText

    def spy(image, text, *args, **kwargs):
        labels.append(text)
        return real(image, text, *args, **kwargs)

    monkeypatch.setattr(annotators.cv2, "putText", spy)
    return labels

"""What a model stage reads from its weights' JSON sidecar before building the model."""

from __future__ import annotations

from collections.abc import Container

from models.checkpoints import weights_meta
from pipeline.errors import ModelError


def sidecar_variant(
    stage: str,
    family: str,
    weights: str,
    variant: str | None,
    default: str,
    variants: Container[str],
) -> tuple[str, dict]:
    """The variant a model stage builds, and the sidecar of its weights.

    Args:
        stage: the stage kind, for the message (e.g. "vpsnet").
        family: the model family, for the message (e.g. "VPSNet").
        weights: the checkpoint path, or "random" (no sidecar).
        variant: the variant the config names, if any (checked by the stage already).
        default: the variant when neither the config nor a sidecar names one.
        variants: the family's variant names.

    Returns:
        ``(variant, sidecar)``: the config's variant, else the sidecar's, else ``default``;
        the sidecar's fields ({} without one).

    Raises:
        ModelError: the sidecar names a variant of another family (another model's weights).
    """
    meta = {} if weights == "random" else weights_meta(weights)
    chosen = variant or meta.get("variant", default)
    if chosen not in variants:
        raise ModelError(
            f"{stage}: {weights} is not {family} weights (its sidecar names the variant {chosen!r})"
        )
    return chosen, meta

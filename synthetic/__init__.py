"""Deterministic synthetic video with exact ground truth, for training and evaluation.

No annotated video can be downloaded here, so FrameGraph makes its own: textured stuff
(sky, wall, grass, road), moving and rotating things that occlude each other and enter and
leave (real silhouettes and textures from scikit-image's bundled CC0 / public-domain images
plus procedural shapes), articulated people made of the 24 DensePose body parts with per-part
U, V coordinates, all seen through a panning and zooming camera.

Every frame comes with its panoptic segmentation (stuff + things with persistent track ids),
from which COCO instance annotations are derived, and a DensePose-style IUV image.

Like ``evaluation``, this package imports nothing from ``stages`` or ``models``; of ``pipeline``
only ``pipeline.results.rle_json``, the COCO RLE encoder that the JSONL sink uses too.

Modules:
    categories: the classes, DensePose part ids and the panoptic id convention.
    assets: textures and sprites cut from scikit-image's data.
    figure: articulated people and their IUV rendering.
    scene: world layout, camera path, things and people over time.
    generator: ``generate()`` -> ``SyntheticFrame`` per frame.
    annotations: COCO instance / panoptic records and evaluation inputs from a frame.
    io: write a sequence's annotations to disk and read a sequence back.
"""

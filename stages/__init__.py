"""Graph nodes: thin adapters around models and I/O.

Importing this package registers every stage kind with ``pipeline.config``.
"""

from stages import (  # noqa: F401  (registers kinds)
    densepose,
    faces,
    instances,
    motion,
    panoptic,
    render,
    sinks,
    sources,
    track,
    translate,
    zones,
)

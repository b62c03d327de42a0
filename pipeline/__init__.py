"""FrameGraph runtime: frames, stages, bounded edges, the stage graph and its metrics.

This package knows nothing about any model; stages/ adapts models and I/O to it.
"""

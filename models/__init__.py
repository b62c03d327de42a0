"""Model families in pure PyTorch (no pipeline imports): modules with the official
parameter names, pre/post-processing as tensor functions, checkpoint loading.

Families arrive with their issues: retinaface, yolact_edge, vpsnet, densepose,
translation; see DESIGN.md section 5 for the ``build_model(variant)`` convention.
"""

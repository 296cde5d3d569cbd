"""Scenes: the GaussianScene structure, file formats, cameras, rendering and the synthetic world.

`import data` is cheap: file readers, the rasterizer and the synthetic world
load on first use. This package imports nothing else of the project.
"""

from .scene import (
    GaussianScene,
    SceneFormatError,
    batch_to_offset,
    collate_scenes,
    offset_to_batch,
)

_LAZY = {
    "load_scene": ("data.io", "load_scene"),
    "save_scene": ("data.io", "save_scene"),
    "Camera": ("data.camera", "Camera"),
    "look_at": ("data.camera", "look_at"),
    "sample_views": ("data.camera", "sample_views"),
    "rasterize": ("data.render", "rasterize"),
}

__all__ = ["GaussianScene", "SceneFormatError", "collate_scenes", "offset_to_batch", "batch_to_offset", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'data' has no attribute {name!r}")

"""The synthetic indoor world: procedural 3DGS rooms with labels, captions and questions.

- ``generate_room(seed, density=1.0, ...) -> (GaussianScene, scene_dict)``
- ``generate_dataset(out_dir, n_scenes, seed=0, density=1.0, ...)`` writes SceneSplat folders,
  scene.json files, ScanQA / SQA3D question files and splits (layout in ``dataset.py``).
- ``CLASS_NAMES``: the one global class list (semantic id = index).
"""

from .classes import CLASS_NAMES, COLORS, ROOM_TYPE_NAMES
from .room import generate_room

__all__ = ["CLASS_NAMES", "COLORS", "ROOM_TYPE_NAMES", "generate_room", "generate_dataset", "generate_questions",
           "blind_baseline"]


def __getattr__(name):
    if name == "generate_dataset":
        from .dataset import generate_dataset
        return generate_dataset
    if name in ("generate_questions", "blind_baseline"):
        from . import qa
        return getattr(qa, name)
    raise AttributeError(f"module 'data.synth' has no attribute {name!r}")

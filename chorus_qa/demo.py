"""Demo rooms for the app: procedural rooms from fixed seeds, generated once and cached on disk.

    rooms = prepare_demo_rooms()             # [DemoRoom], generated on first use, then read from the cache
    scene = rooms[0].load()                  # GaussianScene (SceneSplat folder, lossless)
    rooms[0].viewer_path                     # .splat file for the browser viewer
    rooms[0].example_questions               # questions from data.synth.qa.generate_questions

Nothing here is committed as data: the rooms come from ``data.synth.generate_room``
with the seeds in :data:`DEMO_SEEDS`. The cache lives in ``$CHORUS_CACHE/demo``
(default ``~/.cache/chorus-qa/demo``); each room folder is keyed by its seed,
density and a hash of the synthetic-world source, so a change in the generator
never serves a stale room. Writes are atomic (temporary folder + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from data.atomic import atomic_directory

# living room, bedroom, kitchen, office, bathroom: one room of each kind the world makes (besides dining rooms)
DEMO_SEEDS: tuple[int, ...] = (3, 2, 14, 17, 1)
DEFAULT_DENSITY = 0.3          # the density the Q&A recipes train on (~10-35k Gaussians per room)
NUM_EXAMPLE_QUESTIONS = 6
_FORMAT_VERSION = "2"
# example questions: these types first (counting, spatial and situated questions show what the scene tokens carry)
PREFERRED_TYPES = ("counting", "nearest", "color", "support", "situated_what", "existence", "closer", "material")


def demo_cache_dir() -> Path:
    """``$CHORUS_CACHE/demo`` or ``~/.cache/chorus-qa/demo``."""
    from adapters.llm import cache_root

    return cache_root() / "demo"


def synth_source_hash() -> str:
    """12 hex digits over the synthetic world's source files: rooms are regenerated when the generator changes."""
    import data.synth

    digest = hashlib.sha256(_FORMAT_VERSION.encode())
    for path in sorted(Path(data.synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class DemoRoom:
    """One cached demo room.

    key                 stable id, e.g. ``synth_3``
    title               what the picker shows, e.g. "Living room (seed 3, 35,251 Gaussians)"
    folder              cache folder: ``scene/`` (SceneSplat), ``scene.splat``, ``meta.json``
    example_questions   a few questions of different types (strings)
    object_names        class names of the objects in the room (for the UI)
    """

    key: str
    title: str
    seed: int
    folder: Path
    num_gaussians: int
    room_type: str
    example_questions: list[str] = field(default_factory=list)
    object_names: list[str] = field(default_factory=list)

    @property
    def scene_path(self) -> Path:
        return self.folder / "scene"

    @property
    def viewer_path(self) -> Path:
        return self.folder / "scene.splat"

    def load(self):
        """The room as a GaussianScene (with semantic/instance labels and class names)."""
        from data import load_scene

        return load_scene(self.scene_path, name=self.key)


def pick_example_questions(questions: list[dict], n: int = NUM_EXAMPLE_QUESTIONS) -> list[str]:
    """Up to ``n`` questions of distinct types (round robin over types, :data:`PREFERRED_TYPES` first), situations prepended."""
    by_type: dict[str, list[str]] = {t: [] for t in PREFERRED_TYPES}
    for q in questions:
        text = q["question"]
        if q.get("situation"):
            text = f"{q['situation'].strip()} {text}"
        if text not in by_type.setdefault(q["type"], []):
            by_type[q["type"]].append(text)
    picked: list[str] = []
    depth = 0
    while len(picked) < n and any(depth < len(v) for v in by_type.values()):
        for texts in by_type.values():
            if depth < len(texts) and len(picked) < n:
                picked.append(texts[depth])
        depth += 1
    return picked


def _room_title(seed: int, room_type: str, n: int) -> str:
    return f"{room_type.capitalize()} (seed {seed}, {n:,} Gaussians)"


def _generate_room_folder(seed: int, density: float, target: Path) -> None:
    """Write ``target/scene`` (SceneSplat), ``target/scene.splat`` and ``target/meta.json`` atomically."""
    from data import save_scene
    from data.synth import generate_room
    from data.synth.qa import generate_questions

    scene, meta = generate_room(seed, density=density)
    with atomic_directory(target) as tmp:
        save_scene(scene, tmp / "scene")
        save_scene(scene, tmp / "scene.splat")
        questions = generate_questions(meta, seed=0)
        info = {"seed": seed, "density": density, "key": f"synth_{seed}", "room_type": meta["room"]["type"],
                "num_gaussians": len(scene), "example_questions": pick_example_questions(questions),
                "object_names": sorted({o["class"] for o in meta["objects"]}), "scene": meta}
        (tmp / "meta.json").write_text(json.dumps(info, indent=1))


def _room_from_folder(folder: Path) -> DemoRoom:
    info = json.loads((folder / "meta.json").read_text())
    return DemoRoom(key=info["key"], title=_room_title(info["seed"], info["room_type"], info["num_gaussians"]),
                    seed=info["seed"], folder=folder, num_gaussians=info["num_gaussians"], room_type=info["room_type"],
                    example_questions=info["example_questions"], object_names=info["object_names"])


def prepare_demo_rooms(seeds=DEMO_SEEDS, density: float = DEFAULT_DENSITY, cache_dir: str | os.PathLike | None = None,
                       progress: Callable[[float, str], None] | None = None) -> list[DemoRoom]:
    """The demo rooms for ``seeds``, generating the missing ones (about 0.5 s each) into the cache."""
    if not density > 0:
        raise ValueError(f"prepare_demo_rooms: density = {density}; expected > 0")
    root = Path(cache_dir) if cache_dir is not None else demo_cache_dir()
    version = synth_source_hash()
    rooms = []
    for i, seed in enumerate(seeds):
        folder = root / f"seed{int(seed)}_d{density:g}_{version}"
        if not (folder / "meta.json").is_file() or not (folder / "scene.splat").is_file():
            if progress is not None:
                progress(i / max(len(seeds), 1), f"generating demo room seed {seed}")
            _generate_room_folder(int(seed), density, folder)
        rooms.append(_room_from_folder(folder))
    return rooms

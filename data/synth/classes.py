"""The class library of the synthetic world: names (as in ScanNet200), colours, materials, sizes, placement.

One global list ``CLASS_NAMES`` fixes the semantic ids of the whole world
(semantic id = index into it). Structural classes come first.

Object sizes are ``(width, depth, height)`` in metres in the object's own
frame: width along local x, depth along local y (the object's front faces
local +y), height along z.
"""

from __future__ import annotations

from dataclasses import dataclass

# ~12 colour names with an sRGB value each; answers use these words.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (196, 40, 36),
    "orange": (232, 122, 30),
    "yellow": (236, 200, 40),
    "green": (56, 142, 60),
    "blue": (40, 80, 190),
    "purple": (120, 60, 160),
    "pink": (236, 130, 170),
    "brown": (120, 74, 40),
    "black": (28, 28, 30),
    "white": (236, 236, 232),
    "gray": (128, 128, 132),
    "beige": (214, 196, 160),
}

# material noun (answer) -> adjective (captions)
MATERIALS: dict[str, str] = {
    "wood": "wooden",
    "metal": "metal",
    "fabric": "fabric",
    "plastic": "plastic",
    "leather": "leather",
    "ceramic": "ceramic",
    "glass": "glass",
    "paper": "paper",
}

STRUCTURE_CLASSES = ("wall", "floor", "ceiling", "door", "window")

# Placement kinds
FLOOR = "floor"          # stands on the floor, anywhere
WALL = "wall"            # stands on the floor with its back against a wall
MOUNTED = "mounted"      # hangs on a wall above the floor
SURFACE = "surface"      # rests on the top surface of a supporting object


@dataclass(frozen=True)
class ObjectClass:
    """One object class: its ScanNet200 name and how instances are sampled.

    size_min / size_max: (width, depth, height) ranges in metres.
    colors / materials: allowed main colours and materials.
    placements: allowed placement kinds (first is preferred).
    supports: True when other objects may rest on its top surface.
    surfaces: classes this one may rest on when placed on a surface.
    mount_height: (min, max) bottom height for wall-mounted placement.
    """

    name: str
    size_min: tuple[float, float, float]
    size_max: tuple[float, float, float]
    colors: tuple[str, ...]
    materials: tuple[str, ...]
    placements: tuple[str, ...]
    supports: bool = False
    surfaces: tuple[str, ...] = ()
    mount_height: tuple[float, float] = (1.0, 1.6)
    plural: str = ""

    def __post_init__(self):
        for lo, hi in zip(self.size_min, self.size_max):
            if not 0 < lo <= hi:
                raise ValueError(f"class {self.name!r}: size range {self.size_min}..{self.size_max} must be positive and ordered")
        for c in self.colors:
            if c not in COLORS:
                raise ValueError(f"class {self.name!r}: colour {c!r} is not one of {sorted(COLORS)}")
        for m in self.materials:
            if m not in MATERIALS:
                raise ValueError(f"class {self.name!r}: material {m!r} is not one of {sorted(MATERIALS)}")
        if not self.plural:
            object.__setattr__(self, "plural", pluralize(self.name))


def pluralize(name: str) -> str:
    head, _, last = name.rpartition(" ")
    if last.endswith("shelf"):
        p = last[:-1] + "ves"
    elif last.endswith(("x", "ch", "sh", "s")):
        p = last + "es"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


_WOODS = ("brown", "beige", "white", "black")
_FABRICS = ("red", "blue", "green", "gray", "beige", "brown", "yellow", "purple", "pink", "orange", "black", "white")
_ALL = tuple(COLORS)
_FURN_SURF = ("table", "desk", "nightstand", "dresser", "counter", "coffee table", "shelf", "cabinet", "tv stand")

OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("chair", (0.42, 0.42, 0.80), (0.55, 0.55, 1.00), _ALL, ("wood", "plastic", "metal"), (FLOOR,)),
    ObjectClass("office chair", (0.55, 0.55, 0.90), (0.70, 0.70, 1.20), ("black", "gray", "blue", "red", "green"), ("fabric", "leather", "plastic"), (FLOOR,)),
    ObjectClass("armchair", (0.70, 0.70, 0.75), (0.95, 0.90, 1.00), _FABRICS, ("fabric", "leather"), (FLOOR, WALL)),
    ObjectClass("couch", (1.60, 0.80, 0.75), (2.40, 1.00, 0.95), _FABRICS, ("fabric", "leather"), (WALL, FLOOR), supports=True, plural="couches"),
    ObjectClass("table", (0.80, 0.60, 0.70), (1.60, 1.00, 0.78), _WOODS + ("gray",), ("wood", "metal", "glass"), (FLOOR,), supports=True),
    ObjectClass("coffee table", (0.80, 0.45, 0.35), (1.30, 0.70, 0.50), _WOODS + ("gray",), ("wood", "glass"), (FLOOR,), supports=True),
    ObjectClass("desk", (1.00, 0.55, 0.72), (1.60, 0.80, 0.78), _WOODS + ("gray",), ("wood", "metal"), (WALL, FLOOR), supports=True),
    ObjectClass("bed", (1.00, 1.90, 0.90), (1.90, 2.10, 1.20), _ALL, ("fabric", "wood"), (WALL,), supports=True),
    ObjectClass("nightstand", (0.40, 0.35, 0.45), (0.55, 0.45, 0.65), _WOODS, ("wood",), (WALL,), supports=True),
    ObjectClass("dresser", (0.80, 0.45, 0.80), (1.40, 0.55, 1.10), _WOODS, ("wood",), (WALL,), supports=True),
    ObjectClass("cabinet", (0.60, 0.40, 0.80), (1.00, 0.60, 1.20), _WOODS + ("gray", "blue"), ("wood", "metal"), (WALL,), supports=True),
    ObjectClass("bookshelf", (0.70, 0.28, 1.60), (1.20, 0.40, 2.10), _WOODS, ("wood",), (WALL,), plural="bookshelves"),
    ObjectClass("kitchen cabinet", (0.60, 0.55, 0.85), (1.20, 0.62, 0.90), ("white", "beige", "gray", "brown", "blue", "green"), ("wood",), (WALL,)),
    ObjectClass("counter", (1.20, 0.58, 0.88), (2.40, 0.65, 0.92), ("white", "gray", "black", "beige", "brown"), ("wood", "ceramic"), (WALL,), supports=True),
    ObjectClass("refrigerator", (0.60, 0.60, 1.50), (0.80, 0.75, 1.90), ("white", "gray", "black", "red"), ("metal",), (WALL,)),
    ObjectClass("stove", (0.60, 0.58, 0.85), (0.76, 0.65, 0.92), ("white", "gray", "black"), ("metal",), (WALL,)),
    ObjectClass("toilet", (0.38, 0.60, 0.70), (0.45, 0.75, 0.85), ("white", "beige", "gray"), ("ceramic",), (WALL,)),
    ObjectClass("sink", (0.45, 0.40, 0.80), (0.65, 0.55, 0.90), ("white", "beige", "gray"), ("ceramic",), (WALL,)),
    ObjectClass("bathtub", (1.40, 0.70, 0.50), (1.80, 0.80, 0.60), ("white", "beige"), ("ceramic",), (WALL,)),
    ObjectClass("tv stand", (1.00, 0.35, 0.40), (1.80, 0.50, 0.60), _WOODS + ("gray",), ("wood",), (WALL,), supports=True),
    ObjectClass("trash can", (0.28, 0.28, 0.30), (0.44, 0.44, 0.65), ("gray", "black", "white", "blue", "green", "red"), ("plastic", "metal"), (FLOOR, WALL)),
    ObjectClass("plant", (0.25, 0.25, 0.35), (0.60, 0.60, 1.40), ("green",), ("ceramic", "plastic"), (FLOOR, SURFACE), surfaces=("table", "desk", "dresser", "shelf", "counter", "coffee table", "nightstand")),
    ObjectClass("lamp", (0.20, 0.20, 0.35), (0.45, 0.45, 1.70), ("white", "beige", "black", "red", "blue", "yellow", "green"), ("metal", "fabric"), (SURFACE, FLOOR), surfaces=("nightstand", "desk", "dresser", "table")),
    ObjectClass("stool", (0.30, 0.30, 0.45), (0.42, 0.42, 0.75), _WOODS + ("red", "black", "gray"), ("wood", "metal", "plastic"), (FLOOR,)),
    ObjectClass("whiteboard", (1.20, 0.04, 0.90), (2.00, 0.06, 1.20), ("white",), ("plastic",), (MOUNTED,), mount_height=(0.85, 1.0)),
    ObjectClass("picture", (0.30, 0.03, 0.30), (1.00, 0.05, 0.80), _ALL, ("wood", "paper"), (MOUNTED,), mount_height=(1.2, 1.6)),
    ObjectClass("mirror", (0.40, 0.03, 0.50), (0.80, 0.05, 0.90), ("white", "black", "brown", "gray"), ("glass",), (MOUNTED,), mount_height=(1.1, 1.3)),
    ObjectClass("clock", (0.25, 0.05, 0.25), (0.40, 0.06, 0.40), ("white", "black", "red", "blue", "brown"), ("plastic", "metal"), (MOUNTED,), mount_height=(1.7, 2.0)),
    ObjectClass("towel", (0.40, 0.10, 0.50), (0.70, 0.12, 0.80), _FABRICS, ("fabric",), (MOUNTED,), mount_height=(0.8, 1.1)),
    ObjectClass("shelf", (0.60, 0.22, 0.25), (1.20, 0.30, 0.30), _WOODS + ("gray",), ("wood", "metal"), (MOUNTED,), supports=True, mount_height=(1.1, 1.5), plural="shelves"),
    ObjectClass("curtain", (0.20, 0.08, 1.50), (0.45, 0.12, 2.20), _FABRICS, ("fabric",), (MOUNTED,), mount_height=(0.02, 0.05)),
    ObjectClass("tv", (0.80, 0.15, 0.55), (1.40, 0.25, 0.90), ("black", "gray"), ("plastic",), (SURFACE,), surfaces=("tv stand", "dresser", "cabinet")),
    ObjectClass("monitor", (0.45, 0.18, 0.38), (0.70, 0.22, 0.55), ("black", "gray", "white"), ("plastic",), (SURFACE,), surfaces=("desk",)),
    ObjectClass("keyboard", (0.35, 0.12, 0.02), (0.46, 0.16, 0.04), ("black", "white", "gray"), ("plastic",), (SURFACE,), surfaces=("desk",)),
    ObjectClass("laptop", (0.30, 0.22, 0.20), (0.38, 0.27, 0.26), ("gray", "black", "white"), ("metal", "plastic"), (SURFACE,), surfaces=("desk", "table", "coffee table", "bed")),
    ObjectClass("computer tower", (0.18, 0.40, 0.38), (0.22, 0.50, 0.50), ("black", "gray", "white"), ("metal",), (FLOOR,)),
    ObjectClass("cup", (0.07, 0.07, 0.08), (0.10, 0.10, 0.12), _ALL, ("ceramic", "plastic", "glass"), (SURFACE,), surfaces=_FURN_SURF),
    ObjectClass("bottle", (0.06, 0.06, 0.18), (0.09, 0.09, 0.32), ("green", "blue", "white", "brown", "red", "orange"), ("glass", "plastic"), (SURFACE,), surfaces=_FURN_SURF),
    ObjectClass("bowl", (0.14, 0.14, 0.06), (0.24, 0.24, 0.10), _ALL, ("ceramic", "plastic", "glass"), (SURFACE,), surfaces=("table", "counter", "coffee table", "desk")),
    ObjectClass("book", (0.14, 0.20, 0.025), (0.22, 0.30, 0.05), _ALL, ("paper",), (SURFACE,), surfaces=_FURN_SURF + ("bed",)),
    ObjectClass("box", (0.20, 0.20, 0.15), (0.50, 0.45, 0.40), ("brown", "white", "beige", "red", "blue"), ("paper", "plastic"), (FLOOR, SURFACE), surfaces=("table", "desk", "shelf", "cabinet", "dresser"), plural="boxes"),
    ObjectClass("backpack", (0.28, 0.18, 0.38), (0.36, 0.25, 0.50), _FABRICS, ("fabric",), (FLOOR,)),
    ObjectClass("pillow", (0.40, 0.30, 0.10), (0.65, 0.45, 0.18), _FABRICS, ("fabric",), (SURFACE,), surfaces=("bed", "couch")),
    ObjectClass("microwave", (0.45, 0.33, 0.26), (0.55, 0.40, 0.32), ("white", "black", "gray"), ("metal",), (SURFACE,), surfaces=("counter",)),
    ObjectClass("mat", (0.50, 0.40, 0.01), (0.90, 0.60, 0.02), _FABRICS, ("fabric",), (FLOOR,)),
    ObjectClass("radiator", (0.60, 0.10, 0.45), (1.20, 0.14, 0.65), ("white", "gray"), ("metal",), (WALL,)),
)

CLASS_BY_NAME: dict[str, ObjectClass] = {c.name: c for c in OBJECT_CLASSES}
CLASS_NAMES: list[str] = list(STRUCTURE_CLASSES) + [c.name for c in OBJECT_CLASSES]
CLASS_ID: dict[str, int] = {n: i for i, n in enumerate(CLASS_NAMES)}
PLURALS: dict[str, str] = {c.name: c.plural for c in OBJECT_CLASSES} | {
    "door": "doors", "window": "windows", "wall": "walls", "floor": "floors", "ceiling": "ceilings"}

# A display colour per class (for segmentation maps), deterministic and well spread.
CLASS_DISPLAY_COLORS: dict[str, tuple[int, int, int]] = {}
for _i, _n in enumerate(CLASS_NAMES):
    _h = (_i * 0.618033988749895) % 1.0
    _s, _v = 0.55 + 0.35 * ((_i * 7) % 3) / 2, 0.95 - 0.25 * ((_i * 5) % 2)
    _k = int(_h * 6)
    _f = _h * 6 - _k
    _p, _q, _t = _v * (1 - _s), _v * (1 - _f * _s), _v * (1 - (1 - _f) * _s)
    _rgb = [(_v, _t, _p), (_q, _v, _p), (_p, _v, _t), (_p, _q, _v), (_t, _p, _v), (_v, _p, _q)][_k % 6]
    CLASS_DISPLAY_COLORS[_n] = tuple(int(round(255 * x)) for x in _rgb)

# Room types: furniture rules (class, min count, max count, probability the rule fires, placement hint)
# Placement hints: "wall", "floor", "mounted", "at:<anchor>" (companion of an anchor class),
# "on" (placed on an allowed supporting surface).
ROOM_TYPES: dict[str, dict] = {
    "bedroom": {
        "size": ((3.0, 3.0), (5.0, 4.5)),
        "rules": [("bed", 1, 1, 1.0, "wall"), ("nightstand", 1, 2, 0.9, "at:bed"), ("dresser", 1, 1, 0.6, "wall"),
                  ("cabinet", 1, 1, 0.3, "wall"), ("desk", 1, 1, 0.35, "wall"), ("chair", 1, 1, 0.35, "at:desk"),
                  ("lamp", 1, 2, 0.8, "on"), ("pillow", 1, 3, 0.95, "on"), ("picture", 1, 2, 0.6, "mounted"),
                  ("book", 1, 2, 0.5, "on"), ("plant", 1, 1, 0.4, "floor"), ("backpack", 1, 1, 0.4, "floor"),
                  ("trash can", 1, 1, 0.3, "floor"), ("clock", 1, 1, 0.3, "mounted"), ("curtain", 1, 2, 0.5, "mounted"),
                  ("laptop", 1, 1, 0.2, "on"), ("mat", 1, 1, 0.2, "floor")],
    },
    "office": {
        "size": ((3.0, 3.0), (6.0, 5.0)),
        "rules": [("desk", 1, 3, 1.0, "wall"), ("office chair", 1, 3, 1.0, "at:desk"), ("monitor", 1, 3, 0.9, "on"),
                  ("keyboard", 1, 2, 0.8, "on"), ("laptop", 1, 1, 0.3, "on"), ("computer tower", 1, 2, 0.5, "at:desk"),
                  ("bookshelf", 1, 2, 0.7, "wall"), ("cabinet", 1, 2, 0.6, "wall"), ("whiteboard", 1, 1, 0.5, "mounted"),
                  ("trash can", 1, 2, 0.7, "floor"), ("plant", 1, 2, 0.5, "floor"), ("box", 1, 2, 0.4, "floor"),
                  ("cup", 1, 2, 0.5, "on"), ("picture", 1, 1, 0.3, "mounted"), ("clock", 1, 1, 0.4, "mounted"),
                  ("shelf", 1, 1, 0.3, "mounted"), ("book", 1, 2, 0.4, "on")],
    },
    "kitchen": {
        "size": ((3.0, 3.0), (5.5, 4.5)),
        "rules": [("counter", 1, 2, 1.0, "wall"), ("refrigerator", 1, 1, 1.0, "wall"), ("stove", 1, 1, 0.9, "wall"),
                  ("kitchen cabinet", 1, 3, 0.9, "wall"), ("microwave", 1, 1, 0.7, "on"), ("table", 1, 1, 0.6, "floor"),
                  ("chair", 2, 4, 0.6, "at:table"), ("bottle", 1, 3, 0.7, "on"), ("cup", 1, 3, 0.6, "on"), ("bowl", 1, 2, 0.6, "on"),
                  ("trash can", 1, 1, 0.8, "floor"), ("plant", 1, 1, 0.3, "on"), ("clock", 1, 1, 0.4, "mounted"),
                  ("stool", 1, 2, 0.3, "floor"), ("radiator", 1, 1, 0.2, "wall")],
    },
    "bathroom": {
        "size": ((2.0, 2.0), (3.5, 3.2)),
        "rules": [("toilet", 1, 1, 1.0, "wall"), ("sink", 1, 2, 1.0, "wall"), ("bathtub", 1, 1, 0.6, "wall"),
                  ("mirror", 1, 1, 0.9, "mounted"), ("towel", 1, 2, 0.8, "mounted"), ("trash can", 1, 1, 0.6, "floor"),
                  ("mat", 1, 1, 0.5, "floor"), ("shelf", 1, 1, 0.4, "mounted"), ("bottle", 1, 2, 0.5, "on"),
                  ("cabinet", 1, 1, 0.3, "wall"), ("radiator", 1, 1, 0.3, "wall")],
    },
    "living room": {
        "size": ((3.5, 3.5), (7.0, 5.5)),
        "rules": [("couch", 1, 2, 1.0, "wall"), ("coffee table", 1, 1, 0.9, "at:couch"), ("armchair", 1, 2, 0.6, "floor"),
                  ("tv stand", 1, 1, 0.8, "wall"), ("tv", 1, 1, 0.9, "on"), ("bookshelf", 1, 1, 0.4, "wall"),
                  ("lamp", 1, 2, 0.6, "floor"), ("plant", 1, 2, 0.7, "floor"), ("picture", 1, 3, 0.7, "mounted"),
                  ("pillow", 1, 3, 0.7, "on"), ("curtain", 1, 2, 0.5, "mounted"), ("book", 1, 2, 0.4, "on"),
                  ("cup", 1, 2, 0.4, "on"), ("mat", 1, 1, 0.3, "floor"), ("clock", 1, 1, 0.3, "mounted"),
                  ("radiator", 1, 1, 0.2, "wall")],
    },
    "dining room": {
        "size": ((3.2, 3.2), (6.0, 5.0)),
        "rules": [("table", 1, 1, 1.0, "floor"), ("chair", 3, 6, 1.0, "at:table"), ("cabinet", 1, 2, 0.7, "wall"),
                  ("dresser", 1, 1, 0.3, "wall"), ("plant", 1, 2, 0.6, "floor"), ("picture", 1, 2, 0.7, "mounted"),
                  ("bowl", 1, 2, 0.7, "on"), ("bottle", 1, 2, 0.5, "on"), ("cup", 1, 3, 0.6, "on"),
                  ("lamp", 1, 1, 0.3, "floor"), ("clock", 1, 1, 0.4, "mounted"), ("curtain", 1, 2, 0.4, "mounted"),
                  ("stool", 1, 1, 0.2, "floor")],
    },
}
ROOM_TYPE_NAMES: tuple[str, ...] = tuple(ROOM_TYPES)

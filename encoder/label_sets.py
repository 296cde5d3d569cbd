"""Class-name lists of the benchmarks the downstream protocols are reported on.

Every list is written out here (no downloads); ``get_label_set(name)`` returns a copy.

- ``scannet20``: the 20 ScanNet v2 benchmark classes (NYU40 subset), in benchmark order.
- ``scannet200``: the 200 ScanNet200 classes in ``CLASS_LABELS_200`` order (ScanNet's
  ``BenchmarkScripts/ScanNet200/scannet200_constants.py``), with its head / common / tail split
  (``scannet200_split.py``: 66 / 68 / 66 classes) in :data:`SCANNET200_SPLIT`.
- ``scannetpp100``: the ScanNet++ top-100 semantic classes (the ScanNet++ toolkit's
  ``top100.txt`` order, as used by Pointcept / SceneSplat).
- ``matterport160``: the Matterport3D 160 classes of OpenScene's ``label_constants.py``
  (``MATTERPORT_LABELS_160``; spellings kept as there, e.g. "refridgerator", "excercise equipment").
- ``synth``: the synthetic world's classes (:data:`data.synth.CLASS_NAMES`).

Provenance: the ScanNet20 list was written from memory (it is short and well known). The
ScanNet200, ScanNet200 head/common/tail, ScanNet++ 100 and Matterport 160 lists were checked
entry by entry against public copies of those constants files (several independent copies of
each agreed); the module tests check the counts (20 / 200 / 100 / 160) and that the split
partitions ScanNet200. Real evaluations should still map label ids with the dataset's own files.
"""

from __future__ import annotations

SCANNET20 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)

SCANNET200 = (
    "wall", "chair", "floor", "table", "door", "couch", "cabinet", "shelf", "desk", "office chair",
    "bed", "pillow", "sink", "picture", "window", "toilet", "bookshelf", "monitor", "curtain", "book",
    "armchair", "coffee table", "box", "refrigerator", "lamp", "kitchen cabinet", "towel", "clothes", "tv",
    "nightstand", "counter", "dresser", "stool", "cushion", "plant", "ceiling", "bathtub", "end table",
    "dining table", "keyboard", "bag", "backpack", "toilet paper", "printer", "tv stand", "whiteboard",
    "blanket", "shower curtain", "trash can", "closet", "stairs", "microwave", "stove", "shoe",
    "computer tower", "bottle", "bin", "ottoman", "bench", "board", "washing machine", "mirror", "copier",
    "basket", "sofa chair", "file cabinet", "fan", "laptop", "shower", "paper", "person",
    "paper towel dispenser", "oven", "blinds", "rack", "plate", "blackboard", "piano", "suitcase", "rail",
    "radiator", "recycling bin", "container", "wardrobe", "soap dispenser", "telephone", "bucket", "clock",
    "stand", "light", "laundry basket", "pipe", "clothes dryer", "guitar", "toilet paper holder", "seat",
    "speaker", "column", "bicycle", "ladder", "bathroom stall", "shower wall", "cup", "jacket",
    "storage bin", "coffee maker", "dishwasher", "paper towel roll", "machine", "mat", "windowsill", "bar",
    "toaster", "bulletin board", "ironing board", "fireplace", "soap dish", "kitchen counter", "doorframe",
    "toilet paper dispenser", "mini fridge", "fire extinguisher", "ball", "hat", "shower curtain rod",
    "water cooler", "paper cutter", "tray", "shower door", "pillar", "ledge", "toaster oven", "mouse",
    "toilet seat cover dispenser", "furniture", "cart", "storage container", "scale", "tissue box",
    "light switch", "crate", "power outlet", "decoration", "sign", "projector", "closet door",
    "vacuum cleaner", "candle", "plunger", "stuffed animal", "headphones", "dish rack", "broom",
    "guitar case", "range hood", "dustpan", "hair dryer", "water bottle", "handicap bar", "purse", "vent",
    "shower floor", "water pitcher", "mailbox", "bowl", "paper bag", "alarm clock", "music stand",
    "projector screen", "divider", "laundry detergent", "bathroom counter", "object", "bathroom vanity",
    "closet wall", "laundry hamper", "bathroom stall door", "ceiling light", "trash bin", "dumbbell",
    "stair rail", "tube", "bathroom cabinet", "cd case", "closet rod", "coffee kettle", "structure",
    "shower head", "keyboard piano", "case of water bottles", "coat rack", "storage organizer",
    "folded chair", "fire alarm", "power strip", "calendar", "poster", "potted plant", "luggage", "mattress",
)

SCANNET200_HEAD = (
    "tv stand", "curtain", "blinds", "shower curtain", "bookshelf", "tv", "kitchen cabinet", "pillow", "lamp",
    "dresser", "monitor", "object", "ceiling", "board", "stove", "closet wall", "couch", "office chair",
    "kitchen counter", "shower", "closet", "doorframe", "sofa chair", "mailbox", "nightstand",
    "washing machine", "picture", "book", "sink", "recycling bin", "table", "backpack", "shower wall",
    "toilet", "copier", "counter", "stool", "refrigerator", "window", "file cabinet", "chair", "wall",
    "plant", "coffee table", "stairs", "armchair", "cabinet", "bathroom vanity", "bathroom stall", "mirror",
    "blackboard", "trash can", "stair rail", "box", "towel", "door", "clothes", "whiteboard", "bed", "floor",
    "bathtub", "desk", "wardrobe", "clothes dryer", "radiator", "shelf",
)
SCANNET200_COMMON = (
    "cushion", "end table", "dining table", "keyboard", "bag", "toilet paper", "printer", "blanket",
    "microwave", "shoe", "computer tower", "bottle", "bin", "ottoman", "bench", "basket", "fan", "laptop",
    "person", "paper towel dispenser", "oven", "rack", "piano", "suitcase", "rail", "container", "telephone",
    "stand", "light", "laundry basket", "pipe", "seat", "column", "bicycle", "ladder", "jacket",
    "storage bin", "coffee maker", "dishwasher", "machine", "mat", "windowsill", "bulletin board",
    "fireplace", "mini fridge", "water cooler", "shower door", "pillar", "ledge", "furniture", "cart",
    "decoration", "closet door", "vacuum cleaner", "dish rack", "range hood", "projector screen", "divider",
    "bathroom counter", "laundry hamper", "bathroom stall door", "ceiling light", "trash bin",
    "bathroom cabinet", "structure", "storage organizer", "potted plant", "mattress",
)
SCANNET200_TAIL = (
    "paper", "plate", "soap dispenser", "bucket", "clock", "guitar", "toilet paper holder", "speaker", "cup",
    "paper towel roll", "bar", "toaster", "ironing board", "soap dish", "toilet paper dispenser",
    "fire extinguisher", "ball", "hat", "shower curtain rod", "paper cutter", "tray", "toaster oven", "mouse",
    "toilet seat cover dispenser", "storage container", "scale", "tissue box", "light switch", "crate",
    "power outlet", "sign", "projector", "candle", "plunger", "stuffed animal", "headphones", "broom",
    "guitar case", "dustpan", "hair dryer", "water bottle", "handicap bar", "purse", "vent", "shower floor",
    "water pitcher", "bowl", "paper bag", "alarm clock", "music stand", "laundry detergent", "dumbbell",
    "tube", "cd case", "closet rod", "coffee kettle", "shower head", "keyboard piano",
    "case of water bottles", "coat rack", "folded chair", "fire alarm", "power strip", "calendar", "poster",
    "luggage",
)
SCANNET200_SPLIT: dict[str, str] = {
    **{n: "head" for n in SCANNET200_HEAD}, **{n: "common" for n in SCANNET200_COMMON},
    **{n: "tail" for n in SCANNET200_TAIL},
}

SCANNETPP100 = (
    "wall", "ceiling", "floor", "table", "door", "ceiling lamp", "cabinet", "blinds", "curtain", "chair",
    "storage cabinet", "office chair", "bookshelf", "whiteboard", "window", "box", "window frame", "monitor",
    "shelf", "doorframe", "pipe", "heater", "kitchen cabinet", "sofa", "windowsill", "bed", "shower wall",
    "trash can", "book", "plant", "blanket", "tv", "computer tower", "kitchen counter", "refrigerator",
    "jacket", "electrical duct", "sink", "bag", "picture", "pillow", "towel", "suitcase", "backpack", "crate",
    "keyboard", "rack", "toilet", "paper", "printer", "poster", "painting", "microwave", "board", "shoes",
    "socket", "bottle", "bucket", "cushion", "basket", "shoe rack", "telephone", "file folder", "cloth",
    "blind rail", "laptop", "plant pot", "exhaust fan", "cup", "coat hanger", "light switch", "speaker",
    "table lamp", "air vent", "clothes hanger", "kettle", "smoke detector", "container", "power strip",
    "slippers", "paper bag", "mouse", "cutting board", "toilet paper", "paper towel", "pot", "clock", "pan",
    "tap", "jar", "soap dispenser", "binder", "bowl", "tissue box", "whiteboard eraser", "toilet brush",
    "spray bottle", "headphones", "stapler", "marker",
)

MATTERPORT160 = (
    "wall", "door", "ceiling", "floor", "picture", "window", "chair", "pillow", "lamp", "cabinet", "curtain",
    "table", "plant", "mirror", "towel", "sink", "shelves", "sofa", "bed", "night stand", "toilet", "column",
    "banister", "stairs", "stool", "vase", "television", "pot", "desk", "box", "coffee table", "counter",
    "bench", "garbage bin", "fireplace", "clothes", "bathtub", "book", "air vent", "faucet", "photo",
    "toilet paper", "fan", "railing", "sculpture", "dresser", "rug", "ottoman", "bottle", "refridgerator",
    "bookshelf", "wardrobe", "pipe", "monitor", "stand", "drawer", "container", "light switch", "purse",
    "door way", "basket", "chandelier", "oven", "clock", "stove", "washing machine", "shower curtain",
    "fire alarm", "bin", "chest", "microwave", "blinds", "bowl", "tissue box", "plate", "tv stand", "shoe",
    "heater", "headboard", "bucket", "candle", "flower pot", "speaker", "furniture", "sign",
    "air conditioner", "fire extinguisher", "curtain rod", "floor mat", "printer", "telephone", "blanket",
    "handle", "shower head", "soap", "keyboard", "thermostat", "radiator", "kitchen island", "paper towel",
    "sheet", "glass", "dishwasher", "cup", "ladder", "garage door", "hat", "exit sign", "piano", "board",
    "rope", "ball", "excercise equipment", "hanger", "candlestick", "light", "scale", "bag", "laptop",
    "treadmill", "guitar", "display case", "toilet paper holder", "bar", "tray", "urn", "decorative plate",
    "pool table", "jacket", "bottle of soap", "water cooler", "utensil", "tea pot", "stuffed animal",
    "paper towel dispenser", "lamp shade", "car", "toilet brush", "doll", "drum", "whiteboard", "range hood",
    "candelabra", "toy", "foot rest", "soap dish", "placemat", "cleaner", "computer", "knob", "paper",
    "projector", "coat hanger", "case", "pan", "luggage", "trinket", "chimney", "person", "alarm",
)

LABEL_SET_NAMES = ("synth", "scannet20", "scannet200", "scannetpp100", "matterport160")


def _synth() -> tuple[str, ...]:
    from data.synth import CLASS_NAMES

    return tuple(CLASS_NAMES)


def get_label_set(name: str) -> list[str]:
    """Class names of a label set (see the module docstring); ``name`` is case-insensitive."""
    key = name.lower().replace("-", "").replace("_", "")
    table = {"synth": _synth, "scannet20": lambda: SCANNET20, "scannet200": lambda: SCANNET200,
             "scannetpp100": lambda: SCANNETPP100, "matterport160": lambda: MATTERPORT160}
    if key not in table:
        raise ValueError(f"label set {name!r}: unknown, expected one of {', '.join(LABEL_SET_NAMES)}")
    return list(table[key]())


def get_class_split(name: str) -> dict[str, str] | None:
    """Class name -> "head" / "common" / "tail" for label sets that define a split (ScanNet200), else None."""
    return dict(SCANNET200_SPLIT) if name.lower().replace("-", "").replace("_", "") == "scannet200" else None

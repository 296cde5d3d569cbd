"""Everything the Gradio app does, without Gradio: load the checkpoint, open scenes, answer, search, ground.

    service = ChorusAppService(AppConfig(checkpoint="checkpoints/demo"))
    view = service.open_demo(service.demo_rooms[0].key, progress)   # encodes once per scene
    for text in service.ask(view.key, "how many chairs are there?"):  # growing answer text, streamed
        print(text)
    hit = service.search(view.key, "lamp")                             # recoloured .splat + top-down heat map

``app.py`` only lays out components and wires them to these methods. Every
problem a user can cause or meet (a broken upload, a missing checkpoint, an
empty question, running out of memory) raises :class:`UserError`, whose
message is meant to be shown as it is; the server keeps running.

Checkpoint folder layout (``--checkpoint``; the demo recipe writes ``checkpoints/demo``)::

    <dir>/config.json, projector.safetensors, adapter/   ChorusQAModel.save_pretrained (or in <dir>/qa/)
    <dir>/encoder/                                       ChorusEncoder.save_pretrained (else config.encoder_ref)
    <dir>/heads/                                         MultiTeacherHeads.save_pretrained: the language projector
                                                          for search (else <encoder>/../heads)

The model is never replaced by random weights: when something is missing the
app says which file and how to make it (``make demo-checkpoint``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .demo import DEFAULT_DENSITY, DEMO_SEEDS, DemoRoom, prepare_demo_rooms

ProgressFn = Callable[[float, str], None]
REPO_ROOT = Path(__file__).resolve().parents[1]
MAKE_HINT = "make it with `make demo-checkpoint` (or pass `--checkpoint DIR` to a folder written by the Q&A recipe)"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class UserError(Exception):
    """A problem to show in the UI as it is (bad file, missing checkpoint, empty question, out of memory)."""


class CheckpointMissing(UserError):
    pass


@dataclass
class AppConfig:
    """Settings of the app (``python app.py --help`` lists the flags)."""

    checkpoint: str = "checkpoints/demo"   # Q&A checkpoint folder (layout in the module docstring)
    llm: str | None = None                  # override the checkpoint's LLM spec (alias, Hub id, folder, .gguf)
    scene: str | None = None                # a scene file to open at start (any format data.load_scene reads)
    max_upload_mb: float = 300.0            # largest accepted upload
    max_gaussians: int = 1_500_000          # largest scene encoded (the CPU encoder needs ~1 GB per 100k)
    demo_seeds: tuple[int, ...] = DEMO_SEEDS
    demo_density: float = DEFAULT_DENSITY
    max_new_tokens: int = 48
    device: str = "cpu"
    encoder_threads: int = 1                # torch threads while the spconv encoder runs (1: deterministic on CPU)
    render_heatmap: bool = True             # also render a top-down picture of each search (about 1-5 s on CPU)
    cache_dir: str | None = None            # default $CHORUS_CACHE or ~/.cache/chorus-qa

    def __post_init__(self):
        if self.max_upload_mb <= 0 or self.max_gaussians <= 0 or self.max_new_tokens <= 0:
            raise ValueError(f"AppConfig: max_upload_mb={self.max_upload_mb}, max_gaussians={self.max_gaussians} and "
                             f"max_new_tokens={self.max_new_tokens} must be > 0")
        if not self.demo_density > 0:
            raise ValueError(f"AppConfig.demo_density = {self.demo_density}: expected > 0")
        self.demo_seeds = tuple(int(s) for s in self.demo_seeds)

    @property
    def cache_root(self) -> Path:
        from adapters.llm import cache_root

        return Path(self.cache_dir).expanduser() if self.cache_dir else cache_root()


# ---------------------------------------------------------------------------------------------- checkpoint
@dataclass
class CheckpointFolders:
    qa: Path
    encoder: Path | None      # None: the model reads raw Gaussian attributes
    heads: Path | None        # None: no language projector, search is off


def _first_dir(candidates) -> Path | None:
    return next((p for p in candidates if p is not None and p.is_dir()), None)


def find_checkpoint(directory: str | os.PathLike) -> CheckpointFolders:
    """Locate the Q&A model, its encoder and the teacher heads under ``directory``; CheckpointMissing names what is absent."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise CheckpointMissing(f"Checkpoint folder `{root}` does not exist: {MAKE_HINT}.")
    qa = next((d for d in (root, root / "qa") if (d / "config.json").is_file() and (d / "projector.safetensors").is_file()), None)
    if qa is None:
        raise CheckpointMissing(f"`{root}` holds no Q&A model (`config.json` + `projector.safetensors`, here or in `qa/`): {MAKE_HINT}.")
    config = json.loads((qa / "config.json").read_text())
    ref = config.get("encoder_ref")
    if ref in (None, "raw"):
        encoder = None
    else:
        ref_path = Path(ref)
        encoder = _first_dir([root / "encoder", ref_path if ref_path.is_absolute() else None,
                              Path.cwd() / ref_path, REPO_ROOT / ref_path, qa / ref_path])
        if encoder is None or not (encoder / "config.json").is_file():
            raise CheckpointMissing(f"The Q&A model in `{qa}` needs the encoder `{ref}`, which is neither there nor in "
                                    f"`{root / 'encoder'}`: {MAKE_HINT}.")
    heads = _first_dir([root / "heads", encoder.parent / "heads" if encoder is not None else None])
    if heads is not None and not (heads / "config.json").is_file():
        heads = None
    return CheckpointFolders(qa, encoder, heads)


def _qa_folder_with_llm(qa: Path, llm: str, scratch: Path) -> Path:
    """A view of ``qa`` whose config names another LLM (symlinks to the weights; the checkpoint is not touched)."""
    view = scratch / "qa_llm_override"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    config = json.loads((qa / "config.json").read_text())
    config["llm"] = llm
    (view / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("projector.safetensors", "adapter"):
        if (qa / name).exists():
            os.symlink((qa / name).resolve(), view / name)
    return view


@dataclass
class LoadedModels:
    session: object                 # chorus_qa.ChatSession
    search: object | None           # chorus_qa.highlight.OpenVocabSearch, None without a language head
    folders: CheckpointFolders
    feature_cache: object | None
    description: str                # markdown: what was loaded
    notes: list[str] = field(default_factory=list)


def load_models(config: AppConfig) -> LoadedModels:
    """Q&A model + frozen encoder + language projector from ``config.checkpoint`` (CheckpointMissing if absent)."""
    from .feature_cache import FeatureCache, encoder_checkpoint_hash
    from .model import ChorusQAModel
    from .session import ChatSession

    folders = find_checkpoint(config.checkpoint)
    notes: list[str] = []
    qa_dir = folders.qa
    if config.llm:
        qa_dir = _qa_folder_with_llm(folders.qa, config.llm, config.cache_root / "app")
    try:
        model = ChorusQAModel.from_pretrained(qa_dir, device=config.device, cache_dir=None)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise CheckpointMissing(f"Could not load the Q&A model from `{folders.qa}`: {err}. {MAKE_HINT[0].upper() + MAKE_HINT[1:]}.") from err
    predictor, feature_cache = None, None
    if folders.encoder is not None:
        from encoder import ChorusEncoder, EncoderPredictor

        encoder = ChorusEncoder.from_pretrained(folders.encoder)
        for p in encoder.parameters():
            p.requires_grad_(False)
        predictor = EncoderPredictor(encoder, device=config.device)
        if predictor.out_dim != model.config.feature_dim:
            raise CheckpointMissing(f"The encoder in `{folders.encoder}` gives {predictor.out_dim}-D features but the Q&A model "
                                    f"in `{folders.qa}` expects {model.config.feature_dim}-D: they come from different runs. {MAKE_HINT}.")
        digest = encoder_checkpoint_hash(folders.encoder)
        if model.config.encoder_hash and model.config.encoder_hash != digest:
            notes.append(f"encoder `{folders.encoder}` differs from the one the Q&A model was trained with "
                         f"(hash {digest} != {model.config.encoder_hash})")
        feature_cache = FeatureCache(config.cache_root / "app_features", digest)
    segmenter = None
    if model.config.pooling == "objects":
        from .segments import make_segmenter

        try:
            segmenter = make_segmenter(model.config, str(folders.encoder) if folders.encoder else None,
                                       str(folders.heads) if folders.heads else None)
        except (ValueError, FileNotFoundError, OSError) as err:
            raise CheckpointMissing(f"The Q&A model in `{folders.qa}` reads one token per object, but its segmenter "
                                    f"could not be built: {err}. {MAKE_HINT[0].upper() + MAKE_HINT[1:]}.") from err
    session = ChatSession(model, predictor, feature_cache=feature_cache, max_new_tokens=config.max_new_tokens,
                          segmenter=segmenter)
    search = None
    if folders.heads is not None:
        from .highlight import OpenVocabSearch

        try:
            search = OpenVocabSearch.from_heads(folders.heads)
        except (ValueError, ImportError, FileNotFoundError, OSError) as err:
            notes.append(f"open-vocabulary search is off: {err}")
    elif folders.encoder is None:
        notes.append("open-vocabulary search is off: the model reads raw Gaussian attributes (no encoder, no language head)")
    else:
        notes.append(f"open-vocabulary search is off: no `heads/` folder beside `{folders.encoder}`")
    llm = model.config.llm
    description = (f"**Checkpoint** `{config.checkpoint}` · LLM `{llm}` ({model.config.llm_dtype}) · encoder "
                   f"`{folders.encoder if folders.encoder else 'raw Gaussian attributes'}` · "
                   f"{model.config.num_placeholders} scene tokens · search "
                   f"{'on (' + search.teacher_name + ' head)' if search else 'off'}")
    return LoadedModels(session, search, folders, feature_cache, description, notes)


# ---------------------------------------------------------------------------------------------- scenes
@dataclass
class OpenScene:
    """A scene the app has opened (and encoded when a model is loaded)."""

    key: str
    title: str
    scene: object                     # GaussianScene
    viewer_path: Path                 # .splat shown in gr.Model3D
    examples: list[str]
    language: torch.Tensor | None = None    # [N, D] unit language features (float16) for search
    encoded: bool = False
    encode_seconds: float | None = None


@dataclass
class SceneView:
    """What the UI shows after a scene is opened."""

    key: str
    title: str
    viewer_path: str
    examples: list[str]
    status: str                       # markdown
    demo_key: str | None = None       # the demo room's key when it is one


@dataclass
class SearchView:
    """What the UI shows after a search: the recoloured splat, an optional heat-map picture, a message."""

    viewer_path: str
    image: object | None              # [H, W, 3] uint8 or None
    message: str
    num_matches: int
    queries: list[str]


VIEWER_EYE_HEIGHT = 1.0   # metres above the floor (the viewer's camera sits a little above and behind this point)


def to_viewer_frame(scene):
    """The scene placed for gradio's Model3D viewer: y up, and the viewer's camera standing inside the room.

    gradio 6.31's viewer (Babylon.js) frames Gaussian splats from an empty bounding box: its orbit camera ends up
    near the origin, looking along -z and 15 degrees down, and ``camera_position`` is overridden by that framing.
    So the scene is moved instead: world (z up) -> viewer (y up) is (x, y, z) -> (x, z, -y), a -90 degree rotation
    about x applied to means and quaternions alike, after a shift that puts the origin at the horizontal centre,
    ``VIEWER_EYE_HEIGHT`` above the floor (1st percentile of z). The camera then stands in the room looking
    towards +y; dragging turns it, scrolling moves it.
    """
    import math

    from data import GaussianScene

    sample = scene.means.float()[:: max(1, len(scene) // 20000)]
    lo, hi = torch.quantile(sample, 0.01, dim=0), torch.quantile(sample, 0.99, dim=0)
    shift = torch.tensor([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] + VIEWER_EYE_HEIGHT])
    m = scene.means.float() - shift
    means = torch.stack([m[:, 0], m[:, 2], -m[:, 1]], 1)
    half = math.radians(-90.0) / 2
    rw, rx = math.cos(half), math.sin(half)          # r = (rw, rx, 0, 0); r * q (Hamilton product)
    w, x, y, z = scene.quats.float().unbind(1)
    quats = torch.stack([rw * w - rx * x, rw * x + rx * w, rw * y - rx * z, rw * z + rx * y], 1)
    quats = torch.where(quats[:, :1] < 0, -quats, quats)
    return GaussianScene(means=means, quats=quats, scales=scene.scales, opacities=scene.opacities, colors=scene.colors,
                         sh_rest=None, name=scene.name)


def _format_error(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 600 else text[:600] + " ..."


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower() or "can't allocate memory" in str(err).lower()


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ChorusAppService:
    """The app's state: models (or why they are missing), demo rooms, opened scenes, one compute lock.

    One lock serialises the encoder and the LLM (both are CPU-bound; on a 2-core machine running them side by
    side only slows both). Opened scenes are kept in an LRU of ``max_open_scenes``.
    """

    def __init__(self, config: AppConfig | None = None, load: bool = True, max_open_scenes: int = 8):
        self.config = config or AppConfig()
        self.max_open_scenes = max_open_scenes
        self.models: LoadedModels | None = None
        self.load_error: str | None = None
        self._scenes: OrderedDict[str, OpenScene] = OrderedDict()
        self._lock = threading.RLock()          # guards _scenes
        self._compute = threading.Lock()        # encoder / LLM
        self._files = self.config.cache_root / "app"
        self._files.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self.demo_rooms: list[DemoRoom] = prepare_demo_rooms(self.config.demo_seeds, self.config.demo_density,
                                                             self.config.cache_root / "demo")
        self.timings["demo_rooms_s"] = time.perf_counter() - t0
        if load:
            self.load()

    # ------------------------------------------------------------------ models
    def load(self) -> None:
        t0 = time.perf_counter()
        try:
            self.models = load_models(self.config)
            self.load_error = None
        except CheckpointMissing as err:
            self.models, self.load_error = None, str(err)
        self.timings["load_models_s"] = time.perf_counter() - t0

    @property
    def ready(self) -> bool:
        return self.models is not None

    def status_markdown(self) -> str:
        if self.models is None:
            return f"⚠️ **No model loaded.** {self.load_error} You can still look at the demo rooms."
        text = self.models.description
        if self.models.notes:
            text += "\n\n" + "\n".join(f"- note: {n}" for n in self.models.notes)
        return text

    def _require_models(self) -> LoadedModels:
        if self.models is None:
            raise UserError(f"No model is loaded, so I cannot answer. {self.load_error}")
        return self.models

    # ------------------------------------------------------------------ scenes
    def demo_choices(self) -> list[tuple[str, str]]:
        """(title, key) pairs for the scene picker."""
        return [(r.title, r.key) for r in self.demo_rooms]

    def demo_room(self, key: str) -> DemoRoom:
        for room in self.demo_rooms:
            if room.key == key or room.title == key:
                return room
        raise UserError(f"Unknown demo room {key!r}; choose one of {[r.key for r in self.demo_rooms]}.")

    def open_demo(self, key: str, progress: ProgressFn | None = None) -> SceneView:
        room = self.demo_room(key)
        scene = room.load()
        view = self._open(scene, room.title, self._viewer_file(scene, "room"), list(room.example_questions), progress)
        view.demo_key = room.key
        return view

    def open_file(self, path: str | os.PathLike, progress: ProgressFn | None = None) -> SceneView:
        """Open an uploaded scene (.ply, .splat, .npz, .zip of a SceneSplat folder); UserError when it cannot be used."""
        from data import SceneFormatError, load_scene, save_scene

        report = progress or (lambda f, d: None)
        if not path:
            raise UserError("No file was uploaded.")
        path = Path(path)
        name = path.name
        if not path.is_file():
            raise UserError(f"`{name}`: the upload did not arrive (no such file).")
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.config.max_upload_mb:
            raise UserError(f"`{name}` is {size_mb:.0f} MB; the limit is {self.config.max_upload_mb:.0f} MB.")
        if path.suffix.lower() not in (".ply", ".splat", ".npz", ".zip"):
            raise UserError(f"`{name}`: unsupported file type `{path.suffix or '(none)'}`. Upload a 3DGS `.ply`, "
                            f"a `.splat`, a point-cloud `.npz` (xyz + rgb) or a `.zip` of a SceneSplat folder.")
        report(0.0, f"reading {name}")
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scene = load_scene(path, name=_UNSAFE.sub("_", path.stem)[:40] or "upload")
        except SceneFormatError as err:
            problem = f"{err.field}: {err.problem}" if hasattr(err, "field") else str(err)
            raise UserError(f"`{name}` is not a scene I can read ({problem}).") from err
        except (OSError, ValueError) as err:
            raise UserError(f"`{name}` could not be read: {_format_error(err)}") from err
        except MemoryError as err:
            raise UserError(f"`{name}` is too large to load into memory.") from err
        if len(scene) > self.config.max_gaussians:
            raise UserError(f"`{name}` has {len(scene):,} Gaussians; this app encodes at most {self.config.max_gaussians:,} "
                            f"(start it with a larger --max-gaussians if the machine has the memory).")
        viewer = self._viewer_file(scene, "upload")
        return self._open(scene, f"{name} ({len(scene):,} Gaussians)", viewer, self._upload_examples(scene), progress)

    def _viewer_file(self, scene, kind: str) -> Path:
        """``.splat`` of ``scene`` in the viewer's frame (written once per scene content)."""
        from data import save_scene

        frame = f"c{VIEWER_EYE_HEIGHT:g}"  # a new placement never reuses old files
        path = self._files / "viewer" / f"{kind}_{_scene_digest(scene)}_{frame}.splat"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_scene(to_viewer_frame(scene), path)
        return path

    def _upload_examples(self, scene) -> list[str]:
        return ["what kind of room is this?", "how many chairs are in the room?", "what color is the table?",
                "is there a lamp in the room?"]

    def _open(self, scene, title: str, viewer: Path, examples: list[str], progress: ProgressFn | None) -> SceneView:
        report = progress or (lambda f, d: None)
        key = _scene_key(scene)
        with self._lock:
            opened = self._scenes.pop(key, None)
            if opened is None:
                opened = OpenScene(key, title, scene, viewer, examples)
            self._scenes[key] = opened
            while len(self._scenes) > self.max_open_scenes:
                self._scenes.popitem(last=False)
        status = f"**{title}**"
        if self.models is not None:
            self._encode(opened, report)
            status += f" · encoded in {opened.encode_seconds:.1f} s" if opened.encode_seconds else " · encoded (cached)"
            current = self.models.session.scene
            if current is not None and current.objects:  # the object tokens, as words: what the LLM is told
                from .session import inventory

                status += f"  \nThe model sees {inventory(current.objects)}"
        else:
            status += " · not encoded (no model loaded)"
        report(1.0, "ready")
        return SceneView(key, title, str(viewer), examples, status)

    def _encode(self, opened: OpenScene, report: ProgressFn) -> None:
        """Encoder + scene tokens + prefix KV cache (ChatSession.set_scene), and language features for search."""
        models = self._require_models()
        if opened.encoded:
            return
        t0 = time.perf_counter()
        with self._compute:
            try:
                cache = models.session.feature_cache
                from_cache = cache is not None and cache.path(opened.key).is_file()
                report(0.02, f"encoding {len(opened.scene):,} Gaussians (once per scene)")
                with _torch_threads(self.config.encoder_threads):
                    encoded = models.session.set_scene(opened.scene, key=opened.key,
                                                       progress=lambda f, d: report(0.05 + 0.8 * f, d))
                if models.search is not None:
                    report(0.9, "language features for search")
                    opened.language = models.search.language_features(encoded.features)
            except (RuntimeError, MemoryError) as err:
                if _is_oom(err):
                    raise UserError(f"Out of memory while encoding {len(opened.scene):,} Gaussians; try a smaller scene.") from err
                raise UserError(f"Encoding failed: {_format_error(err)}") from err
        opened.encoded = True
        opened.encode_seconds = None if from_cache else time.perf_counter() - t0

    def _opened(self, key: str | None) -> OpenScene:
        if not key:
            raise UserError("Choose a demo room or upload a scene first.")
        with self._lock:
            opened = self._scenes.get(key)
        if opened is None:
            raise UserError("That scene is no longer open (the app keeps the last few); pick it again.")
        return opened

    # ------------------------------------------------------------------ questions
    def ask(self, key: str | None, question: str) -> Iterator[str]:
        """The answer text so far, growing as tokens arrive (each item is the whole text up to now)."""
        question = (question or "").strip()
        if not question:
            raise UserError("The question is empty: type a question about the scene.")
        models = self._require_models()
        opened = self._opened(key)
        if not opened.encoded:
            self._encode(opened, lambda f, d: None)
        pieces: queue.Queue = queue.Queue()
        done = object()

        def generate():  # one thread runs the whole answer: the session's lock is taken and released on one thread
            try:
                with self._compute:
                    models.session.set_scene(opened.scene, key=opened.key)
                    for piece in models.session.ask(question, max_new_tokens=self.config.max_new_tokens):
                        pieces.put(piece)
            except BaseException as err:  # handed to the caller
                pieces.put(err)
            finally:
                pieces.put(done)

        threading.Thread(target=generate, name="chorus-answer", daemon=True).start()
        text = ""
        while True:
            try:
                item = pieces.get(timeout=600)
            except queue.Empty:
                raise UserError("The model took more than 10 minutes to answer; the server may be overloaded.") from None
            if item is done:
                break
            if isinstance(item, BaseException):
                if _is_oom(item):
                    raise UserError("Out of memory while answering.") from item
                raise UserError(f"Answering failed: {_format_error(item)}") from item
            text += item
            yield text

    def answer(self, key: str | None, question: str) -> str:
        """The whole answer."""
        text = ""
        for text in self.ask(key, question):
            pass
        return text

    # ------------------------------------------------------------------ search and grounding
    def search(self, key: str | None, query: str | list[str]) -> SearchView:
        """Highlight the Gaussians matching ``query`` (or any of several queries)."""
        queries = [query] if isinstance(query, str) else list(query)
        queries = [q.strip() for q in queries if q and q.strip()]
        if not queries:
            raise UserError("The search box is empty: type what to look for, e.g. `lamp`.")
        models = self._require_models()
        if models.search is None:
            raise UserError("Open-vocabulary search needs the encoder's language head, which this checkpoint lacks "
                            f"({'; '.join(models.notes) or 'no heads/ folder'}).")
        opened = self._opened(key)
        if opened.language is None:
            self._encode(opened, lambda f, d: None)
        from .highlight import recolored_scene, render_overview

        with self._compute:
            results = [models.search.search(opened.language, q) for q in queries]
        score = torch.stack([r.relevancy for r in results]).max(0).values
        mask = torch.stack([r.mask for r in results]).any(0)
        threshold = models.search.config.threshold
        recolored = recolored_scene(opened.scene, score, mask, threshold)
        digest = hashlib.sha1(("|".join(queries) + opened.key).encode()).hexdigest()[:12]
        path = self._files / "highlights" / f"{digest}.splat"
        path.parent.mkdir(parents=True, exist_ok=True)
        from data import save_scene

        save_scene(to_viewer_frame(recolored), path)
        _prune(path.parent, keep=64)
        image = None
        if self.config.render_heatmap:
            with self._compute:
                image = render_overview(recolored)
        n = int(mask.sum())
        per_query = ", ".join(f"`{r.query}`: {r.num_matches:,}" for r in results)
        if n == 0:
            message = f"No Gaussians match {' / '.join(queries)} (relevancy > {threshold}); try another word."
        else:
            message = f"Highlighted {n:,} of {len(mask):,} Gaussians ({per_query})."
        return SearchView(str(path), image, message, n, queries)

    def ground(self, key: str | None, question: str, answer: str) -> list[str]:
        """Object names an answer refers to: those it names, else those the question names (world vocabulary)."""
        from .highlight import object_mentions, object_vocabulary

        opened = self._opened(key)
        vocabulary = object_vocabulary(getattr(opened.scene, "class_names", None))
        return object_mentions(answer, vocabulary) or object_mentions(question, vocabulary)


def _scene_digest(scene) -> str:
    digest = hashlib.sha1()
    for t in (scene.means, scene.colors, scene.opacities):
        digest.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _scene_key(scene) -> str:
    return _UNSAFE.sub("_", f"{scene.name}-{len(scene)}-{_scene_digest(scene)}")


def _prune(folder: Path, keep: int) -> None:
    files = sorted(folder.glob("*.splat"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)

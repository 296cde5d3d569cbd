"""Question-answer readers: ScanQA, SQA3D and the synthetic Q&A set, all into one `QAExample`.

Layout under a data folder ``DATA`` (the synthetic world writes the same files,
with a ``type`` field on every question)::

    DATA/qa/ScanQA_v1.0_{split}.json                              # ScanQA
    DATA/qa/SQA3D/v1_balanced_questions_{split}_scannetv2.json      # SQA3D questions
    DATA/qa/SQA3D/v1_balanced_sqa_annotations_{split}_scannetv2.json  # SQA3D answers
    DATA/scenes/<scene_id>/                                         # one scene per id

ScanQA entries: ``{scene_id, question_id, question, answers, object_ids,
object_names}``; the test files have no ``answers`` (and ``test_wo_obj`` no
objects either), which reads as an empty list. SQA3D questions and annotations
are joined on ``question_id``; the annotation carries the answers, the agent's
position ``{x,y,z}`` and rotation quaternion ``{_x,_y,_z,_w}``.

Any malformed file raises `QADataError` naming the file, the entry index and
the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

QAKind = Literal["auto", "synth", "scanqa", "sqa3d"]
POSITION_ORIGINS = ("scene", "box_centre")
SCANQA_TEMPLATE = "ScanQA_v1.0_{split}.json"
SQA3D_QUESTIONS_TEMPLATE = "v1_balanced_questions_{split}_scannetv2.json"
SQA3D_ANNOTATIONS_TEMPLATE = "v1_balanced_sqa_annotations_{split}_scannetv2.json"
SCENE_FILE_SUFFIXES = (".ply", ".splat", ".npz")


class QADataError(ValueError):
    """A Q&A file is malformed. The message names the file, the entry index (if any) and the field."""

    def __init__(self, path, field: str, problem: str, index: int | None = None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        self.index = index
        where = f"entry {index}: " if index is not None else ""
        super().__init__(f"{self.path}: {where}field '{field}': {problem}")


@dataclass
class QAExample:
    """One question about one scene.

    scene_id      name of the scene folder under ``DATA/scenes``
    question_id   unique id within a split (string; SQA3D's integer ids are stringified)
    question      the question text
    answers       reference answers; empty for test splits without answers
    object_ids    ScanQA ids of the objects the question is about (may be empty)
    object_names  their class names (may be empty)
    type          question type, from the file or inferred from the first words
    situation     SQA3D situation text (None for ScanQA)
    position      SQA3D agent position [x, y, z] (None for ScanQA), in the frame ``position_origin`` names
    rotation      SQA3D agent rotation quaternion [x, y, z, w] (None for ScanQA)
    source        which reader produced it: "scanqa", "sqa3d"
    position_origin  "box_centre": ``position`` is relative to the centre of the scene's bounding box, as in the
                  SQA3D release (its loader adds the scan's (max + min) / 2); "scene": scene coordinates (the
                  synthetic world's files, or any SQA3D-style file with ``"position_origin": "scene"`` at the top)
    """

    scene_id: str
    question_id: str
    question: str
    answers: list[str]
    object_ids: list[int] = field(default_factory=list)
    object_names: list[str] = field(default_factory=list)
    type: str = "unknown"
    situation: str | None = None
    position: list[float] | None = None
    rotation: list[float] | None = None
    source: str = "scanqa"
    position_origin: str = "scene"

    def __post_init__(self):
        if not isinstance(self.scene_id, str) or not self.scene_id:
            raise ValueError(f"QAExample.scene_id must be a non-empty string, got {self.scene_id!r}")
        if not isinstance(self.question, str):
            raise ValueError(f"QAExample.question must be a string, got {type(self.question).__name__}")
        if self.position is not None and len(self.position) != 3:
            raise ValueError(f"QAExample.position must have 3 values, got {self.position!r}")
        if self.rotation is not None and len(self.rotation) != 4:
            raise ValueError(f"QAExample.rotation must have 4 values (x, y, z, w), got {self.rotation!r}")
        if self.position_origin not in POSITION_ORIGINS:
            raise ValueError(f"QAExample.position_origin must be one of {POSITION_ORIGINS}, got {self.position_origin!r}")


# ----------------------------------------------------------------------------- question types

# Checked in order: the longest prefix wins ("what color" before "what").
_SCANQA_TYPE_PREFIXES = (
    ("what color", "what color"),
    ("what colour", "what color"),
    ("how many", "how many"),
    ("what", "what"),
    ("where", "where"),
    ("which", "which"),
    ("is", "is"),
    ("are", "is"),
)
_SQA3D_TYPE_PREFIXES = (("what", "what"), ("is", "is"), ("how", "how"), ("can", "can"), ("which", "which"))


def _first_words_type(question: str, prefixes) -> str:
    words = question.lower().replace("?", " ").split()
    for prefix, name in prefixes:
        n = len(prefix.split())
        if words[:n] == prefix.split():
            return name
    return "other"


def infer_scanqa_type(question: str) -> str:
    """ScanQA-style question type from the first words: what color / how many / what / where / which / is / other."""
    return _first_words_type(question, _SCANQA_TYPE_PREFIXES)


def infer_sqa3d_type(question: str) -> str:
    """SQA3D-style question type from the first word: what / is / how / can / which / other."""
    return _first_words_type(question, _SQA3D_TYPE_PREFIXES)


# ----------------------------------------------------------------------------- field checks


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Q&A file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise QADataError(path, "<json>", f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e


def _get(entry: Any, key: str, kind, path: Path, index: int, required: bool = True, default=None):
    """Field `key` of a JSON object, checked against type(s) `kind`."""
    if not isinstance(entry, dict):
        raise QADataError(path, "<entry>", f"expected a JSON object, got {type(entry).__name__}", index)
    if key not in entry or entry[key] is None:
        if required:
            raise QADataError(path, key, "missing", index)
        return default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise QADataError(path, key, f"expected {names}, got {type(value).__name__} {value!r:.80}", index)
    return value


def _str_list(entry, key, path, index, required=False) -> list[str]:
    values = _get(entry, key, list, path, index, required=required, default=[])
    for v in values:
        if not isinstance(v, str):
            raise QADataError(path, key, f"expected a list of strings, found {type(v).__name__} {v!r:.40}", index)
    return list(values)


def _int_list(entry, key, path, index) -> list[int]:
    values = _get(entry, key, list, path, index, required=False, default=[])
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise QADataError(path, key, f"expected a list of integers, found {type(v).__name__} {v!r:.40}", index)
    return list(values)


def _id(entry, key, path, index) -> str:
    return str(_get(entry, key, (str, int), path, index))


def _coords(entry, key, names: tuple[str, ...], path, index) -> list[float] | None:
    value = _get(entry, key, dict, path, index, required=False)
    if value is None:
        return None
    out = []
    for name in names:
        v = value.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise QADataError(path, f"{key}.{name}", f"expected a number, got {v!r:.40}", index)
        out.append(float(v))
    return out


# ----------------------------------------------------------------------------- readers


def load_scanqa(path) -> list[QAExample]:
    """Read a ScanQA_v1.0_{train,val,test_w_obj,test_wo_obj}.json file (a JSON list of questions).

    A ``type`` field, when present (the synthetic set writes one), is kept;
    otherwise the type is inferred from the first words of the question.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise QADataError(path, "<root>", f"expected a JSON list of questions, got {type(data).__name__}")
    examples = []
    for i, entry in enumerate(data):
        question = _get(entry, "question", str, path, i)
        qtype = _get(entry, "type", str, path, i, required=False) or infer_scanqa_type(question)
        examples.append(
            QAExample(
                scene_id=_get(entry, "scene_id", str, path, i),
                question_id=_id(entry, "question_id", path, i),
                question=question,
                answers=_str_list(entry, "answers", path, i),
                object_ids=_int_list(entry, "object_ids", path, i),
                object_names=_str_list(entry, "object_names", path, i),
                type=qtype,
                source="scanqa",
            )
        )
    _check_unique_ids(examples, path)
    return examples


def load_sqa3d(questions_path, annotations_path=None) -> list[QAExample]:
    """Read SQA3D questions and join the annotations (answers, position, rotation) on question_id.

    questions:   {"questions": [{question_id, scene_id, situation, alternative_situation, question}]}
    annotations: {"annotations": [{question_id, scene_id, answers: [{answer, answer_id}],
                                   position: {x, y, z}, rotation: {_x, _y, _z, _w}, question_type}]}
    Optional ``object_ids`` / ``object_names`` on a question (the synthetic set writes them) are kept.
    Without an annotations file (``None``) the answers are empty. The type comes
    from ``type`` (question or annotation) or a string ``question_type``, else
    from the first word of the question.

    Positions: the SQA3D release gives them relative to the centre of the scan's bounding box (``position_origin``
    "box_centre"; the situated tokens add the centre of the scene's box, ``scene_tokens.scene_box_centre``). The
    synthetic world's files (``"data_type": "synth"``) and files with ``"position_origin": "scene"`` at the top
    hold scene coordinates.
    """
    questions_path = Path(questions_path)
    q_root = _read_json(questions_path)
    q_list = _get(q_root, "questions", list, questions_path, None) if isinstance(q_root, dict) else None
    if q_list is None:
        raise QADataError(questions_path, "questions", f"expected an object with a 'questions' list, got {type(q_root).__name__}")

    annotations: dict[str, tuple[int, dict]] = {}
    origin = "scene"
    if annotations_path is not None:
        annotations_path = Path(annotations_path)
        a_root = _read_json(annotations_path)
        if not isinstance(a_root, dict):
            raise QADataError(annotations_path, "annotations", f"expected an object with an 'annotations' list, got {type(a_root).__name__}")
        origin = sqa3d_position_origin(a_root, annotations_path)
        for j, ann in enumerate(_get(a_root, "annotations", list, annotations_path, None)):
            qid = _id(ann, "question_id", annotations_path, j)
            if qid in annotations:
                raise QADataError(annotations_path, "question_id", f"duplicate id {qid!r} (also entry {annotations[qid][0]})", j)
            annotations[qid] = (j, ann)

    examples = []
    for i, entry in enumerate(q_list):
        qid = _id(entry, "question_id", questions_path, i)
        scene_id = _get(entry, "scene_id", str, questions_path, i)
        question = _get(entry, "question", str, questions_path, i)
        qtype = _get(entry, "type", str, questions_path, i, required=False)
        answers: list[str] = []
        position = rotation = None
        if annotations_path is not None:
            if qid not in annotations:
                raise QADataError(annotations_path, "question_id", f"no annotation for question_id {qid!r} of {questions_path.name} entry {i}")
            j, ann = annotations[qid]
            ann_scene = _get(ann, "scene_id", str, annotations_path, j, required=False)
            if ann_scene is not None and ann_scene != scene_id:
                raise QADataError(annotations_path, "scene_id", f"{ann_scene!r} differs from the question's scene_id {scene_id!r}", j)
            for k, a in enumerate(_get(ann, "answers", list, annotations_path, j, required=False, default=[])):
                answers.append(_get(a, "answer", str, annotations_path, j) if isinstance(a, dict) else _bad_answer(annotations_path, j, k, a))
            position = _coords(ann, "position", ("x", "y", "z"), annotations_path, j)
            rotation = _coords(ann, "rotation", ("_x", "_y", "_z", "_w"), annotations_path, j)
            if qtype is None:
                qtype = _get(ann, "type", str, annotations_path, j, required=False)
            if qtype is None and isinstance(ann.get("question_type"), str):
                qtype = ann["question_type"]
        examples.append(
            QAExample(
                scene_id=scene_id,
                question_id=qid,
                question=question,
                answers=answers,
                object_ids=_int_list(entry, "object_ids", questions_path, i),
                object_names=_str_list(entry, "object_names", questions_path, i),
                type=qtype or infer_sqa3d_type(question),
                situation=_get(entry, "situation", str, questions_path, i, required=False),
                position=position,
                rotation=rotation,
                source="sqa3d",
                position_origin=origin,
            )
        )
    _check_unique_ids(examples, questions_path)
    return examples


def sqa3d_position_origin(root: dict, path) -> str:
    """The frame of an SQA3D-style annotations file's positions (see `load_sqa3d`): its top-level
    ``position_origin`` if present, "scene" for the synthetic world's files, else SQA3D's "box_centre"."""
    origin = root.get("position_origin")
    if origin is None:
        return "scene" if root.get("data_type") == "synth" else "box_centre"
    if origin not in POSITION_ORIGINS:
        raise QADataError(path, "position_origin", f"expected one of {POSITION_ORIGINS}, got {origin!r}")
    return origin


def _bad_answer(path, index, k, value):
    raise QADataError(path, f"answers[{k}]", f"expected an object {{answer, answer_id}}, got {value!r:.40}", index)


def _check_unique_ids(examples: list[QAExample], path) -> None:
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.question_id in seen:
            raise QADataError(path, "question_id", f"duplicate id {ex.question_id!r} (also entry {seen[ex.question_id]})", i)
        seen[ex.question_id] = i


# ----------------------------------------------------------------------------- layout


def qa_split_paths(data_dir, split: str) -> dict[str, Path]:
    """The three file paths a split may use (they need not exist)."""
    qa = Path(data_dir) / "qa"
    return {
        "scanqa": qa / SCANQA_TEMPLATE.format(split=split),
        "sqa3d_questions": qa / "SQA3D" / SQA3D_QUESTIONS_TEMPLATE.format(split=split),
        "sqa3d_annotations": qa / "SQA3D" / SQA3D_ANNOTATIONS_TEMPLATE.format(split=split),
    }


def load_qa_split(data_dir, split: str, kind: QAKind = "auto") -> list[QAExample]:
    """All questions of `split` under ``data_dir/qa``.

    kind="scanqa" / "sqa3d" reads that format only; "auto" reads every format
    present (ScanQA first, then SQA3D) and checks that question ids do not
    collide; "synth" is "auto" plus a check that every question carries an
    explicit ``type`` (the synthetic world always writes one).
    """
    if kind not in ("auto", "synth", "scanqa", "sqa3d"):
        raise ValueError(f"kind must be one of auto, synth, scanqa, sqa3d; got {kind!r}")
    paths = qa_split_paths(data_dir, split)
    has_scanqa = paths["scanqa"].is_file()
    has_sqa3d = paths["sqa3d_questions"].is_file()
    want_scanqa = kind == "scanqa" or (kind in ("auto", "synth") and has_scanqa)
    want_sqa3d = kind == "sqa3d" or (kind in ("auto", "synth") and has_sqa3d)
    if not (want_scanqa or want_sqa3d):
        raise FileNotFoundError(
            f"no Q&A files for split {split!r} under {Path(data_dir) / 'qa'}: expected "
            f"{paths['scanqa'].name} or SQA3D/{paths['sqa3d_questions'].name}"
        )
    examples: list[QAExample] = []
    if want_scanqa:
        examples += load_scanqa(paths["scanqa"])
    if want_sqa3d:
        ann = paths["sqa3d_annotations"] if paths["sqa3d_annotations"].is_file() else None
        examples += load_sqa3d(paths["sqa3d_questions"], ann)
    if want_scanqa and want_sqa3d:
        scanqa_ids = {ex.question_id for ex in examples if ex.source == "scanqa"}
        clash = sorted(ex.question_id for ex in examples if ex.source == "sqa3d" and ex.question_id in scanqa_ids)
        if clash:
            raise QADataError(paths["sqa3d_questions"], "question_id", f"ids also used in {paths['scanqa'].name}: {clash[:5]}; pass kind='scanqa' or 'sqa3d'")
    if kind == "synth":
        _check_synth_types(paths, want_scanqa, want_sqa3d)
    return examples


def _check_synth_types(paths, want_scanqa, want_sqa3d) -> None:
    """The synthetic set must state every type; inferred types would hide a generator bug."""
    if want_scanqa:
        for i, entry in enumerate(_read_json(paths["scanqa"])):
            if "type" not in entry:
                raise QADataError(paths["scanqa"], "type", "missing (synthetic questions must carry a type)", i)
    if want_sqa3d:
        q_root = _read_json(paths["sqa3d_questions"])
        typed = set()
        if paths["sqa3d_annotations"].is_file():
            typed = {str(a.get("question_id")) for a in _read_json(paths["sqa3d_annotations"])["annotations"]
                     if "type" in a or isinstance(a.get("question_type"), str)}
        for i, entry in enumerate(q_root["questions"]):
            if "type" not in entry and str(entry.get("question_id")) not in typed:
                raise QADataError(paths["sqa3d_questions"], "type", "missing (synthetic questions must carry a type)", i)


def scene_dir(data_dir, scene_id: str) -> Path:
    """``data_dir/scenes/<scene_id>``: a SceneSplat folder, or a single scene file ``<scene_id>.ply|.splat|.npz``."""
    scenes = Path(data_dir) / "scenes"
    folder = scenes / scene_id
    if folder.is_dir():
        return folder
    for suffix in SCENE_FILE_SUFFIXES:
        candidate = scenes / f"{scene_id}{suffix}"
        if candidate.is_file():
            return candidate
    if not scenes.is_dir():
        raise FileNotFoundError(f"scene {scene_id!r}: folder {scenes} does not exist (expected DATA/scenes/<scene_id>/)")
    count = sum(1 for _ in scenes.iterdir())
    raise FileNotFoundError(
        f"scene {scene_id!r}: {folder} not found ({count} entries in {scenes}); "
        f"expected a folder or {scene_id}{{{','.join(SCENE_FILE_SUFFIXES)}}}"
    )

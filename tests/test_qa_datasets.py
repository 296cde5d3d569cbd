"""ScanQA / SQA3D / synthetic Q&A readers on small hand-written files."""

import json

import pytest

from chorus_qa.datasets import (
    QADataError,
    QAExample,
    infer_scanqa_type,
    infer_sqa3d_type,
    load_qa_split,
    load_scanqa,
    load_sqa3d,
    scene_dir,
)

SCANQA_VAL = [
    {
        "answers": ["brown cabinet with tv sitting in it"],
        "object_ids": [8],
        "object_names": ["cabinet"],
        "question": "What is in the right corner of room by curtains?",
        "question_id": "val-scene0011-0",
        "scene_id": "scene0011_00",
    },
    {
        "answers": ["white", "white color"],
        "object_ids": [3, 4],
        "object_names": ["chair", "chair"],
        "question": "What color are the chairs?",
        "question_id": "val-scene0011-1",
        "scene_id": "scene0011_00",
    },
]
SCANQA_TEST_WO_OBJ = [
    {"question": "How many pillows are on the bed?", "question_id": "test-scene0707-3", "scene_id": "scene0707_00"}
]
SQA3D_QUESTIONS = {
    "info": {},
    "questions": [
        {
            "question_id": 220602000000,
            "scene_id": "scene0380_00",
            "situation": "I am facing a window and there is a desk on my right.",
            "alternative_situation": ["A desk is on my right."],
            "question": "What color is the desk to my right?",
        },
        {
            "question_id": 220602000001,
            "scene_id": "scene0380_00",
            "situation": "I am sitting on the bed.",
            "alternative_situation": [],
            "question": "Is the door open?",
        },
    ],
}
SQA3D_ANNOTATIONS = {
    "annotations": [
        # Reverse order: the join must go by question_id, not by position.
        {
            "question_id": 220602000001,
            "scene_id": "scene0380_00",
            "answers": [{"answer": "no", "answer_id": 1}],
            "position": {"x": 1.0, "y": 2.0, "z": 0.0},
            "rotation": {"_x": 0.0, "_y": 0.0, "_z": 0.7071, "_w": 0.7071},
            "answer_type": "yes/no",
        },
        {
            "question_id": 220602000000,
            "scene_id": "scene0380_00",
            "answers": [{"answer": "brown", "answer_id": 1}],
            "position": {"x": -0.5, "y": 0.25, "z": 0.0},
            "rotation": {"_x": 0.0, "_y": 0.0, "_z": 0.0, "_w": 1.0},
        },
    ]
}


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def test_scanqa_reads_fields_and_infers_types(tmp_path):
    examples = load_scanqa(write(tmp_path / "ScanQA_v1.0_val.json", SCANQA_VAL))
    assert [e.question_id for e in examples] == ["val-scene0011-0", "val-scene0011-1"]
    assert examples[1].answers == ["white", "white color"]
    assert examples[1].object_ids == [3, 4] and examples[1].object_names == ["chair", "chair"]
    assert [e.type for e in examples] == ["what", "what color"]
    assert examples[0].situation is None and examples[0].position is None and examples[0].source == "scanqa"


def test_scanqa_test_split_without_answers_or_objects(tmp_path):
    (ex,) = load_scanqa(write(tmp_path / "ScanQA_v1.0_test_wo_obj.json", SCANQA_TEST_WO_OBJ))
    assert ex.answers == [] and ex.object_ids == [] and ex.object_names == []
    assert ex.type == "how many"


def test_scanqa_keeps_explicit_type(tmp_path):
    data = [dict(SCANQA_VAL[0], type="spatial")]
    (ex,) = load_scanqa(write(tmp_path / "q.json", data))
    assert ex.type == "spatial"


@pytest.mark.parametrize(
    "question, scanqa_type, sqa3d_type",
    [
        ("What color is the sofa?", "what color", "what"),
        ("what is under the table", "what", "what"),
        ("Where is the lamp?", "where", "other"),
        ("How many chairs are there?", "how many", "how"),
        ("Which side of the bed is the lamp on?", "which", "which"),
        ("Is the window open?", "is", "is"),
        ("Can I see the door?", "other", "can"),
        ("Whatever", "other", "other"),
    ],
)
def test_question_type_inference(question, scanqa_type, sqa3d_type):
    assert infer_scanqa_type(question) == scanqa_type
    assert infer_sqa3d_type(question) == sqa3d_type


def test_sqa3d_join_on_question_id(tmp_path):
    q = write(tmp_path / "q.json", SQA3D_QUESTIONS)
    a = write(tmp_path / "a.json", SQA3D_ANNOTATIONS)
    first, second = load_sqa3d(q, a)
    assert first.question_id == "220602000000" and first.answers == ["brown"]
    assert first.situation.startswith("I am facing a window")
    assert first.position == [-0.5, 0.25, 0.0] and first.rotation == [0.0, 0.0, 0.0, 1.0]
    assert second.answers == ["no"] and second.rotation == pytest.approx([0.0, 0.0, 0.7071, 0.7071])
    assert (first.type, second.type) == ("what", "is")
    assert first.source == second.source == "sqa3d"


def test_sqa3d_without_annotations_has_no_answers(tmp_path):
    examples = load_sqa3d(write(tmp_path / "q.json", SQA3D_QUESTIONS), None)
    assert all(e.answers == [] and e.position is None for e in examples)


def test_sqa3d_missing_annotation_names_the_question(tmp_path):
    ann = {"annotations": SQA3D_ANNOTATIONS["annotations"][:1]}
    with pytest.raises(QADataError, match=r"a\.json.*question_id.*220602000000"):
        load_sqa3d(write(tmp_path / "q.json", SQA3D_QUESTIONS), write(tmp_path / "a.json", ann))


def test_sqa3d_scene_mismatch(tmp_path):
    ann = json.loads(json.dumps(SQA3D_ANNOTATIONS))
    ann["annotations"][1]["scene_id"] = "scene9999_00"
    with pytest.raises(QADataError, match=r"entry 1: field 'scene_id'"):
        load_sqa3d(write(tmp_path / "q.json", SQA3D_QUESTIONS), write(tmp_path / "a.json", ann))


@pytest.mark.parametrize(
    "entries, field, index",
    [
        ([SCANQA_VAL[0], {k: v for k, v in SCANQA_VAL[1].items() if k != "question"}], "question", 1),
        ([dict(SCANQA_VAL[0], answers="white")], "answers", 0),
        ([dict(SCANQA_VAL[0], object_ids=["8"])], "object_ids", 0),
        ([SCANQA_VAL[0], SCANQA_VAL[0]], "question_id", 1),
        ([SCANQA_VAL[0], "not an object"], "<entry>", 1),
    ],
)
def test_malformed_scanqa_names_file_entry_and_field(tmp_path, entries, field, index):
    path = write(tmp_path / "ScanQA_v1.0_val.json", entries)
    with pytest.raises(QADataError) as info:
        load_scanqa(path)
    err = info.value
    assert err.field == field and err.index == index and err.path == str(path)
    assert "ScanQA_v1.0_val.json" in str(err) and f"'{field}'" in str(err) and f"entry {index}" in str(err)


def test_invalid_json_and_wrong_root(tmp_path):
    with pytest.raises(QADataError, match=r"bad\.json.*not valid JSON"):
        load_scanqa(write(tmp_path / "bad.json", "[{\"question\": "))
    with pytest.raises(QADataError, match=r"root.*JSON list"):
        load_scanqa(write(tmp_path / "dict.json", {"questions": []}))
    with pytest.raises(QADataError, match=r"position\.y"):
        ann = json.loads(json.dumps(SQA3D_ANNOTATIONS))
        ann["annotations"][0]["position"]["y"] = "up"
        load_sqa3d(write(tmp_path / "q.json", SQA3D_QUESTIONS), write(tmp_path / "a.json", ann))


def test_load_qa_split_layout_and_kinds(tmp_path):
    write(tmp_path / "qa" / "ScanQA_v1.0_val.json", SCANQA_VAL)
    write(tmp_path / "qa" / "SQA3D" / "v1_balanced_questions_val_scannetv2.json", SQA3D_QUESTIONS)
    write(tmp_path / "qa" / "SQA3D" / "v1_balanced_sqa_annotations_val_scannetv2.json", SQA3D_ANNOTATIONS)
    assert len(load_qa_split(tmp_path, "val", "scanqa")) == 2
    assert {e.source for e in load_qa_split(tmp_path, "val", "sqa3d")} == {"sqa3d"}
    both = load_qa_split(tmp_path, "val")
    assert [e.source for e in both] == ["scanqa"] * 2 + ["sqa3d"] * 2
    with pytest.raises(QADataError, match="must carry a type"):
        load_qa_split(tmp_path, "val", "synth")
    with pytest.raises(FileNotFoundError, match="split 'train'"):
        load_qa_split(tmp_path, "train")
    with pytest.raises(ValueError, match="kind"):
        load_qa_split(tmp_path, "val", "bogus")


def test_synth_split_with_types(tmp_path):
    write(tmp_path / "qa" / "ScanQA_v1.0_val.json", [dict(e, type="counting") for e in SCANQA_VAL])
    examples = load_qa_split(tmp_path, "val", "synth")
    assert [e.type for e in examples] == ["counting", "counting"]


def test_synth_sqa3d_types_from_question_type(tmp_path):
    questions = json.loads(json.dumps(SQA3D_QUESTIONS))
    questions["questions"][0].update(object_ids=[4], object_names=["desk"])
    ann = json.loads(json.dumps(SQA3D_ANNOTATIONS))
    for a in ann["annotations"]:
        a["question_type"] = "situated_color"
    write(tmp_path / "qa" / "SQA3D" / "v1_balanced_questions_val_scannetv2.json", questions)
    write(tmp_path / "qa" / "SQA3D" / "v1_balanced_sqa_annotations_val_scannetv2.json", ann)
    first, second = load_qa_split(tmp_path, "val", "synth")
    assert first.type == second.type == "situated_color"
    assert first.object_ids == [4] and first.object_names == ["desk"] and second.object_ids == []


def test_scene_dir(tmp_path):
    (tmp_path / "scenes" / "room_000").mkdir(parents=True)
    (tmp_path / "scenes" / "room_001.ply").write_bytes(b"ply\n")
    assert scene_dir(tmp_path, "room_000") == tmp_path / "scenes" / "room_000"
    assert scene_dir(tmp_path, "room_001") == tmp_path / "scenes" / "room_001.ply"
    with pytest.raises(FileNotFoundError, match=r"room_404.*2 entries"):
        scene_dir(tmp_path, "room_404")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scene_dir(tmp_path / "nowhere", "room_000")


def test_example_validation():
    with pytest.raises(ValueError, match="rotation"):
        QAExample("s", "q", "what?", [], rotation=[0.0, 1.0])

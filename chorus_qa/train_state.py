"""Run state of a Q&A training run (:mod:`chorus_qa.train_qa`): ``last/`` checkpoints, warm starts, loss curves.

``OUT/last`` holds the model (``ChorusQAModel.save_pretrained``: scene tokenizer + projector, LoRA adapter), the
optimizer (safetensors tensors + JSON parameter groups) and the trainer state, written atomically; a rerun resumes
from it (:func:`restore_training_state`). ``init_from`` starts a new run from another checkpoint's trainable weights
(:func:`warm_start`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from chorus_qa.model import ChorusQAModel
from chorus_qa.qa_config import QAModelConfig
from data.atomic import atomic_directory

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_GROUPS = "optimizer.json"


def save_training_state(out_dir: Path, model: ChorusQAModel, optimizer, state: dict) -> Path:
    """Atomically write ``out_dir/last``: model checkpoint + optimizer (safetensors + JSON) + trainer state."""
    from safetensors.torch import save_file

    with atomic_directory(out_dir / "last") as tmp:
        model.save_pretrained(tmp)  # itself atomic: swaps its own complete folder in over the empty ``tmp``
        opt_state = optimizer.state_dict()
        tensors = {f"{idx}.{k}": v.detach().contiguous().cpu() for idx, s in opt_state["state"].items()
                   for k, v in s.items() if isinstance(v, torch.Tensor)}
        save_file(tensors, str(tmp / OPTIMIZER_TENSORS))
        (tmp / OPTIMIZER_GROUPS).write_text(json.dumps(opt_state["param_groups"]))
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
    return out_dir / "last"


def load_trainable_weights(directory: Path, model: ChorusQAModel) -> None:
    """Load the trainable weights (scene tokenizer, projector, LoRA adapter) of a ``save_pretrained`` folder."""
    from safetensors.torch import load_file

    heads = load_file(str(directory / "projector.safetensors"))
    model.scene_tokenizer.load_state_dict({k[16:]: v for k, v in heads.items() if k.startswith("scene_tokenizer.")})
    model.projector.load_state_dict({k[10:]: v for k, v in heads.items() if k.startswith("projector.")})
    adapter = directory / "adapter" / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model.language_model, load_file(str(adapter)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{adapter}: unexpected adapter keys {result.unexpected_keys[:5]}")


# what may differ between a warm start's checkpoint and the run it starts: how the frozen LLM is stored, and words
# the object tokens carry that have no weights of their own (a trained model can be taught to read them)
WARM_START_FREE = ("llm_dtype", "quantization", "size_words", "size_first", "size_reference", "count_words",
                   "lateral_order", "sector_order", "comparison_order", "color_shading", "size_group",
                   "side_group", "count_group")


def warm_start(directory: str | Path, model: ChorusQAModel) -> None:
    """Start ``model`` from the trainable weights of the ChorusQAModel checkpoint ``directory`` (``init_from``).

    Its model config must be this run's (same encoder, tokens and LoRA), apart from ``WARM_START_FREE``."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} missing; expected a ChorusQAModel checkpoint folder "
                                f"(a run's best/ or last/, or a release such as checkpoints/demo)")
    theirs = QAModelConfig.from_dict(json.loads(path.read_text())).to_dict()
    ours = model.config.to_dict()
    differ = sorted(k for k in ours if k not in WARM_START_FREE and ours[k] != theirs.get(k))
    if differ:
        detail = "; ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ[:4])
        raise ValueError(f"init_from {directory}: its model config differs from this run's in {differ} ({detail})")
    load_trainable_weights(directory, model)


def restore_training_state(last: Path, model: ChorusQAModel, optimizer) -> None:
    """Load the trainable weights and, when its parameter groups match, the optimizer state from ``last``."""
    from safetensors.torch import load_file

    load_trainable_weights(last, model)
    groups = json.loads((last / OPTIMIZER_GROUPS).read_text())
    current = optimizer.state_dict()
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current["param_groups"]]:
        return  # saved in another stage: the new stage starts a fresh optimizer
    tensors = load_file(str(last / OPTIMIZER_TENSORS))
    state: dict = defaultdict(dict)
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state[int(idx)][name] = value
    optimizer.load_state_dict({"state": dict(state), "param_groups": groups})


def plot_curves(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps, losses = history["step"], history["loss"]
    a.plot(steps, losses, lw=0.6, alpha=0.4, color="C0")
    if len(losses) >= 10:
        w = max(len(losses) // 30, 5)
        smooth = [sum(losses[max(0, i - w):i + 1]) / len(losses[max(0, i - w):i + 1]) for i in range(len(losses))]
        a.plot(steps, smooth, color="C0")
    a.set(xlabel="optimizer step", ylabel="answer-token loss", title="train loss")
    epochs = [e["epoch"] for e in history["eval"]]
    b.plot(epochs, [e["em"] for e in history["eval"]], "o-", label="val EM@1")
    if any("shuffled_em" in e for e in history["eval"]):
        b.plot(epochs, [e.get("shuffled_em", float("nan")) for e in history["eval"]], "x--",
               label="val EM@1, shuffled scenes")
    b.set(xlabel="epoch", ylabel="EM@1", ylim=(0, 1), title="validation")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Run state of a pretraining run (:mod:`encoder.pretrain`): checkpoints, warm starts and the training log.

``OUT/checkpoints/step_XXXXXXX`` holds the model (safetensors), optimizer + scheduler state and the torch,
Python and numpy RNG states, written atomically with :func:`data.atomic.atomic_directory`;
``OUT/checkpoints/latest`` names the newest. ``OUT/train_log.jsonl`` has one JSON line per optimizer step.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.atomic import atomic_directory, atomic_file


# ============================================================================ checkpoints
def save_checkpoint(out_dir: Path, step: int, model: nn.Module, opt, sched, keep: int) -> Path:
    """Write ``checkpoints/step_<step>`` atomically (:func:`data.atomic.atomic_directory`) and point ``latest`` at it."""
    from safetensors.torch import save_file

    ckpt_root = out_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:07d}"
    with atomic_directory(final) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        # plain containers of tensors and numbers: reloadable with torch.load(weights_only=True), nothing unpickled
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        (tmp / "rng.json").write_text(json.dumps(_host_rng_state()))
        (tmp / "state.json").write_text(json.dumps({"step": step}))
    with atomic_file(ckpt_root / "latest") as latest_tmp:
        latest_tmp.write_text(final.name)
    for old in sorted(ckpt_root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = out_dir / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: Path, model: nn.Module, opt, sched) -> int:
    """Restore model, optimizer, scheduler and RNG state; return the number of finished steps."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path / "model.safetensors")))
    states = torch.load(path / "optimizer.pt", weights_only=True)
    opt.load_state_dict(states["optimizer"])
    sched.load_state_dict(states["scheduler"])
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
    _set_host_rng_state(json.loads((path / "rng.json").read_text()))
    return int(json.loads((path / "state.json").read_text())["step"])


def load_init_weights(path: Path, model: nn.Module) -> None:
    """Warm start: the model weights of a pretraining checkpoint folder (``RUN/checkpoints/step_N``), or of an
    exported encoder: a folder with ``encoder/`` and ``heads/`` (``RUN`` itself after a run, or a release such as
    ``checkpoints/demo``). Shapes must match the config."""
    from safetensors.torch import load_file

    file = path / "model.safetensors"
    parts = {k: path / k / "model.safetensors" for k in ("encoder", "heads")}
    if file.is_file():
        state = load_file(str(file))
    elif all(f.is_file() for f in parts.values()):
        state = {f"{k}.{name}": w for k, f in parts.items() for name, w in load_file(str(f)).items()}
    else:
        raise FileNotFoundError(f"init_from: neither {file} nor {parts['encoder']} + {parts['heads']} found (expected a "
                                f"pretraining checkpoint folder, e.g. RUN/checkpoints/step_0001500, or an exported encoder "
                                f"folder such as checkpoints/demo)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"init_from {path}: the weights do not fit this config's encoder/teachers: {e}") from None


def _host_rng_state() -> dict:
    """Python's and numpy's global RNG states as JSON-able lists."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_host_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ============================================================================ logs
def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(log: list[dict], png: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log:
        return
    steps = [r["step"] for r in log]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in log], label="total", lw=1.5)
    for key in sorted({k for r in log for k in r if k.endswith("/cos")}):
        ax.plot([r["step"] for r in log if key in r], [r[key] for r in log if key in r], label=key, lw=0.8, alpha=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)

"""Is an object's material in its Gaussians' colours? Probes on ``scene_tokens.group_texture`` of ground-truth objects.

    python benchmarks/material_texture.py --data runs/demo/qa_data [--train-scenes 300] [--val-scenes 95] \
        [--out benchmarks/results/material_texture.json]

For every non-structural object of the synthetic rooms (its ground-truth instance, at least ``--min-gaussians``
Gaussians) whose class comes in more than one material, the six luminance statistics of ``group_texture`` (what
``texture_stats`` adds to an object token) are computed from the scene's own Gaussian colours. Probes fitted on
the objects of the first ``--train-scenes`` train rooms are scored on the first ``--val-scenes`` val rooms:

- ``class_majority``: the most common material of the object's class (what the class name alone tells);
- ``linear`` / ``mlp``: a linear probe / a one-hidden-layer MLP on the class one-hot + the six statistics
  (standardised on the train objects).

``benchmarks/token_attributes.py`` found material at the class prior in the encoder's tokens; a probe well above
the prior here means the texture is in the splat and the object token can carry it without a new encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.atomic import write_json  # noqa: E402


def object_textures(scene_path: Path, min_gaussians: int) -> list[tuple[str, str, torch.Tensor]]:
    """(class, material, group_texture row [6]) of each non-structural object of one synthetic room."""
    from data import load_scene

    from chorus_qa.scene_tokens import group_texture

    objects = [o for o in json.loads((scene_path / "scene.json").read_text())["objects"] if not o.get("structural")]
    scene = load_scene(scene_path)
    instance = torch.as_tensor(scene.instance).long().reshape(-1)
    slot = {o["id"]: i for i, o in enumerate(objects)}
    assign = torch.tensor([slot.get(int(i), -1) for i in instance.tolist()]) if len(instance) else instance
    take = assign >= 0
    count = torch.zeros(len(objects)).index_add_(0, assign[take], torch.ones(int(take.sum())))
    stats = group_texture(torch.as_tensor(scene.colors)[take].float(), assign[take], count)
    return [(o["class"], o["material"], stats[i]) for i, o in enumerate(objects) if count[i] >= min_gaussians]


def mlp_accuracy(x_train, y_train, x_val, y_val, num_classes: int, seed: int, hidden: int = 64, steps: int = 3000) -> float:
    """Val accuracy (%) of a one-hidden-layer MLP (full-batch Adam, weight decay) fitted on (x_train, y_train)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x_train), y_train).backward()
        opt.step()
    with torch.no_grad():
        return round(100 * float((net(x_val).argmax(1) == y_val).float().mean()), 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="synthetic data folder (scenes/, splits/)")
    ap.add_argument("--train-scenes", type=int, default=300)
    ap.add_argument("--val-scenes", type=int, default=95)
    ap.add_argument("--min-gaussians", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from data.synth.classes import CLASS_BY_NAME, MATERIALS

    from benchmarks.token_attributes import class_majority, probe_accuracy
    from chorus_qa.datasets import scene_dir

    rows = {}
    for split, n in (("train", args.train_scenes), ("val", args.val_scenes)):
        split_file = Path(args.data) / "splits" / f"{split}.txt"
        if not split_file.is_file():
            raise SystemExit(f"{split_file} missing: --data must be a synthetic data folder (python -m data.synth)")
        ids = split_file.read_text().split()[:n]
        rows[split] = [r for sid in tqdm(ids, desc=f"{split} rooms", unit="room")
                       for r in object_textures(Path(scene_dir(args.data, sid)), args.min_gaussians)
                       if len(CLASS_BY_NAME[r[0]].materials) > 1]
        if not rows[split]:
            raise SystemExit(f"no {split} object of a class with several materials in {len(ids)} rooms")
    classes = sorted({c for split in rows.values() for c, _, _ in split})

    def tensors(split):
        cls = torch.tensor([classes.index(c) for c, _, _ in rows[split]])
        return cls, torch.tensor([list(MATERIALS).index(m) for _, m, _ in rows[split]]), torch.stack([s for _, _, s in rows[split]])

    (c_tr, y_tr, s_tr), (c_va, y_va, s_va) = tensors("train"), tensors("val")
    mu, sd = s_tr.mean(0), s_tr.std(0).clamp_min(1e-6)
    x_tr, x_va = (torch.cat([torch.nn.functional.one_hot(c, len(classes)).float(), (s - mu) / sd], 1)
                  for c, s in ((c_tr, s_tr), (c_va, s_va)))
    k = len(MATERIALS)
    res = {"train_objects": len(y_tr), "val_objects": len(y_va), "materials": k,
           "class_majority": round(100 * float((class_majority(c_tr, y_tr, c_va) == y_va).float().mean()), 1),
           "linear": probe_accuracy(x_tr, y_tr, x_va, y_va, k, args.seed),
           "mlp": mlp_accuracy(x_tr, y_tr, x_va, y_va, k, args.seed)}
    print(res, flush=True)
    if args.out:
        write_json(Path(args.out), {"data": args.data, "train_scenes": args.train_scenes, "val_scenes": args.val_scenes,
                                    "min_gaussians": args.min_gaussians, "seed": args.seed, "accuracy_percent": res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

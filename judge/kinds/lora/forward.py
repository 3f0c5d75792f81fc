"""A faster forward pass for the LoRA judge's BERT classifier at inference (same logits)."""

from __future__ import annotations


def _first_token_forward(layer, hidden_states, attention_mask=None, *args, **kwargs):
    """BertLayer.forward for the first position only (see :func:`first_token_only`)."""
    import torch

    attention = layer.attention.self
    batch, length, _ = hidden_states.shape
    head = attention.attention_head_size
    query = attention.query(hidden_states[:, :1]).view(batch, 1, -1, head).transpose(1, 2)
    key = attention.key(hidden_states).view(batch, length, -1, head).transpose(1, 2)
    value = attention.value(hidden_states).view(batch, length, -1, head).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4:  # (batch, 1, query, key), boolean or additive
        attention_mask = attention_mask[:, :, :1, :]
    context = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=attention.scaling
    )
    first = layer.attention.output(context.transpose(1, 2).reshape(batch, 1, -1), hidden_states[:, :1])
    return layer.output(layer.intermediate(first), first)


def first_token_only(model):
    """For inference: compute a BERT classifier's last layer for the [CLS] position only.

    The pooler reads token 0 of the last layer and nothing else, so the other positions' query,
    attention output and feed-forward there are wasted work (about a sixth of MiniLM's compute);
    only their keys and values are needed. The layer's forward is replaced on the instance, so the
    module tree and state dict are unchanged; same logits as the full layer (tested to 1e-5 in fp32).
    Models that are not a plain BERT encoder classifier are returned as they are.
    """
    import functools

    bert, config = getattr(model, "bert", None), getattr(model, "config", None)
    if (
        bert is None
        or getattr(bert, "pooler", None) is None
        or config is None
        or config.model_type != "bert"
        or config.is_decoder
        or config.add_cross_attention
        or model.training
        or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager")
    ):  # the mask forms handled here
        return model
    last = bert.encoder.layer[-1]
    last.forward = functools.partial(_first_token_forward, last)
    last.first_token_only = True
    return model

"""Attention to a support set: the support's tokens and a cross-attention block (shared by families).

A few-shot image generator that reads its support through one pooled vector learns slowly
*where* a character's strokes go. Here each shot becomes a grid of patch tokens (a small conv
encoder shared by all shots, plus a learned position embedding) and the set adds one pooled
token; a generator's feature maps then attend to all tokens of all present shots (the support
attention of Reed et al. 2017, "Few-shot autoregressive density estimation"; the set-attention
conditioning of Few-Shot Diffusion Models, Giannone et al. 2022).

Tokens of absent shots are masked out. The block always adds one learned *null* token, so an
empty support (K = 0, or every shot masked) is well defined: every query reads the null
token's value, which makes the empty set the unconditional model. Attention over a set is
permutation invariant, so the output does not depend on the order of the shots.

Attention is ``F.scaled_dot_product_attention`` (a fused kernel: 5x faster than the written-out
softmax on one CPU thread, as it never materialises the (queries x tokens) scores), except
inside ``torch.func`` transforms (the vmapped inner loops of fine-tuning), where the fused
CPU kernel has no batching rule and the written-out softmax is used: the same numbers.

Shapes: T tasks, K shots, P patch tokens per shot, L = 1 + K*P tokens per task, D token width,
N examples per task, B = T*N feature maps (grouped by task, task-major).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import LayerNorm, canonical_order, conv_block, masked_mean, mlp


def attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d), masked to ``allowed``) v: q (..., Q, d), k and v (..., L, d),
    allowed broadcastable to (..., Q, L) bool, every row with at least one True."""
    if not torch._C._functorch.is_functorch_wrapped_tensor(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-1, -2)  # (..., Q, L)
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


class SupportEncoder(nn.Module):
    """Support images (T, K, C, S, S) with a mask (T, K) -> tokens (T, 1 + K*P, D) and their
    mask (T, 1 + K*P): a pooled set token first, then each shot's P = (S/4)^2 patch tokens
    (zeros for absent shots), the shots in a canonical order."""

    def __init__(self, image_size: int, channels: int, hidden: int, dim: int) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError("image_size must be divisible by 4")
        self.dim, self.patches = dim, (image_size // 4) ** 2
        self.stem = nn.Sequential(conv_block(channels, hidden, 2), conv_block(hidden, 2 * hidden, 2),
                                  nn.Conv2d(2 * hidden, dim, 1))
        self.pos = nn.Parameter(torch.randn(self.patches, dim) * 0.02)  # where in the shot a token is
        self.norm = LayerNorm(dim)  # written out: exact second-order gradients under vmap (models.nn)
        self.set_mlp = mlp([dim + 1, dim, dim])  # pooled shots (+ log shot count) -> the set token

    def forward(self, support: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        T, K = mask.shape
        if K == 0:  # the empty set: one set token, masked out
            return support.new_zeros(T, 1, self.dim), mask.new_zeros(T, 1)
        h = self.stem(support.reshape(T * K, *support.shape[2:]))  # (T*K, D, S/4, S/4)
        tok = self.norm(h.flatten(2).transpose(1, 2) + self.pos)  # (T*K, P, D)
        tok = tok.reshape(T, K, self.patches, self.dim) * mask[..., None, None].to(tok.dtype)  # absent: zeros
        pooled, count = masked_mean(tok.mean(2), mask)  # (T, D), (T, 1)
        set_tok = self.set_mlp(torch.cat([pooled, torch.log1p(count)], -1))  # (T, D)
        # Shots in a canonical order (present ones first, by their pooled first feature), so the
        # tokens themselves, not only what attention reads from them, ignore the support's order.
        order = canonical_order(tok[..., 0].mean(2), mask)  # (T, K)
        tok = tok.gather(1, order[:, :, None, None].expand_as(tok))
        mask = mask.gather(1, order)
        tokens = torch.cat([set_tok[:, None], tok.reshape(T, K * self.patches, self.dim)], 1)  # (T, L, D)
        tok_mask = torch.cat([mask.any(1, keepdim=True), mask.repeat_interleave(self.patches, 1)], 1)  # (T, L)
        return tokens, tok_mask


class CrossAttention(nn.Module):
    """Residual cross-attention from feature maps (B, C, H, W) to their task's tokens (T, L, D).

    Queries come from group-normalised features, keys and values from the tokens plus a
    learned null token; the output projection starts at zero, so a new block is the identity.
    ``keep`` (B,) bool, optional, drops the support for some feature maps (classifier-free
    guidance training): a dropped map attends to the null token alone, exactly as with an
    empty support.
    """

    def __init__(self, channels: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(dim, 2 * channels)
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, tokens: Tensor, mask: Tensor, keep: Tensor | None = None) -> Tensor:
        B, C, H, W = h.shape
        T, L, _ = tokens.shape
        n, nh, dh = B // T, self.heads, C // self.heads
        toks = torch.cat([self.null.expand(T, 1, -1).to(tokens.dtype), tokens], 1)  # (T, 1+L, D)
        k, v = self.kv(toks).chunk(2, -1)  # (T, 1+L, C) each
        k = k.reshape(T, 1 + L, nh, dh).transpose(1, 2)  # (T, nh, 1+L, dh)
        v = v.reshape(T, 1 + L, nh, dh).transpose(1, 2)
        q = self.q(self.norm(h)).reshape(T, n, nh, dh, H * W).permute(0, 2, 1, 4, 3)  # (T, nh, n, HW, dh)
        q = q.reshape(T, nh, n * H * W, dh)
        allowed = torch.cat([mask.new_ones(T, 1), mask], 1)[:, None, None, :]  # the null token is always there
        att = attend(q, k.to(q.dtype), v.to(q.dtype), allowed)  # (T, nh, n*HW, dh)
        att = att.reshape(T, nh, n, H * W, dh).permute(0, 2, 1, 4, 3).reshape(B, C, H, W)
        if keep is not None:  # dropped support: attention to the null token alone returns its value
            null_v = v[:, :, 0, :].reshape(T, 1, C, 1, 1).expand(T, n, C, 1, 1).reshape(B, C, 1, 1)
            att = torch.where(keep.reshape(B, 1, 1, 1), att, null_v)
        return h + self.out(att)


__all__ = ["CrossAttention", "SupportEncoder"]

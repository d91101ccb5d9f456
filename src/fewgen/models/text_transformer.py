"""An in-context byte Transformer: few-shot generation by reading the support as a prefix.

A decoder-only Transformer over UTF-8 bytes (GPT, Radford et al. 2018/2019; pre-norm,
rotary positions, Su et al. 2021; tied input/output embeddings) reads the K support strings
as one prefix, each ended by EOS (the separator), and then writes a new string::

    BOS s_1 EOS s_2 EOS ... s_K EOS  x EOS

``p(x | support) = prod_t p(x_t | prefix, x_<t)``; an empty support is the prefix ``BOS``
(the unconditional model). This is in-context meta-learning (MetaICL-style learners; Reed et
al. 2018's Attention PixelCNN and Bartunov & Vetrov 2018's Generative Matching Networks also
read their support through attention).

**Every K at once.** Meta-training packs an episode of M strings of one task into one
sequence and scores string j given the j - 1 before it (:meth:`episode_loss`), so one forward
pass trains K = 0 ... M-1 (with ``train.shots = 0`` and ``train.queries = M``; with shots > 0
the support strings come first and are not scored).

**A copy mechanism from the first step.** A plain in-context Transformer learns to use ten
support words only slowly on a CPU budget (measured: 0.1 bits/char after 15 minutes), while a
cache of the support's n-grams gains ~0.7 bits for free. The next-byte distribution is a
mixture of the Transformer's softmax and the match cache of :mod:`fewgen.models.text_cache`
at orders 0 ... ``match_order`` (votes of every earlier position of the sequence, support and
the string so far, whose last n bytes of the same string equal the current ones), with
weights from a learned gate on the Transformer's state and the cache's evidence (counts and
confidence per order), as a cache language model (Grave et al. 2017); the Transformer's own
softmax also reads the cache (its log-probs added to the logits with state-dependent
weights, as ``text_lm`` adds its support caches), so bytes of a script never seen in
training get mass inside the network's distribution too. With ``match_order`` -1 there is
no cache. Every cache weight starts at zero: the model starts as an untrained Transformer
mixed with the cache at fixed weights, and learns when to trust which order.

The context (a dict, every leaf with the task axis first) is ``{"prefix": (T, P) ids}``: BOS
then the present shots' bytes and EOS, in the order given, PAD after the end. The prefix order
matters to a Transformer, so the model is not permutation invariant
(:attr:`TextTransformer.permutation_invariant`); evaluation episodes give the shots in a
seeded random order. ``loss`` and ``nll`` are the exact ``-log p(x | support)`` in nats per
string (EOS included). ``sample`` caches the prefix's keys and values once and decodes one
byte per step under the UTF-8 grammar of :mod:`fewgen.models.utf8`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import EvalConfig, ModelConfig
from ..errors import ConfigError, DataError
from .base import GenerativeModel, check_byte_tokenizer, exact_nll, parse_extra
from .bytes import BOS, EOS, NUM_OUTPUTS, PAD, VOCAB_SIZE
from .nn import LayerNorm
from .text_cache import history_codes, match_counts, match_probs
from .utf8 import advance, draw_token, legal_tokens

ROPE_BASE = 10_000.0
GUIDANCE_PLAUSIBLE = 0.1  # guided sampling keeps bytes with p(. | support) >= this x the most likely one's


# ----------------------------------------------------------------------------- blocks
def _rotary(pos: Tensor, dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin (B, S, dim / 2) of rotary embeddings at integer positions pos (B, S)."""
    inv = ROPE_BASE ** -(torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) / dim)
    ang = pos.to(torch.float32)[..., None] * inv
    return ang.cos().to(dtype), ang.sin().to(dtype)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding of x (B, H, S, hd) (half-split pairs)."""
    x1, x2 = x.chunk(2, -1)
    c, s = cos[:, None], sin[:, None]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """``scaled_dot_product_attention``, causal when ``mask`` is None. Inside ``torch.func``
    transforms (MAML's inner loops, vmap over tasks) the math kernel is used: the CPU flash
    kernel has neither a double backward nor a batching rule."""
    if torch._C._functorch.is_functorch_wrapped_tensor(q):
        with sdpa_kernel([SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)


class Block(nn.Module):
    """A pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = LayerNorm(d), LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None = None,
                past: tuple[Tensor, Tensor] | None = None,
                cache: tuple[Tensor, Tensor, int] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, S, D); ``past`` keys and values (B, H, P, hd) read before x's own; or ``cache``
        (key buffer, value buffer (B, H, >= at + S, hd), at): x's keys and values are written at
        ``at`` and the first ``at + S`` read; ``mask`` (B, 1, S, keys) bool, or None for causal
        attention without a past. Returns the new x and x's own (rotated) keys and values."""
        B, S, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, *rope), _rotate(k, *rope)  # (B, H, S, hd)
        if cache is not None:  # decoding: no copy of the keys so far
            kbuf, vbuf, at = cache
            kbuf[:, :, at : at + S], vbuf[:, :, at : at + S] = k, v
            keys, values = kbuf[:, :, : at + S], vbuf[:, :, : at + S]
        else:
            keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        y = _attend(q, keys, values, mask).transpose(1, 2).reshape(B, S, D)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x)), (k, v)


# ----------------------------------------------------------------------------- packing
def _pack(strings: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """One sequence per task: BOS, then the present strings' tokens (each ends with EOS) in
    order, PAD after the end. strings (T, M, L), present (T, M) bool -> ids (T, 1 + M L) and the
    string each token belongs to (T, 1 + M L): its index, -1 for BOS, M for PAD."""
    T, M, L = strings.shape
    ids = torch.where(present[..., None], strings, torch.full_like(strings, PAD)).reshape(T, M * L)
    owner = torch.arange(M, device=ids.device).repeat_interleave(L).expand(T, M * L)
    order = torch.sort((ids == PAD).long(), dim=1, stable=True).indices  # real tokens first, in order
    ids, owner = ids.gather(1, order), owner.gather(1, order)
    owner = torch.where(ids == PAD, torch.full_like(owner, M), owner)
    return torch.cat([ids.new_full((T, 1), BOS), ids], 1), torch.cat([owner.new_full((T, 1), -1), owner], 1)


def _concrete_max(x: Tensor) -> int | None:
    """``int(x.max())``, or None inside ``torch.func`` transforms (where values are not concrete)."""
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return None
    return int(x.max()) if x.numel() else 0


def _string_offsets(inp: Tensor) -> Tensor:
    """Distance (B, S) of every input from the first input of its string (a separator, BOS or
    EOS): the match cache reads histories within a string only."""
    idx = torch.arange(inp.shape[-1], device=inp.device).expand_as(inp)
    start = torch.where((inp == BOS) | (inp == EOS), idx, torch.zeros_like(idx)).cummax(-1).values
    return idx - start


def _as_start(inp: Tensor) -> Tensor:
    """Inputs with every separator (EOS) read as BOS: a string's first input is its start."""
    return torch.where(inp == EOS, torch.full_like(inp, BOS), inp)


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class TextTransformerExtra:
    """The ``model.extra`` keys of ``text_transformer`` (constructor arguments of the same names;
    the width ``d_model`` is ``model.hidden``). The strings per training episode are
    ``train.shots + train.queries``."""

    layers: int = 4  # Transformer blocks, >= 1
    heads: int = 4  # attention heads, >= 1: model.hidden must be a multiple of 2 x heads
    max_len: int = 0  # bytes per string incl. EOS, >= 1; 0 = the data's
    window: int = 1024  # most bytes of support plus string read at test time, >= 2 max_len
    train_window: int = 256  # tokens per packed training sequence, >= 2 max_len
    match_order: int = 4  # the match cache's highest order, -1 (no cache) to 7
    track: bool = True  # the gate reads each expert's running log-likelihood of the task's text

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a value out of range."""
        for key in ("layers", "heads", "window", "train_window"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.extra.{key} must be a positive integer, got {getattr(self, key)!r}")
        if self.max_len < 0:
            raise ConfigError(f"model.extra.max_len must be a positive integer (or 0: the data's), got {self.max_len}")
        if not -1 <= self.match_order <= 7:
            raise ConfigError(f"model.extra.match_order must be from -1 (no cache) to 7, got {self.match_order}")
        if hidden % self.heads or (hidden // self.heads) % 2:
            raise ConfigError(f"text_transformer: model.hidden ({hidden}) must be a multiple of 2 x "
                              f"model.extra.heads ({self.heads})")


class TextTransformer(GenerativeModel):
    """Decoder-only byte Transformer reading the support as a prefix, mixed with a match cache."""

    family = "text_transformer"
    modality = "text"
    # The support is read as a sequence: attention and positions see the shots' order, so
    # p(x | s_1..s_K) changes (a little) when the shots are permuted. The match cache's votes do not.
    permutation_invariant = False
    Extra = TextTransformerExtra

    def __init__(self, d_model: int = 128, layers: int = 4, heads: int = 4, max_len: int = 24,
                 window: int = 1024, train_window: int = 256, match_order: int = 4, track: bool = False) -> None:
        super().__init__()
        TextTransformerExtra(layers, heads, max_len, window, train_window, match_order, track).validate(d_model)
        if min(window, train_window) < 2 * max_len:  # max_len may be the data's: checked with it
            raise ConfigError(f"model.extra.window ({window}) and train_window ({train_window}) must hold at least "
                              f"two strings of max_len {max_len}")
        self.d_model, self.layers, self.heads = d_model, layers, heads
        self.max_len, self.window, self.train_window, self.match_order = max_len, window, train_window, match_order
        self.track = bool(track) and match_order >= 0
        self.embed = nn.Embedding(VOCAB_SIZE, d_model)  # tied: the output head is embed[:NUM_OUTPUTS]
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln_f = LayerNorm(d_model)
        if match_order >= 0:
            n = match_order + 1
            self.cache_logits = nn.Linear(d_model, n)  # weights of the cache's log-probs in the logits
            # mixture weights of [Transformer, cache orders], from the state, the cache's evidence and
            # (track) each expert's running log-likelihood on this task's text so far
            self.gate = nn.Linear(d_model + 2 * n + (n + 2 if self.track else 0), n + 1)
            with torch.no_grad():
                for lin in (self.cache_logits, self.gate):
                    lin.weight.zero_()
                    lin.bias.zero_()
                self.gate.bias[0] = 1.0
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02) weights, zero biases, residual projections scaled by
        1 / sqrt(2 layers). The cache's weights start at zero: none in the logits, and the
        mixture first gives the Transformer e / (e + n) and each of the n cache orders 1 / (e + n)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith(("gate.", "cache_logits.")):
                    continue
                if p.dim() >= 2:
                    std = 0.02 / (2 * self.layers) ** 0.5 if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                    p.normal_(0.0, std)
                elif name.endswith("bias") and ".ln" not in name and not name.startswith("ln_f"):
                    p.zero_()

    def config_dict(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "layers": self.layers, "heads": self.heads, "max_len": self.max_len,
                "window": self.window, "train_window": self.train_window, "match_order": self.match_order,
                "track": self.track}

    # ------------------------------------------------------------------ the network
    def _run(self, ids: Tensor, pos: Tensor, mask: Tensor | None = None,
             past: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Final states (B, S, D) of inputs ids (B, S) at positions pos (B, S), and every layer's
        own keys and values; ``past`` and ``mask`` as in :meth:`Block.forward`."""
        x = self.embed(ids)
        rope = _rotary(pos, self.d_model // self.heads, x.dtype)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, rope, mask, None if past is None else past[i])
            kvs.append(kv)
        return self.ln_f(x), kvs

    def _experts(self, h: Tensor, counts: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """The mixture's experts at states h (..., D) given the match cache's votes (orders
        0..n, each (..., NUM_OUTPUTS)): probabilities [Transformer, order 0, ..., order n], each
        (..., NUM_OUTPUTS), and the gate's cues (..., 2 (n + 1)): evidence and confidence per
        order. The Transformer's own distribution also reads the cache,
        ``softmax(logits + sum_n b_n(h) log p_n)`` (a product of experts, as text_lm adds its
        support caches: bytes of a script never seen in training get mass inside the network's
        distribution too)."""
        logits = h @ self.embed.weight[:NUM_OUTPUTS].T
        uniform = torch.full((NUM_OUTPUTS,), 1.0 / NUM_OUTPUTS, dtype=h.dtype, device=h.device)
        per_order, evidence = match_probs(counts, uniform)
        b = self.cache_logits(h)  # (..., n)
        for i, p in enumerate(per_order):
            logits = logits + b[..., i : i + 1] * p.clamp_min(1e-30).log()
        confidence = torch.stack([p.max(-1).values for p in per_order], -1).log()  # (..., n)
        return [F.softmax(logits, -1), *per_order], torch.cat([evidence, confidence], -1)

    def _combine(self, h: Tensor, experts: list[Tensor], cues: Tensor, track: Tensor | None) -> Tensor:
        """Next-token log-probs ``log sum_c w_c p_c`` with gate weights w from the state, the
        cues and (``track``, (..., n + 2)) the experts' running log-likelihoods."""
        gate_in = [h, cues] if track is None else [h, cues, track]
        w = F.softmax(self.gate(torch.cat(gate_in, -1)), -1)  # (..., n + 1)
        mix = w[..., :1] * experts[0]
        for i, p in enumerate(experts[1:], start=1):  # in probability space: cheaper than a logsumexp
            mix = mix + w[..., i : i + 1] * p
        return mix.clamp_min(1e-30).log()

    def _mix(self, h: Tensor, counts: list[Tensor] | None, track: Tensor | None = None) -> Tensor:
        """Next-token log-probs (..., NUM_OUTPUTS) from states h (..., D) and the match cache's
        votes: the Transformer alone without a cache, else the gated mixture of its experts."""
        if counts is None:
            return F.log_softmax(h @ self.embed.weight[:NUM_OUTPUTS].T, -1)
        return self._combine(h, *self._experts(h, counts), track)

    # ------------------------------------------------------------------ tracking
    # How well has each expert predicted this task's text so far? On a language the Transformer
    # knows, it beats the cache; on a new one the cache catches up within a few words. The gate
    # reads the running mean of each expert's log-likelihood of the tokens before the current
    # one (support and string so far), as a Bayesian mixture weighs its experts by their
    # likelihood, instead of guessing from the state alone whether the language is familiar.
    @staticmethod
    def _at(experts: list[Tensor], target: Tensor) -> Tensor:
        """Each expert's log-probability (..., n + 1) of ``target`` (...) (no gradient)."""
        idx = target.clamp(max=EOS)[..., None]
        return torch.stack([p.detach().gather(-1, idx).squeeze(-1) for p in experts], -1).clamp_min(1e-30).log()

    @staticmethod
    def _track(scored: Tensor, valid: Tensor, sums: Tensor | None = None, count: Tensor | None = None) -> Tensor:
        """Running features (..., S, n + 2) before every position of a sequence: the mean
        log-likelihood of each expert over the earlier valid positions (scored (..., S, n + 1),
        valid (..., S)) plus ``sums`` (..., n + 1) over ``count`` (...) positions before the
        sequence, and log(1 + positions)."""
        scored = scored * valid[..., None]
        run = scored.cumsum(-2) - scored  # exclusive: the positions before
        n = (valid.cumsum(-1) - valid.long()).to(scored.dtype)
        if sums is not None:
            run, n = run + sums[..., None, :], n + count[..., None]
        return TextTransformer._track_features(run, n)

    @staticmethod
    def _track_features(run: Tensor, n: Tensor) -> Tensor:
        """The gate's tracking input (..., n + 2) from summed log-likelihoods run (..., n + 1)
        over n (...) positions: their means and log(1 + n)."""
        return torch.cat([run / n.clamp_min(1)[..., None], torch.log1p(n)[..., None]], -1)

    def _codes(self, inp: Tensor, offset: Tensor | None = None) -> list[Tensor]:
        """History codes of orders 1..match_order of inputs (..., S) (see :func:`history_codes`)."""
        return [history_codes(_as_start(inp), n, offset) for n in range(1, self.match_order + 1)]

    # ------------------------------------------------------------------ context
    def context(self, support: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """support (T, K, L) ids, mask (T, K) bool -> ``{"prefix": (T, P)}``: BOS, then the present
        shots in order. A support that leaves no room for a new string in the window is refused."""
        prefix, _ = _pack(support, mask)
        length = (prefix != PAD).sum(1)  # (T,)
        longest = _concrete_max(length)
        if longest is not None:
            if longest - 1 + self.max_len > self.window:
                raise DataError(f"the support has {longest - 1} bytes (separators included); this model reads at "
                                f"most {self.window - self.max_len} (model.extra.window {self.window} minus one "
                                f"string of max_len {self.max_len})")
            prefix = prefix[:, : max(longest, 1)]
        return {"prefix": prefix}

    def _prefix_state(self, prefix: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor, Tensor | None]:
        """Keys and values of the prefix (T, P) per layer (T, H, P, hd), its length (T,), which
        prefix positions a new string reads (T, P): all but the last (the separator, which is
        the new string's first input), and (``track``) the experts' log-likelihood sums over the
        prefix with their count, (T, n + 2)."""
        P = prefix.shape[1]
        pos = torch.arange(P, device=prefix.device).expand_as(prefix)
        h, kvs = self._run(prefix, pos)
        length = (prefix != PAD).sum(1)
        readable = pos < (length - 1)[:, None]
        return kvs, length, readable, self._prefix_track(prefix, h, readable) if self.track else None

    def _prefix_track(self, prefix: Tensor, h: Tensor, readable: Tensor) -> Tensor:
        """Each expert's summed log-likelihood of the prefix's own tokens, each given the ones
        before it (exactly as :meth:`episode_loss` scores a packed sequence), and how many
        tokens: (T, n + 2)."""
        tgt = torch.where(readable, prefix.roll(-1, 1), torch.full_like(prefix, PAD))
        codes = self._codes(prefix, _string_offsets(prefix))
        P = prefix.shape[1]
        earlier = torch.ones(P, P, dtype=torch.bool, device=prefix.device).tril(-1)[None]
        experts, _ = self._experts(h, match_counts(codes, codes, tgt, earlier, h.dtype))
        scored = self._at(experts, tgt) * readable[..., None]
        return torch.cat([scored.sum(1), readable.sum(1, keepdim=True).to(h.dtype)], -1)

    # ------------------------------------------------------------------ likelihood
    def _query_log_probs(self, x: Tensor, context: dict[str, Tensor]) -> Tensor:
        """Next-token log-probs (T, N, L, NUM_OUTPUTS) of strings x (T, N, L) after the prefix."""
        T, N, L = x.shape
        prefix = context["prefix"]
        P = prefix.shape[1]
        kvs, length, readable, prior = self._prefix_state(prefix)
        sep = prefix.gather(1, (length - 1)[:, None])  # (T, 1): EOS, or BOS for an empty support
        inp = torch.cat([sep[:, None, :].expand(T, N, 1), x[..., :-1]], -1)  # (T, N, L)
        inp = torch.where(inp == PAD, torch.full_like(inp, EOS), inp)  # after the end: masked in the loss
        B = T * N
        pos = ((length - 1)[:, None, None] + torch.arange(L, device=x.device)).expand(T, N, L).reshape(B, L)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        see_prefix = readable[:, None, None, :].expand(T, N, L, P).reshape(B, 1, L, P)
        mask = torch.cat([see_prefix, causal.expand(B, 1, L, L)], -1)  # (B, 1, L, P + L)
        past = [tuple(t[:, None].expand(T, N, *t.shape[1:]).reshape(B, *t.shape[1:]) for t in kv) for kv in kvs]
        h, _ = self._run(inp.reshape(B, L), pos, mask, past)  # (B, L, D)
        counts = None
        if self.match_order >= 0:  # votes of the prefix's positions, then of the string's own earlier ones
            q = [c.reshape(T, N * L) for c in self._codes(inp)]
            k_next = torch.where(readable, prefix.roll(-1, 1), torch.full_like(prefix, PAD))  # (T, P)
            from_prefix = match_counts(q, self._codes(prefix, _string_offsets(prefix)), k_next,
                                       torch.ones(1, N * L, P, dtype=torch.bool, device=x.device), h.dtype)
            own = match_counts([c.reshape(B, L) for c in q], [c.reshape(B, L) for c in q], x.reshape(B, L),
                               causal.tril(-1)[None], h.dtype)  # source j < query i: its next token x_j is known
            counts = [a.reshape(B, L, -1) + b for a, b in zip(from_prefix, own)]
        if not self.track:
            return self._mix(h, counts).reshape(T, N, L, NUM_OUTPUTS)
        experts, cues = self._experts(h, counts)
        prior = prior.repeat_interleave(N, 0)  # (B, n + 2): the prefix's sums and count
        track = self._track(self._at(experts, x.reshape(B, L)), (x != PAD).reshape(B, L), prior[:, :-1], prior[:, -1])
        return self._combine(h, experts, cues, track).reshape(T, N, L, NUM_OUTPUTS)

    def loss(self, x: Tensor, context: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Exact -log p(x | context) in nats per string, EOS included: x (T, N, L) -> (T, N)."""
        logp = self._query_log_probs(x, context)
        target = torch.where(x == PAD, torch.zeros_like(x), x)
        tok = logp.gather(-1, target[..., None]).squeeze(-1)  # (T, N, L)
        return -(tok * (x != PAD).to(tok.dtype)).sum(-1)

    def nll(self, x: Tensor, context: dict[str, Tensor], num_samples: int = 1, chunk: int = 256,
            generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL (no latent: ``num_samples`` is unused), ``chunk`` strings per pass."""
        return exact_nll(self, x, context, chunk)

    def episode_loss(self, support: Tensor, mask: Tensor, query: Tensor, noise: Tensor | None = None) -> Tensor:
        """K-shot for every K at once: the present shots (T, K, L) then the queries (T, Q, L) in one
        sequence per task; query j is scored given the shots and queries 0..j-1. -> (T, Q) nats.

        The sequence is cut at ``train_window`` tokens (the cost of attention grows with its
        square): a query past the cut is scored on the bytes that fit, or not at all."""
        T, K, _ = support.shape
        Q = query.shape[1]
        present = torch.cat([mask, torch.ones(query.shape[:2], dtype=torch.bool, device=mask.device)], 1)
        seq, owner = _pack(torch.cat([support, query], 1), present)  # (T, S)
        width = min(_concrete_max((seq != PAD).sum(1)) or seq.shape[1], self.train_window + 1)
        seq, owner = seq[:, :width], owner[:, :width]
        inp, tgt, owner = seq[:, :-1], seq[:, 1:], owner[:, 1:]
        inp = torch.where(inp == PAD, torch.full_like(inp, EOS), inp)
        pos = torch.arange(inp.shape[1], device=inp.device).expand_as(inp)
        h, _ = self._run(inp, pos)
        counts = None
        if self.match_order >= 0:  # votes of every earlier position: its next token is an earlier input
            codes = self._codes(inp, _string_offsets(inp))
            S = inp.shape[1]
            earlier = torch.ones(S, S, dtype=torch.bool, device=inp.device).tril(-1)[None]
            counts = match_counts(codes, codes, tgt, earlier, h.dtype)
        if self.track:  # each expert's running log-likelihood of the sequence so far
            experts, cues = self._experts(h, counts)
            logp = self._combine(h, experts, cues, self._track(self._at(experts, tgt), tgt != PAD))
        else:
            logp = self._mix(h, counts)  # (T, S, NUM_OUTPUTS)
        tok = logp.gather(-1, tgt.clamp(max=EOS)[..., None]).squeeze(-1) * (tgt != PAD).to(h.dtype)
        per_string = torch.zeros(T, K + Q + 1, dtype=h.dtype, device=h.device).scatter_add(1, owner, -tok)
        return per_string[:, K : K + Q]

    # ------------------------------------------------------------------ sampling
    def _start(self, context: dict[str, Tensor], n: int, max_len: int) -> tuple[dict[str, Any], Tensor]:
        """The decoding state of n strings per task after the prefix (its keys and values computed
        once), and the first input of each (B = T n,): the prefix's separator."""
        prefix = context["prefix"]
        kvs, length, readable, prior = self._prefix_state(prefix)
        B, hd = prefix.shape[0] * n, self.d_model // self.heads

        def rep(t: Tensor) -> Tensor:  # task rows -> sample rows (the samples of a task are adjacent)
            return t.repeat_interleave(n, 0)

        P = prefix.shape[1]
        buffers = []  # per layer: keys and values of the prefix, then of the string as it is written
        for k, v in kvs:
            kb, vb = k.new_zeros(B, self.heads, P + max_len, hd), v.new_zeros(B, self.heads, P + max_len, hd)
            kb[:, :, :P], vb[:, :, :P] = rep(k), rep(v)
            buffers.append((kb, vb))
        visible = torch.cat([rep(readable), torch.ones(B, max_len, dtype=torch.bool, device=prefix.device)], 1)
        state: dict[str, Any] = {"t": 0, "P": P, "kv": buffers, "visible": visible, "pos0": rep(length - 1)}
        if self.match_order >= 0:
            state["k_codes"] = [rep(c) for c in self._codes(prefix, _string_offsets(prefix))]
            state["k_next"] = rep(torch.where(readable, prefix.roll(-1, 1), torch.full_like(prefix, PAD)))
            state["own_codes"] = [torch.zeros(B, max_len, dtype=torch.long, device=prefix.device)
                                  for _ in range(self.match_order)]
            state["own_next"] = torch.full((B, max_len), PAD, dtype=torch.long, device=prefix.device)
            state["hist"] = torch.full((B, max(self.match_order, 1)), BOS, dtype=torch.long, device=prefix.device)
        if self.track:  # the experts' log-likelihood sums and count, and the last step's experts
            state["track"], state["experts"] = rep(prior), None
        return state, rep(prefix.gather(1, (length - 1)[:, None]).squeeze(1))

    @torch.no_grad()
    def _step(self, state: dict[str, Any], tok: Tensor) -> Tensor:
        """Feed one input token per row (B,); returns the next-token log-probs (B, NUM_OUTPUTS)
        (the same as a full recompute over prefix and string) and advances ``state`` in place."""
        t, at = state["t"], state["P"] + state["t"]
        x = self.embed(tok)[:, None]  # (B, 1, D)
        rope = _rotary((state["pos0"] + t)[:, None], self.d_model // self.heads, x.dtype)
        mask = state["visible"][:, None, None, : at + 1]  # (B, 1, 1, P + t + 1)
        for block, (kb, vb) in zip(self.blocks, state["kv"]):
            x, _ = block(x, rope, mask, cache=(kb, vb, at))
        h = self.ln_f(x[:, 0])
        counts = None
        if self.match_order >= 0:
            hist = state["hist"] = torch.cat([state["hist"][:, 1:], _as_start(tok)[:, None]], 1)
            q = [history_codes(hist, n)[:, -1] for n in range(1, self.match_order + 1)]  # (B,) per order
            if t > 0:
                state["own_next"][:, t - 1] = tok  # what followed the previous position
            for codes, c in zip(state["own_codes"], q):
                codes[:, t] = c
            k_codes = [torch.cat([pc, oc[:, :t]], 1) for pc, oc in zip(state["k_codes"], state["own_codes"])]
            k_next = torch.cat([state["k_next"], state["own_next"][:, :t]], 1)
            allow = torch.ones(1, 1, k_next.shape[1], dtype=torch.bool, device=tok.device)
            counts = [c[:, 0] for c in match_counts([c[:, None] for c in q], k_codes, k_next, allow, h.dtype)]
        state["t"] = t + 1
        if not self.track:
            return self._mix(h, counts)
        if state["experts"] is not None:  # the token just fed, as the experts predicted it
            state["track"] = state["track"] + torch.cat([self._at(state["experts"], tok), torch.ones_like(h[:, :1])], -1)
        experts, cues = self._experts(h, counts)
        state["experts"] = experts
        return self._combine(h, experts, cues, self._track_features(state["track"][:, :-1], state["track"][:, -1]))

    def sample_options(self, ecfg: EvalConfig) -> dict[str, Any]:
        """The guidance toward the support that ``ecfg`` configures (``eval.text_guidance``)."""
        return {"guidance": ecfg.text_guidance}

    @torch.no_grad()
    def sample(self, n: int, context: dict[str, Tensor], generator: torch.Generator | None = None,
               temperature: float = 1.0, max_len: int | None = None, top_p: float = 1.0,
               guidance: float = EvalConfig.text_guidance) -> Tensor:
        """(T, n, L) ids of strings decoded under the UTF-8 grammar with a key-value cache;
        ``temperature <= 0`` is greedy, ``top_p < 1`` nucleus sampling. ``guidance`` (default the
        eval config's ``eval.text_guidance``) g != 1 is
        classifier-free guidance for text (Sanchez et al. 2023, after Ho & Salimans 2022): each
        byte is drawn from ``log p(. | -) + g (log p(. | support) - log p(. | -))``, the
        unconditional model (an empty support) decoding the same string beside the conditional
        one; g = 1 is the model's own distribution (the one its NLL scores), g > 1 makes the
        samples follow what is particular to the support, g = 0 ignores it. Guided draws keep
        to the bytes the conditional model finds plausible (probability at least
        ``GUIDANCE_PLAUSIBLE`` times its most likely byte's, the adaptive plausibility constraint
        of contrastive decoding, Li et al. 2023): the ratio would otherwise favour bytes both
        models find unlikely (rare letters of other languages)."""
        T, L = context["prefix"].shape[0], max_len or self.max_len
        guided = guidance != 1.0
        if guided:  # the unconditional rows: the prefix BOS alone, after the conditional ones
            empty = torch.full_like(context["prefix"], PAD)
            empty[:, 0] = BOS
            context = {"prefix": torch.cat([context["prefix"], empty])}
        state, first = self._start(context, n, L)  # first inputs: each prefix's separator
        tok = first[: T * n]
        fsm = torch.zeros_like(tok)  # UTF-8 automaton states
        done = torch.zeros_like(tok, dtype=torch.bool)
        out = torch.full((T * n, L), PAD, dtype=torch.long, device=tok.device)
        for t in range(L):
            logp = self._step(state, first if t == 0 else torch.cat([tok, tok]) if guided else tok)
            legal = legal_tokens(fsm, t, L)
            if guided:  # among the legal bytes, those the conditional model finds plausible
                cond, uncond = logp[: T * n].masked_fill(~legal, float("-inf")), logp[T * n :]
                legal = legal & (cond >= cond.max(-1, keepdim=True).values + math.log(GUIDANCE_PLAUSIBLE))
                logp = uncond + guidance * (logp[: T * n] - uncond)
            logits = logp.masked_fill(~legal, float("-inf"))
            tok = draw_token(logits, temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, PAD), tok)
            out[:, t] = tok
            fsm, done = advance(fsm, tok, done)
            if bool(done.all()):
                break
        return out.reshape(T, n, L)


# ----------------------------------------------------------------------------- building
def build_text_transformer(model_cfg: ModelConfig, taskset_meta: dict) -> TextTransformer:
    """A :class:`TextTransformer` of width ``model.hidden`` from the ``model.extra`` keys of
    :class:`TextTransformerExtra` and the tokenizer facts in ``TaskSet.meta`` (checkpoints from
    before ``track`` load without it: the constructor's default is False)."""
    extra = parse_extra(TextTransformer, model_cfg)
    check_byte_tokenizer("text_transformer", taskset_meta)
    values = {**dataclasses.asdict(extra), "max_len": extra.max_len or int(taskset_meta.get("max_len", 24))}
    return TextTransformer(d_model=model_cfg.hidden, **values)

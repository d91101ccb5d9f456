"""A set-conditioned byte-level language model: few-shot generation of words and lines.

The amortized recipe of the Neural Statistician (Edwards & Storkey, 2017) applied to
strings, without a latent variable: a permutation-invariant encoder reads the K support
strings (a GRU per string, an MLP per shot, a masked mean over shots plus ``log(1+k)`` so
the model knows how much evidence it has) and gives a context ``c``; an autoregressive GRU
over UTF-8 bytes (Cho et al., 2014) models ``p(x | c) = prod_t p(x_t | x_<t, c)``. An empty
support gives the learned unconditional context.

The context also carries a *cache* of the support (Kuhn & De Mori, 1990): its smoothed byte
unigram and byte bigram ``p(next byte | previous byte)``, added to the output log-probs
with learned, state-dependent weights. It lets the model put mass on bytes it never
produced in meta-training (a script unseen in training) from the first shot, which a
learned embedding of the support alone cannot do. Longer contexts come from a *match
cache* (orders ``match_orders``, e.g. 2, 3, 4): at every position, the support positions
whose previous n tokens equal the current ones (word starts included: the history is
padded with BOS) vote for the byte that followed them there, backed off order by order to
the bigram, as in prediction by partial matching (Cleary & Witten, 1984), meant to carry a
language's clusters, prefixes and endings from ten words (opt-in: at an equal CPU budget it
did not lower held-out bits/char, see docs/design-notes.md); the raw support ids travel in
the context for it. Because there is no latent, ``loss`` and
``nll`` are both the exact ``-log p(x | support)`` in nats per string (EOS included).

Sampling is *constrained* to the UTF-8 grammar (:mod:`fewgen.models.utf8`: lead byte, then the right number of
continuation bytes in the right ranges, no overlong forms or surrogates, no control
characters, EOS only between characters, at least one character, and always room to finish
within ``max_len``), so every sample decodes to valid, non-empty UTF-8. ``nll`` scores the
unconstrained model, an upper bound on the NLL under the renormalised sampling distribution.

The GRUs are written out (one matmul per step) rather than ``nn.GRU``, so the model is
plain tensor algebra: ``functional_call``, ``torch.func.grad`` / ``vmap`` and second-order
MAML all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Context, GenerativeModel, check_byte_tokenizer, exact_nll, parse_extra
from .bytes import BOS, EOS, NUM_OUTPUTS, PAD, VOCAB_SIZE
from .nn import masked_mean, norm_mlp
from .text_cache import CODE_BASE, MATCH_BETA, history_codes, match_log_probs
from .utf8 import advance, draw_token, legal_tokens


# ----------------------------------------------------------------------------- blocks
class GRU(nn.Module):
    """A single-layer GRU over a time axis, written out so it is vmap- and grad-of-grad-safe."""

    def __init__(self, inp: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_in = nn.Linear(inp, 3 * hidden)
        self.w_h = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: Tensor, h: Tensor, keep: Tensor | None = None,
                cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, L, I), h (B, H), keep (B, L) bool: where False the state is carried unchanged;
        cond (B, 3H): an input projection added at every step (a constant conditioning input).

        Returns all states (B, L, H) and the last state (B, H).
        """
        gx = self.w_in(x)  # (B, L, 3H): the input part of every step at once
        if cond is not None:
            gx = gx + cond[:, None, :]
        outs = []
        for t in range(x.shape[1]):
            h_new = self.step(gx[:, t], h)
            h = h_new if keep is None else torch.where(keep[:, t, None], h_new, h)
            outs.append(h)
        return torch.stack(outs, 1), h

    def step(self, gx: Tensor, h: Tensor) -> Tensor:
        """One step from the precomputed input projection gx (B, 3H) and state h (B, H)."""
        r_x, z_x, n_x = gx.chunk(3, -1)
        r_h, z_h, n_h = self.w_h(h).chunk(3, -1)
        r = torch.sigmoid(r_x + r_h)
        z = torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        return (1 - z) * n + z * h


# The support's byte cache: p(next | previous) from the support's byte bigrams, backed off to
# its unigram. Rows are the previous token (a byte, or row 256 = start of string), columns the
# next token (a byte or EOS).
CACHE_ROWS = 257
CACHE_ALPHA = 0.5  # add-alpha smoothing of the unigram
CACHE_BETA = 1.0  # weight of the unigram in the bigram's back-off


def _cache_row(prev: Tensor) -> Tensor:
    """Cache row of a previous token: bytes keep their value, BOS (start) is row 256."""
    return torch.where(prev >= 256, torch.full_like(prev, CACHE_ROWS - 1), prev)


def _shift_in(x: Tensor) -> Tensor:
    """Decoder inputs of target strings (..., L): BOS then the string, PAD read as EOS."""
    inp = torch.cat([torch.full_like(x[..., :1], BOS), x[..., :-1]], -1)
    return torch.where(inp == PAD, torch.full_like(inp, EOS), inp)


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class TextLMExtra:
    """The ``model.extra`` keys of ``text_lm``."""

    embed: int = 64  # byte embedding size, >= 1
    max_len: int = 0  # bytes per string incl. EOS, >= 1; 0 = the data's
    # The match cache's highest order, 1 to 7; 1 = none (the default: at an equal 240 s CPU budget
    # orders 2-4 cost 35% of the training steps and did not lower held-out bits/char, see
    # docs/design-notes.md). The constructor takes the orders themselves, 2 .. match_orders.
    match_orders: int = 1

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a value out of range."""
        if self.embed < 1:
            raise ConfigError(f"model.extra.embed must be a positive integer, got {self.embed}")
        if self.max_len < 0:
            raise ConfigError(f"model.extra.max_len must be a positive integer (or 0: the data's), got {self.max_len}")
        if not 1 <= self.match_orders <= 7:
            raise ConfigError(f"model.extra.match_orders must be from 1 (no match cache) to 7, got {self.match_orders}")


class TextLM(GenerativeModel):
    """Byte-level GRU language model conditioned on a set of support strings.

    Context (a dict, contract v2): ``learned`` (T, C), the set encoding; ``log_unigram``
    (T, 257) and ``log_bigram`` (T, 257, 257), the support's byte cache; with match orders also
    ``support_ids`` (T, K, max_len) int64, the support's bytes (PAD where absent) in a
    canonical order.
    """

    family = "text_lm"
    modality = "text"
    Extra = TextLMExtra

    def __init__(self, hidden: int = 128, context: int = 128, embed: int = 64, max_len: int = 24,
                 match_orders: tuple[int, ...] = ()) -> None:
        super().__init__()
        consecutive = all(b == a + 1 for a, b in zip(match_orders, match_orders[1:]))
        if not consecutive or (match_orders and not 2 <= match_orders[0] <= match_orders[-1] <= 7):
            raise ConfigError(f"text_lm match orders must be consecutive, from 2 up to 7; got {list(match_orders)}")
        self.hidden, self.embed_dim, self.max_len = hidden, embed, max_len
        self.match_orders = tuple(match_orders)
        self.learned_dim = context
        self.summary_dim = context + NUM_OUTPUTS  # what the recurrent decoder reads: learned + unigram
        self.embed = nn.Embedding(VOCAB_SIZE, embed)
        # Set encoder: string -> GRU state -> per-shot features -> masked mean -> context.
        self.enc_rnn = GRU(embed, hidden)
        self.enc_shot = norm_mlp(hidden, hidden, hidden)
        self.enc_set = norm_mlp(hidden + 1, hidden, context)  # +1: log(1 + k)
        # Decoder: the context summary sets the initial state and enters every step.
        self.dec_init = nn.Linear(self.summary_dim, hidden)
        self.dec_rnn = GRU(embed, hidden)
        self.dec_ctx = nn.Linear(self.summary_dim, 3 * hidden, bias=False)
        self.head = nn.Linear(hidden, NUM_OUTPUTS)
        self.cache_gate = nn.Linear(hidden, 2)  # how much the unigram and the bigram cache count now
        if self.match_orders:  # the match cache's mixture weight, from the state and the evidence
            self.match_gate = nn.Linear(hidden + len(self.match_orders), 1)
            with torch.no_grad():
                self.match_gate.bias.fill_(-1.0)

    def config_dict(self) -> dict[str, Any]:
        out = {"hidden": self.hidden, "context": self.learned_dim, "embed": self.embed_dim, "max_len": self.max_len}
        if self.match_orders:  # absent in checkpoints from before the match cache: they load unchanged
            out["match_orders"] = list(self.match_orders)
        return out

    # ------------------------------------------------------------------ set encoder
    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T, K, L) ids, mask (T, K) bool -> the context (see the class docstring),
        invariant to the order of shots."""
        T, K, L = support.shape
        flat = support.reshape(T * K, L)
        keep = flat != PAD  # (T*K, L): the state stops at the end of the string
        h0 = torch.zeros(T * K, self.hidden, dtype=self.head.weight.dtype, device=support.device)
        _, h = self.enc_rnn(self.embed(flat), h0, keep)  # (T*K, H)
        feats = self.enc_shot(h).reshape(T, K, self.hidden)
        pooled, k = masked_mean(feats, mask)  # (T, H), zeros when empty; (T, 1) shot count
        learned = self.enc_set(torch.cat([pooled, torch.log1p(k)], -1))  # (T, C)
        # Byte cache of the present shots (comparisons, not one_hot: vmap-safe). Empty support:
        # uniform unigram and bigram, i.e. constant logits that change nothing.
        classes = torch.arange(NUM_OUTPUTS, device=support.device)
        present = ((support != PAD) & mask[..., None]).to(feats.dtype)  # (T, K, L)
        nxt = (support[..., None] == classes).to(feats.dtype) * present[..., None]  # (T, K, L, 257)
        prev = _cache_row(torch.cat([torch.full_like(support[..., :1], BOS), support[..., :-1]], -1))
        prv = (prev[..., None] == classes).to(feats.dtype)  # (T, K, L, 257)
        uni_counts = nxt.sum((1, 2))  # (T, 257)
        bi_counts = torch.einsum("tkli,tklj->tij", prv, nxt)  # (T, rows, 257)
        unigram = (uni_counts + CACHE_ALPHA) / (uni_counts.sum(-1, keepdim=True) + CACHE_ALPHA * NUM_OUTPUTS)
        bigram = (bi_counts + CACHE_BETA * unigram[:, None, :]) / (bi_counts.sum(-1, keepdim=True) + CACHE_BETA)
        ctx = {"learned": learned, "log_unigram": unigram.log(), "log_bigram": bigram.log()}
        if self.match_orders:  # the support's ids for the match cache, max_len per shot
            ids = torch.where(present > 0, support, torch.full_like(support, PAD))
            ids = F.pad(ids, (0, self.max_len - L), value=PAD) if L < self.max_len else ids[..., : self.max_len]
            # In a canonical order (by a hash of each string), so the context itself, not only
            # what the model makes of it, is invariant to the order of the shots.
            key = torch.zeros_like(ids[..., 0])
            for i in range(ids.shape[-1]):
                key = (key * CODE_BASE + ids[..., i]) % 2147483647
            order = torch.sort(key, dim=1, stable=True).indices  # (T, K)
            ctx["support_ids"] = ids.gather(1, order[..., None].expand_as(ids))
        return ctx

    def _summary(self, context: Context) -> Tensor:
        """What the recurrent decoder reads: the learned encoding and the log unigram, (T, C + 257)."""
        return torch.cat([context["learned"], context["log_unigram"]], -1)

    def _support_events(self, context: Context) -> tuple[Tensor, list[Tensor]]:
        """From the context: the support's next tokens (T, P) (PAD where none: no vote) and its
        history codes for every match order [(T, P)], P = K * max_len positions."""
        ids = context["support_ids"]  # (T, K, max_len)
        T = ids.shape[0]
        codes = [history_codes(_shift_in(ids), n).reshape(T, -1) for n in self.match_orders]
        return ids.reshape(T, -1), codes

    def _out(self, h: Tensor, context: Context, task: Tensor, prev: Tensor,
             match: tuple[list[Tensor], Tensor] | None = None) -> Tensor:
        """Next-token log-scores (..., NUM_OUTPUTS) from decoder states h (..., H), the task index
        and previous token of each state (...), the context and the match
        cache (:meth:`_teacher_match`). With a match cache they are normalised log-probs of the
        mixture ``(1 - lam) p_model + lam p_match`` (a cache language model, Grave et al. 2017),
        ``lam`` depending on the state and on how much the support matched."""
        log_uni = context["log_unigram"][task]  # (..., 257)
        log_bi = context["log_bigram"][task, _cache_row(prev)]
        gate = self.cache_gate(h)
        out = self.head(h) + gate[..., :1] * log_uni + gate[..., 1:] * log_bi
        if self.match_orders and match is not None:
            per_order, evidence = match
            lam = self.match_gate(torch.cat([h, evidence], -1))  # (..., 1) logit of lam
            out = torch.logaddexp(F.logsigmoid(-lam) + F.log_softmax(out, -1), F.logsigmoid(lam) + per_order[-1])
        return out

    def _teacher_match(self, inp: Tensor, context: Context) -> tuple[list[Tensor], Tensor]:
        """Match-cache log-probs (T, N, L, 257) for every order at every position of inputs
        ``inp`` (T, N, L), all positions against all support positions at once, and the
        evidence (T, N, L, orders) (see :func:`~fewgen.models.text_cache.match_log_probs`)."""
        T, N, L = inp.shape
        nxt, codes = self._support_events(context)
        base = context["log_bigram"].exp().gather(1, _cache_row(inp).reshape(T, N * L, 1).expand(T, N * L, NUM_OUTPUTS))
        real = (nxt != PAD)[:, None, :]  # (T, 1, P): positions with a next token
        target = nxt.clamp(max=EOS)[:, None, :].expand(T, N * L, nxt.shape[1])  # (T, N*L, P)
        counts = []
        for n, sup_code in zip(self.match_orders, codes):
            q = history_codes(inp, n).reshape(T, N * L, 1)
            match = ((q == sup_code[:, None, :]) & real).to(base.dtype)  # (T, N*L, P)
            # votes of the matching positions for what followed them: a scatter, O(N*L*P)
            counts.append(torch.zeros(T, N * L, NUM_OUTPUTS, dtype=base.dtype, device=base.device)
                          .scatter_add(2, target, match))  # (T, N*L, 257)
        per_order, evidence = match_log_probs(counts, base, MATCH_BETA)
        return [lp.reshape(T, N, L, NUM_OUTPUTS) for lp in per_order], evidence.reshape(T, N, L, -1)

    # ------------------------------------------------------------------ likelihood
    def _logits(self, x: Tensor, context: Context) -> Tensor:
        """Next-token logits for teacher forcing: x (T, N, L) -> (T, N, L, NUM_OUTPUTS)."""
        T, N, L = x.shape
        inp = _shift_in(x)  # after the end: anything, masked below
        summary = self._summary(context)

        def per_string(v: Tensor) -> Tensor:  # (T, D) -> (T*N, D)
            return v[:, None, :].expand(T, N, v.shape[-1]).reshape(T * N, v.shape[-1])

        h0 = per_string(torch.tanh(self.dec_init(summary)))
        states, _ = self.dec_rnn(self.embed(inp).reshape(T * N, L, -1), h0, cond=per_string(self.dec_ctx(summary)))
        task = torch.arange(T, device=x.device)[:, None, None].expand(T, N, L)
        match = self._teacher_match(inp, context) if self.match_orders else None
        return self._out(states.reshape(T, N, L, self.hidden), context, task, inp, match)

    def loss(self, x: Tensor, context: Context, noise: Tensor | None = None) -> Tensor:
        """Exact -log p(x | context) in nats per string, EOS included: x (T, N, L) -> (T, N)."""
        logp = F.log_softmax(self._logits(x, context), -1)
        target = torch.where(x == PAD, torch.zeros_like(x), x)
        tok = logp.gather(-1, target[..., None]).squeeze(-1)  # (T, N, L)
        return -(tok * (x != PAD).to(tok.dtype)).sum(-1)

    def nll(self, x: Tensor, context: Context, num_samples: int = 1, chunk: int = 256,
            generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL (no latent: ``num_samples`` is unused), ``chunk`` examples per pass."""
        return exact_nll(self, x, context, chunk)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, context: Context, generator: torch.Generator | None = None,
               temperature: float = 1.0, max_len: int | None = None, top_p: float = 1.0) -> Tensor:
        """(T, n, L) ids of strings decoded under the UTF-8 grammar; ``temperature <= 0`` is greedy.
        ``top_p < 1`` is nucleus sampling (Holtzman et al. 2020): each step draws from the smallest
        set of tokens whose probability reaches ``top_p``, cutting the long tail of stray bytes."""
        summary = self._summary(context)
        T, L = summary.shape[0], max_len or self.max_len
        dev = summary.device
        task = torch.arange(T, device=dev).repeat_interleave(n)  # (B,) the task of each sample
        h = torch.tanh(self.dec_init(summary))[task]
        gctx = self.dec_ctx(summary)[task]  # (B, 3H)
        tok = torch.full((T * n,), BOS, dtype=torch.long, device=dev)
        state = torch.zeros(T * n, dtype=torch.long, device=dev)
        done = torch.zeros(T * n, dtype=torch.bool, device=dev)
        out = torch.full((T * n, L), PAD, dtype=torch.long, device=dev)
        if self.match_orders:
            nxt, codes = self._support_events(context)
            real = (nxt != PAD)[task]  # (B, P): support positions with a next token
            nxt = nxt.clamp(max=EOS)[task]
            codes = [c[task] for c in codes]
            bigram = context["log_bigram"].exp()
        hist = torch.full((T * n, max(self.match_orders or (1,))), BOS, dtype=torch.long, device=dev)
        for t in range(L):
            gx = self.dec_rnn.w_in(self.embed(tok)) + gctx
            h = self.dec_rnn.step(gx, h)
            match = None
            if self.match_orders:
                hist = torch.cat([hist[:, 1:], tok[:, None]], 1)  # the last inputs, oldest first
                counts = []
                for order, sup_code in zip(self.match_orders, codes):
                    q = history_codes(hist, order)[:, -1:]  # (B, 1)
                    hit = ((q == sup_code) & real).to(h.dtype)  # (B, P)
                    counts.append(torch.zeros(T * n, NUM_OUTPUTS, dtype=h.dtype, device=dev).scatter_add_(1, nxt, hit))
                match = match_log_probs(counts, bigram[task, _cache_row(tok)], MATCH_BETA)
            logits = self._out(h, context, task, tok, match)  # (B, NUM_OUTPUTS)
            logits = logits.masked_fill(~legal_tokens(state, t, L), float("-inf"))
            tok = draw_token(logits, temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, PAD), tok)
            out[:, t] = tok
            state, done = advance(state, tok, done)
        return out.reshape(T, n, L)


# ----------------------------------------------------------------------------- building
def build_text_lm(model_cfg: ModelConfig, taskset_meta: dict) -> TextLM:
    """A :class:`TextLM` from the model config (``hidden``, ``context`` and the ``model.extra`` keys
    of :class:`TextLMExtra`) and the tokenizer facts in ``TaskSet.meta``."""
    extra = parse_extra(TextLM, model_cfg)
    check_byte_tokenizer("text_lm", taskset_meta)
    return TextLM(hidden=model_cfg.hidden, context=model_cfg.context, embed=extra.embed,
                  max_len=extra.max_len or int(taskset_meta.get("max_len", 24)),
                  match_orders=tuple(range(2, extra.match_orders + 1)))

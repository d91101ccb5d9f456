"""A byte n-gram model of strings with a support cache: the classical baseline for few-shot text.

The distribution of a string given K support strings of its task is, token by token (UTF-8
bytes, then ``EOS``; the same tokens as :mod:`fewgen.models.text_lm`),

    p(x_t | x_<t, support) = (1 - lambda_K) P_bg(x_t | h) + lambda_K P_sup(x_t | h)

with h the previous ``order - 1`` tokens (``BOS`` before the start):

- ``P_bg``, the *background* n-gram, is fit by counting all meta-train strings
  (:mod:`fewgen.models.ngram`: interpolated Witten-Bell or Kneser-Ney smoothing). Its tables
  are the model's buffers, so checkpoints save and load them like weights.
- ``P_sup`` is an interpolated Witten-Bell n-gram of the same order fit on the support strings
  alone, at every call (a cache language model, Kuhn & De Mori 1990): it gives a script or a
  language unseen in meta-training its letters and clusters from the first shot.
- ``lambda_K = b + (a - b) K / (K + kappa)`` grows with the evidence, from ``b`` at K = 0 (where
  ``P_sup`` is uniform: a floor for bytes the background never saw, e.g. an unseen script) to
  ``a``; ``a``, ``b`` and ``kappa`` are chosen by a grid search on the meta-*validation* tasks
  (:meth:`TextNgram.fit_counts`). They are the model's only parameters (``mix``: logit a,
  log kappa, logit b), so fine-tuning on a support (``--steps``) adapts the mixture to the task.

There is no gradient training: ``fewgen train`` with ``model.family=text_ngram`` counts the
meta-train data and picks lambda in seconds (:func:`fewgen.training.train` calls
:meth:`TextNgram.fit_counts`: the family is in ``models.COUNTED_FAMILIES``). A model built from its
constructor alone has an empty background and ``lambda ~ 1`` for K > 0: the support n-gram only.
``loss`` and ``nll`` are the exact ``-log p(x | support)`` in nats per string, EOS included;
``sample`` decodes under the UTF-8 grammar (:mod:`fewgen.models.utf8`).

Context (contract v2): ``{"support": (T, K, L) ids, PAD where a shot is absent, in a canonical
order (so the context is invariant to the order of the shots), "shots": (T,) the number of
present shots}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ConfigError
from . import ngram
from .base import Context, GenerativeModel, check_byte_tokenizer, exact_nll, parse_extra
from .bytes import BOS, EOS, NUM_OUTPUTS, PAD, VOCAB_SIZE
from .text_lm import _shift_in
from .utf8 import advance, draw_token, legal_tokens

MAX_ORDER = 6  # 259**5 * 257 keys still fit in int64
VAL_SHOTS = (0, 1, 5, 10, 30)  # support sizes lambda is chosen for (those the meta-val tasks allow)
VAL_QUERIES = 50  # query strings per meta-val task and support size
GRID_A = torch.linspace(0.05, 1.0, 20)
GRID_KAPPA = torch.logspace(-2, 6, 17, base=2.0)  # 0.25 .. 64 shots
GRID_B = torch.tensor([0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3])
DEFAULT_MIX = (1.0, 5.0, 0.01)  # (a, kappa, b) when there are no meta-val tasks to choose on
FRESH_MIX = (1.0, 1e-3, 0.0)  # a model not fit: the support n-gram alone
MIX_EPS = 1e-4  # a and b are kept in [MIX_EPS, 1 - MIX_EPS] (finite logits)
HASH_PRIME = 2147483647  # canonical order of the shots: a polynomial hash of their ids


@dataclass(frozen=True)
class TextNgramExtra:
    """The ``model.extra`` keys of ``text_ngram`` (constructor arguments of the same names)."""

    order: int = 4  # n of the n-grams, 1 to MAX_ORDER
    smoothing: str = "kneser_ney"  # the background's: kneser_ney | witten_bell (fewgen.models.ngram.SMOOTHING)
    max_len: int = 0  # bytes per string incl. EOS, >= 1; 0 = the data's

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a value out of range."""
        if not 1 <= self.order <= MAX_ORDER:
            raise ConfigError(f"model.extra.order must be an integer from 1 to {MAX_ORDER}, got {self.order!r}")
        if self.smoothing not in ngram.SMOOTHING:
            raise ConfigError(f"model.extra.smoothing must be one of {', '.join(ngram.SMOOTHING)}, "
                              f"got {self.smoothing!r}")
        if self.max_len < 0:
            raise ConfigError(f"model.extra.max_len must be a positive integer (or 0: the data's), got {self.max_len}")


class TextNgram(GenerativeModel):
    """Background byte n-gram (meta-train counts) mixed with a support n-gram."""

    family = "text_ngram"
    modality = "text"
    Extra = TextNgramExtra

    def __init__(self, order: int = 4, smoothing: str = "kneser_ney", max_len: int = 24,
                 sizes: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        TextNgramExtra(order, smoothing, max_len).validate(hidden=0)  # no size of it is model.hidden
        self.order, self.smoothing, self.max_len = order, smoothing, max_len
        sizes = [tuple(s) for s in sizes] or [(0, 0)] * order
        if len(sizes) != order:
            raise ConfigError(f"text_ngram: {len(sizes)} table sizes for order {order}")
        for m, (u, h) in enumerate(sizes):  # negative keys match nothing: an empty background
            self.register_buffer(f"keys{m}", torch.arange(-u, 0, dtype=torch.long))
            self.register_buffer(f"log_prob{m}", torch.zeros(u))
            self.register_buffer(f"hists{m}", torch.arange(-h, 0, dtype=torch.long))
            self.register_buffer(f"log_gamma{m}", torch.zeros(h))
        self.mix = nn.Parameter(torch.zeros(3))  # (logit a, log kappa, logit b) of lambda_K
        self.set_mixing(*FRESH_MIX)

    def config_dict(self) -> dict[str, Any]:
        sizes = [[getattr(self, f"keys{m}").numel(), getattr(self, f"hists{m}").numel()] for m in range(self.order)]
        return {"order": self.order, "smoothing": self.smoothing, "max_len": self.max_len, "sizes": sizes}

    def tables(self) -> ngram.NgramTables:
        """The background tables (read from the buffers, so ``functional_call`` can replace them)."""
        get = lambda name: tuple(getattr(self, f"{name}{m}") for m in range(self.order))  # noqa: E731
        return ngram.NgramTables(get("keys"), get("log_prob"), get("hists"), get("log_gamma"), VOCAB_SIZE, NUM_OUTPUTS)

    def set_tables(self, tables: ngram.NgramTables) -> None:
        """Replace the background by ``tables`` (the buffers take their sizes)."""
        for m in range(self.order):
            for name, t in (("keys", tables.keys), ("log_prob", tables.log_prob), ("hists", tables.hists),
                            ("log_gamma", tables.log_gamma)):
                self.register_buffer(f"{name}{m}", t[m].to(getattr(self, f"{name}{m}").dtype).contiguous())

    def set_mixing(self, a: float, kappa: float, b: float) -> None:
        """Set lambda_K's ``a`` and ``b`` (kept within [MIX_EPS, 1 - MIX_EPS]) and ``kappa`` (> 0)."""
        a, b = (min(max(v, MIX_EPS), 1 - MIX_EPS) for v in (a, b))
        with torch.no_grad():
            self.mix.copy_(torch.tensor([math.log(a / (1 - a)), math.log(max(kappa, 1e-6)), math.log(b / (1 - b))]))

    def mixing(self) -> list[float]:
        """The current (a, kappa, b)."""
        m = self.mix.detach()
        return [float(torch.sigmoid(m[0])), float(m[1].exp()), float(torch.sigmoid(m[2]))]

    def lam(self, shots: Tensor) -> Tensor:
        """lambda_K = b + (a - b) K / (K + kappa) for support sizes ``shots`` (T,); b when K = 0."""
        a, kappa, b = torch.sigmoid(self.mix[0]), self.mix[1].exp(), torch.sigmoid(self.mix[2])
        return b + (a - b) * shots / (shots + kappa)

    # ------------------------------------------------------------------ the contract
    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T, K, L) ids, mask (T, K) bool -> the support's ids and sizes (module docstring)."""
        ids = torch.where(mask[..., None], support, torch.full_like(support, PAD))
        key = torch.zeros_like(ids[..., 0])
        for i in range(ids.shape[-1]):
            key = (key * VOCAB_SIZE + ids[..., i]) % HASH_PRIME
        order = torch.sort(key, dim=1, stable=True).indices  # (T, K): equal strings are interchangeable
        return {"support": ids.gather(1, order[..., None].expand_as(ids)), "shots": mask.sum(1).to(self.mix.dtype)}

    def _histories(self, inp: Tensor) -> list[Tensor]:
        """History codes of every length 0 .. order-1 at every position of inputs ``inp`` (..., L)."""
        return [ngram.history_codes(inp, m, VOCAB_SIZE, BOS) for m in range(self.order)]

    def _support_log_probs(self, hist: list[Tensor], context: Context) -> Tensor:
        """The support n-gram's log-probs (T, Q, NUM_OUTPUTS) after query histories ``hist[m]``
        (T, Q): interpolated Witten-Bell over the support's events, all positions at once."""
        sup = context["support"]
        T, Q = hist[0].shape
        P = sup.shape[1] * sup.shape[2]  # support positions (0 for an empty support)
        s_hist = [h.reshape(T, P) for h in self._histories(_shift_in(sup))]  # (T, P) per length
        nxt = sup.reshape(T, P)
        real = (nxt != PAD)[:, None, :]  # (T, 1, P): support positions with a next token
        target = nxt.clamp(max=EOS)[:, None, :].expand(T, Q, nxt.shape[1])
        p = torch.full((T, Q, NUM_OUTPUTS), 1.0 / NUM_OUTPUTS, dtype=self.mix.dtype, device=sup.device)
        for m in range(self.order):
            hit = ((hist[m][..., None] == s_hist[m][:, None, :]) & real).to(p.dtype)  # (T, Q, P)
            c = torch.zeros_like(p).scatter_add(2, target, hit)  # (T, Q, O): c(h, w); out of place for vmap
            total, types = c.sum(-1, keepdim=True), (c > 0).sum(-1, keepdim=True).to(p.dtype)
            p = torch.where(total > 0, (c + types * p) / (total + types).clamp(min=1.0), p)
        return p.log()

    def _mixed(self, bg: Tensor, sup: Tensor, shots: Tensor) -> Tensor:
        """log((1 - lambda) e^bg + lambda e^sup) for log-probs (T, ...) and support sizes (T,)."""
        lam = self.lam(shots).reshape(-1, *([1] * (bg.dim() - 1)))
        return torch.logaddexp(torch.log1p(-lam) + bg, lam.log() + sup)

    def token_log_probs(self, x: Tensor, context: Context) -> tuple[Tensor, Tensor]:
        """Background and support log-probs of every token of x (T, N, L): two (T, N, L)."""
        T, N, L = x.shape
        hist = self._histories(_shift_in(x))
        target = x.clamp(max=EOS)  # PAD positions: anything, masked by the caller
        bg = ngram.log_prob(self.tables(), hist, target)
        sup = self._support_log_probs([h.reshape(T, N * L) for h in hist], context)
        sup = sup.gather(-1, target.reshape(T, N * L, 1)).reshape(T, N, L)
        return bg, sup

    def loss(self, x: Tensor, context: Context, noise: Tensor | None = None) -> Tensor:
        """Exact -log p(x | support) in nats per string, EOS included: x (T, N, L) -> (T, N)."""
        bg, sup = self.token_log_probs(x, context)
        tok = self._mixed(bg, sup, context["shots"])
        return -(tok * (x != PAD).to(tok.dtype)).sum(-1)

    def nll(self, x: Tensor, context: Context, num_samples: int = 1, chunk: int = 256,
            generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL (no latent: ``num_samples`` is unused), ``chunk`` examples per pass."""
        return exact_nll(self, x, context, chunk)

    @torch.no_grad()
    def sample(self, n: int, context: Context, generator: torch.Generator | None = None,
               temperature: float = 1.0, max_len: int | None = None, top_p: float = 1.0) -> Tensor:
        """(T, n, L) ids of strings decoded under the UTF-8 grammar; ``temperature <= 0`` is greedy,
        ``top_p < 1`` nucleus sampling (:func:`fewgen.models.utf8.draw_token`)."""
        T, L = context["shots"].shape[0], max_len or self.max_len
        dev = context["shots"].device
        tok = torch.full((T * n,), BOS, dtype=torch.long, device=dev)
        hist = torch.full((T * n, max(self.order - 1, 1)), BOS, dtype=torch.long, device=dev)  # last inputs
        state = torch.zeros(T * n, dtype=torch.long, device=dev)
        done = torch.zeros(T * n, dtype=torch.bool, device=dev)
        out = torch.full((T * n, L), PAD, dtype=torch.long, device=dev)
        shots = context["shots"].repeat_interleave(n)  # (B,)
        every = torch.arange(NUM_OUTPUTS, device=dev)
        for t in range(L):
            hist = torch.cat([hist[:, 1:], tok[:, None]], 1)
            codes = [h[:, -1] for h in self._histories(hist)]  # (B,) per history length
            bg = ngram.log_prob(self.tables(), [c[:, None] for c in codes], every)  # (B, O)
            sup = self._support_log_probs([c.reshape(T, n) for c in codes], context).reshape(T * n, -1)
            logits = self._mixed(bg, sup, shots).masked_fill(~legal_tokens(state, t, L), float("-inf"))
            tok = draw_token(logits, temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, PAD), tok)
            out[:, t] = tok
            state, done = advance(state, tok, done)
        return out.reshape(T, n, L)

    # ------------------------------------------------------------------ fitting by counting
    def fit_counts(self, train: Sequence[Tensor], val: Sequence[Tensor], seed: int = 0) -> dict[str, Any]:
        """Fit the background on every string of the meta-train tasks (``train``: one (N_i, L) id
        tensor per task), then choose lambda_K on the meta-val tasks (``val``, see :func:`choose_mix`).
        Returns what was fit and measured."""
        x = torch.cat([ex.reshape(-1, ex.shape[-1]) for ex in train])  # (E, L)
        hist = [h[x != PAD] for h in self._histories(_shift_in(x))]
        self.set_tables(ngram.fit(hist, x[x != PAD].clamp(max=EOS), VOCAB_SIZE, NUM_OUTPUTS, self.smoothing))
        info: dict[str, Any] = {"train_strings": len(x), "train_tokens": int((x != PAD).sum()),
                                "table_sizes": self.config_dict()["sizes"]}
        if len(val) == 0:  # nothing to choose on: a default, and say so
            self.set_mixing(*DEFAULT_MIX)
            return {**info, "mix": self.mixing(), "mix_chosen_on": "none (no meta-val tasks)"}
        return {**info, **choose_mix(self, val, seed)}


def _val_tokens(model: TextNgram, val: Sequence[Tensor], shots: int, seed: int) -> tuple[Tensor, Tensor, Tensor] | None:
    """For every meta-val task with enough strings: K seeded support strings and up to
    ``VAL_QUERIES`` others; their tokens' background and support log-probs (flat) and task index."""
    bg, sup, chars = [], [], []
    g = torch.Generator().manual_seed(seed)
    for ex in val:
        if len(ex) < shots + 2:
            continue
        perm = torch.randperm(len(ex), generator=g)
        s, q = ex[perm[:shots]][None], ex[perm[shots : shots + VAL_QUERIES]][None]  # (1, K, L), (1, Q, L)
        with torch.no_grad():
            b, p = model.token_log_probs(q, model.context(s, torch.ones(1, shots, dtype=torch.bool)))
        keep = q != PAD
        bg.append(b[keep])
        sup.append(p[keep])
        chars.append(((q & 0xC0) != 0x80)[keep])  # tokens that start a character (or EOS)
    if not bg:
        return None
    return torch.cat(bg), torch.cat(sup), torch.cat(chars)


def choose_mix(model: TextNgram, val: Sequence[Tensor], seed: int = 0) -> dict[str, Any]:
    """Grid search of (a, kappa, b) minimising the summed bits/char of meta-val queries over the
    support sizes ``VAL_SHOTS``; sets ``model.mix`` and returns the grid's verdict."""
    per_k = {k: v for k in VAL_SHOTS if (v := _val_tokens(model, val, k, seed)) is not None}
    if not per_k:
        model.set_mixing(*DEFAULT_MIX)
        return {"mix": model.mixing(), "mix_chosen_on": "none (meta-val tasks too small)"}
    a, kappa, b = GRID_A[:, None, None], GRID_KAPPA[None, :, None], GRID_B[None, None, :]  # (A, C, B) grid
    total = torch.zeros(len(GRID_A), len(GRID_KAPPA), len(GRID_B), dtype=torch.float64)
    bits: dict[int, Tensor] = {}
    for k, (bg, sup, chars) in per_k.items():
        lam = (b + (a - b) * k / (k + kappa)).double()  # (A, C, B); b when k = 0
        tok = torch.logaddexp(torch.log1p(-lam)[..., None] + bg.double(), lam.log()[..., None] + sup.double())
        bits[k] = -tok.sum(-1) / (math.log(2) * chars.sum())  # (A, C, B): bits/char at this K
        total += bits[k]
    best = [int(i) for i in torch.unravel_index(total.argmin(), total.shape)]
    model.set_mixing(float(GRID_A[best[0]]), float(GRID_KAPPA[best[1]]), float(GRID_B[best[2]]))
    with torch.no_grad():
        lams = {str(k): float(model.lam(torch.tensor([float(k)]))[0]) for k in per_k}
    return {"mix": model.mixing(), "mix_chosen_on": f"{len(val)} meta-val tasks",
            "val_bits_per_char": {str(k): float(v[tuple(best)]) for k, v in bits.items()}, "val_lambda": lams}


# ----------------------------------------------------------------------------- building
def build_text_ngram(model_cfg: ModelConfig, taskset_meta: dict) -> TextNgram:
    """A :class:`TextNgram` (empty background) from the ``model.extra`` keys of
    :class:`TextNgramExtra` and the tokenizer facts in ``TaskSet.meta``."""
    extra = parse_extra(TextNgram, model_cfg)
    check_byte_tokenizer("text_ngram", taskset_meta)
    return TextNgram(order=extra.order, smoothing=extra.smoothing,
                     max_len=extra.max_len or int(taskset_meta.get("max_len", 24)))

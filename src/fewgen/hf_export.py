"""Pre-train a small causal LM on the meta-train tasks' text and save it as a Hugging Face folder.

No pretrained weights can be downloaded on an offline machine, so ``fewgen export-hf`` makes a
real model to personalise with ``model.family=hf_causal_lm``: a byte-level BPE tokenizer
(``tokenizers``; all 256 bytes in its alphabet, so no string is out of vocabulary, as GPT-2's)
trained on the meta-train strings, and a ``GPT2LMHeadModel`` (Radford et al. 2019) trained on
*packed lines of one task*: ``<bos>w_1\\nw_2\\n...`` with the words of one task (a language) a
line each. That is the in-context template of :mod:`fewgen.models.hf_causal_lm`, so the model
learns to continue a list of words in the same language: in-context learning by construction.
The folder (``config.json``, ``model.safetensors``, tokenizer files) loads with
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .models.bytes import decode_batch
from .tasks.base import TaskSet

BOS_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class ExportConfig:
    """Sizes and budget of the exported model."""

    vocab_size: int = 512  # BPE vocabulary incl. the 256 bytes and <|endoftext|>
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 512
    steps: int = 2000
    batch: int = 16  # packed sequences per step
    lines: int = 24  # words per packed sequence (one task)
    lr: float = 1e-3
    max_seconds: float = 0.0  # stop after this wall-clock time (0 = no limit)
    seed: int = 0


def byte_bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (``vocab_size`` <= 257: bytes only)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size, 257), special_tokens=[BOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=BOS_TOKEN)


def task_strings(tasks: TaskSet) -> list[list[str]]:
    """The strings of every task of a text task set."""
    return [decode_batch(tasks.examples(i)) for i in range(len(tasks))]


def packed_batch(strings: list[list[str]], tokenizer: Any, cfg: ExportConfig, g: torch.Generator) -> torch.Tensor:
    """``cfg.batch`` sequences ``<bos>w_1\\nw_2\\n...`` (B, S), each the words of one random task,
    right-padded with <bos> (padding is not scored: see :func:`pretrain`)."""
    seqs = []
    for _ in range(cfg.batch):
        words = strings[int(torch.randint(len(strings), (1,), generator=g))]
        pick = torch.randint(len(words), (cfg.lines,), generator=g).tolist()
        lines = tokenizer([words[i] + "\n" for i in pick], add_special_tokens=False)["input_ids"]
        seqs.append(([tokenizer.bos_token_id] + [t for line in lines for t in line])[: cfg.n_positions])
    S = max(len(s) for s in seqs)
    out = torch.full((len(seqs), S), -1, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = torch.tensor(s)
    return out


def pretrain(strings: list[list[str]], tokenizer: Any, cfg: ExportConfig,
             log: Callable[[str], None] = print) -> Any:
    """A ``GPT2LMHeadModel`` trained by maximum likelihood on packed lines of one task each (Adam)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(cfg.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(cfg.seed)
    start = time.monotonic()
    model.train()
    for step in range(1, cfg.steps + 1):
        ids = packed_batch(strings, tokenizer, cfg, g)  # (B, S), -1 = padding
        logits = model(input_ids=ids.clamp_min(0), attention_mask=(ids >= 0).long()).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:  # cosine decay to 10%
            group["lr"] = cfg.lr * (0.55 + 0.45 * torch.cos(torch.tensor(step / cfg.steps * torch.pi)).item())
        opt.step()
        elapsed = time.monotonic() - start
        if step % 100 == 0 or step == cfg.steps:
            log(f"export-hf step {step}/{cfg.steps} loss {loss.item():.3f} nats/token ({elapsed:.0f} s)")
        if cfg.max_seconds and elapsed > cfg.max_seconds:
            log(f"export-hf: time budget reached after {step} steps")
            break
    return model.eval()


def export_hf(tasks: TaskSet, out: str | Path, cfg: ExportConfig, log: Callable[[str], None] = print) -> Path:
    """Train the tokenizer and the model on ``tasks`` (the meta-train split) and save both at ``out``."""
    strings = task_strings(tasks)
    tokenizer = byte_bpe_tokenizer([s for words in strings for s in words], cfg.vocab_size)
    model = pretrain(strings, tokenizer, cfg, log)
    out = Path(out)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out

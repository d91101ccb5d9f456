"""Tiny randomly initialised Hugging Face causal-LM folders (GPT-2 and Llama) with a tokenizer
built here (byte-level BPE from `tokenizers`): what the hf_causal_lm tests load, offline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

WORDS = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "a", "ðoʊ", "zebra", "ŝi", "ĉu", "mondo", "kato",
         "hundo", "ĝis", "ŝuo", "ruĝa", "blua", "verda", "flava", "nigra", "blanka", "ora", "arĝenta"]


def tokenizer(vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on WORDS (vocab_size 257: bytes only, no merges)."""
    from fewgen.hf_export import byte_bpe_tokenizer

    return byte_bpe_tokenizer(WORDS * 5, vocab_size)


def base_model(kind: str, vocab: int, seed: int = 0):
    """A tiny random GPT2LMHeadModel or LlamaForCausalLM over ``vocab`` tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=256, n_embd=16, n_layer=2, n_head=2,
                                          bos_token_id=0, eos_token_id=0))
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                        bos_token_id=0, eos_token_id=0))


def folder(kind: str = "gpt2", vocab_size: int = 300, root: str | Path | None = None, seed: int = 0) -> Path:
    """Save a tiny model of ``kind`` and its tokenizer in a new folder (safetensors) and return it."""
    out = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix=f"fewgen-hf-{kind}-"))
    tok = tokenizer(vocab_size)
    base_model(kind, len(tok), seed).save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out

"""Every generator family, tiny, with a small episode of its own data: the parametrisation of
the contract suite (``test_contract.py``). A new family passes the contract by adding one entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fewgen.config import Config, DataConfig, ModelConfig
from fewgen.models import GenerativeModel, build_model
from fewgen.tasks.base import Episode


@dataclass
class Family:
    """A tiny model, the config it is built from and an episode (T tasks, K shots, Q queries)."""

    model: GenerativeModel
    config: Config
    episode: Episode
    exact_nll: bool  # nll has no randomness (no latent variable)
    heavy: bool = False  # a conv or recurrent model: second-order tests run a subset of algorithms


def _episode(support: torch.Tensor, query: torch.Tensor, g: torch.Generator) -> Episode:
    mask = torch.rand(support.shape[:2], generator=g) < 0.7
    mask[:, 0] = True  # every task has a shot; the others vary
    mask[0, 1:] = False  # and one task has a single shot
    return Episode(support, mask, query, tuple(f"task{t}" for t in range(support.shape[0])))


def _build(model: ModelConfig, data: DataConfig, meta: dict) -> tuple[GenerativeModel, Config]:
    torch.manual_seed(0)
    cfg = Config(data=data, model=model)
    return build_model(cfg.model, meta), cfg


def toy_gauss() -> Family:
    g = torch.Generator().manual_seed(3)
    model, cfg = _build(ModelConfig(family="toy_gauss", hidden=16, context=8), DataConfig(spec="toy"),
                        {"modality": "toy", "example_shape": [2], "mean_scale": 3.0})
    ep = _episode(3 * torch.randn(4, 5, 2, generator=g), 3 * torch.randn(4, 6, 2, generator=g), g)
    return Family(model, cfg, ep, exact_nll=True)


def image_vae(prior: str, attention: bool = False) -> Callable[[], Family]:
    def make() -> Family:
        g = torch.Generator().manual_seed(3)
        mc = ModelConfig(family="image_vae", hidden=8, latent=4, context=8,
                         extra={"features": 16, "prior": prior, "attention": attention})
        model, cfg = _build(mc, DataConfig(spec="glyphs", image_size=8), {"modality": "image", "example_shape": [1, 8, 8]})
        if attention:  # move the zero-initialised attention outputs: a fresh block is the identity
            with torch.no_grad():
                for p in (*model.att4.out.parameters(), *model.att2.out.parameters()):
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
        ep = _episode((torch.rand(3, 4, 1, 8, 8, generator=g) > 0.5).float(),
                      (torch.rand(3, 5, 1, 8, 8, generator=g) > 0.5).float(), g)
        return Family(model, cfg, ep, exact_nll=False, heavy=True)
    return make


def image_diffusion(template: bool | str = True) -> Callable[[], Family]:
    return lambda: _image_diffusion(template)


def _image_diffusion(template: bool | str) -> Family:
    g = torch.Generator().manual_seed(3)
    mc = ModelConfig(family="image_diffusion", hidden=8, context=8, extra={"template": template})
    model, cfg = _build(mc, DataConfig(spec="glyphs", image_size=8), {"modality": "image", "example_shape": [1, 8, 8]})
    with torch.no_grad():  # move the zero-initialised output layers: a fresh model ignores its input exactly
        for p in model.parameters():
            p.add_(0.03 * torch.randn(p.shape, generator=g))
    ep = _episode((torch.rand(3, 4, 1, 8, 8, generator=g) > 0.5).float(),
                  (torch.rand(3, 5, 1, 8, 8, generator=g) > 0.5).float(), g)
    return Family(model, cfg, ep, exact_nll=False, heavy=True)


WORDS = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "a", "ðoʊ", "zebra", "ŝi", "ĉu", "mondo", "kato",
         "hundo", "ĝis", "ŝuo", "ruĝa", "blua", "verda", "flava", "nigra", "blanka", "ora", "arĝenta"]


def text_lm(match_orders: int) -> Callable[[], Family]:
    def make() -> Family:
        from fewgen.models.bytes import encode_batch, tokenizer_meta

        g = torch.Generator().manual_seed(3)
        mc = ModelConfig(family="text_lm", hidden=12, context=8, extra={"embed": 8, "match_orders": match_orders})
        model, cfg = _build(mc, DataConfig(spec="words"), {**tokenizer_meta(12), "modality": "text",
                                                            "example_shape": [12]})
        ids = encode_batch(WORDS, 12)  # (24, 12)
        ep = _episode(ids[:12].reshape(3, 4, 12), ids[12:].reshape(3, 4, 12), g)
        return Family(model, cfg, ep, exact_nll=True, heavy=True)
    return make


def text_ngram() -> Family:
    from fewgen.models.bytes import encode_batch, tokenizer_meta

    g = torch.Generator().manual_seed(3)
    model, cfg = _build(ModelConfig(family="text_ngram", extra={"order": 3}), DataConfig(spec="words"),
                        {**tokenizer_meta(12), "modality": "text", "example_shape": [12]})
    ids = encode_batch(WORDS, 12)  # (24, 12)
    model.fit_counts([ids[:8], ids[8:16]], [ids[16:]])  # a background counted on two "tasks"
    ep = _episode(ids[:12].reshape(3, 4, 12), ids[12:].reshape(3, 4, 12), g)
    return Family(model, cfg, ep, exact_nll=True)


def hf_causal_lm(kind: str, condition: str) -> Callable[[], Family]:
    def make() -> Family:
        from hf_tiny import folder

        from fewgen.models.bytes import encode_batch, tokenizer_meta

        g = torch.Generator().manual_seed(3)
        mc = ModelConfig(family="hf_causal_lm", extra={"path": str(folder(kind)), "condition": condition, "rank": 2})
        model, cfg = _build(mc, DataConfig(spec="words"), {**tokenizer_meta(16), "modality": "text",
                                                            "example_shape": [16]})
        ids = encode_batch(WORDS, 16)  # (24, 16)
        ep = _episode(ids[:12].reshape(3, 4, 16), ids[12:].reshape(3, 4, 16), g)
        return Family(model, cfg, ep, exact_nll=True, heavy=True)
    return make


def text_transformer(match_order: int) -> Callable[[], Family]:
    def make() -> Family:
        from fewgen.models.bytes import encode_batch, tokenizer_meta

        g = torch.Generator().manual_seed(3)
        mc = ModelConfig(family="text_transformer", hidden=16,
                         extra={"layers": 1, "heads": 2, "window": 128, "train_window": 96, "match_order": match_order})
        model, cfg = _build(mc, DataConfig(spec="words"), {**tokenizer_meta(12), "modality": "text",
                                                            "example_shape": [12]})
        if match_order >= 0:
            with torch.no_grad():  # cache weights that depend on the state (they start at zero)
                model.gate.weight.normal_(0.0, 0.3, generator=g)
                model.cache_logits.weight.normal_(0.0, 0.3, generator=g)
        ids = encode_batch(WORDS, 12)  # (24, 12)
        ep = _episode(ids[:12].reshape(3, 4, 12), ids[12:].reshape(3, 4, 12), g)
        return Family(model, cfg, ep, exact_nll=True, heavy=True)
    return make


def _has_hf() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("transformers", "peft"))


FAMILIES: dict[str, Callable[[], Family]] = {
    "toy_gauss": toy_gauss,
    "image_vae": image_vae("mlp"),
    "image_vae_mixture": image_vae("mixture"),
    "image_vae_attention": image_vae("mlp", attention=True),
    "image_diffusion": image_diffusion(),
    "image_diffusion_shot": image_diffusion("shot"),
    "text_lm": text_lm(1),
    "text_lm_match": text_lm(3),
    "text_ngram": text_ngram,
    "text_transformer": text_transformer(3),
    "text_transformer_plain": text_transformer(-1),
}
if _has_hf():  # the optional extra fewgen[hf] (make test installs it)
    FAMILIES["hf_gpt2_both"] = hf_causal_lm("gpt2", "both")
    FAMILIES["hf_llama_both"] = hf_causal_lm("llama", "both")

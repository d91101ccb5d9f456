"""hf_causal_lm beyond the shared contract: PEFT round trip, safe loading, LoRA-only meta-learning,
bits per character independent of the tokenizer, and the CLI train -> adapt -> sample path."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

import hf_tiny  # noqa: E402

from fewgen import checkpoint  # noqa: E402
from fewgen.adaptation import adapter_for_checkpoint, save_adapted  # noqa: E402
from fewgen.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from fewgen.errors import ConfigError, DataError  # noqa: E402
from fewgen.meta import get_algorithm  # noqa: E402
from fewgen.metrics.text import bits_per_char  # noqa: E402
from fewgen.models import build_model, params_of  # noqa: E402
from fewgen.models.bytes import encode_batch, tokenizer_meta  # noqa: E402
from fewgen.tasks.base import Episode  # noqa: E402

L = 16
META = {**tokenizer_meta(L), "modality": "text", "example_shape": [L]}


def build(path, condition: str = "lora", **extra):
    torch.manual_seed(0)
    cfg = Config(data=DataConfig(spec="words"),
                 model=ModelConfig(family="hf_causal_lm", extra={"path": str(path), "condition": condition, **extra}))
    return build_model(cfg.model, META), cfg


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return hf_tiny.folder("gpt2", root=tmp_path_factory.mktemp("gpt2"))


def test_only_lora_matrices_are_parameters(gpt2):
    model, _ = build(gpt2)
    names = list(params_of(model))
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert not any(".lora_" in n for n, _ in model.named_buffers())
    assert set(model.state_dict()) == set(names)  # checkpoints hold the adapters; the base is re-read
    incontext, _ = build(gpt2, "incontext")
    assert not params_of(incontext)


def test_reptile_over_lora_changes_only_lora(gpt2):
    model, _ = build(gpt2, "lora")
    ids = encode_batch(hf_tiny.WORDS, L)
    ep = Episode(ids[:8].reshape(2, 4, L), torch.ones(2, 4, dtype=torch.bool), ids[8:16].reshape(2, 4, L), ("a", "b"))
    base = {k: v.clone() for k, v in model.named_buffers()}
    params = params_of(model)
    before = {k: v.detach().clone() for k, v in params.items()}
    algo = get_algorithm(TrainConfig(algo="reptile", inner_steps=2, inner_lr=0.5))
    opt = torch.optim.Adam(params.values(), lr=0.01)
    algo.meta_loss(model, params, {}, ep, torch.Generator().manual_seed(0)).backward()
    opt.step()
    assert any(not torch.equal(before[k], params[k]) for k in params)
    assert all(torch.equal(base[k], v) for k, v in model.named_buffers())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a transformers API deprecated for v6
def test_adapter_folder_round_trips_through_peft(gpt2, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, cfg = build(gpt2, "both")
    checkpoint.save(tmp_path / "ck", model, cfg, {"algo": "reptile"})
    ck = checkpoint.load(tmp_path / "ck")
    sup = encode_batch(hf_tiny.WORDS[:5], L)[None]
    adapted = adapter_for_checkpoint(ck, lr=0.5)(sup, torch.ones(1, 5, dtype=torch.bool), 3).task(0)
    folder = save_adapted(ck, adapted, tmp_path / "adapted", {"algo": "reptile", "steps": 3})
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    keys = list(load_file(str(folder / "adapter_model.safetensors")))
    assert keys and all(k.startswith("base_model.model.") and ".default." not in k for k in keys)
    ours = checkpoint.load(folder).model  # fewgen's own config.json beside the PEFT files
    base = AutoModelForCausalLM.from_pretrained(str(gpt2))
    peft_model = PeftModel.from_pretrained(base, str(folder)).eval()
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = ours.lm(input_ids=ids).logits, peft_model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(gpt2))(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-5) and not torch.allclose(want, plain, atol=1e-4)


def test_loading_is_local_and_never_trusts_remote_code(gpt2, monkeypatch):
    import transformers

    calls = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained.__func__

        def spy(klass, *a, _real=real, **kw):
            calls.append(kw)
            return _real(klass, *a, **kw)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    build(gpt2, "both")
    assert len(calls) == 2 and all(kw["trust_remote_code"] is False and kw["local_files_only"] is True for kw in calls)
    assert any(kw.get("use_safetensors") is True for kw in calls)  # the model's weights: safetensors only


def test_bin_only_folder_is_refused_with_how_to_convert(gpt2, tmp_path):
    (tmp_path / "config.json").write_text((gpt2 / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(DataError, match="safetensors only.*save_pretrained") as e:
        build(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="model.extra.path"):
        build_model(ModelConfig(family="hf_causal_lm"), META)


def test_without_the_extra_it_says_how_to_install(gpt2, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match=r"pip install 'fewgen\[hf\]'"):
        build(gpt2)


def test_bits_per_char_do_not_depend_on_the_tokenizer(tmp_path):
    """Two tokenisations of the same words (bytes only; BPE merges): different token counts, the
    same character count, and each model's nll is its own exact token log-probability."""
    words = ["ĉirkaŭ", "мир", "漢字", "hello", "kato"]
    ids = encode_batch(words, L)[None]  # (1, 5, L)
    chars = sum(len(w) + 1 for w in words)  # by hand: characters plus one end each
    token_counts = []
    for vocab in (257, 320):
        model, _ = build(hf_tiny.folder("gpt2", vocab, tmp_path / str(vocab)), "lora")
        ctx = model.context(ids[:, :0], torch.zeros(1, 0, dtype=torch.bool))
        with torch.no_grad():
            nats = model.nll(ids, ctx, 1, 2)  # (1, 5)
            lines = model.tokenizer([w + "\n" for w in words], add_special_tokens=False)["input_ids"]
            seq = torch.tensor([[model.start_id] + lines[2]])
            logp = model.lm(input_ids=seq).logits[0, :-1].log_softmax(-1).gather(-1, seq[0, 1:, None]).sum()
        assert torch.allclose(nats[0, 2], -logp, atol=1e-4)
        assert torch.allclose(bits_per_char(nats, ids), nats.sum() / (math.log(2) * chars))
        token_counts.append(sum(len(t) for t in lines))
    assert token_counts[0] == sum(len(w.encode()) + 1 for w in words) and token_counts[1] < token_counts[0]


def test_cli_train_adapt_sample(gpt2, tmp_path):
    from fewgen.cli import main

    hf = ["--set", "model.family=hf_causal_lm", "--set", f"model.extra={{path='{gpt2}', condition='lora', rank=2}}",
          "--set", "train.meta_batch=2", "--set", "train.inner_steps=1", "--set", "data.max_examples_per_task=40",
          "--quiet"]
    run = tmp_path / "run"
    assert main(["train", "--data", "words:en,fr,de,es", "--algo", "fomaml", "--steps", "2", "--shots", "3",
                 "--out", str(run), *hf]) == 0
    sup = tmp_path / "sup.txt"
    sup.write_text("\n".join(hf_tiny.WORDS[:4]) + "\n", encoding="utf-8")
    assert main(["adapt", str(run), "--support", str(sup), "--steps", "2", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert main(["sample", str(tmp_path / "a"), "--n", "3", "--out", str(tmp_path / "s.txt")]) == 0
    assert len((tmp_path / "s.txt").read_text(encoding="utf-8").splitlines()) == 3

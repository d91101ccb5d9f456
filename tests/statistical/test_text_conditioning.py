"""Statistical: conditioning a text model on 10 words of a held-out language lowers bits/char."""

import pytest
import torch

from fewgen.adaptation import adapter_for_checkpoint
from fewgen.checkpoint import load
from fewgen.config import Config, replace
from fewgen.evaluate import evaluate
from fewgen.metrics.text import bits_per_char_examples
from fewgen.tasks.spec import load_split
from fewgen.training import train


@pytest.mark.slow
def test_ten_shot_bits_per_char_is_below_unconditional_on_held_out_languages(tmp_path):
    cfg = replace(Config(), data={"spec": "words", "max_examples_per_task": 400},
                  model={"family": "text_lm", "hidden": 32, "context": 32, "extra": {"embed": 16}},
                  train={"steps": 150, "shots": 10, "min_shots": 0, "meta_batch": 8, "lr": 3e-3,
                         "val_every": 1000, "val_tasks": 8},
                  eval={"shots": (10,), "max_queries": 20})
    train(cfg, tmp_path / "run", progress=False)
    ck = load(tmp_path / "run")
    test = load_split("words", replace(cfg, data={"max_examples_per_task": 100}).data, "test")  # held-out languages
    r = evaluate(adapter_for_checkpoint(ck), test, cfg.eval, progress=False, per_example=bits_per_char_examples)
    uncond, ten = r["unconditional"]["per_task_bits_per_char"], r["shots"]["10"]["per_task_bits_per_char"]
    # Paired over the same held-out languages (each figure averages 100 queries): every language
    # gains, and the mean gain is far from zero.
    gain = torch.tensor([uncond[t] - ten[t] for t in ten])
    assert len(gain) == len(test.names) >= 6
    lower = gain.mean() - 1.96 * gain.std() / len(gain) ** 0.5
    assert (gain > 0).all() and gain.mean() > 0.5 and lower > 0, (gain, lower)


@pytest.mark.slow
def test_transformer_ten_shot_bits_per_char_is_below_unconditional_on_held_out_languages(tmp_path):
    """The in-context Transformer trained on every K at once (strings of one language packed in
    a sequence): after a short run, 10 words of a held-out language lower its bits/char."""
    cfg = replace(Config(), data={"spec": "words", "max_examples_per_task": 400},
                  model={"family": "text_transformer", "hidden": 32, "extra": {"layers": 2, "heads": 2,
                                                                               "train_window": 160}},
                  train={"steps": 120, "shots": 0, "min_shots": 0, "queries": 16, "meta_batch": 8, "lr": 3e-3,
                         "val_every": 1000, "val_tasks": 8},
                  eval={"shots": (10,), "max_queries": 20})
    train(cfg, tmp_path / "run", progress=False)
    ck = load(tmp_path / "run")
    test = load_split("words", replace(cfg, data={"max_examples_per_task": 100}).data, "test")
    r = evaluate(adapter_for_checkpoint(ck), test, cfg.eval, progress=False, per_example=bits_per_char_examples)
    uncond, ten = r["unconditional"]["per_task_bits_per_char"], r["shots"]["10"]["per_task_bits_per_char"]
    gain = torch.tensor([uncond[t] - ten[t] for t in ten])
    assert len(gain) == len(test.names) >= 6
    lower = gain.mean() - 1.96 * gain.std() / len(gain) ** 0.5
    assert (gain > 0).all() and gain.mean() > 0.3 and lower > 0, (gain, lower)

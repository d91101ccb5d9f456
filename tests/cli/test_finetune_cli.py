"""Test-time fine-tuning options through the command line: the checkpoint's trained inner loop is
the default, --adapt-params / --set train.* override it, steps beyond the trained ones are noted,
and several --steps give a PNG of NLL against steps."""

import json

import pytest

from fewgen.cli import main
from fewgen.config import Config, apply_overrides
from fewgen.errors import ConfigError

TINY = ["--set", "model.hidden=8", "--set", "model.context=4", "--set", "train.meta_batch=4",
        "--set", "train.val_every=100", "--set", "train.val_tasks=4", "--quiet"]


@pytest.fixture(scope="module")
def film_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    assert main(["train", "--data", "toy", "--algo", "fomaml", "--out", str(out), "--steps", "3", *TINY,
                 "--set", "train.adapt_params=film", "--set", "train.inner_steps=2",
                 "--set", "train.inner_select=heldout", "--set", "train.learn_inner_lr=true"]) == 0
    return out


def test_eval_repeats_the_trained_loop_notes_extra_steps_and_plots(film_run, tmp_path, capsys):
    js = tmp_path / "e.json"
    assert main(["eval", str(film_run), "--shots", "1", "--steps", "0,1,4", "--max-tasks", "4", "--quiet",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["fine_tuning"] == {"adapt_params": "film", "augment": False, "select": "heldout", "trained_inner_steps": 2}
    assert len(r["notes"]) == 1 and "4" in r["notes"][0] and "2 inner step" in r["notes"][0]
    assert "note:" in capsys.readouterr().out
    assert js.with_suffix(".png").stat().st_size > 1000
    assert main(["eval", str(film_run), "--shots", "1", "--steps", "0,2", "--max-tasks", "4", "--quiet",
                 "--json", str(js)]) == 0
    assert json.loads(js.read_text())["notes"] == []


def test_adapt_params_override_needs_a_scalar_rate_when_meta_sgd_rates_do_not_fit(film_run, tmp_path, capsys):
    args = ["eval", str(film_run), "--shots", "1", "--steps", "1", "--max-tasks", "2", "--quiet", "--adapt-params"]
    assert main([*args, "bias"]) == 2
    assert "Meta-SGD rates" in capsys.readouterr().err
    js = tmp_path / "b.json"
    assert main([*args, "bias", "--lr", "0.01", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["fine_tuning"]["adapt_params"] == "bias"
    assert main(["eval", str(film_run), "--set", "model.hidden=3"]) == 2  # only train.* at test time
    assert "only train.*" in capsys.readouterr().err


def test_bad_fine_tuning_values_are_config_errors():
    for item in ("train.adapt_params=everything", "train.inner_select=best", "train.lora_rank=0"):
        with pytest.raises(ConfigError):
            apply_overrides(Config(), [item])


@pytest.mark.parametrize("data,algo,expected", [
    ("folder", "fomaml", ("film", "heldout")),  # images, a meta-learned inner loop: the measured recipe
    ("folder", "amortized", ("all", "last")),  # plain fine-tuning
    ("toy", "fomaml", ("all", "last")),  # not measured beyond images: all parameters
])
def test_auto_fine_tuning_is_resolved_and_stored_per_algorithm_and_data(data, algo, expected, tmp_path, image_folder):
    spec = f"folder:{image_folder}" if data == "folder" else "toy"
    out = tmp_path / "run"
    assert main(["train", "--data", spec, "--algo", algo, "--out", str(out), "--steps", "1", *TINY,
                 "--set", "data.image_size=8", "--set", "model.latent=4", "--set", "model.extra.features=8"]) == 0
    stored = json.loads((out / "resolved_config.json").read_text())["train"]
    assert (stored["adapt_params"], stored["inner_select"]) == expected
    from fewgen.meta import resolve_fine_tuning

    tc = Config().train
    assert (tc.adapt_params, tc.inner_select) == ("auto", "auto")
    assert resolve_fine_tuning(tc, "image", "maml").adapt_params == "film"
    assert resolve_fine_tuning(tc, "text", "maml").adapt_params == "all"

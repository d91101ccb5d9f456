import pytest

from fewgen.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config
from fewgen.errors import ConfigError


def test_overrides_apply_and_type_check():
    cfg = apply_overrides(Config(), ["train.lr=3e-4", "train.steps=7", "data.binarize=false", "eval.shots=1,5,10"])
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 7 and cfg.data.binarize is False
    assert cfg.eval.shots == (1, 5, 10)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'.*train.lr"):
        apply_overrides(Config(), ["train.lrr=1"])
    with pytest.raises(ConfigError, match="unknown config key"):
        config_from_dict({"nope": {}})


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="train.steps.*integer"):
        apply_overrides(Config(), ["train.steps=abc"])
    with pytest.raises(ConfigError, match="true or false"):
        config_from_dict({"data": {"binarize": 3}})


def test_round_trip_and_toml(tmp_path):
    cfg = apply_overrides(Config(), ["model.extra.features=64", "train.shots=3"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    f = tmp_path / "c.toml"
    f.write_text('[train]\nsteps = 5\n[data]\nspec = "toy"\n')
    loaded = load_config(f)
    assert loaded.train.steps == 5 and loaded.data.spec == "toy" and loaded.model == Config().model
    f.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)


@pytest.mark.parametrize("override", ["train.lr=nan", "train.max_seconds=inf", "eval.guidance=-inf",
                                      "train.lr=1e999", "model.extra.features=nan", 'model.extra={a = {b = [1, inf]}}'])
def test_non_finite_numbers_are_refused_at_parse_time(override):
    from fewgen.config import Config, apply_overrides
    from fewgen.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a finite number"):
        apply_overrides(Config(), [override])


def test_one_coercion_for_options_and_config():
    import argparse

    from fewgen.cli.common import finite_float
    from fewgen.config import finite_number

    assert finite_number("0.5", "x") == finite_float("0.5") == 0.5
    for bad in ("nan", "inf", "-inf", "1e999"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"must be a finite number, got '{bad}'"):
            finite_float(bad)


def test_train_validates_a_config_built_with_replace(tmp_path):
    """config.replace does not validate; train does, before any data loads (the choices of
    train.algo, train.clock, ... are checked in config.validate, not where they are used)."""
    from fewgen.config import replace
    from fewgen.training import train

    data = {"spec": f"folder:{tmp_path / 'no_such_folder'}"}
    for train_cfg, message in (({"algo": "mamal"}, "'train.algo' must be one of amortized, maml, fomaml, reptile"),
                               ({"precision": "fp16"}, "'train.precision' must be fp32 or bf16, got 'fp16'"),
                               ({"ema": 1.0}, r"'train.ema' must be in \[0, 1\)"),
                               ({"ema": "often"}, r"""'train.ema' must be in \[0, 1\) \(0 = no weight average\) or "auto", got 'often'""")):
        with pytest.raises(ConfigError, match=message):
            train(replace(Config(), data=data, train=train_cfg), tmp_path / "run", progress=False)


def test_train_ema_auto_is_the_familys_measured_average():
    from fewgen.config import TrainConfig
    from fewgen.training import resolve_ema

    assert TrainConfig().ema == "auto"
    assert resolve_ema(TrainConfig(), "image_diffusion").ema == 0.999
    assert resolve_ema(TrainConfig(), "image_vae").ema == 0.0 and resolve_ema(TrainConfig(), "text_transformer").ema == 0.0
    assert resolve_ema(TrainConfig(ema=0.0), "image_diffusion").ema == 0.0  # a number is kept
    assert apply_overrides(Config(), ["train.ema=0.99"]).train.ema == 0.99  # numbers from the command line stay numbers

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

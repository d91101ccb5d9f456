"""A family's ``model.extra`` is a typed config (issue 25, item 2): each family's frozen dataclass
(its class's ``Extra``) holds the keys, their defaults and allowed values; ``parse_extra``
converts a table as every config value is converted and validates it, one line naming the key;
``fewgen train`` refuses a bad value before any data loads."""

from __future__ import annotations

import dataclasses

import pytest

from fewgen.config import ModelConfig, parse_table
from fewgen.errors import ConfigError
from fewgen.models import build_model, family_config
from fewgen.models.bytes import tokenizer_meta
from fewgen.models.image_vae import ImageVAE

IMAGE = {"modality": "image", "example_shape": [1, 8, 8]}
TEXT = {**tokenizer_meta(20), "modality": "text", "example_shape": [20]}

# The constructor arguments a model built from an empty model.extra gets: the defaults, pinned
# (checkpoints and the zoo's stored configs rely on them).
DEFAULTS = [
    ("image_vae", 8, IMAGE, {"features": 256, "kl_weight": 1.0, "attention": True, "heads": 1}),
    ("image_diffusion", 8, IMAGE, {"heads": 4, "p_uncond": 0.2, "template": True}),
    ("text_lm", 8, TEXT, {"embed": 64, "max_len": 20}),
    ("text_ngram", 8, TEXT, {"order": 4, "smoothing": "kneser_ney", "max_len": 20}),
    ("text_transformer", 16, TEXT, {"layers": 4, "heads": 4, "max_len": 20, "window": 1024, "train_window": 256,
                                    "match_order": 4, "track": True}),
]


@pytest.mark.parametrize("family, hidden, meta, want", DEFAULTS)
def test_an_empty_model_extra_builds_the_documented_defaults(family, hidden, meta, want):
    kwargs = build_model(ModelConfig(family=family, hidden=hidden), meta).config_dict()
    assert {k: kwargs[k] for k in want} == want
    assert "match_orders" not in kwargs and "prior" not in kwargs  # the defaults are not stored (old checkpoints)


def test_values_are_converted_like_every_config_value():
    extra = family_config(ModelConfig(family="image_vae", extra={"heads": "2", "kl_weight": 3, "attention": "false"}))
    assert (extra.heads, extra.kl_weight, extra.attention) == (2, 3.0, False)
    assert type(extra.kl_weight) is float
    m = build_model(ModelConfig(family="image_vae", hidden=8, extra={"kl_weight": 2, "features": 16}), IMAGE)
    assert m.config_dict()["kl_weight"] == 2.0 and isinstance(m.config_dict()["kl_weight"], float)


@pytest.mark.parametrize("family, extra, message", [
    ("image_vae", {"heads": 3}, r"^model.extra.heads must be a positive integer dividing model.hidden \(32\), got 3$"),
    ("image_vae", {"features": "many"}, r"^config key 'model.extra.features' must be an integer, got 'many'$"),
    ("image_vae", {"kl_weight": 0}, r"^model.extra.kl_weight must be a positive number, got 0.0$"),
    ("image_vae", {"prior": "flow"}, r"^model.extra.prior must be mlp or mixture, got 'flow'$"),
    ("image_vae", {"attention": 2}, r"^config key 'model.extra.attention' must be true or false, got 2$"),
    ("image_diffusion", {"dropout": 0.1}, r"^unknown config key 'model.extra.dropout' for image_diffusion; valid keys: "
                                          r"model.extra.heads, model.extra.p_uncond, model.extra.template, model.extra.pixels$"),
    ("image_diffusion", {"pixels": "16bit"}, r"^model.extra.pixels must be auto, binary or 8bit, got '16bit'$"),
    ("image_diffusion", {"template": 1}, r"^config key 'model.extra.template' must be true or false or a string, got 1$"),
    ("toy_gauss", {"features": 16}, r"^unknown config key 'model.extra.features' for toy_gauss; valid keys: none$"),
    ("text_lm", {"match_orders": 8}, r"^model.extra.match_orders must be from 1 \(no match cache\) to 7, got 8$"),
    ("text_transformer", {"heads": 0}, r"^model.extra.heads must be a positive integer, got 0$"),
    ("text_ngram", {"smoothing": "add_one"}, r"^model.extra.smoothing must be one of .*, got 'add_one'$"),
    ("hf_causal_lm", {"rank": 2}, r"^model.family=hf_causal_lm needs model.extra.path=FOLDER"),
    ("hf_causal_lm", {"path": "x", "condition": "prefix"}, r"^model.extra.condition must be one of incontext, lora, "
                                                           r"both, got 'prefix'$"),
])
def test_a_bad_value_is_one_line_naming_the_key(family, extra, message):
    with pytest.raises(ConfigError, match=message) as e:
        family_config(ModelConfig(family=family, extra=extra))
    assert "\n" not in str(e.value)


def test_a_union_keeps_a_value_of_its_own_type_and_converts_others():
    @dataclasses.dataclass(frozen=True)
    class T:
        template: bool | str = True

    assert parse_table(T, {"template": "shot"}, "x.").template == "shot"
    assert parse_table(T, {"template": False}, "x.").template is False
    with pytest.raises(ConfigError, match="'x.template' must be true or false or a string, got 1.5"):
        parse_table(T, {"template": 1.5}, "x.")


def test_constructor_arguments_are_validated_by_the_same_config():
    with pytest.raises(ConfigError, match="model.extra.prior must be mlp or mixture"):
        ImageVAE(image_size=8, hidden=8, prior="flow")
    # A checkpoint from before attention stores no heads (the constructor's 4): whatever its
    # hidden size, it loads (the head count only matters with attention).
    assert not ImageVAE(image_size=8, hidden=2, latent=4, context=8, features=16).attention


def test_toy_data_build_toy_gauss_without_the_configured_familys_keys():
    from fewgen.models import model_for_data

    m = build_model(ModelConfig(family="image_vae", extra={"features": 16}),
                    {"modality": "toy", "example_shape": [2], "mean_scale": 1.0})
    assert m.family == "toy_gauss"
    assert model_for_data(ModelConfig(extra={"features": 16}), "toy") == ModelConfig(family="toy_gauss")
    # the default family's stand-in for words keeps the keys (they are meant for it)
    assert model_for_data(ModelConfig(extra={"layers": 2}), "text") == ModelConfig(family="text_transformer",
                                                                                 extra={"layers": 2})
    with pytest.raises(ConfigError, match="for toy_gauss; valid keys: none"):
        build_model(ModelConfig(family="toy_gauss", extra={"features": 16}), {"modality": "toy", "example_shape": [2]})


def test_train_refuses_a_bad_model_extra_before_loading_data(tmp_path):
    from fewgen.config import Config, replace
    from fewgen.training import train

    cfg = replace(Config(), data={"spec": f"folder:{tmp_path / 'no_such_folder'}"},
                  model={"family": "image_diffusion", "extra": {"heads": 3}})
    with pytest.raises(ConfigError, match="model.extra.heads must be a positive integer dividing"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_command_line_says_which_key_in_one_line(tmp_path, capsys, monkeypatch):
    from conftest import cli_in_process

    r = cli_in_process(["train", "--data", f"folder:{tmp_path / 'none'}", "--out", str(tmp_path / "run"),
                        "--set", "model.family=text_transformer", "--set", "model.extra.layers=two"], capsys, monkeypatch)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "fewgen: error: config key 'model.extra.layers' must be an integer, got 'two'"], r.stderr

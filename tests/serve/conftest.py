"""Tiny checkpoints for the tests of fewgen serve: an image model and a text model, trained in seconds."""

import pytest

from fewgen.cli import main

IMAGE_TINY = ["--set", "model.hidden=8", "--set", "model.latent=4", "--set", "model.context=16",
              "--set", "model.extra={features=32}", "--set", "train.meta_batch=4", "--set", "train.val_every=10",
              "--set", "train.val_tasks=8", "--set", "train.log_every=5", "--quiet"]
TEXT_TINY = ["--set", "model.family=text_lm", "--set", "model.hidden=32", "--set", "model.context=32", "--set", "model.extra={embed=16}",
             "--set", "train.meta_batch=4", "--set", "train.val_every=10", "--set", "train.val_tasks=4",
             "--set", "train.log_every=5", "--set", "data.max_examples_per_task=60", "--quiet"]


@pytest.fixture(scope="session")
def image_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "glyphs"
    assert main(["train", "--data", "glyphs", "--out", str(out), "--steps", "5", *IMAGE_TINY]) == 0
    return out


@pytest.fixture(scope="session")
def text_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "words"
    assert main(["train", "--data", "words:en,fr,de", "--out", str(out), "--steps", "5", "--shots", "10",
                 *TEXT_TINY]) == 0
    return out


@pytest.fixture(scope="session")
def registry(image_ckpt, text_ckpt):
    from fewgen.serve import Registry

    return Registry([image_ckpt, text_ckpt], replicas=2)

"""fewgen serve's handlers without a browser: uploads judged by content, limits, isolation of requests."""

import io
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewgen.errors import DataError
from fewgen.serve import (Limits, decode_images, guarded, personalise_images, personalise_text, read_uploaded)


def png(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size, size)) > 0.7).astype("uint8") * 255).save(buf, "PNG")
    return buf.getvalue()


def images(seed: int, k: int = 5) -> list[tuple[str, bytes]]:
    return [(f"{seed}-{i}.png", png(100 * seed + i)) for i in range(k)]


def zipped(files) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("folder/", "")
        for name, data in files:
            zf.writestr(f"folder/{name}", data)
    return buf.getvalue()


def test_images_adapt_sample_score_and_zip_a_loadable_checkpoint(registry, image_ckpt, tmp_path):
    from fewgen.checkpoint import load

    r = personalise_images(registry.get(image_ckpt.name), images(0), n=12, seed=3, steps=2)
    assert r.support.shape == (5, 1, 28, 28) and r.samples.shape == (12, 1, 28, 28)
    assert 0 <= float(r.samples.min()) and float(r.samples.max()) <= 1
    assert np.isfinite(r.score) and r.score > 0 and min(r.adapt_s, r.sample_s, r.score_s) > 0
    with zipfile.ZipFile(io.BytesIO(r.checkpoint_zip)) as zf:
        zf.extractall(tmp_path)
    ck = load(tmp_path / "adapted")
    assert ck.info["adapted"] and ck.info["adaptation"]["steps"] == 2 and ck.info["adaptation"]["shots"] == 5


def test_a_zip_gives_the_same_support_as_its_files_and_extensions_do_not_matter(registry, image_ckpt):
    cfg = registry.get(image_ckpt.name).checkpoint.config.data
    files = images(1)
    as_files = decode_images(files, cfg, Limits())
    as_zip = decode_images([("mine.zip", zipped(files))], cfg, Limits())
    renamed = decode_images([(f"{i}.txt", d) for i, (_, d) in enumerate(files)], cfg, Limits())
    assert torch.equal(as_files, as_zip) and torch.equal(as_files, renamed)


@pytest.mark.parametrize("uploads, limits, message", [
    ([("a.png", b"not an image at all")], Limits(), "a.png: not a readable image"),
    ([("a.png", png(0)[:60])], Limits(), "a.png: not a readable image"),  # truncated
    ([], Limits(), "no images"),
    ([("x.zip", zipped([]))], Limits(), "no images"),
    ([("x.zip", zipped([("z.png", b"junk")]))], Limits(), "x.zip:folder/z.png: not a readable image"),
    (images(0, 4), Limits(max_files=3), "too many images: at most 3"),
    ([("x.zip", zipped(images(0, 4)))], Limits(max_files=3), "too many images: at most 3"),
    (images(0, 3), Limits(max_bytes=len(png(0)) + 10), "uploads are over the limit of 0.000"),
    ([("big.png", png(0, size=80))], Limits(max_pixels=70 * 70), "big.png: image is too large (80x80"),
])
def test_bad_uploads_are_one_readable_message(registry, image_ckpt, uploads, limits, message):
    with pytest.raises(DataError, match="^" + message.replace("(", r"\(")):
        personalise_images(registry.get(image_ckpt.name), uploads, n=4, limits=limits)


def test_a_decompression_bomb_is_refused_before_decoding(registry, image_ckpt):
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, "PNG")  # 81 Mpx, a few kB on disk
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(DataError, match="bomb.png: image is too large"):
        personalise_images(registry.get(image_ckpt.name), [("bomb.png", buf.getvalue())], n=4)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "number of samples"), ({"n": 10_000}, "number of samples"), ({"steps": -1}, "fine-tuning steps"),
    ({"steps": 1000}, "fine-tuning steps"), ({"sampling": {"latent": "bogus"}}, "sampler option latent"),
    ({"sampling": {"path": "/etc/passwd"}}, "sampler option path"),
])
def test_requests_outside_the_limits_are_refused(registry, image_ckpt, kwargs, message):
    with pytest.raises(DataError, match=message):
        personalise_images(registry.get(image_ckpt.name), images(0), **kwargs)


def test_text_generates_lines_and_bits_per_char(registry, text_ckpt):
    words = "apple\nbread\ncheese\n\n dough \negg\nflour\ngrape\nhoney\nice\njam\n"
    r = personalise_text(registry.get(text_ckpt.name), words, n=7, seed=1, temperature=0.8, top_p=0.9)
    assert r.support.shape[0] == 10 and len(r.samples) == 7 and all(isinstance(s, str) for s in r.samples)
    assert 0 < r.score < 20
    same = personalise_text(registry.get(text_ckpt.name), words, n=7, seed=1, temperature=0.8, top_p=0.9)
    assert same.samples == r.samples  # seeded


@pytest.mark.parametrize("text, kwargs, message", [
    ("\n \n", {}, "no examples"), ("x" * 500, {}, "support: 'xxx"), ("a\n" * 100, {}, "too many lines"),
    ("a\n" * 600, {"limits": Limits(max_bytes=1000)}, "the text is over the limit"),
    ("a\nb", {"top_p": 0}, "top-p"), ("a\nb", {"temperature": -1}, "temperature"),
])
def test_bad_text_is_one_readable_message(registry, text_ckpt, text, kwargs, message):
    with pytest.raises(DataError, match=message):
        personalise_text(registry.get(text_ckpt.name), text, **kwargs)


def test_the_wrong_modality_is_a_message(registry, image_ckpt, text_ckpt):
    with pytest.raises(DataError, match="paste text"):
        personalise_images(registry.get(text_ckpt.name), images(0))
    with pytest.raises(DataError, match="upload images"):
        personalise_text(registry.get(image_ckpt.name), "a\nb")


def test_two_concurrent_requests_get_their_own_samples(registry, image_ckpt):
    served = registry.get(image_ckpt.name)
    solo = {s: personalise_images(served, images(s), n=16, seed=0, steps=s) for s in (1, 2)}
    assert not torch.equal(solo[1].samples, solo[2].samples)
    results, start = {}, threading.Barrier(2)

    def request(s):
        start.wait()
        results[s] = personalise_images(served, images(s), n=16, seed=0, steps=s)

    threads = [threading.Thread(target=request, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (1, 2):
        assert torch.equal(results[s].samples, solo[s].samples) and torch.equal(results[s].support, solo[s].support)
        assert results[s].score == pytest.approx(solo[s].score)


def test_replicas_share_the_loaded_weights(registry, image_ckpt):
    served = registry.get(image_ckpt.name)
    with served.borrow() as a, served.borrow() as b:
        assert a.model is not b.model
        for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            assert p.data_ptr() == q.data_ptr() == dict(served.checkpoint.model.named_parameters())[name].data_ptr()


def test_only_files_in_the_upload_folder_are_read(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "a.png").write_bytes(png(0))
    (tmp_path / "secret.png").write_bytes(png(1))
    assert read_uploaded([str(root / "a.png")], root, Limits()) == [("a.png", png(0))]
    for bad in (tmp_path / "secret.png", root / ".." / "secret.png", root / "missing.png"):
        with pytest.raises(DataError, match="upload is missing"):
            read_uploaded([str(bad)], root, Limits())
    with pytest.raises(DataError, match="over the limit"):
        read_uploaded([str(root / "a.png")], root, Limits(max_bytes=10))


def test_failures_become_a_message_and_the_handler_keeps_working():
    def handler(x):
        if x == "user":
            raise DataError("a.png: not a readable image")
        if x == "bug":
            raise ZeroDivisionError("inside")
        return ("ok", "")

    h = guarded(handler, (None,))
    assert h("user") == (None, "**Error:** a.png: not a readable image")
    assert h("bug")[0] is None and "could not handle this request" in h("bug")[1] and "inside" not in h("bug")[1]
    assert h("fine") == ("ok", "")


def test_serve_without_gradio_says_how_to_install(image_ckpt, monkeypatch, capsys):
    from fewgen.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ModuleNotFoundError
    assert main(["serve", str(image_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fewgen: error: fewgen serve needs Gradio: pip install 'fewgen[serve]'"]


def test_serve_refuses_bad_flags_and_checkpoints(tmp_path, capsys):
    from fewgen.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1" in capsys.readouterr().err


def test_fine_tuning_reports_each_step_to_the_progress_bar(registry, image_ckpt):
    seen = []
    personalise_images(registry.get(image_ckpt.name), images(0), n=4, steps=4,
                       progress=lambda f, what: seen.append((f, what)))
    assert [w for _, w in seen if w.startswith("fine-tuning")] == [f"fine-tuning: step {s} of 4" for s in (1, 2, 3, 4)]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1


def test_page_numbers_must_be_finite_and_whole(registry, text_ckpt):
    from fewgen.errors import FewgenError
    from fewgen.serve import personalise_text, whole

    assert whole(3.0, "n") == 3
    with pytest.raises(FewgenError, match="n must be a finite number"):
        whole(float("nan"), "n")
    with pytest.raises(FewgenError, match="steps must be a whole number"):
        whole(2.5, "steps")
    with pytest.raises(FewgenError, match="temperature must be a finite number"):
        personalise_text(registry.get(text_ckpt.name), "kato\nhundo", temperature=float("nan"))

"""fewgen serve end to end in a real browser: Debian's Chromium, headless, driven by Playwright for Python."""

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
WORDS = ["apple", "bread", "cheese", "dough", "egg", "flour", "grape", "honey", "ice", "jam"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(image_ckpt, text_ckpt):
    pytest.importorskip("gradio", reason="fewgen[serve] is not installed")
    from fewgen.serve import serve

    port = free_port()
    app = serve([image_ckpt, text_ckpt], "127.0.0.1", port, concurrency=2, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(60_000)
        page.goto(server)
        yield page
        browser.close()


def held_out_character(folder: Path, k: int = 5) -> list[Path]:
    """k drawings of one glyph of the held-out split, as PNG files (ink dark on white)."""
    from fewgen.config import DataConfig
    from fewgen.tasks.spec import load_split

    test = load_split("glyphs", DataConfig(), "test")
    folder.mkdir()
    files = []
    for i, x in enumerate(test.examples(0)[:k]):
        files.append(folder / f"{i}.png")
        Image.fromarray(((1 - x[0].numpy()) * 255).astype("uint8")).save(files[-1])
    return files


def test_upload_five_images_and_see_the_samples(page, tmp_path):
    page.locator("#upload input[type=file]").wait_for(state="attached")
    page.locator("#upload input[type=file]").set_input_files([str(f) for f in held_out_character(tmp_path / "k")])
    n = page.locator("#n-images input[type=number]")
    n.fill("12")
    n.press("Enter")
    page.locator("#generate-images").click()
    page.locator("#samples img").nth(11).wait_for()
    page.locator("#grid img").wait_for()
    assert page.locator("#samples img").count() == 12
    assert "nats/image" in page.locator("#stats").inner_text()
    assert page.locator("#download a").count() >= 1
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L")
    pixels = np.asarray(shot, dtype=np.float32)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20, "the screenshot is blank"


def test_a_bad_upload_is_a_message_and_the_page_keeps_working(page, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("not an image", encoding="utf-8")
    page.locator("#upload input[type=file]").set_input_files([str(bad)])
    page.locator("#generate-images").click()
    page.get_by_text("photo.png: not a readable image").wait_for()
    assert page.locator("#samples img").count() == 0  # the previous result is cleared
    page.locator("#upload button[aria-label=Clear]").click()  # another upload would add to the list
    page.locator("#upload .file-preview").wait_for(state="detached")
    page.locator("#upload input[type=file]").set_input_files([str(f) for f in held_out_character(tmp_path / "k", 3)])
    page.locator("#generate-images").click()
    page.locator("#samples img").nth(11).wait_for()
    assert page.locator("#stats").inner_text().startswith("3 examples")
    assert page.locator("#message").inner_text().strip() == ""


def test_paste_ten_words_and_see_generated_lines(page, text_ckpt):
    page.locator("#checkpoint input").click()
    page.get_by_role("option", name=text_ckpt.name).click()
    page.locator("#support-text textarea").fill("\n".join(WORDS))
    page.locator("#generate-text").click()
    out = page.locator("#generated textarea")
    page.wait_for_function("() => document.querySelector('#generated textarea').value.length > 0")
    assert len(out.input_value().split("\n")) == 20  # the default number of samples
    assert "bits/char" in page.locator("#stats").inner_text()

"""End to end in a real browser: headless Chromium (Debian `chromium`) driven by Playwright loads the app,
asks a question, sees the streamed answer, searches a word, and saves a screenshot.

    pytest tests/test_app_browser.py -m slow            # screenshot in the test's tmp folder
    python tests/test_app_browser.py --checkpoint checkpoints/demo --out docs/app_screenshot.png

Only the Playwright Python package is used (never `playwright install`): the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import build_tiny_checkpoint, start_app, stop_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return "chromium is not installed (Debian: apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright; no browser download needed)"
    return None


def drive_app(url: str, screenshot: Path, question: str | None = None, search: str | None = None,
              viewport=(1400, 1000), settle: float = 6.0) -> dict:
    """Load the page, ask ``question`` (default: the first example), search ``search``; save a screenshot.

    Returns what the page showed: {"question", "answer", "search_message"}.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(url, timeout=60_000)
            box = page.locator("#question textarea")
            box.wait_for(timeout=60_000)
            if question is None:
                question = page.locator("#examples button.gallery-item").first.inner_text().strip()
            box.fill(question)
            page.locator("#ask").click()
            bot = page.locator("#chat [data-testid='bot']").last
            bot.wait_for(timeout=120_000)
            deadline = time.monotonic() + 120
            answer = ""
            while time.monotonic() < deadline:  # until the streamed answer stops changing and is not the placeholder
                text = bot.inner_text().strip()
                if text and text != "…" and text == answer:
                    break
                answer = text
                time.sleep(1.0)
            message = ""
            if search:
                page.locator("#search-box textarea").fill(search)
                page.locator("#search-button").click()
                status = page.locator("#search-status")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and "Gaussians" not in status.inner_text():
                    time.sleep(0.5)
                message = status.inner_text().strip()
            time.sleep(settle)  # let the 3D viewer finish sorting and drawing the splats
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            return {"question": question, "answer": answer, "search_message": message}
        finally:
            browser.close()


@pytest.mark.slow
def test_browser_asks_a_question_and_takes_a_screenshot(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt" / "demo")
    proc, url = start_app(checkpoint, tmp_path / "cache", tmp_path / "app.log")
    try:
        shot = tmp_path / "app.png"
        shown = drive_app(url, shot, question="what kind of room is this?", search="lamp", settle=2.0)
    finally:
        stop_app(proc)
    assert "what kind of room is this?" in shown["question"]
    assert shown["answer"] and shown["answer"] != "…"
    assert "Gaussians" in shown["search_message"]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 800


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Screenshot of the running app (docs/app_screenshot.png).")
    p.add_argument("--url", default=None, help="a running app; otherwise one is started with --checkpoint")
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--out", default="docs/app_screenshot.png")
    p.add_argument("--question", default=None, help="default: the first example question")
    p.add_argument("--search", default="lamp")
    args = p.parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="chorus-shot-"))
        proc, url = start_app(Path(args.checkpoint), Path.home() / ".cache" / "chorus-qa", tmp / "app.log", fast=False)
    try:
        raw = Path(args.out).with_suffix(".raw.png")
        shown = drive_app(url, raw, args.question, args.search)
    finally:
        if proc is not None:
            stop_app(proc)
    from PIL import Image

    with Image.open(raw) as im:  # palette PNG keeps the file small enough to commit
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    raw.unlink()
    print(shown, f"-> {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

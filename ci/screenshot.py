"""Screenshot a report.html (or any local page) with Debian's Chromium: the README's picture.

    .venv/bin/python ci/screenshot.py runs/default/report.html docs/report.png
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(page_path: str, out: str, width: int = 1200, height: int = 1600) -> None:
    url = Path(page_path).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
            page.goto(url, wait_until="load", timeout=60_000)
            page.screenshot(path=out, full_page=False)
        finally:
            browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])

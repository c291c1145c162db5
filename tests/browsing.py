"""Headless Chromium for the browser tests: the system chromium, one browser per test module, and a page that fails
its test on a JavaScript error or an error toast. A module using `page` defines a `studio_url` fixture giving
(studio, url)."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MARKS = [pytest.mark.browser,
         pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (.ci/run installs it)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, studio_url, tmp_path):
    """A page on the studio that fails the test on a JavaScript error or an error toast."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(studio_url[1])
    yield page
    toasts = page.locator(".toast-body.error").all_inner_texts()
    page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    page.close()
    assert not errors, f"page errors: {errors}"
    assert not toasts, f"error toasts: {toasts}"

"""A real headless Chromium (the system's /usr/bin/chromium, driven by Playwright) for the page tests.

`.ci/run` installs Debian's chromium package; on a machine without it these tests skip, except
under CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

# Flags for a closed network: without the background-networking ones Chromium keeps trying to
# reach Google's hosts, and each refused connection is noise in the console.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on PATH: .ci/run installs Debian's chromium package (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return path


@dataclass
class Console:
    """What the page reported: console errors, uncaught exceptions, and requests that left the machine."""

    errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)


@contextmanager
def page(width: int = 1280, height: int = 900) -> Iterator[tuple[object, Console]]:
    """A fresh browser page (its own empty profile) and what it reports, closed on the way out."""
    from playwright.sync_api import sync_playwright

    seen = Console()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            pg = browser.new_page(viewport={"width": width, "height": height})
            pg.on("console", lambda m: seen.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            pg.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
            pg.on(
                "request",
                lambda r: (
                    seen.remote_requests.append(r.url)
                    if not r.url.startswith(("data:", "file:", "http://127.0.0.1", "blob:http://127.0.0.1", "about:"))
                    else None
                ),
            )
            yield pg, seen
        finally:
            browser.close()

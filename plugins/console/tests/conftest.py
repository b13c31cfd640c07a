"""Browser fixtures: one real ``sbt serve`` and one headless Chromium (Debian's, driven by Playwright) per
module. ``playwright install`` is never needed: the system's Chromium is launched by its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from sbt_core.testing.processes import background_server, free_port

#: Where the browser tests write a screenshot of each page: ``SBT_CONSOLE_SCREENSHOTS`` (``docs/screenshots``
#: to refresh the README's pictures), else the temporary directory, so a test run leaves the checkout as it
#: found it.
SCREENSHOTS = Path(os.environ.get("SBT_CONSOLE_SCREENSHOTS", Path(tempfile.gettempdir()) / "sbt-console-screenshots"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it), or ``$SBT_CHROMIUM``."""
    return os.environ.get("SBT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@attrs.frozen
class Server:
    """A running ``sbt serve``: its base URL, folder, config, an admin token, and the loopback port where the
    Stripe-compatible server (localstripe) is expected but, at first, absent."""

    url: str
    cwd: Path
    config: Path
    token: str
    stripe_port: int

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


CONFIG = """
state_dir = "{state}"

[providers.auth]
type = "local"

[providers.metering]
type = "memory"

[providers.billing]
type = "stripe"
api_key = "sk_test_console"
api_base = "http://127.0.0.1:{stripe_port}"
max_retries = 0
customer_lookup = "list"  # localstripe has no customer search

[events]
max_attempts = 2
backoff_base_seconds = 0
backoff_max_seconds = 0
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``sbt serve`` with the console installed (its entry point), local auth, memory metering and Stripe
    billing pointed at a port where nothing listens yet: onboarding fails there until the test starts it."""
    cwd = tmp_path_factory.mktemp("console-serve")
    stripe_port = free_port()
    config = cwd / "sbt.toml"
    config.write_text(CONFIG.format(state=cwd / ".sbt", stripe_port=stripe_port))
    env = {k: v for k, v in os.environ.items() if k not in {"SBT_CONFIG", "SBT_LOAD_PLUGINS", "SBT_URL", "SBT_TOKEN"}}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--config", str(config)]
    with background_server(args, ready=f"{url}/console", log_path=cwd / "sbt-serve.log", cwd=cwd, env=env,
                           name="sbt serve"):
        token = subprocess.run([sys.executable, "-m", "sbt_core.cli", "token", "--config", str(config)], cwd=cwd,
                               env=env, check=True, capture_output=True, text=True).stdout.strip()
        yield Server(url, cwd, config, token, stripe_port)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on PATH: apt-get install chromium (.ci/run does), or set SBT_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a hang guard on a busy machine, never a timing assertion
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def script_errors() -> list[str]:
    """Uncaught JavaScript errors of the module's tab, emptied by each test that checks them."""
    return []


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, script_errors: list[str]) -> Iterator[Any]:
    """One tab for the module, the size of a laptop screen."""
    context = browser.new_context(viewport={"width": 1360, "height": 860}, locale="en-US", timezone_id="UTC",
                                  accept_downloads=True)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: script_errors.append(str(exc)))
    yield tab
    context.close()


@pytest.fixture(autouse=True)
def _no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A JavaScript error fails the test during which it happened."""
    yield
    if "page" in request.fixturenames:
        errors: list[str] = request.getfixturevalue("script_errors")
        caught = list(errors)
        errors.clear()
        assert not caught, f"JavaScript errors: {caught}"


def screenshot(page: Any, name: str) -> None:
    """``console-<name>.png`` of the viewport in :data:`SCREENSHOTS`, without the passing notifications."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.getElementById('toasts').replaceChildren()")
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"))

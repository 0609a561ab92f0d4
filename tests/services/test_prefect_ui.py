"""The Prefect UI in headless Chromium (Debian's `chromium`, driven over the DevTools protocol):
the pipeline's completed flow run and its artifacts are there; screenshots are kept."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from tests.services.conftest import (
    DeploymentRuns,
    PrefectServer,
    output_dir,
    read_run_artifacts,
    wait_for,
)

# Needed on this machine (see docs/testing.md): no sandbox as root, and none of
# Chromium's own background connections, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(
            "Debian's chromium is not installed and could not be: `make browser` installs it "
            "as root (apt-get install chromium); this test needs it"
        )
    return path


class DevTools:
    """A minimal Chrome DevTools protocol client for one page."""

    def __init__(self, socket: Connection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def text(self) -> str:
        result = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''"
        )
        return str(result.get("result", {}).get("value", ""))

    def open(self, url: str, *expected: str, timeout_s: float = 90) -> str:
        self.call("Page.navigate", url=url)

        def shown() -> str:
            text = self.text()
            return text if all(e in text for e in expected) else ""

        try:
            return str(wait_for(shown, timeout_s, f"{url} to show {expected}"))
        except AssertionError as error:
            raise AssertionError(f"{error}; the page shows:\n{self.text()[-2000:]}") from None

    def click_text(self, text: str) -> bool:
        script = f"""(() => {{
            const wanted = {json.dumps(text)};
            const found = [...document.querySelectorAll('button, a, [role=tab], li, span')]
                .find(el => el.innerText && el.innerText.trim() === wanted);
            if (found) {{ found.click(); return true; }}
            return false;
        }})()"""
        result = self.call("Runtime.evaluate", expression=script)
        return bool(result.get("result", {}).get("value"))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile; its first page over the DevTools protocol."""
    profile.mkdir(parents=True, exist_ok=True)
    command = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    log = (profile.parent / "chromium.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(
            lambda: (
                process.poll() is not None or (port_file.exists() and port_file.read_text().strip())
            ),
            60,
            "Chromium to open its DevTools port",
        )
        if process.poll() is not None:
            pytest.fail(f"chromium exited: {(profile.parent / 'chromium.log').read_text()}")
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        page = next(target for target in targets if target["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20) as socket:
            devtools = DevTools(socket)
            devtools.call("Page.enable")
            yield devtools
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=15)
        log.close()


def test_completed_run_and_its_artifacts_show_in_the_prefect_ui(
    prefect_server: PrefectServer, deployment_runs: DeploymentRuns, tmp_path: Path
) -> None:
    chromium_path()
    flow_run = deployment_runs.runs["nightly-retrain"]
    assert flow_run.state is not None and flow_run.state.is_completed()
    summary = read_run_artifacts(prefect_server.client(), flow_run.id)["pipeline-summary"]
    out = output_dir(tmp_path)
    ui = prefect_server.ui_url

    with chromium(tmp_path / "profile") as page:
        # The runs list names the pipeline's run; its page says it completed.
        page.open(f"{ui}/runs", flow_run.name)
        page.screenshot(out / "prefect-ui-runs.png")
        page.open(f"{ui}/runs/flow-run/{flow_run.id}", flow_run.name, "Completed")
        page.click_text("Artifacts")
        wait_for(
            lambda: "pipeline-summary" in page.text() and "pipeline-steps" in page.text(),
            60,
            "the flow run's Artifacts tab to list pipeline-summary and pipeline-steps",
        )
        shot = page.screenshot(out / "prefect-ui-flow-run-artifacts.png")
        text = page.open(
            f"{ui}/artifacts/artifact/{summary.id}", "Champion/challenger verdict", "test_mae"
        )
        page.screenshot(out / "prefect-ui-pipeline-summary.png")

    assert "MLflow runs" in text
    assert shot.stat().st_size > 10_000
    # Kept for a person to look at (SERVICES_OUTPUT_DIR under make test-services).
    print(f"screenshots in {out}")  # noqa: T201

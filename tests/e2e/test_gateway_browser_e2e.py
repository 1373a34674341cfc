"""The Segment browser SDK (``@segment/analytics-next`` from npm, bundled by esbuild) in
headless Chromium sends a journey to a real ``loom gateway`` through real workers.

The page is served from another origin than the gateway (so CORS and its preflights are
real), loads its settings from the gateway (``cdnURL``), and sends with the SDK's own
dispatcher (``text/plain`` bodies, Basic auth, short paths ``/v1/p|i|t|a``). The journey must
end as one profile in Redis. Needs Debian's chromium (``make test-browser`` /
``.ci/run`` install it) and ``make js-deps``; marked ``browser``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e_harness import Loom
from gateway_process import WEB_KEY, GatewayProcess
from journeys import CLIENTS, Person, assert_one_profile

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
PAGE = "<!doctype html><meta charset=utf-8><title>shop</title><script src=bundle.js></script>\n"


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """The test page with the bundled SDK, served on its own loopback port (its own origin)."""
    site = tmp_path / "site"
    site.mkdir()
    esbuild = CLIENTS / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "run `make js-deps` (npm ci in tests/clients)"
    subprocess.run(
        [str(esbuild), "browser_entry.js", "--bundle", "--format=iife", "--platform=browser",
         "--define:process.env.NODE_ENV=\"production\"", f"--outfile={site / 'bundle.js'}",
         "--log-level=warning"],
        cwd=CLIENTS, check=True, timeout=120,
    )  # fmt: skip
    (site / "index.html").write_text(PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_browser_journey_ends_in_one_profile(
    loom: Loom, tmp_path: Path, page_origin: str
) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is required: apt-get install -y chromium"
    node = shutil.which("node")
    assert node, "Node.js is required to drive the browser"
    loom.start_worker()
    gw = GatewayProcess(loom.env, tmp_path)
    person = Person("browser")
    journey = {
        "page": f"{page_origin}/index.html",
        "userDataDir": str(tmp_path / "chromium-profile"),
        "gateway": gw.url,
        "writeKey": WEB_KEY,
        "userId": person.user_id,
        "anonymousId": person.anonymous_id,
        "previousId": person.previous_id,
        "email": person.email,
        "order": person.order,
    }
    try:
        done = subprocess.run(
            [node, "browser_journey.mjs", orjson.dumps(journey).decode()],
            cwd=CLIENTS, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"browser journey failed:\n{done.stdout}\n{done.stderr}"
        assert orjson.loads(done.stdout.strip().splitlines()[-1]) == ["ok"] * 4
        assert gw.metric("loom_gateway_events_total", front_door="segment", source="web-shop",
                         outcome="accepted") >= 4  # fmt: skip
        # the settings document and the four calls, each answered 200 (preflights aside)
        assert gw.metric("loom_gateway_requests_total", front_door="segment", code="ok") >= 5
        loom.wait_idle()
        assert_one_profile(loom, [person])
        [profile] = loom.profiles().values()
        assert profile["channels"] == ["web"]
    finally:
        assert gw.stop() == 0, gw.logs()

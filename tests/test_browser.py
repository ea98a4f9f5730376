"""Both demos driven in headless Chromium as a person would, through Uppy and tus.

One browser session per demo walks every flow of issues 15 and 16: names after
a reload, two names for one stored file, downloads under the original name,
deletes that leave shared bytes, sweep, a too-large file refused before it is
sent, the server's own error message, cancel, retry, pause and resume, the
server killed and restarted mid-upload, a batch of 20 that refreshes the list
once, paste and a drop anywhere, 375 px without sideways scrolling, and an
axe-core scan with no serious or critical violation. A second session has
JavaScript off: the server-drawn list, the upload form, a delete confirmed on
its own page, the clean-up form. Set SCREENSHOT_DIR to keep the screenshots
(docs/ has them).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_hashfs import SyncHashFS

CHROMIUM = "/usr/bin/chromium"
EXAMPLES = Path(__file__).parent.parent / "examples"
DEMOS = {"quart": EXAMPLES / "quart_app.py", "flask": EXAMPLES / "flask_app.py"}
IN_CI = bool(os.environ.get("CI"))  # there, a missing browser fails instead of skipping
MAX_SIZE = 8 << 20  # the demos' HASHFS_MAX_SIZE here: small, so that a refused file is quick
NAMES = ["report.txt", "résumé 日本語 😀.txt"]
# Bytes per second while an upload must still be running when the test acts on it: a
# BIG file then takes 16 s, however loaded the machine, and the test waits for less.
THROTTLE = 512 << 10
CHUNK = 1 << 20  # the page's tus chunk size (static/demo.js)
BIG = MAX_SIZE

if IN_CI:
    import playwright.sync_api as playwright
    from axe_playwright_python.sync_playwright import Axe
else:
    playwright = pytest.importorskip("playwright.sync_api")
    Axe = pytest.importorskip("axe_playwright_python.sync_playwright").Axe
pytestmark = pytest.mark.skipif(
    not IN_CI and not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_members(group: int) -> list[str]:
    """Return the live (not zombie) processes of process group ``group``."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(f"{entry.name}: {command}")
    return members


class Demo:
    """One demo app in its own process, on its own store and database, restartable."""

    def __init__(self, script: Path, folder: Path) -> None:
        self.script = script
        self.root = folder / "store"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HASHFS_ROOT_FOLDER": str(self.root),
            "DEMO_DATABASE": str(folder / "demo.sqlite3"),
            "HASHFS_MAX_SIZE": str(MAX_SIZE),
            "DEMO_SWEEP_GRACE": "0",
        }
        self.server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.server = subprocess.Popen(
                [sys.executable, str(self.script)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: whatever it starts is found
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.server.poll() is None, self.log.read_text()
                time.sleep(0.05)
        pytest.fail(f"the demo did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server and all it started, as a crash or an OOM kill would."""
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(10)
        deadline = time.monotonic() + 5
        while live_members(self.server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """Stop the demo as a user would (SIGTERM to it alone), then kill anything it left.

        Returns the processes of its group that outlived it by a few seconds.
        """
        server = self.server
        if server is None:
            return []
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        deadline = time.monotonic() + 5
        while (left := live_members(server.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def stored(self) -> dict[str, bytes]:
        """The stored files by content id (temp files and partial uploads left out)."""
        found = {}
        for path in self.root.rglob("*"):
            parts = path.relative_to(self.root).parts
            if path.is_file() and not any(part.startswith(".") for part in parts):
                found["".join(parts).split(".")[0]] = path.read_bytes()
        return found


@pytest.fixture
def blockbuster() -> None:
    """Off here: Playwright's sync API runs an event loop in the test's own thread, and
    the store is used beside it only to plant a file (the servers run in other processes)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(params=sorted(DEMOS))
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    app = Demo(DEMOS[request.param], tmp_path)
    app.start()
    try:
        yield app
    finally:
        left = app.stop()
    assert not left, f"the demo left processes running after SIGTERM: {left}"


def payload(name: str, data: bytes, type: str = "application/octet-stream") -> dict[str, Any]:
    return {"name": name, "mimeType": type, "buffer": data}


def names(page: Any) -> list[str]:
    return list(page.locator("#files li[data-id] a.name").all_inner_texts())


def loaded(page: Any) -> int:
    return int(page.get_attribute("#files", "data-loaded") or 0)


def wait_loaded(page: Any, count: int) -> None:
    """Wait until the list of stored files has been drawn ``count`` times since the page loaded."""
    page.wait_for_function(
        "n => Number(document.getElementById('files').dataset.loaded || 0) >= n", arg=count
    )


def pick(page: Any, *files: dict[str, Any]) -> None:
    """Choose ``files`` in Uppy's Dashboard, as its "browse files" does."""
    page.set_input_files(".uppy-Dashboard-input >> nth=0", list(files))


def drop(page: Any, name: str, size: int) -> str:
    """Drop a file of ``size`` random bytes on the page's heading; return its sha256.

    The bytes are made in the page, so that megabytes need not cross from the
    test to the browser; the page hashes them with WebCrypto.
    """
    return str(
        page.evaluate(
            """async ([name, size]) => {
                const bytes = new Uint8Array(size);
                for (let i = 0; i < size; i += 65536) {
                    crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
                }
                const drop = new DataTransfer();
                drop.items.add(new File([bytes], name));
                const event = new DragEvent(
                    'drop', {dataTransfer: drop, bubbles: true, cancelable: true});
                document.querySelector('h1').dispatchEvent(event);
                if (!event.defaultPrevented) throw new Error('the browser would open the file');
                const digest = await crypto.subtle.digest('SHA-256', bytes);
                const hex = b => b.toString(16).padStart(2, '0');
                return [...new Uint8Array(digest)].map(hex).join('');
            }""",
            [name, size],
        )
    )


def wait_uploaded(page: Any, name: str) -> None:
    page.wait_for_function(
        "name => uppy.getFiles().some(f => f.name === name && f.progress.uploadComplete)",
        arg=name,
        timeout=60_000,
    )


def wait_sent(page: Any, name: str, at_least: int) -> None:
    """Wait until ``at_least`` bytes of ``name`` have been sent."""
    page.wait_for_function(
        "([name, n]) => uppy.getFiles().some(f => f.name === name"
        " && f.progress.bytesUploaded >= n)",
        arg=[name, at_least],
        timeout=30_000,
    )


def wait_listed(page: Any, *wanted: str) -> None:
    """Wait until the list of stored files shows each name of ``wanted``."""
    page.wait_for_function(
        "wanted => { const shown = new Set([...document.querySelectorAll('#files a.name')]"
        ".map(a => a.textContent)); return wanted.every(name => shown.has(name)) }",
        arg=list(wanted),
    )


def error_text(page: Any, about: str) -> str:
    """The text of the error shown about ``about`` (waiting for it), without its button."""
    return str(page.locator("#errors .error span", has_text=about).inner_text())


def panel_button(page: Any, name: str, label: str) -> Any:
    """The button labelled ``label`` on the Dashboard's card of the file ``name``."""
    card = page.locator(".uppy-Dashboard-Item").filter(has_text=name)
    return card.get_by_role("button", name=label)


def item(page: Any, name: str) -> Any:
    return page.locator("#files li[data-id]").filter(has=page.locator("a.name", has_text=name))


def delete(page: Any, name: str) -> None:
    """Delete ``name`` from the list, answering the confirmation."""
    before = loaded(page)
    item(page, name).locator(".delete").click()
    dialog = page.locator("#confirm-delete")
    assert name in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    wait_loaded(page, before + 1)


def no_serious_violations(page: Any) -> None:
    results = Axe().run(page)
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, serious


def no_serious_violations_as_drawn(browser: Any, url: str) -> None:
    """:func:`no_serious_violations` on the page at ``url`` as drawn without scripts.

    axe-core needs scripts, and does not run in a page that has them off: the scan
    loads the page with its own script elements taken out and its noscript shown.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def without_scripts(route: Any) -> None:
        response = route.fetch()
        if not response.headers.get("content-type", "").startswith("text/html"):
            route.fulfill(response=response)
            return
        html = re.sub(r"<script\b.*?</script>", "", response.text(), flags=re.DOTALL)
        html = html.replace("<noscript>", "").replace("</noscript>", "")
        route.fulfill(response=response, body=html)

    try:
        page = context.new_page()
        page.route("**/*", without_scripts)
        page.goto(url)
        assert not page.locator("script").count()
        no_serious_violations(page)
    finally:
        context.close()


def no_sideways_scrolling(page: Any) -> bool:
    return bool(page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"))


def screenshot(page: Any, demo: Demo, label: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        name = f"demo-{demo.script.stem.removesuffix('_app')}-{label}.png"
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_demo_in_a_real_browser(demo: Demo, browser: Any) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo.url)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url.removeprefix(demo.url))))
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))

    def throttle(upload: int) -> None:
        conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
        cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": upload})

    cdp.send("Network.enable")
    try:
        page.goto(demo.url)
        wait_loaded(page, 1)
        assert "8.0 MiB" in page.inner_text("#limit")
        # The server drew the list; the script only made it work, fetching nothing.
        assert not [url for _, url in requests if url.startswith("/api/files")]

        # Two names, one stored file; the names survive a reload.
        shared = os.urandom(100_000)
        shared_id = hashlib.sha256(shared).hexdigest()
        pick(
            page, payload(NAMES[0], shared, "text/plain"), payload(NAMES[1], shared, "text/plain")
        )
        page.wait_for_function("document.querySelectorAll('#files li[data-id]').length == 2")
        assert sorted(names(page)) == sorted(NAMES)
        assert demo.stored() == {shared_id: shared}
        announced = "document.getElementById('announcer').textContent == '2 files uploaded'"
        page.wait_for_function(announced)
        fetched = len(requests)
        page.reload()
        wait_loaded(page, 1)
        assert sorted(names(page)) == sorted(NAMES)
        assert not [url for _, url in requests[fetched:] if url.startswith("/api/files")]
        assert "2 names, 1 stored file" in page.inner_text("#count")

        # A download carries the original name; the copied link is the same download.
        with page.expect_download() as info:
            item(page, NAMES[1]).locator("a.name").click()
        assert info.value.suggested_filename == NAMES[1]
        assert Path(info.value.path()).read_bytes() == shared
        item(page, NAMES[1]).locator("button.copy").click()
        link = page.evaluate("navigator.clipboard.readText()")
        assert link == demo.url + item(page, NAMES[1]).locator("a.name").get_attribute("href")

        # Too large: refused before sending, the limit stated. With the page's check off,
        # the server's own answer is shown as it sent it.
        sent = len(requests)
        drop(page, "too-big.bin", MAX_SIZE + 1)
        error = error_text(page, "too-big.bin")
        assert error == (
            "too-big.bin was not sent: it is 8388609 bytes, over the limit of 8388608 bytes"
            " (8.0 MiB) per file."
        )
        assert not [url for method, url in requests[sent:] if "/tus" in url]
        page.evaluate("uppy.setOptions({restrictions: {maxFileSize: null}})")
        with page.expect_response(
            lambda r: r.request.method == "POST" and "/tus" in r.url
        ) as made:
            drop(page, "past-the-server.bin", MAX_SIZE + 1)
        assert made.value.status == 413
        refusal = made.value.text().strip()
        assert refusal
        error = error_text(page, "past-the-server.bin")
        assert error.endswith(refusal), (error, refusal)
        page.evaluate(f"uppy.setOptions({{restrictions: {{maxFileSize: {MAX_SIZE}}}}})")
        page.evaluate("uppy.cancelAll()")

        # Pause and resume.
        throttle(THROTTLE)
        paused = drop(page, "paused.bin", BIG)
        wait_sent(page, "paused.bin", 1)
        panel_button(page, "paused.bin", "Pause upload").click()
        page.wait_for_function("uppy.getFiles().some(f => f.name === 'paused.bin' && f.isPaused)")
        assert paused not in demo.stored()
        screenshot(page, demo, "desktop")
        page.set_viewport_size({"width": 375, "height": 812})
        assert no_sideways_scrolling(page)
        screenshot(page, demo, "phone")
        page.set_viewport_size({"width": 1280, "height": 900})
        throttle(-1)
        panel_button(page, "paused.bin", "Resume upload").click()
        wait_uploaded(page, "paused.bin")
        assert hashlib.sha256(demo.stored()[paused]).hexdigest() == paused
        page.evaluate("uppy.cancelAll()")

        # Deleting one name leaves the bytes to the other, which still downloads.
        wait_listed(page, "paused.bin")
        delete(page, NAMES[0])
        assert NAMES[0] not in names(page)
        assert demo.stored()[shared_id] == shared
        with page.expect_download() as info:
            item(page, NAMES[1]).locator("a.name").click()
        assert Path(info.value.path()).read_bytes() == shared

        # A batch of 20 files refreshes the list once.
        before = loaded(page)
        gets = sum(1 for method, url in requests if method == "GET" and url == "/api/files")
        batch = [payload(f"part{i:02}.dat", os.urandom(2000 + i)) for i in range(19)]
        batch.append(payload("an_unbroken_name_" * 10 + ".dat", os.urandom(99)))  # wraps anywhere
        pick(page, *batch)
        wait_listed(page, *(file["name"] for file in batch))
        assert loaded(page) == before + 1
        after = sum(1 for method, url in requests if method == "GET" and url == "/api/files")
        assert after == gets + 1
        page.evaluate("uppy.cancelAll()")

        # Cancel: the upload stops, the server forgets it (tus termination), no row appears.
        throttle(THROTTLE)
        cancelled = drop(page, "cancelled.bin", BIG)
        wait_sent(page, "cancelled.bin", 1)
        with page.expect_request(lambda r: r.method == "DELETE" and "/tus/" in r.url):
            panel_button(page, "cancelled.bin", "Remove file").click()
        page.wait_for_function("!uppy.getFiles().some(f => f.name === 'cancelled.bin')")
        throttle(-1)
        assert cancelled not in demo.stored()

        # Retry: the endpoint refuses once (as an auth hook may); the Dashboard's Retry then
        # sends it again.
        tus = re.compile(r"/tus(/|$)")
        page.route(tus, lambda route: route.fulfill(status=403, body="uploads are closed now"))
        retried = drop(page, "retried.bin", 300_000)
        error = error_text(page, "retried.bin")
        assert error.endswith("uploads are closed now")
        page.unroute(tus)
        page.locator(".uppy-StatusBar").get_by_role("button", name="Retry upload").click()
        wait_uploaded(page, "retried.bin")
        assert hashlib.sha256(demo.stored()[retried]).hexdigest() == retried
        page.evaluate("uppy.cancelAll()")

        # The server killed mid-upload and started again: the upload resumes where the
        # server's copy ended (a HEAD asks it), and completes with the right bytes.
        throttle(THROTTLE)
        restarted = drop(page, "restarted.bin", BIG)
        wait_sent(page, "restarted.bin", CHUNK + 1)  # the first chunk was stored
        line = page.locator("#transfers li", has_text="restarted.bin").inner_text()
        assert re.search(r"iB of 8\.0 MiB · [\d.]+ (B|KiB|MiB)/s · \d+ s left", line), line
        demo.kill()
        resumed_from = len(requests)
        demo.start()
        throttle(-1)
        wait_uploaded(page, "restarted.bin")
        assert hashlib.sha256(demo.stored()[restarted]).hexdigest() == restarted
        assert "HEAD" in {m for m, url in requests[resumed_from:] if "/tus/" in url}
        wait_listed(page, "retried.bin", "restarted.bin")
        assert page.locator("#transfers li").count() == 0  # finished lines go once listed
        assert "cancelled.bin" not in names(page)
        page.evaluate("uppy.cancelAll()")

        # A pasted image is uploaded, with a thumbnail in the Dashboard (drop() above
        # drops on the heading, outside Uppy's own drop zone).
        page.evaluate(
            """async () => {
                const canvas = document.createElement('canvas');
                canvas.width = canvas.height = 64;
                const pen = canvas.getContext('2d');
                pen.fillStyle = '#0b57d0';
                pen.fillRect(8, 8, 48, 48);
                const png = await new Promise(done => canvas.toBlob(done, 'image/png'));
                const paste = new DataTransfer();
                paste.items.add(new File([png], 'pasted.png', {type: 'image/png'}));
                document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: paste}));
            }"""
        )
        card = page.locator(".uppy-Dashboard-Item").filter(has_text="pasted.png")
        thumbnail = card.locator("img.uppy-Dashboard-Item-previewImg")
        assert thumbnail.get_attribute("src").startswith("blob:")
        wait_listed(page, "pasted.png")
        assert "image/png" in item(page, "pasted.png").inner_text()

        # Sweep: a stored file no row names goes; deleting the last name takes the bytes.
        orphan = SyncHashFS(demo.root).put(b"stored behind the app's back")
        assert orphan.id in demo.stored()
        before = loaded(page)
        page.click("#sweep")
        wait_loaded(page, before + 1)
        assert orphan.id not in demo.stored()
        delete(page, NAMES[1])
        assert shared_id not in demo.stored()

        # A failed delete says why, in the same style as every other error.
        row = item(page, "pasted.png").get_attribute("data-id")
        assert page.request.delete(f"{demo.url}/api/files/{row}").ok  # behind the page's back
        delete(page, "pasted.png")
        assert error_text(page, "Could not delete pasted.png") == (
            f"Could not delete pasted.png: there is no file number {row} (deleted already?)"
        )

        no_serious_violations(page)
        page.set_viewport_size({"width": 375, "height": 812})
        assert no_sideways_scrolling(page)
        no_serious_violations(page)
        assert not failures, failures
    finally:
        context.close()


def test_demo_without_javascript(demo: Demo, browser: Any) -> None:
    """The page's forms alone: upload, the list, download by name, a confirmed delete, sweep."""
    context = browser.new_context(
        java_script_enabled=False, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    try:
        page.goto(demo.url)
        assert page.inner_text("#files") == "Nothing stored yet."
        assert page.inner_text("#limit") == "Up to 8.0 MiB per file."  # no drop, no paste
        shared = os.urandom(100_000)
        files = [payload(name, shared, "text/plain") for name in NAMES]
        page.set_input_files("input[type=file][name=file]", files)
        page.get_by_role("button", name="Upload", exact=True).click()
        page.wait_for_url(demo.url + "/")
        assert names(page) == NAMES[::-1]  # newest first
        assert page.inner_text("#count") == "(2 names, 1 stored file)"
        assert "97.7 KiB · text/plain · " in item(page, NAMES[0]).inner_text()
        assert item(page, NAMES[0]).locator("button.copy").is_hidden()  # it needs the script
        with page.expect_download() as info:
            item(page, NAMES[1]).locator("a.name").click()
        assert info.value.suggested_filename == NAMES[1]
        assert Path(info.value.path()).read_bytes() == shared
        no_serious_violations_as_drawn(browser, page.url)
        page.set_viewport_size({"width": 375, "height": 812})
        assert no_sideways_scrolling(page)

        # A delete asks first, on a page of its own; "Keep it" keeps it.
        item(page, NAMES[1]).get_by_role("link", name=f"Delete {NAMES[1]}").click()
        assert page.inner_text("h2") == f"Delete {NAMES[1]}?"
        assert no_sideways_scrolling(page)
        no_serious_violations_as_drawn(browser, page.url)
        page.get_by_role("link", name="Keep it").click()
        assert sorted(names(page)) == sorted(NAMES)
        page.set_viewport_size({"width": 1280, "height": 900})
        item(page, NAMES[1]).get_by_role("link", name=f"Delete {NAMES[1]}").click()
        page.get_by_role("button", name="Delete").click()
        page.wait_for_url(demo.url + "/")
        assert names(page) == [NAMES[0]]
        assert page.inner_text("#notices") == f"Deleted {NAMES[1]}"
        assert list(demo.stored().values()) == [shared]  # the other name still uses it

        # The clean-up button posts its form.
        orphan = SyncHashFS(demo.root).put(b"stored behind the app's back")
        page.get_by_role("button", name="Clean up unreferenced files").click()
        page.wait_for_url(demo.url + "/")
        assert page.inner_text("#notices") == "Clean-up removed 1 file"
        assert orphan.id not in demo.stored()
    finally:
        context.close()

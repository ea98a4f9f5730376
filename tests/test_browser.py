"""The demo app (the README's first command) driven in headless Chromium."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
EXAMPLE = Path(__file__).parent.parent / "examples" / "quart_app.py"
IN_CI = bool(os.environ.get("CI"))  # there, a missing browser fails instead of skipping

if IN_CI:
    import playwright.sync_api as playwright
else:
    playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not IN_CI and not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    root = tmp_path / "store"
    env = {**os.environ, "PORT": str(port), "HASHFS_ROOT_FOLDER": str(root)}
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, str(EXAMPLE)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: whatever it starts is found
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        else:
            pytest.fail("the demo app did not start")
        yield f"http://127.0.0.1:{port}", root
    finally:
        left = stop(server)
    assert not left, f"the demo left processes running after SIGTERM: {left}"


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


def stop(server: subprocess.Popen[bytes]) -> list[str]:
    """Stop the demo as a user would (SIGTERM to it alone), then kill anything it left.

    Returns the processes of its group that outlived it by a few seconds.
    """
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


def test_demo_in_a_real_browser(demo: tuple[str, Path], tmp_path: Path) -> None:
    base, root = demo
    small = tmp_path / "hello.txt"
    small.write_bytes(b"hello from a real browser\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(base)
            page.set_input_files("#picker", [str(small), str(big)])
            page.wait_for_selector("#uploads li.done >> nth=1", timeout=60_000)
            page.wait_for_function("document.querySelectorAll('#files tr').length == 2")
            for path in (small, big):
                id = hashlib.sha256(path.read_bytes()).hexdigest()
                assert page.locator(f"#files tr[data-id='{id}'] a.hash").inner_text() == id

            small_id = hashlib.sha256(small.read_bytes()).hexdigest()
            with page.expect_download() as info:
                page.click(f"#files tr[data-id='{small_id}'] a.download")
            download = info.value
            assert Path(download.path()).read_bytes() == small.read_bytes()
            assert download.suggested_filename == small_id[:12] + ".txt"

            page.set_input_files("#picker", [str(small)])
            duplicate = page.wait_for_selector("#uploads li.duplicate", timeout=30_000)
            assert "deduplicated" in duplicate.inner_text()
            assert page.locator("#files tr").count() == 2

            big_id = hashlib.sha256(big.read_bytes()).hexdigest()
            page.click(f"#files tr[data-id='{big_id}'] button.delete")
            page.wait_for_function("document.querySelectorAll('#files tr').length == 1")
            screenshot = tmp_path / "demo.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get("SCREENSHOT_DIR"):
                shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / "demo.png")
        finally:
            browser.close()
    stored = [p for p in root.rglob("*") if p.is_file() and ".hashfs-tmp" not in p.parts]
    assert [p.read_bytes() for p in stored] == [small.read_bytes()]

"""Start SeaweedFS as the tests do and write its s3_options to /tmp/attack3_s3.json.

The scripts in attack/ read that file. Runs until SIGTERM (by its pid) or 4 hours.

    .venv/bin/python attack/serve.py &
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import s3server


def main() -> None:
    server = s3server.start()
    Path("/tmp/attack3_s3.json").write_text(
        json.dumps({"options": server.options(), "pid": server.process.pid})
    )
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
    deadline = time.time() + 4 * 3600
    while time.time() < deadline:
        time.sleep(5)
    server.stop()


if __name__ == "__main__":
    main()

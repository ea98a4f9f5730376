"""An S3 sweep of a bucket that does not exist: what the library and the CLI say.

SeaweedFS started as tests/s3server.py starts it, plus -s3.autoCreateBucket=false
(AWS, R2 and MinIO never create a bucket on upload). Prints what `sweep`, a dry
run and `put` raise, and the CLI's exit code and message for `sweep` (expected:
exit 4, "the S3 bucket does not exist", as the other commands say).

    .venv/bin/python attack/missing_bucket.py
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import s3server  # noqa: E402

real_popen = subprocess.Popen


def popen(command, *args, **kwargs):  # type: ignore[no-untyped-def]
    if command and str(command[0]).endswith("weed"):
        command = [*command, "-s3.autoCreateBucket=false"]
    return real_popen(command, *args, **kwargs)


def main() -> None:
    subprocess.Popen = popen  # type: ignore[misc]
    server = s3server.start()
    subprocess.Popen = real_popen  # type: ignore[misc]
    try:
        from async_hashfs import SyncHashFS

        fs = SyncHashFS("s3://no-such-bucket/app", s3_options=server.options())
        for name, call in [
            ("put", lambda: fs.put(b"x")),
            ("sweep", lambda: fs.sweep([], older_than=0)),
            ("sweep dry run", lambda: fs.sweep([], older_than=0, dry_run=True)),
            ("gc", lambda: fs.gc()),
        ]:
            try:
                print(f"{name}: returned {call()!r}")
            except Exception as exc:
                print(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": s3server.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": s3server.SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": server.endpoint,
        }
        cli = os.path.join(os.path.dirname(sys.executable), "async-hashfs")
        for args in (
            ["sweep", "--keep", os.devnull, "--allow-empty"],
            ["sweep", "--keep", os.devnull, "--allow-empty", "--dry-run"],
            ["ls"],
        ):
            done = subprocess.run(
                [cli, "--root", "s3://no-such-bucket/app", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            print(f"CLI {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[:200]}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

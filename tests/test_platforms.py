"""The store without fcntl, O_TMPFILE, pread and dir_fd calls, as on Windows (and macOS).

The store test modules run again in a subprocess, with
``tests/_platform_mask.py`` hiding those features before the store is
imported, so every normal run of the suite also covers the fallbacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._platform_mask import MASK_VARIABLE, MASKED, mask_arguments

ROOT = Path(__file__).resolve().parent.parent
#: The store tests the masked run repeats; the S3 half of the contract tests needs no mask.
MODULES = [
    "tests/test_platforms.py",
    "tests/test_engine.py",
    "tests/test_sync_store.py",
    "tests/test_async_store.py",
    "tests/test_contract.py",
    "tests/test_hashfs_suite.py",
    "tests/test_tus.py",
]
#: Well above the masked run's usual time (about a minute), well inside CI's.
BUDGET = 400

masked = pytest.mark.skipif(not os.environ.get(MASK_VARIABLE), reason="only in the masked run")


@masked
def test_features_are_masked() -> None:
    import async_hashfs._engine as engine
    import async_hashfs._folder as folder

    assert engine._fcntl is None and not folder.DIR_FD
    assert not hasattr(os, "O_TMPFILE") and not hasattr(os, "pread")
    with pytest.raises(ImportError):
        import fcntl  # noqa: F401


@pytest.mark.skipif(sys.platform != "linux", reason="masks Linux features")
@pytest.mark.skipif(bool(os.environ.get(MASK_VARIABLE)), reason="already masked")
@pytest.mark.timeout(BUDGET + 60)
def test_store_tests_pass_without_fcntl_o_tmpfile_pread_and_dir_fd() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-x"]
    command += [*mask_arguments(), "-k", "not s3", *MODULES]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=BUDGET)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the masked run took more than {BUDGET} s: {exc.stdout!r}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"without {', '.join(MASKED)}:\n{output}"
    assert "only in the masked run" not in output, f"the mask did not apply:\n{output}"

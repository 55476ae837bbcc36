"""Disk: write and fsync 128 MiB to a temporary file; prints MB/s."""

import os
import tempfile
import time

chunk = os.urandom(1 << 20)
with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/var/tmp")) as fh:
    began = time.perf_counter()
    for _ in range(128):
        fh.write(chunk)
    fh.flush()
    os.fsync(fh.fileno())
    elapsed = time.perf_counter() - began
print(f"disk write: {128 / elapsed:.1f} MB/s")

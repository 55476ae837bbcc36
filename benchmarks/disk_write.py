"""Disk: write and fsync 1 MiB blocks to a temporary file for about 3 seconds; prints MB/s."""

import os
import tempfile
import time

chunk = os.urandom(1 << 20)
with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/var/tmp")) as fh:
    began = time.perf_counter()
    written = 0
    while time.perf_counter() - began < 3.0:
        fh.write(chunk)
        written += 1
        if written % 64 == 0:
            os.fsync(fh.fileno())
    fh.flush()
    os.fsync(fh.fileno())
    elapsed = time.perf_counter() - began
print(f"disk write: {written / elapsed:.1f} MB/s ({written} MiB)")

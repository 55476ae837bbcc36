"""CPU: SHA-256 over 64 MiB of data in 1 MiB blocks; prints MB/s."""

import hashlib
import time

block = bytes(range(256)) * 4096
began = time.perf_counter()
digest = hashlib.sha256()
for _ in range(64):
    digest.update(block)
elapsed = time.perf_counter() - began
print(f"sha256 throughput: {64 / elapsed:.1f} MB/s ({digest.hexdigest()[:12]})")

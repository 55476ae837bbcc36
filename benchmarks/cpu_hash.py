"""CPU: SHA-256 over 1 MiB blocks for about 3 seconds; prints MB/s."""

import hashlib
import time

block = bytes(range(256)) * 4096
digest = hashlib.sha256()
began = time.perf_counter()
blocks = 0
while time.perf_counter() - began < 3.0:
    digest.update(block)
    blocks += 1
elapsed = time.perf_counter() - began
print(f"sha256 throughput: {blocks / elapsed:.1f} MB/s ({digest.hexdigest()[:12]})")

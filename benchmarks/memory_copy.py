"""Memory: copy a 256 MiB buffer eight times; prints GB/s."""

import time

src = bytearray(256 << 20)
began = time.perf_counter()
for _ in range(8):
    dst = bytes(src)
elapsed = time.perf_counter() - began
print(f"memory copy: {8 * len(src) / elapsed / 1e9:.2f} GB/s ({len(dst)} bytes)")

"""Memory: copy a 256 MiB buffer again and again for about 3 seconds; prints GB/s."""

import time

src = bytearray(256 << 20)
began = time.perf_counter()
copies = 0
while time.perf_counter() - began < 3.0:
    dst = bytes(src)
    copies += 1
elapsed = time.perf_counter() - began
print(
    f"memory copy: {copies * len(src) / elapsed / 1e9:.2f} GB/s ({copies} copies of {len(dst)} bytes)"
)

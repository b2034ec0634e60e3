"""Multipart upload to moto's S3 server on 127.0.0.1 (SigV4 on, tests/backup/s3server.py in `.venv-s3`):
one random file of --mib MiB in --part-mib MiB parts, put, then a single-PUT of the same size for
comparison (when it fits one PUT), each fetched back and checked by sha256 (untimed). Bounded: at most
2048 MiB, 5 repeats. moto keeps objects in memory: this measures the client's part loop and signing plus
moto on this machine, not a real S3 service's bandwidth.

    .venv/bin/python bench/s3_multipart.py --mib 256 --part-mib 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from migrator.adapters import s3multipart  # noqa: E402
from migrator.adapters.objectstore import S3Store  # noqa: E402

MIB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    size, part = min(max(args.mib, 6), 2048) * MIB, max(args.part_mib, 5) * MIB
    server = subprocess.Popen([str(REPO / ".venv-s3" / "bin" / "python"), str(REPO / "tests" / "backup" / "s3server.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
            blob = Path(tmp) / "blob"
            with blob.open("wb") as fh:
                for _ in range(size // MIB):
                    fh.write(os.urandom(MIB))
            digest = hashlib.sha256(blob.read_bytes()).hexdigest()
            parts = -(-size // s3multipart.part_size_for(size, part))
            times, single = [], []
            for i in range(max(1, min(args.repeat, 5))):
                for label, part_size, out in (("multipart", part, times), ("single", S3Store.MAX_PUT, single)):
                    store = S3Store(bucket=info["bucket"], prefix="bench", endpoint_url=info["url"], region="us-east-1",
                                    access_key_id=info["access_key_id"], secret_access_key=info["secret_access_key"],
                                    part_size=part_size)
                    key = f"{label}-{i}"
                    t0 = time.perf_counter()
                    store.put(key, blob, digest)
                    out.append(time.perf_counter() - t0)
                    store.fetch(key, Path(tmp) / "back")
                    assert hashlib.sha256((Path(tmp) / "back").read_bytes()).hexdigest() == digest, label
                    (Path(tmp) / "back").unlink()
                    store.delete(key)
                    store.close()
        best, best_single = min(times), min(single)
        print(f"file: {size // MIB} MiB  part: {part // MIB} MiB  parts: {parts}  server: moto (127.0.0.1)")
        print(f"multipart put: best {best:.2f} s ({size / MIB / best:.1f} MiB/s)")
        print(f"single PUT of the same file: best {best_single:.2f} s ({size / MIB / best_single:.1f} MiB/s)")
        print(f"s3_multipart mib={size // MIB} parts={parts} best_multipart_s={best:.3f} best_single_s={best_single:.3f}")
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

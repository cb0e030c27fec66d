"""Contender: the removed onnx.hub's strategy, as the baseline.

One file after another with urllib (a new connection each), 16 KiB reads written to
the final name, then the whole file read back into memory and hashed, as onnx.hub's
``load`` did. Usage: python fetch_oldhub.py JOB.json   (written by run.py)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from urllib.request import urlopen

CHUNK = 16 * 1024


def download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urlopen(url) as response, open(dest, "wb") as f:
        while chunk := response.read(CHUNK):
            f.write(chunk)


def main() -> None:
    t0 = time.perf_counter()
    job = json.loads(Path(sys.argv[1]).read_text())
    for url, dest, sha, _size in job["files"]:
        download(url, Path(dest))
        digest = hashlib.sha256(Path(dest).read_bytes()).hexdigest()
        if digest != sha:
            raise SystemExit(f"sha256 mismatch for {dest}: {digest} != {sha}")
    print(json.dumps({"fetch_s": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()

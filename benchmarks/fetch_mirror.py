"""Contender: ``hub.mirror`` of the zoo, the code path of ``asynchub mirror``.

Usage: python fetch_mirror.py JOB.json   (written by run.py)
JOB: {"repo": hub URL, "dest": folder, "files": N, "config": {HubConfig fields}}
Prints one JSON line: seconds spent importing and mirroring.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from asynchub import hub  # noqa: E402
from asynchub.config import HubConfig  # noqa: E402


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    config = HubConfig.model_validate(job["config"])
    t1 = time.perf_counter()
    report = hub.mirror(job["dest"], job["repo"], silent=True, config=config)
    t2 = time.perf_counter()
    if not report.ok or report.files_done != job["files"]:
        raise SystemExit(f"mirror incomplete: {report}")
    print(json.dumps({"import_s": t1 - T0, "fetch_s": t2 - t1}))


if __name__ == "__main__":
    main()

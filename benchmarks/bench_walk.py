"""Walking a folder for `jinaclip index`: 20,000 files with nested .gitignore files, against a bare
``os.walk`` of the same tree (the floor: listing without any rule) measured in the same run.

    python benchmarks/bench_walk.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jinaclip_integrations.ingest.readers import format_of  # noqa: E402
from jinaclip_integrations.ingest.walk import walk  # noqa: E402


def make_tree(root: Path) -> None:
    """200 folders of 100 files, a .gitignore in every tenth, one at the top."""
    for d in range(200):
        folder = root / f"d{d // 20}" / f"e{d}"
        folder.mkdir(parents=True)
        for f in range(100):
            (folder / f"f{f}.{'md' if f % 3 else 'bin'}").touch()
        if d % 10 == 0:
            (folder / ".gitignore").write_text("*7.md\n!f17.md\nsub/\n")
    (root / ".gitignore").write_text("# top\n*.tmp\nbuild/\n**/cache/\n")


def best(run, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        root = Path(tmp)
        make_tree(root)
        ours = best(lambda: walk([root], supported=lambda p: format_of(p) is not None, exclude=["*99.md"]))
        floor = best(lambda: [name for _, _, names in os.walk(root) for name in names])
    print(f"| walk (rules, .gitignore, exclude) | {ours:.3f} s | os.walk alone | {floor:.3f} s | {ours / floor:.1f}x |")


if __name__ == "__main__":
    main()

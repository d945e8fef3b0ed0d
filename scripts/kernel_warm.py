"""Pre-builds what the notebook's first cell compiles, so opening the lesson is quick.

`:dep fastvision` makes evcxr compile fastvision and its ~270 dependencies inside the kernel,
which takes 8-10 minutes on 2 cores the first time, behind a busy cell with no output. This
script runs that first cell once in a real kernel (the same kernel spec, the same build
folder, the same absolute crate path the notebook resolves), printing progress while it
builds, and records what it built so that the next run returns at once when nothing changed.

    python scripts/kernel_warm.py ROOT CACHE

Exit code 0 when the kernel's build folder is ready, 1 (with the kernel's error) otherwise.
"""

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def key(root: Path) -> str:
    """Everything the kernel's build depends on: the crate, the lock file, the toolchain."""
    h = hashlib.sha256(str(root).encode())
    files = [root / "Cargo.lock", root / "Cargo.toml"]
    files += sorted(p for p in (root / "crate").rglob("*") if p.is_file() and "tests" not in p.parts)
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout
    h.update(rustc.encode())
    h.update(os.environ.get("LIBTORCH", "").encode())
    return h.hexdigest()


def built(cache: Path) -> int:
    """Compiled units in every kernel build folder (cargo writes one fingerprint per unit)."""
    return sum(
        len(list(d.iterdir()))
        for d in (cache / "evcxr").glob("tmp-*/target/*/debug/.fingerprint")
        if d.is_dir()
    )


def main() -> int:
    root, cache = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    stamp = cache / "evcxr" / "warm.stamp"
    want = key(root)
    if stamp.is_file() and stamp.read_text().strip() == want:
        return 0
    from jupyter_client.manager import KernelManager

    print("Pre-building the notebook's first cell (:dep fastvision) in the kernel's build folder;")
    print("the first time this compiles ~270 crates (8-10 minutes on 2 cores), later only fastvision.")
    code = f':dep fastvision = {{ path = "{root / "crate"}" }}\nuse fastvision::prelude::*;'
    km = KernelManager(kernel_name="fastvision")
    km.start_kernel(cwd=str(root / "notebooks"))
    kc = km.client()
    kc.start_channels()
    start, before = time.time(), built(cache)
    done = threading.Event()

    def progress():
        while not done.wait(10):
            n = built(cache) - before
            m, s = divmod(int(time.time() - start), 60)
            print(f"  {m:2d}:{s:02d}  building ({n} new units so far)", flush=True)

    threading.Thread(target=progress, daemon=True).start()
    errors = []

    def hook(msg):
        if msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"].get("traceback", [])) or msg["content"]["evalue"])
        elif msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
            errors.append(msg["content"]["text"])

    try:
        kc.wait_for_ready(timeout=600)
        reply = kc.execute_interactive(code, timeout=None, output_hook=hook)
    finally:
        done.set()
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    secs = time.time() - start
    if reply["content"]["status"] != "ok":
        print("the kernel could not build fastvision:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(want + "\n")
    tmp.replace(stamp)
    print(f"Kernel ready in {secs:.0f} s: the notebook's first cell now compiles only the cell.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

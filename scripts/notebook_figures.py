"""Copies the pictures of an executed notebook's tagged cells to PNG files, so the README shows
exactly what the committed notebook shows.

    python scripts/notebook_figures.py notebooks/lesson1-fruits.ipynb docs/
"""
import base64
import json
import os
import sys
import tempfile

notebook, out_dir = sys.argv[1], sys.argv[2]
with open(notebook) as f:
    nb = json.load(f)
os.makedirs(out_dir, exist_ok=True)
written = []
for cell in nb["cells"]:
    tags = cell.get("metadata", {}).get("tags", [])
    pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    if not tags or not pngs:
        continue
    data = pngs[-1]
    data = "".join(data) if isinstance(data, list) else data
    path = os.path.join(out_dir, f"{tags[0]}.png")
    # Atomically: a reader never sees half a picture.
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".fig-")
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    written.append(path)
if not written:
    sys.exit(f"{notebook} has no pictures in tagged cells: was it executed?")
print("wrote " + ", ".join(written))

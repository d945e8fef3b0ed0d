"""Prints each code cell's wall time in an executed notebook, from the timestamps nbclient
records (metadata.execution), as the Markdown table the README shows.

    python scripts/notebook_timings.py notebooks/lesson1-fruits.ipynb
"""
import json
import sys
from datetime import datetime


def stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mmss(secs):
    m, s = divmod(round(secs), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


with open(sys.argv[1]) as f:
    nb = json.load(f)
rows, total = [], 0.0
for cell in nb["cells"]:
    if cell["cell_type"] != "code":
        continue
    ex = cell.get("metadata", {}).get("execution", {})
    start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (start and end):
        sys.exit(f"{sys.argv[1]}: a cell has no execution timestamps: was it executed by nbclient?")
    secs = (stamp(end) - stamp(start)).total_seconds()
    total += secs
    source = "".join(cell["source"]).strip().splitlines()
    call = next((l for l in reversed(source) if l.strip() and not l.startswith(("let ", "use ", ":"))), source[-1])
    rows.append((", ".join(cell.get("metadata", {}).get("tags", [])) or "-", call.strip(), secs))
print("| cell | its last call | wall time |")
print("| --- | --- | ---: |")
for tag, call, secs in rows:
    escaped = call.replace("|", "\\|")
    print(f"| {tag} | `{escaped}` | {mmss(secs)} |")
print(f"| all | | {mmss(total)} |")

"""make bench: fastvision and fastai side by side, same data, settings and threads.

Each phase runs in a fresh process per tool, alternating tools, for several rounds; the
median of each figure is reported with the ratio fastvision/fastai. Results go to stdout and
bench/RESULTS.md.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", help="a Fruits-360-layout folder (Training/ and Test/)")
    p.add_argument("--fastvision", required=True, help="the fastvision bench binary")
    p.add_argument("--python", required=True, help="python of the fastai venv")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = p.parse_args()

    phases = ["data"]
    results = {(tool, ph): [] for tool in ("fastvision", "fastai") for ph in phases}
    for r in range(args.rounds):
        for ph in phases:
            common = [ph, args.data, "--threads", str(args.threads)]
            for tool, cmd in (("fastai", [args.python, os.path.join(HERE, "fastai_bench.py")]),
                              ("fastvision", [args.fastvision])):
                res = run(cmd + common)
                results[(tool, ph)].append(res)
                print(f"round {r + 1} {ph:5} {tool:10} {json.dumps(res)}", flush=True)

    def med(tool, ph, key):
        return statistics.median(x[key] for x in results[(tool, ph)])

    rows = [
        ("data: images/s, steady epoch (higher is better)", "images_per_s", True),
        ("data: images/s, first epoch incl. decoding", "images_per_s_first", True),
        ("data: epoch wall time, s", "epoch_s", False),
        ("data: peak resident memory, MB", "peak_rss_mb", False),
    ]
    lines = ["| figure | fastvision | fastai | fastvision/fastai |", "|---|---:|---:|---:|"]
    for label, key, _ in rows:
        fv, fa = med("fastvision", "data", key), med("fastai", "data", key)
        lines.append(f"| {label} | {fv:.1f} | {fa:.1f} | {fv / fa:.2f}x |")
    table = "\n".join(lines)
    print("\n" + table)

    torch_v = subprocess.run([args.python, "-c", "import torch, fastai; print(torch.__version__, fastai.__version__)"],
                             capture_output=True, text=True).stdout.split()
    header = (
        f"# Benchmarks: fastvision against fastai\n\n"
        f"Latest `make bench` run, {datetime.date.today().isoformat()}: median of {args.rounds} rounds, "
        f"tools alternating, each phase a fresh process.\n\n"
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores; {args.threads} threads for both tools\n"
        f"- fastai {torch_v[1] if len(torch_v) > 1 else '?'} on torch {torch_v[0] if torch_v else '?'}; "
        f"fastvision on tch 0.26 / libtorch 2.13.0\n"
        f"- Data: `{args.data}`; 100 px, bs 64, fastai's default augmentation "
        f"(`aug_transforms()` / `get_transforms()`) and ImageNet normalisation; fastai with "
        f"`num_workers={args.threads}`\n\n"
        f"fastvision decodes the images once into memory when building the ImageDataBunch (its first "
        f"epoch row includes that); fastai decodes every image every epoch.\n\n"
    )
    with open(args.out + ".tmp", "w") as f:
        f.write(header + table + "\n")
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

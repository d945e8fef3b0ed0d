"""make bench: fastvision and fastai side by side, same data, settings and threads.

Each phase runs in a fresh process per tool, alternating tools, for several rounds; the
median of each figure is reported with the ratio fastvision/fastai. Results go to stdout and
bench/RESULTS.md.
"""
import argparse, datetime, json, os, platform, shutil, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    # Progress bars share stdout (fastprogress writes without newlines): take the marked line.
    marked = [l.split("BENCH_JSON ", 1)[1] for l in out.stdout.splitlines() if "BENCH_JSON " in l]
    if not marked:
        sys.exit(f"no result from: {' '.join(cmd)}\n{out.stdout[-2000:]}")
    return json.loads(marked[-1])


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
    p.add_argument("--phases", default="data,fit,lr-find,interp,fit-resnet34")
    p.add_argument("--subset", type=int, default=20,
                   help="Training images per class for fit-resnet34 (Test: half as many)")
    p.add_argument("--weights", help="mobilenet_v2-b0353104.pth for fastai (torchvision's file)")
    args = p.parse_args()

    # fastai loads torchvision's MobileNetV2 weights from TORCH_HOME: give it the offline file.
    fastai_env = dict(os.environ)
    if args.weights:
        torch_home = os.path.join(os.path.expanduser("~/.cache/fastvision"), "bench-torch")
        ckpt = os.path.join(torch_home, "hub", "checkpoints")
        os.makedirs(ckpt, exist_ok=True)
        target = os.path.join(ckpt, os.path.basename(args.weights))
        if not os.path.exists(target):
            shutil.copyfile(args.weights, target + ".tmp")
            os.replace(target + ".tmp", target)
        fastai_env["TORCH_HOME"] = torch_home

    phases = args.phases.split(",")
    # resnet34 from random init trains the whole network: about 6 s a batch on 2 cores, so it
    # runs on a subset (the first images of every class, as symlinks) to keep make bench short.
    subset = tempfile.mkdtemp(prefix="fastvision-bench-subset-") if "fit-resnet34" in phases else None
    if subset:
        for split, n in (("Training", args.subset), ("Test", max(1, args.subset // 2))):
            for cls in sorted(os.listdir(os.path.join(args.data, split))):
                src = os.path.join(args.data, split, cls)
                if not os.path.isdir(src):
                    continue
                os.makedirs(os.path.join(subset, split, cls))
                for f in sorted(os.listdir(src))[:n]:
                    os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(subset, split, cls, f))
    results = {(tool, ph): [] for tool in ("fastvision", "fastai") for ph in phases}
    for r in range(args.rounds):
        for ph in phases:
            common = [ph, subset if ph == "fit-resnet34" else args.data, "--threads", str(args.threads)]
            for tool, cmd, env in (("fastai", [args.python, os.path.join(HERE, "fastai_bench.py")], fastai_env),
                                   ("fastvision", [args.fastvision], None)):
                res = run(cmd + common, env)
                results[(tool, ph)].append(res)
                print(f"round {r + 1} {ph:5} {tool:10} {json.dumps(res)}", flush=True)

    def med(tool, ph, key):
        return statistics.median(x[key] for x in results[(tool, ph)])

    rows = [
        ("data", "data: images/s, steady epoch (higher is better)", "images_per_s"),
        ("data", "data: images/s, first epoch incl. decoding", "images_per_s_first"),
        ("data", "data: peak resident memory, MB", "peak_rss_mb"),
        ("fit", "fit_one_cycle(1) wall time, s", "fit_s"),
        ("fit", "compute limit (same steps, batch in memory, + validation), s", "limit_s"),
        ("fit", "fit: peak resident memory, MB", "peak_rss_mb"),
        ("fit", "Test error rate after fit_one_cycle(1)", "error_rate"),
        ("lr-find", "lr_find() wall time, s", "lr_find_s"),
        ("interp", "ClassificationInterpretation wall time, s", "interp_s"),
        ("fit-resnet34", "resnet34, random init, subset: fit_one_cycle(1) wall time, s", "fit_s"),
        ("fit-resnet34", "resnet34: compute limit (same steps, batch in memory, + validation), s", "limit_s"),
        ("fit-resnet34", "resnet34: peak resident memory, MB", "peak_rss_mb"),
    ]
    lines = ["| figure | fastvision | fastai | fastvision/fastai |", "|---|---:|---:|---:|"]
    for ph, label, key in rows:
        if ph not in phases:
            continue
        fv, fa = med("fastvision", ph, key), med("fastai", ph, key)
        ratio = f"{fv / fa:.2f}x" if fa else "n/a"
        lines.append(f"| {label} | {fv:.4g} | {fa:.4g} | {ratio} |")
    for ph, name in (("fit", "mobilenet_v2"), ("fit-resnet34", "resnet34")):
        if ph not in phases:
            continue
        for tool in ("fastvision", "fastai"):
            lim = med(tool, ph, "fit_s") / med(tool, ph, "limit_s")
            lines.append(f"| {tool}: {name} fit_one_cycle(1) / its compute limit | {lim:.2f}x | | |")
    devices = {tool: sorted({x.get("device", "cpu") for ph in phases for x in results[(tool, ph)]})
               for tool in ("fastvision", "fastai")}
    lines.append(f"| device | {', '.join(devices['fastvision'])} | {', '.join(devices['fastai'])} | |")
    table = "\n".join(lines)
    if subset:
        shutil.rmtree(subset)
    print("\n" + table)

    torch_v = subprocess.run([args.python, "-c", "import torch, fastai; print(torch.__version__, fastai.__version__)"],
                             capture_output=True, text=True).stdout.split()
    header = (
        f"# Benchmarks: fastvision against fastai\n\n"
        f"Latest `make bench` run, {datetime.date.today().isoformat()}: median of {args.rounds} rounds, "
        f"tools alternating, each phase a fresh process.\n\n"
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores; {args.threads} threads for both tools\n"
        f"- fastai {torch_v[1] if len(torch_v) > 1 else '?'} on torch {torch_v[0] if torch_v else '?'}; "
        f"fastvision on tch 0.24 / libtorch 2.11.0\n"
        f"- Data: `{args.data}`; 100 px, bs 64, fastai's default augmentation "
        f"(`aug_transforms()` / `get_transforms()`) and ImageNet normalisation; fastai with "
        f"`num_workers={args.threads}`\n\n"
        f"fastvision decodes the images once into memory when building the ImageDataBunch (its first "
        f"epoch row includes that); fastai decodes every image every epoch. The resnet34 rows train "
        f"from random initialisation (the whole network) on the first {args.subset} Training and "
        f"{max(1, args.subset // 2)} Test images of every class.\n\n"
    )
    # Hand-written notes below "## Notes" survive re-runs.
    notes = ""
    if os.path.exists(args.out):
        old = open(args.out).read()
        if "\n## Notes" in old:
            notes = "\n## Notes" + old.split("\n## Notes", 1)[1]
    with open(args.out + ".tmp", "w") as f:
        f.write(header + table + "\n" + notes)
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""make bench: fastvision and fastai side by side, same data, settings and threads.

Each phase runs in a fresh process per tool, alternating tools, for several rounds; the
median of each figure is reported with the ratio fastvision/fastai. Results go to stdout and
bench/RESULTS.md.
"""
import argparse, datetime, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def tree_rss_kb(root):
    """Resident memory of a process and all its descendants (fastai's loader workers too)."""
    parent, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree)


def run(cmd, env=None):
    """Runs one phase; its result gains `tree_peak_rss_mb`, the peak of the whole process tree
    sampled every 0.1 s, measured the same way for both tools."""
    with tempfile.TemporaryFile(mode="w+") as so, tempfile.TemporaryFile(mode="w+") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, text=True, env=env)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_kb(proc.pid))
            time.sleep(0.1)
        so.seek(0)
        se.seek(0)
        out = subprocess.CompletedProcess(cmd, proc.returncode, so.read(), se.read())
    if out.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    # Progress bars share stdout (fastprogress writes without newlines): take the marked line.
    marked = [l.split("BENCH_JSON ", 1)[1] for l in out.stdout.splitlines() if "BENCH_JSON " in l]
    if not marked:
        sys.exit(f"no result from: {' '.join(cmd)}\n{out.stdout[-2000:]}")
    res = json.loads(marked[-1])
    res["tree_peak_rss_mb"] = peak / 1024
    return res


def env_with_weights(weights):
    """The environment for fastai: it loads torchvision's MobileNetV2 weights from TORCH_HOME,
    so give it the offline file (`weights`, torchvision's mobilenet_v2-b0353104.pth)."""
    env = dict(os.environ)
    if weights:
        torch_home = os.path.join(os.path.expanduser("~/.cache/fastvision"), "bench-torch")
        ckpt = os.path.join(torch_home, "hub", "checkpoints")
        os.makedirs(ckpt, exist_ok=True)
        target = os.path.join(ckpt, os.path.basename(weights))
        if not os.path.exists(target):
            shutil.copyfile(weights, target + ".tmp")
            os.replace(target + ".tmp", target)
        env["TORCH_HOME"] = torch_home
    return env


def versions(python):
    """[torch version, fastai version] of the fastai venv's python ('?' for one it lacks)."""
    out = subprocess.run([python, "-c", "import torch, fastai; print(torch.__version__, fastai.__version__)"],
                         capture_output=True, text=True).stdout.split()
    return (out + ["?", "?"])[:2]


def shown_path(path):
    """A data path as RESULTS shows it: relative to the repository when inside it (or beside
    it), with ~ for the home folder otherwise, never one machine's absolute path."""
    root = os.path.dirname(HERE)
    full = os.path.realpath(path)
    rel = os.path.relpath(full, root)
    if not rel.startswith(os.pardir + os.sep + os.pardir):
        return rel
    home = os.path.expanduser("~")
    return "~" + full[len(home):] if full.startswith(home + os.sep) else full


def replace_section(path, title, body):
    """Rewrites the `## title` section of RESULTS.md (appended when missing), atomically,
    leaving every other section as it was."""
    old = open(path).read() if os.path.exists(path) else ""
    head, *rest = old.split("\n## ")
    sections = [("## " + r).rstrip("\n") + "\n" for r in rest]
    new = f"## {title}\n\n{body.rstrip()}\n"
    at = [i for i, sec in enumerate(sections) if sec.startswith(f"## {title}\n")]
    notes = [i for i, sec in enumerate(sections) if sec.startswith("## Notes\n")]
    if at:
        sections[at[0]] = new
    else:
        sections.insert(notes[0] if notes else len(sections), new)
    text = head.rstrip("\n") + "\n" + "".join("\n" + sec for sec in sections)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def scale_phase(args, fastai_env):
    """Full Fruits 360 size: verify, data, a stretch of training and validation, once per tool."""
    data = args.scale_data
    if not os.path.isdir(os.path.join(data, "Training")):
        print(f"generating the scale set ({args.scale_classes} classes x {args.scale_per_class}) in {data}",
              flush=True)
        subprocess.run([args.cli, "sample", data, "--classes", str(args.scale_classes),
                        "--per-class", str(args.scale_per_class)], check=True)
    res = {}
    for ph in ("scale-verify", "scale-data", "scale-train"):
        for tool, cmd, env in (("fastai", [args.python, os.path.join(HERE, "fastai_bench.py")], fastai_env),
                               ("fastvision", [args.fastvision], None)):
            extra = ["--batches", str(args.scale_batches)] if ph == "scale-train" else []
            r = run(cmd + [ph, data, "--threads", str(args.threads)] + extra, env)
            res[(tool, ph)] = r
            print(f"scale {ph:12} {tool:10} {json.dumps(r)}", flush=True)
    n = res[("fastvision", "scale-data")]["images"]
    decoded = res[("fastvision", "scale-data")]["decoded_mb"]
    rows = [
        ("scale-verify", "verify_images, whole set, s", "verify_s"),
        ("scale-verify", "verify_images: peak memory of the process tree, MB", "tree_peak_rss_mb"),
        ("scale-data", "building the data, s", "data_s"),
        ("scale-data", "building the data: peak memory of the process tree, MB", "tree_peak_rss_mb"),
        ("scale-train", f"training: images/s over the first {args.scale_batches} batches of an epoch",
         "train_images_per_s"),
        ("scale-train", "validation: images/s over the whole Test split", "valid_images_per_s"),
        ("scale-train", "training and validation: peak memory of the process tree, MB", "tree_peak_rss_mb"),
    ]
    lines = [f"| figure ({n:,} images, 100 px) | fastvision | fastai | fastvision/fastai |",
             "|---|---:|---:|---:|"]
    for ph, label, key in rows:
        fv, fa = res[("fastvision", ph)][key], res[("fastai", ph)][key]
        lines.append(f"| {label} | {fv:.4g} | {fa:.4g} | {fv / fa:.2f}x |")
    peak = res[("fastvision", "scale-data")]["tree_peak_rss_mb"]
    lines.append(f"| fastvision: decoded images in memory, MB (data peak / decoded) | {decoded:.0f} "
                 f"| | {peak / decoded:.2f}x |")
    return "\n".join(lines)


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
    p.add_argument("--phases", default="data,fit,lr-find,interp,fit-resnet34,scale")
    p.add_argument("--subset", type=int, default=20,
                   help="Training images per class for fit-resnet34 (Test: half as many)")
    p.add_argument("--weights", help="mobilenet_v2-b0353104.pth for fastai (torchvision's file)")
    p.add_argument("--cli", help="the fastvision binary (generates the scale set)")
    p.add_argument("--scale-data", default=os.path.expanduser("~/.cache/fastvision/bench-scale/fruits-131x700"),
                   help="the scale phase's Fruits-360-layout folder (generated when missing)")
    p.add_argument("--scale-classes", type=int, default=131)
    p.add_argument("--scale-per-class", type=int, default=700)
    p.add_argument("--scale-batches", type=int, default=150)
    args = p.parse_args()

    fastai_env = env_with_weights(args.weights)

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
    scale_table = None
    if "scale" in phases:
        phases.remove("scale")
        scale_table = scale_phase(args, fastai_env)
        print("\n" + scale_table, flush=True)
    results = {(tool, ph): [] for tool in ("fastvision", "fastai") for ph in phases}
    for r in range(args.rounds if phases else 0):
        for ph in phases:
            common = [ph, subset if ph == "fit-resnet34" else args.data, "--threads", str(args.threads)]
            for tool, cmd, env in (("fastai", [args.python, os.path.join(HERE, "fastai_bench.py")], fastai_env),
                                   ("fastvision", [args.fastvision], None)):
                res = run(cmd + common, env)
                results[(tool, ph)].append(res)
                print(f"round {r + 1} {ph:5} {tool:10} {json.dumps(res)}", flush=True)

    if not phases:
        table = ""

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

    torch_v = versions(args.python)
    header = (
        f"# Benchmarks: fastvision against fastai\n\n"
        f"Latest `make bench` run, {datetime.date.today().isoformat()}: median of {args.rounds} rounds, "
        f"tools alternating, each phase a fresh process.\n\n"
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores; {args.threads} threads for both tools\n"
        f"- fastai {torch_v[1]} on torch {torch_v[0]}; "
        f"fastvision on tch 0.24 / libtorch 2.11.0\n"
        f"- Data: `{shown_path(args.data)}`; 100 px, bs 64, fastai's default augmentation "
        f"(`aug_transforms()` / `get_transforms()`) and ImageNet normalisation; fastai with "
        f"`num_workers={args.threads}`\n\n"
        f"fastvision decodes the images once into memory when building the ImageDataBunch (its first "
        f"epoch row includes that); fastai decodes every image every epoch. The resnet34 rows train "
        f"from random initialisation (the whole network) on the first {args.subset} Training and "
        f"{max(1, args.subset // 2)} Test images of every class.\n\n"
    )
    # Sections: the sample's table (before the first "## "), the scale phase, then any others
    # (set-up costs, the after-lesson figures, notes). A run rewrites what it measured and
    # keeps every other section as it was, in its place.
    old = open(args.out).read() if os.path.exists(args.out) else ""
    old_main, *rest = old.split("\n## ")
    sections = [("## " + r).rstrip("\n") + "\n" for r in rest]
    main_part = (header + table + "\n") if phases else old_main.rstrip("\n") + "\n"
    if scale_table:
        new_scale = (
            f"## Scale phase\n\nLatest run {datetime.date.today().isoformat()}, once per tool, "
            f"each step a fresh process: `{shown_path(args.scale_data)}` ({args.scale_classes} classes x "
            f"{args.scale_per_class} Training images, plus 30% as many Test images, generated by "
            f"`fastvision sample`), 100 px, bs 64, {args.threads} threads. Memory is the peak of the whole "
            f"process tree (fastai's loader workers included), sampled every 0.1 s. fastai's "
            f"`verify_images` opens each image in draft mode; fastvision's decodes it fully.\n\n"
            + scale_table + "\n"
        )
        at = [i for i, sec in enumerate(sections) if sec.startswith("## Scale phase")]
        if at:
            sections[at[0]] = new_scale
        else:
            sections.insert(0, new_scale)
    text = main_part + "".join("\n" + sec for sec in sections)
    with open(args.out + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""make bench-photos: fastvision and fastai on natural photos of many shapes, side by side.

Both tools label `DATA/images` by the pets lesson's pattern, hold out the same 20% (the one
fastvision draws with the seed; fastai is given that list), make 224 px squares with a random
crop in training and the centre in validation, augment with fastai's defaults, and train
mobilenet_v2 (ImageNet weights, frozen body) with fit_one_cycle(4, 3e-3), over three seeds.
Then, fastvision alone: the same run with a memory budget of 0 (every batch decoded from its
file) against the cached run, and, with --scale, 10,000 photos at 224 px.

Results go to stdout and to bench/RESULTS.md, section "Own photos".
"""
import argparse, datetime, json, os, re, statistics, tempfile

from run import HERE, cpu_name, env_with_weights, replace_section, run, shown_path, versions


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def scale_set(sources, n, dest):
    """A folder of symlinks to the first n photos found under sources, one folder per class
    (named source-class, so classes of different sets never merge)."""
    if os.path.isdir(dest) and sum(len(f) for _, _, f in os.walk(dest)) >= n:
        return dest
    tmp = tempfile.mkdtemp(prefix=".photos-scale-", dir=os.path.dirname(dest))
    count = 0
    for src in sources:
        for root, _, files in sorted(os.walk(src)):
            for f in sorted(files):
                if count >= n or not f.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                cls = f"{os.path.basename(os.path.normpath(src))}-{os.path.basename(root)}"
                os.makedirs(os.path.join(tmp, cls), exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(root, f)), os.path.join(tmp, cls, f))
                count += 1
    if count < n:
        raise SystemExit(f"only {count} photos under {sources}; --scale needs {n}")
    if os.path.isdir(dest):
        raise SystemExit(f"{dest} exists with fewer than {n} photos: remove it and run again")
    os.replace(tmp, dest)
    return dest


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", help="a folder with images/<class>_<n>.jpg (scripts/caltech101.py makes one)")
    p.add_argument("--fastvision", required=True, help="the fastvision bench binary")
    p.add_argument("--python", required=True, help="python of the fastai venv")
    p.add_argument("--weights", required=True, help="torchvision's mobilenet_v2-b0353104.pth, for fastai")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scale", nargs="*", default=[],
                   help="folders of photos (any depth, labelled by folder) to draw 10,000 from")
    p.add_argument("--scale-files", type=int, default=10_000)
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--phases", default="pair,bf16,fallback,limit,scale",
                   help="what to measure: pair (both tools, fp32), bf16 (fastvision's to_bf16), fallback, "
                        "limit (fastvision's compute floor), scale (with --scale); the others' last "
                        "results are reused (render: none, only the section again)")
    args = p.parse_args()
    fastai_env = env_with_weights(args.weights)
    common = ["photos", args.data, "--size", str(args.size), "--threads", str(args.threads),
              "--epochs", str(args.epochs)]
    seeds = [int(s) for s in args.seeds.split(",")]
    # Every run's result is kept, so one part can be measured again without the others.
    store = os.path.expanduser("~/.cache/fastvision/bench-photos.json")
    runs = json.load(open(store)) if os.path.exists(store) else {}

    def keep(name, value):
        runs[name] = value
        with open(store + ".tmp", "w") as f:
            json.dump(runs, f)
        os.replace(store + ".tmp", store)

    phases = args.phases.split(",")
    if "pair" in phases:
        pair = {"fastvision": [], "fastai": []}
        for seed in seeds:
            fv = run([args.fastvision] + common + ["--seed", str(seed)])
            pair["fastvision"].append(fv)
            print(f"seed {seed} fastvision {json.dumps({k: v for k, v in fv.items() if k != 'valid_files'})}", flush=True)
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as vl:
                vl.write("\n".join(fv["valid_files"]))
                vl.flush()
                fa = run([args.python, os.path.join(HERE, "fastai_bench.py")] + common
                         + ["--seed", str(seed), "--valid-list", vl.name], fastai_env)
            if fa["valid_images"] != fv["valid_images"]:
                raise SystemExit(f"fastai held out {fa['valid_images']} photos, fastvision {fv['valid_images']}")
            pair["fastai"].append(fa)
            print(f"seed {seed} fastai     {json.dumps(fa)}", flush=True)
        keep("pair", pair)
    if "bf16" in phases:
        bf = [run([args.fastvision] + common + ["--seed", str(seed), "--bf16"]) for seed in seeds]
        for r in bf:
            print(f"bf16 {json.dumps({k: v for k, v in r.items() if k != 'valid_files'})}", flush=True)
        keep("bf16", bf)
    if "fallback" in phases:
        fb = run([args.fastvision] + common + ["--seed", str(seeds[0]), "--budget", "0"])
        print(f"fallback {json.dumps({k: v for k, v in fb.items() if k != 'valid_files'})}", flush=True)
        if fb["in_memory"]:
            raise SystemExit("the budget-0 run kept its photos in memory")
        keep("fallback", fb)
    if "scale" in phases and args.scale:
        dest = os.path.expanduser(f"~/.cache/fastvision/bench-photos-{args.scale_files}")
        folder = scale_set(args.scale, args.scale_files, dest)
        sc = run([args.fastvision, "photos-scale", folder, "--size", str(args.size), "--threads",
                  str(args.threads), "--files", str(args.scale_files), "--batches", "30"])
        print(f"scale {json.dumps(sc)}", flush=True)
        keep("scale", sc)
    if "limit" in phases:
        if "pair" not in runs:
            raise SystemExit("the limit needs the pair's split: run with --phases pair,limit")
        # The bench's `fit` phase wants Training/ and Test/: symlinks to the seed's split.
        first_run = runs["pair"]["fastvision"][0]
        with tempfile.TemporaryDirectory(prefix="fastvision-photos-layout-") as layout:
            valid = set(first_run["valid_files"])
            images = os.path.join(args.data, "images")
            for f in sorted(os.listdir(images)):
                m = re.match(r"(.+)_\d+\.jpg$", f)
                if not m:
                    continue
                folder = os.path.join(layout, "Test" if f in valid else "Training", m.group(1))
                os.makedirs(folder, exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(images, f)), os.path.join(folder, f))
            lim = run([args.fastvision, "fit", layout, "--size", str(args.size), "--threads", str(args.threads)])
        print(f"limit {json.dumps(lim)}", flush=True)
        keep("limit", lim)
    missing = [p for p in ("pair", "fallback") if p not in runs]
    if missing:
        raise SystemExit(f"no results yet for {missing}: run with --phases {','.join(missing)}")
    first, fallback, scale = runs["pair"]["fastvision"][0], runs["fallback"], runs.get("scale")
    limit = runs.get("limit")
    runs = dict(runs["pair"], bf16=runs.get("bf16", []))

    def stat(tool, f):
        return mean_sd([f(r) for r in runs[tool]])

    epoch = lambda r: statistics.mean(r["epoch_s"])
    rows = [
        ("wrong of the validation photos, mean ± sd (lower is better)", lambda r: r["errors"], "{:.1f} ± {:.1f}"),
        ("error rate, mean ± sd", lambda r: r["error_rate"], "{:.4f} ± {:.4f}"),
        ("epoch time (train + validation), s, mean ± sd", epoch, "{:.1f} ± {:.1f}"),
        ("building the data (fastvision decodes and caches here), s", lambda r: r["data_s"], "{:.1f} ± {:.1f}"),
        ("data + fit_one_cycle, s", lambda r: r["data_s"] + r["fit_s"], "{:.1f} ± {:.1f}"),
        ("peak memory of the process tree, MB", lambda r: r["tree_peak_rss_mb"], "{:.0f} ± {:.0f}"),
    ]
    n_valid, n_train = first["valid_images"], first["train_images"]
    lines = ["| figure | fastvision | fastai | fastvision/fastai |", "|---|---:|---:|---:|"]
    for label, f, fmt in rows:
        (a, sa), (b, sb) = stat("fastvision", f), stat("fastai", f)
        # fastai builds nothing up front (it decodes during the epochs): no ratio to speak of.
        ratio = "n/a" if label.startswith("building the data") or not b else f"{a / b:.2f}x"
        lines.append(f"| {label} | {fmt.format(a, sa)} | {fmt.format(b, sb)} | {ratio} |")
    fv_epoch, fa_epoch = stat("fastvision", epoch)[0], stat("fastai", epoch)[0]
    bf16_note = ""
    if runs["bf16"]:
        b = runs["bf16"]
        (e, se), (t, st) = mean_sd([r["errors"] for r in b]), mean_sd([epoch(r) for r in b])
        (m, sm) = mean_sd([r["tree_peak_rss_mb"] for r in b])
        fa_e, fa_t = stat("fastai", lambda r: r["errors"])[0], fa_epoch
        fa_m = stat("fastai", lambda r: r["tree_peak_rss_mb"])[0]
        lines += [
            f"| fastvision `to_bf16()`: wrong of the validation photos | {e:.1f} ± {se:.1f} | {fa_e:.1f} (fp32) | {e / fa_e:.2f}x |",
            f"| fastvision `to_bf16()`: epoch time, s | {t:.1f} ± {st:.1f} | {fa_t:.1f} (fp32) | {t / fa_t:.2f}x |",
            f"| fastvision `to_bf16()`: peak memory of the process tree, MB | {m:.0f} ± {sm:.0f} | {fa_m:.0f} (fp32) | {m / fa_m:.2f}x |",
        ]
        if t > fv_epoch:
            amx = "" if "amx_bf16" in open("/proc/cpuinfo").read() else ", which has no AMX"
            bf16_note = (f" On this CPU{amx}, bfloat16 trains slower than fp32 ({t:.1f} s against "
                         f"{fv_epoch:.1f} s an epoch): here it saves memory, not time.")
    per_seed = ", ".join(f"seed {r['seed']}: {int(r['errors'])} vs {int(s['errors'])}"
                         for r, s in zip(runs["fastvision"], runs["fastai"]))
    cached, fb = epoch(first), epoch(fallback)
    torch_v = versions(args.python)
    body = (
        f"Latest `make bench-photos` run, {datetime.date.today().isoformat()}: {cpu_name()}, "
        f"{os.cpu_count()} cores, {args.threads} threads for both tools; fastai {torch_v[1]} on torch "
        f"{torch_v[0]}, fastai with `num_workers={args.threads}`. Each run is a fresh process.\n\n"
        f"- Data: `{shown_path(args.data)}` ({n_train} training and {n_valid} validation photos), 20 classes of "
        f"Caltech 101 (CC BY 4.0, made by `scripts/caltech101.py`; see bench/README.md). Natural "
        f"photos of many shapes, most 300 px wide and 114 to 300 px tall, some greyscale.\n"
        f"- Both tools: labels by `from_name_re` (the pets lesson's pattern), the same validation "
        f"photos (fastvision's 20% for the seed; fastai is given the list), {args.size} px with a "
        f"random crop in training and the centre in validation, fastai's default augmentation, "
        f"ImageNet normalisation, bs 64, mobilenet_v2 with ImageNet weights and its body frozen, "
        f"`fit_one_cycle({args.epochs}, 3e-3)`; seeds {args.seeds}.\n\n"
        + "\n".join(lines) + "\n\n"
        + ("The `to_bf16()` rows are fastvision in bfloat16 autocast on the CPU (its AMX or AVX-512 "
           "bf16 units where the CPU has them), against fastai in fp32: fastai's `to_bf16` autocasts "
           "only on CUDA (`autocast('cuda', ...)` in fastai/callback/fp16.py), so on a CPU it trains "
           "in fp32." + bf16_note + "\n\n" if runs["bf16"] else "")
        + f"Wrong photos per seed, fastvision vs fastai: {per_seed}.\n\n"
        f"Decoding every batch from its file (memory budget 0) instead of from the cache, seed "
        f"{first['seed']}: an epoch takes {fb:.1f} s against {cached:.1f} s cached ({fb / cached:.2f}x); "
        f"the data are built in {fallback['data_s']:.1f} s against {first['data_s']:.1f} s, and the "
        f"process tree peaks at {fallback['tree_peak_rss_mb']:.0f} MB against "
        f"{first['tree_peak_rss_mb']:.0f} MB. Its error: {int(fallback['errors'])} of {n_valid}.\n"
    )
    if limit:
        body += (
            f"\nThe floor, fastvision in fp32 (the bench's `fit` phase on seed {first['seed']}'s split): "
            f"`fit_one_cycle(1)` takes {limit['fit_s']:.1f} s (a first epoch, with libtorch's warm-up), and "
            f"the same {limit['steps']} training "
            f"steps on one batch already in memory, plus validation, take {limit['limit_s']:.1f} s "
            f"(libtorch's own compute for this network and batch). fastai's mean epoch is "
            f"{fa_epoch / limit['limit_s']:.2f}x that floor and fastvision's "
            f"{fv_epoch / limit['limit_s']:.2f}x"
            + (", so in fp32 on this CPU no pipeline can train an epoch in half fastai's time.\n"
               if fa_epoch < 2 * limit["limit_s"] else ".\n")
        )
    if scale:
        body += (
            f"\nMany photos (fastvision): {scale['images']:,} photos of {scale['classes']} classes "
            f"(Caltech 101 whole and the clothing set's training photos), {args.size} px, kept "
            f"{'in memory' if scale['in_memory'] else 'on disk (over the budget)'}: the data are built in "
            f"{scale['data_s']:.0f} s, peaking at {scale['data_peak_rss_mb']:.0f} MB; {scale['batches']} "
            f"training batches at {scale['train_images_per_s']:.1f} images/s and a full validation at "
            f"{scale['valid_images_per_s']:.1f} images/s; the process tree peaks at "
            f"{scale['tree_peak_rss_mb']:.0f} MB.\n"
        )
    print("\n" + body)
    replace_section(args.out, "Own photos", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

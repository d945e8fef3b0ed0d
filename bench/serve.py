"""make bench-serve: `fastvision serve` under load, against its own limit (predict_folder) and
fastai's course deployment (bench/fastai_serve.py), on the same machine and the same weights.

Load comes from oha over loopback: concurrency 1, 8, 32 and 128, --duration seconds each, the
same Test photo as the body of every request (raw JPEG for fastvision's /predict, the
template's multipart field `file` for fastai's /analyze). Memory is the server process's
resident set, sampled every 0.1 s. A soak at concurrency 8 then checks that the resident set
stays flat. Results go to stdout and the "## Serving" section of bench/RESULTS.md.
"""
import argparse, csv as csv_mod, datetime, json, os, signal, statistics, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler:
    """The resident set of `pid`, every 0.1 s, in a thread: its peak and its time series."""

    def __init__(self, pid):
        self.pid, self.peak, self.series, self.stop = pid, 0.0, [], False
        self.t0 = time.time()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            r = rss_mb(self.pid)
            self.peak = max(self.peak, r)
            self.series.append((time.time() - self.t0, r))
            time.sleep(0.1)

    def reset_peak(self):
        self.peak = rss_mb(self.pid)


def ensure_free(port):
    """Stops the run if something already answers on `port` (a server left from an earlier
    run would be measured in place of the one started)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    except urllib.error.HTTPError:
        pass
    except OSError:
        return
    sys.exit(f"something already answers on port {port}: stop it first")


def wait_ready(url, proc, seconds=300):
    for _ in range(seconds * 10):
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} was not ready after {seconds} s")


def oha(args, url, concurrency, seconds, body=None, content_type=None, form=None):
    cmd = [args.oha, "-z", f"{seconds}s", "-c", str(concurrency), "--no-tui", "--output-format", "json",
           "-m", "POST", url]
    if form:
        cmd += ["-F", f"file=@{form}"]
    else:
        cmd += ["-T", content_type, "-D", body]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"oha failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout)
    codes = {str(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
    ok = codes.get("200", 0)
    # oha ends each run by cutting the requests still in flight ("aborted due to deadline"):
    # those are the load generator's, not the server's.
    cut = {k: v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" in k}
    errors = sum(v for k, v in codes.items() if k != "200") + sum(
        v for k, v in (r.get("errorDistribution") or {}).items() if k not in cut)
    lat = r.get("latencyPercentiles") or {}
    return {
        "concurrency": concurrency,
        "rps": ok / r["summary"]["total"],
        "p50_ms": 1e3 * (lat.get("p50") or 0),
        "p99_ms": 1e3 * (lat.get("p99") or 0),
        "ok": ok,
        "errors": errors,
        "codes": codes,
        "cut_at_deadline": sum(cut.values()),
    }


def load_levels(args, proc, url, **kw):
    sampler = Sampler(proc.pid)
    rows = []
    for c in args.concurrency:
        sampler.reset_peak()
        row = oha(args, url, c, args.duration, **kw)
        row["peak_rss_mb"] = sampler.peak
        rows.append(row)
        print(json.dumps(row), flush=True)
    sampler.stop = True
    return rows


def limit(args, model, photos):
    """predict_folder's images/s and one predict's latency, from the bench example."""
    out = subprocess.run([args.bench, "serve-limit", photos, "--model", model], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench serve-limit failed:\n{out.stderr[-2000:]}")
    return json.loads([l for l in out.stdout.splitlines() if "BENCH_JSON " in l][-1].split("BENCH_JSON ", 1)[1])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", help="a Fruits-360-layout folder (Training/, Test/)")
    p.add_argument("--cli", required=True)
    p.add_argument("--bench", required=True, help="the bench example (predict_folder's limit)")
    p.add_argument("--oha", required=True)
    p.add_argument("--python", required=True, help="the bench venv's python (fastai)")
    p.add_argument("--model", help="an export to serve [default: fastvision train on the data, 1 epoch]")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 128])
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--soak", type=int, default=300, help="seconds at concurrency 8 (0: none)")
    p.add_argument("--skip-fastai", action="store_true")
    p.add_argument("--serve-flags", default="", help="more flags for fastvision serve, e.g. \"--threads 1\"")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="fastvision-bench-serve-")
    test = os.path.join(args.data, "Test")
    first_class = sorted(os.listdir(test))[0]
    args.photo = os.path.join(test, first_class, sorted(os.listdir(os.path.join(test, first_class)))[0])
    model = args.model
    if not model:
        model = os.path.join(work, "export.safetensors")
        subprocess.run([args.cli, "train", args.data, "--epochs", "1", "--export", model], check=True,
                       stdout=subprocess.DEVNULL)

    lim = limit(args, model, test)
    print(json.dumps(lim), flush=True)

    port = 8765
    ensure_free(port)
    proc = subprocess.Popen([args.cli, "serve", model, "--port", str(port), *args.serve_flags.split()],
                            stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/health/ready", proc)
    ours = load_levels(args, proc, f"http://127.0.0.1:{port}/predict", body=args.photo, content_type="image/jpeg")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        metrics = r.read().decode()
    soak = None
    if args.soak:
        sampler = Sampler(proc.pid)
        row = oha(args, f"http://127.0.0.1:{port}/predict", 8, args.soak, body=args.photo, content_type="image/jpeg")
        sampler.stop = True
        series = sampler.series
        minute = lambda a, b: statistics.median(r for t, r in series if a <= t < b)
        soak = {"seconds": args.soak, "rps": row["rps"], "errors": row["errors"],
                "rss_first_minute_mb": minute(0, 60), "rss_last_minute_mb": minute(args.soak - 60, args.soak + 1),
                "peak_rss_mb": sampler.peak}
        print(json.dumps(soak), flush=True)
    code = stop(proc)

    fastai = None
    agree = None
    if not args.skip_fastai:
        # Same weights: both tools' top class and its probability on the first Test photo of
        # every class.
        files = [os.path.join(test, c, sorted(os.listdir(os.path.join(test, c)))[0]) for c in sorted(os.listdir(test))]
        out = subprocess.run([args.python, os.path.join(HERE, "fastai_serve.py"), "--model", model, "--data", args.data,
                              "--check", *files], capture_output=True, text=True)
        fa_check = {}
        for l in out.stdout.splitlines():
            if "CHECK " in l:
                d = json.loads(l.split("CHECK ", 1)[1])
                fa_check[d["file"]] = (d["index"], max(d["probs"]))
        csv = os.path.join(work, "preds.csv")
        subprocess.run([args.cli, "predict", model, *files, "--csv", csv], capture_output=True)
        fv_check = {}
        with open(csv) as f:
            for row in csv_mod.DictReader(f):
                fv_check[row["file"]] = (row["class"], float(row["probability"]))
        classes = sorted(os.listdir(os.path.join(args.data, "Training")))
        both = [f for f in files if f in fa_check and f in fv_check]
        same = sum(1 for f in both if classes[fa_check[f][0]] == fv_check[f][0])
        diff = max((abs(fa_check[f][1] - fv_check[f][1]) for f in both), default=float("nan"))
        agree = {"files": len(files), "same_class": same, "max_prob_diff": diff}
        print(json.dumps(agree), flush=True)
        fport = 8766
        ensure_free(fport)
        fproc = subprocess.Popen([args.python, os.path.join(HERE, "fastai_serve.py"), "--model", model,
                                  "--data", args.data, "--port", str(fport)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The template has no health route: wait for the port to answer a request.
        for _ in range(3000):
            if fproc.poll() is not None:
                sys.exit("fastai's app exited before it served")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{fport}/", timeout=2)
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        fastai = load_levels(args, fproc, f"http://127.0.0.1:{fport}/analyze", form=args.photo)
        if fproc.poll() is not None:
            sys.exit("fastai's app exited during the load: its figures are not its own")
        stop(fproc)

    sums = {}
    for line in metrics.splitlines():
        for key in ("fastvision_batch_size_sum", "fastvision_batch_size_count"):
            if line.startswith(key + " "):
                sums[key] = float(line.split()[-1])
    mean_batch = sums.get("fastvision_batch_size_sum", 0) / max(1.0, sums.get("fastvision_batch_size_count", 1))

    rows = []
    for i, o in enumerate(ours):
        f = fastai[i] if fastai else None
        rows.append(
            f"| {o['concurrency']} | {o['rps']:.1f} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} | {o['errors']} | {o['peak_rss_mb']:.0f} | "
            + (f"{f['rps']:.1f} | {f['p50_ms']:.0f} | {f['p99_ms']:.0f} | {f['errors']} | {f['peak_rss_mb']:.0f} | {o['rps'] / f['rps']:.1f}x |" if f else "- | - | - | - | - | - |")
        )
    c32 = next((o for o in ours if o["concurrency"] == 32), None)
    section = (
        f"## Serving\n\n"
        f"`make bench-serve` (bench/serve.py), run {datetime.date.today().isoformat()} on this project's 2-core VM: "
        f"`fastvision serve` with its defaults (max batch 32, max delay 5 ms) and fastai's course deployment "
        f"(Starlette + uvicorn, `learn.predict` per request: bench/fastai_serve.py) serving the same weights, "
        f"a mobilenet_v2 export of 1 epoch on `{os.path.basename(os.path.normpath(args.data))}`. Load from oha "
        f"{args.duration} s per concurrency over loopback, the same Test photo in every request. Memory is the "
        f"server's resident set at its peak during that level.\n\n"
        f"| concurrency | fastvision images/s | p50 ms | p99 ms | errors | RSS MB | fastai images/s | p50 ms | p99 ms | errors | RSS MB | ratio |\n"
        f"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows) + "\n\n"
        f"- The limit: `predict_folder` on the Test folder, {lim['predict_folder_ips']:.1f} images/s; one `predict` "
        f"takes {lim['predict_p50_ms']:.1f} ms (median of {lim['n_single']}).\n"
        + (f"- At concurrency 32: {c32['rps'] / lim['predict_folder_ips']:.2f}x predict_folder's images/s.\n" if c32 else "")
        + (f"- At concurrency 1: p99 {ours[0]['p99_ms']:.1f} ms, {ours[0]['p99_ms'] / lim['predict_p50_ms']:.2f}x one predict.\n" if ours and ours[0]['concurrency'] == 1 else "")
        + f"- Mean batch size over the whole run (`/metrics`): {mean_batch:.2f}.\n"
        + (f"- The same weights: on the first Test photo of each of {agree['files']} classes the two tools give the same class "
           f"{agree['same_class']} times, their probabilities at most {agree['max_prob_diff']:.4f} apart (fastai decodes the JPEGs with PIL, fastvision with zune-jpeg).\n" if agree else "")
        + (f"- Soak, {soak['seconds']} s at concurrency 8: {soak['rps']:.1f} images/s, {soak['errors']} errors; resident set "
           f"{soak['rss_first_minute_mb']:.0f} MB (median of the first minute) and {soak['rss_last_minute_mb']:.0f} MB "
           f"(the last minute), peak {soak['peak_rss_mb']:.0f} MB.\n" if soak else "")
        + f"- The server exited with status {code} after SIGTERM.\n"
    )
    print(section)
    old = open(args.out).read() if os.path.exists(args.out) else ""
    head, *rest = old.split("\n## ")
    sections = [("## " + r).rstrip("\n") + "\n" for r in rest]
    at = [i for i, s in enumerate(sections) if s.startswith("## Serving")]
    if at:
        sections[at[0]] = section
    else:
        notes = [i for i, s in enumerate(sections) if s.startswith("## Notes")]
        sections.insert(notes[0] if notes else len(sections), section)
    text = head.rstrip("\n") + "\n" + "".join("\n" + s for s in sections)
    with open(args.out + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

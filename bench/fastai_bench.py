"""fastai's side of the benchmarks: one phase per run, one JSON line on stdout.

Same settings as bench/src/main.rs: Fruits-360 layout, size 100, bs 64, fastai's default
augmentation (aug_transforms) and ImageNet normalisation, the same thread count.
"""
import argparse, json, resource, time

import torch
from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, Normalize,
                               imagenet_stats, GrandparentSplitter)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_phase(args):
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        args.path, train="Training", valid="Test", item_tfms=Resize(args.size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
        bs=args.bs, num_workers=args.threads, device=torch.device("cpu"))
    setup_s = time.perf_counter() - start
    epochs = []
    for _ in range(3):
        t = time.perf_counter()
        n = 0
        checksum = 0.0
        for x, y in dls.train:
            n += x.shape[0]
            checksum += float(x[0, 0, 0, 0])
        epochs.append((n, time.perf_counter() - t))
    n, first_s = epochs[0]
    steady_s = sum(e[1] for e in epochs[1:]) / (len(epochs) - 1)
    return {"tool": "fastai", "phase": "data", "images": n, "setup_s": setup_s,
            "first_epoch_s": first_s, "epoch_s": steady_s, "images_per_s": n / steady_s,
            "images_per_s_first": n / (setup_s + first_s), "peak_rss_mb": peak_rss_mb()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=["data"])
    p.add_argument("path")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"data": data_phase}[args.phase](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

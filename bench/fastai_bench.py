"""fastai's side of the benchmarks: one phase per run, one JSON line on stdout.

Same settings as bench/fastvision_bench.rs: Fruits-360 layout, size 100, bs 64, fastai's default
augmentation (aug_transforms) and ImageNet normalisation, the same thread count.
"""
import argparse, json, resource, time

import torch
from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, Normalize,
                               imagenet_stats, vision_learner, error_rate, ClassificationInterpretation)
from fastai.vision.learner import model_meta, _default_meta
from torchvision.models import mobilenet_v2, MobileNet_V2_Weights, resnet34

# fastai has no entry for MobileNetV2 (and vision_learner drops its `cut` argument), so
# register it: `features` is the body (cut=-1), torchvision's ImageNet weights.
model_meta[mobilenet_v2] = {**_default_meta, "cut": -1, "weights": MobileNet_V2_Weights.IMAGENET1K_V1}


# Both tools use the GPU when there is one (fastvision does by itself).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_rss_mb():
    # The main process plus the largest worker (DataLoader workers are child processes).
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def data_phase(args):
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        args.path, train="Training", valid="Test", item_tfms=Resize(args.size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
        bs=args.bs, num_workers=args.threads, device=DEVICE)
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


def dls_for(args):
    return ImageDataLoaders.from_folder(
        args.path, train="Training", valid="Test", item_tfms=Resize(args.size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
        bs=args.bs, num_workers=args.threads, device=DEVICE)


def learner_for(args, arch=mobilenet_v2, pretrained=True):
    # torchvision's MobileNetV2 with the ImageNet weights from the offline package (placed in
    # TORCH_HOME by bench/run.py); cut=-1 keeps `features` as the body, as fastvision does.
    start = time.perf_counter()
    dls = dls_for(args)
    learn = vision_learner(dls, arch, metrics=error_rate, pretrained=pretrained)
    return learn, time.perf_counter() - start


def fit_phase(args, arch=mobilenet_v2, pretrained=True, lr=slice(3e-3)):
    learn, setup_s = learner_for(args, arch, pretrained)
    t = time.perf_counter()
    learn.fit_one_cycle(1, lr)
    fit_s = time.perf_counter() - t
    error = float(learn.recorder.values[-1][2])
    # Compute limit: the same number of steps on one batch already in memory.
    xb, yb = learn.dls.train.one_batch()
    steps = len(learn.dls.train)
    model, opt, loss_func = learn.model, learn.opt, learn.loss_func
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    limit_s = time.perf_counter() - t
    t = time.perf_counter()
    learn.validate()
    valid_s = time.perf_counter() - t
    return {"tool": "fastai", "phase": args.phase, "setup_s": setup_s, "fit_s": fit_s, "limit_s": limit_s + valid_s,
            "error_rate": error, "steps": steps, "peak_rss_mb": peak_rss_mb()}


def lr_find_phase(args):
    learn, setup_s = learner_for(args)
    t = time.perf_counter()
    learn.lr_find(show_plot=False)
    return {"tool": "fastai", "phase": "lr-find", "setup_s": setup_s, "lr_find_s": time.perf_counter() - t,
            "iterations": len(learn.recorder.lrs), "peak_rss_mb": peak_rss_mb()}


def interp_phase(args):
    learn, setup_s = learner_for(args)
    t = time.perf_counter()
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    interp.top_losses(9)
    return {"tool": "fastai", "phase": "interp", "setup_s": setup_s, "interp_s": time.perf_counter() - t,
            "items": int(cm.sum()), "peak_rss_mb": peak_rss_mb()}


def scale_verify_phase(args):
    from fastai.vision.all import get_image_files, verify_images
    t = time.perf_counter()
    files = get_image_files(args.path, folders=["Training", "Test"])
    failed = verify_images(files)
    return {"tool": "fastai", "phase": "scale-verify", "images": len(files), "failed": len(failed),
            "verify_s": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb()}


def scale_data_phase(args):
    t = time.perf_counter()
    dls = dls_for(args)
    return {"tool": "fastai", "phase": "scale-data", "images": len(dls.train_ds) + len(dls.valid_ds),
            "data_s": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb()}


def scale_train_phase(args):
    from fastai.callback.core import Callback, CancelFitException

    class StopAfter(Callback):
        def after_batch(self):
            if self.learn.train_iter >= args.batches:
                raise CancelFitException()

    learn, _ = learner_for(args)
    batches = min(args.batches, len(learn.dls.train))
    t = time.perf_counter()
    learn.fit_one_cycle(1, slice(3e-3), cbs=StopAfter())
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    learn.validate()
    valid_s = time.perf_counter() - t
    return {"tool": "fastai", "phase": "scale-train", "batches": batches,
            "train_images_per_s": batches * args.bs / train_s,
            "valid_images_per_s": len(learn.dls.valid_ds) / valid_s, "peak_rss_mb": peak_rss_mb()}


def photos_phase(args):
    """Own photos, as fastvision's `photos` phase: the pets lesson's pattern on path/images, the
    validation files fastvision held out (--valid-list) or 20% at random with --seed, Resize
    (random crop in training, centre in validation), aug_transforms, mobilenet_v2 frozen,
    fit_one_cycle(--epochs, --lr)."""
    from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, FuncSplitter, RegexLabeller,
                                   get_image_files, set_seed, Callback)
    from pathlib import Path
    set_seed(args.seed)
    pat = r"/([^/]+)_\d+\.jpg$"
    t = time.perf_counter()
    images = Path(args.path) / "images"
    tfms = dict(item_tfms=Resize(args.size), batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)])
    if args.valid_list:
        valid = set(open(args.valid_list).read().split())
        dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                           splitter=FuncSplitter(lambda f: f.name in valid), get_y=RegexLabeller(pat), **tfms)
        dls = dblock.dataloaders(images, bs=args.bs, num_workers=args.threads, device=DEVICE)
    else:
        dls = ImageDataLoaders.from_name_re(images, get_image_files(images), pat, valid_pct=0.2, seed=args.seed,
                                            bs=args.bs, num_workers=args.threads, device=DEVICE, **tfms)
    data_s = time.perf_counter() - t
    learn = vision_learner(dls, mobilenet_v2, metrics=error_rate)

    class EpochTimes(Callback):
        order = 100
        def before_fit(self): self.times = []
        def before_epoch(self): self.t = time.perf_counter()
        def after_epoch(self): self.times.append(time.perf_counter() - self.t)

    timer = EpochTimes()
    t = time.perf_counter()
    learn.fit_one_cycle(args.epochs, args.lr, cbs=[timer])
    fit_s = time.perf_counter() - t
    errors = [float(v[2]) for v in learn.recorder.values]
    n_valid = len(dls.valid_ds)
    return {"tool": "fastai", "phase": "photos", "seed": args.seed, "train_images": len(dls.train_ds),
            "valid_images": n_valid, "error_rate": errors[-1], "errors": round(errors[-1] * n_valid),
            "error_by_epoch": errors, "epoch_s": timer.times, "fit_s": fit_s, "data_s": data_s,
            "peak_rss_mb": peak_rss_mb()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=["data", "fit", "lr-find", "interp", "fit-resnet34",
                                     "scale-verify", "scale-data", "scale-train", "photos"])
    p.add_argument("path")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=150, help="training batches timed by scale-train")
    p.add_argument("--seed", type=int, default=42, help="photos: the seed")
    p.add_argument("--epochs", type=int, default=4, help="photos: epochs of fit_one_cycle")
    p.add_argument("--lr", type=float, default=3e-3, help="photos: fit_one_cycle's maximum learning rate")
    p.add_argument("--valid-list", help="photos: a file naming the validation files, one per line")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # resnet34 from random init: nothing frozen, fastai's default lr for that (1e-3).
    resnet = lambda a: fit_phase(a, resnet34, pretrained=False, lr=1e-3)
    result = {"data": data_phase, "fit": fit_phase, "lr-find": lr_find_phase, "interp": interp_phase,
              "fit-resnet34": resnet, "scale-verify": scale_verify_phase, "scale-data": scale_data_phase,
              "scale-train": scale_train_phase, "photos": photos_phase}[args.phase](args)
    result["device"] = str(DEVICE)
    print("\nBENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Makes the lr_find test fixtures: fastai's own suggestions for recorded fastvision sweeps.

Each curve (from `cargo run --release --example lr_find_curves -- DATA OUT`) is cut exactly as
fastai 2.8.12's `Learner.lr_find` cuts the recorder's (fastai/callback/schedule.py: the points
`num_it//10:-5`, as float32 tensors, truncated at the first NaN), then fastai's `valley`,
`steep` and `minimum` are called on it. The fixture keeps the curve and their answers, and
crate/tests/lr_find_fastai.rs holds fastvision's suggestions to them.

    $FASTVISION_CACHE/bench-venv/bin/python scripts/lr_find_fixtures.py out/curves/*.json \
        --out crate/tests/fixtures/lr_find

(the bench venv, which `make bench` creates, has fastai 2.8.12 on the project's torch).
"""
import argparse
import json
import os
import tempfile

import fastai
import torch
from fastai.callback.schedule import minimum, steep, valley
from fastai.torch_core import tensor

parser = argparse.ArgumentParser()
parser.add_argument("curves", nargs="+")
parser.add_argument("--out", required=True)
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)

for path in args.curves:
    with open(path) as f:
        curve = json.load(f)
    num_it = curve["num_it"]
    # The recorded values, as fastai's recorder holds them (float32), cut as lr_find cuts them.
    lrs = tensor(curve["lrs"][num_it // 10 : -5])
    losses = tensor([torch.tensor(l, dtype=torch.float32) for l in curve["losses"]][num_it // 10 : -5])
    nan_idxs = torch.nonzero(torch.isnan(losses.view(-1)))
    if len(nan_idxs) > 0:
        drop_idx = min(nan_idxs)
        lrs = lrs[:drop_idx]
        losses = losses[:drop_idx]
    expected = {}
    for func in (valley, steep, minimum):
        lr, (x, y) = func(lrs, losses, num_it)
        expected[func.__name__] = {"lr": float(lr), "point": [float(x), float(y)]}
    fixture = {
        "made_by": f"scripts/lr_find_fixtures.py with fastai {fastai.__version__}, torch {torch.__version__}",
        "name": curve["name"],
        "num_it": num_it,
        "lrs": curve["lrs"],
        "losses": curve["losses"],
        "fastai": expected,
    }
    dest = os.path.join(args.out, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".fixture-")
    with os.fdopen(fd, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    print(f"{dest}: " + ", ".join(f"{k} {v['lr']:.3e}" for k, v in expected.items()))

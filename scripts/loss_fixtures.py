"""Makes the loss test fixture: fastai's own losses on fixed outputs and targets.

fastai 2.8.12's `LabelSmoothingCrossEntropy` (eps 0.1 and 0.3) and `CrossEntropyLossFlat`, with
`reduction='none'` and `'mean'`, on 16 rows of 7 random logits (seeded), some of them large so
the log-softmax's stability shows. crate/tests/loss_fastai.rs holds fastvision's losses to them.

    $FASTVISION_CACHE/bench-venv/bin/python scripts/loss_fixtures.py crate/tests/fixtures/losses.json

(the bench venv, which `make bench` creates, has fastai 2.8.12 on the project's torch).
"""
import json
import os
import sys
import tempfile

import fastai
import torch
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy

torch.manual_seed(0)
logits = torch.randn(16, 7) * 3
logits[0] *= 20
targets = torch.randint(0, 7, (16,))
out = {"fastai": fastai.__version__, "logits": logits.tolist(), "targets": targets.tolist(), "losses": {}}
for name, make in [("cross_entropy_flat", lambda r: CrossEntropyLossFlat(reduction=r)),
                   ("label_smoothing_0.1", lambda r: LabelSmoothingCrossEntropy(eps=0.1, reduction=r)),
                   ("label_smoothing_0.3", lambda r: LabelSmoothingCrossEntropy(eps=0.3, reduction=r))]:
    out["losses"][name] = {"none": make("none")(logits, targets).tolist(),
                           "mean": make("mean")(logits, targets).item()}
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(sys.argv[1])))
with os.fdopen(fd, "w") as f:
    json.dump(out, f, indent=1)
os.replace(tmp, sys.argv[1])
print(f"wrote {sys.argv[1]}")

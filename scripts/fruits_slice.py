#!/usr/bin/env python3
"""Make the small real Fruits 360 sample committed in samples/fruits-360-slice.

    python scripts/fruits_slice.py SRC DEST

SRC is a Fruits 360 folder in the dataset's layout (Training/<class>/*.jpg and
Test/<class>/*.jpg), e.g. the 2019.01.16.0 release. DEST gets CLASSES, each with N_TRAIN
Training and N_TEST Test images drawn at random with SEED from the class's files in name
order, copied byte for byte. Nothing existing is overwritten: DEST must not exist; the slice
is built beside it and renamed into place.
"""
import os
import random
import shutil
import sys
import tempfile

# Look-alike pairs (the interpretation has something to confuse), and the fruit the tests
# name (ImageNet classes for the pretrained check; cleaning and TTA).
CLASSES = [
    "Apple Red Yellow 1", "Apple Red Yellow 2", "Banana Lady Finger", "Cantaloupe 1",
    "Cantaloupe 2", "Cherry Wax Red", "Cocos", "Lemon", "Orange", "Physalis",
    "Physalis with Husk", "Strawberry",
]
N_TRAIN, N_TEST, SEED = 30, 10, 360


def main(src, dest):
    if os.path.exists(dest):
        sys.exit(f"{dest} exists: choose another folder or remove it yourself")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".fruits-slice-", dir=parent)
    try:
        rng = random.Random(SEED)
        for split, n in (("Training", N_TRAIN), ("Test", N_TEST)):
            for cls in CLASSES:
                folder = os.path.join(src, split, cls)
                if not os.path.isdir(folder):
                    sys.exit(f"{folder} is missing: SRC must be a Fruits 360 folder with {cls!r}")
                files = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))
                if len(files) < n:
                    sys.exit(f"{folder} has {len(files)} images, fewer than {n}")
                out = os.path.join(tmp, split, cls)
                os.makedirs(out)
                for f in sorted(rng.sample(files, n)):
                    shutil.copyfile(os.path.join(folder, f), os.path.join(out, f))
        os.chmod(tmp, 0o755)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

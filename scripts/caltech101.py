"""Builds the own-photos data set: 20 classes of Caltech 101, named as the pets lesson names its
photos (`<class>_<n>.jpg` in one folder), so `from_name_re` labels them by file name.

Caltech 101 (Fei-Fei, Fergus and Perona, 2004) is CC BY 4.0: https://doi.org/10.22002/D1.20086.
Its photos are natural, of many shapes (most 300 px wide, 114 to 300 px tall), some greyscale.

    python scripts/caltech101.py SRC data/caltech101-photos

SRC is Caltech's `101_ObjectCategories` folder, its `101_ObjectCategories.tar.gz`, or the
`caltech-101.zip` that CaltechDATA serves (which holds that archive). Nothing is overwritten:
an existing destination is left as it is. The classes are the 20 with 80 to 128 photos
(1,875 in all): all but the seven largest classes (airplanes, Motorbikes, Faces, Faces_easy,
BACKGROUND_Google, watch and Leopards) and the many smaller ones.
"""
import io, os, shutil, sys, tarfile, tempfile, zipfile

CLASSES = ["bonsai", "brain", "buddha", "butterfly", "car_side", "chandelier", "ewer", "grand_piano",
           "hawksbill", "helicopter", "ibis", "kangaroo", "ketch", "laptop", "menorah", "revolver",
           "scorpion", "starfish", "sunflower", "trilobite"]


def members(src):
    """Yields (class, file name, bytes) for every photo of CLASSES in src."""
    if os.path.isdir(src):
        root = os.path.join(src, "101_ObjectCategories") if os.path.isdir(
            os.path.join(src, "101_ObjectCategories")) else src
        for c in CLASSES:
            folder = os.path.join(root, c)
            if not os.path.isdir(folder):
                sys.exit(f"{folder}: missing; give the 101_ObjectCategories folder of Caltech 101")
            for f in sorted(os.listdir(folder)):
                with open(os.path.join(folder, f), "rb") as fh:
                    yield c, f, fh.read()
        return
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            inner = [n for n in z.namelist() if n.endswith("101_ObjectCategories.tar.gz")]
            if not inner:
                sys.exit(f"{src}: no 101_ObjectCategories.tar.gz inside; is it CaltechDATA's caltech-101.zip?")
            yield from from_tar(io.BytesIO(z.read(inner[0])), src)
        return
    with open(src, "rb") as fh:
        yield from from_tar(fh, src)


def from_tar(fh, src):
    try:
        tar = tarfile.open(fileobj=fh, mode="r:*")
    except tarfile.TarError as e:
        sys.exit(f"{src}: not a folder, zip or tar archive of Caltech 101 ({e})")
    for m in tar:
        parts = m.name.split("/")
        if m.isfile() and len(parts) >= 2 and parts[-2] in CLASSES and parts[-1].endswith(".jpg"):
            yield parts[-2], parts[-1], tar.extractfile(m).read()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dest = sys.argv[1:]
    if os.path.exists(dest):
        print(f"{dest} already exists: left as it is")
        return
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".caltech101-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        os.makedirs(os.path.join(tmp, "images"))
        n = 0
        for c, f, data in members(src):
            # image_0001.jpg -> bonsai_0001.jpg
            with open(os.path.join(tmp, "images", f"{c}_{f.split('_')[-1]}"), "wb") as out:
                out.write(data)
            n += 1
        with open(os.path.join(tmp, "LICENSE.md"), "w") as out:
            out.write("Caltech 101 (L. Fei-Fei, R. Fergus, P. Perona, 2004), 20 of its classes.\n"
                      "CC BY 4.0: https://creativecommons.org/licenses/by/4.0/\n"
                      "Source: https://doi.org/10.22002/D1.20086\n"
                      "The photos are unchanged; only their names differ (bonsai/image_0001.jpg is "
                      "bonsai_0001.jpg).\n")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{dest}: {n} photos of {len(CLASSES)} classes")


if __name__ == "__main__":
    main()

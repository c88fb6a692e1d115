"""Pack the training data a GPU machine needs into one compact file (run here, not there).

A GPU machine reached through a file-copy tool gets the checkout and what is carried with it,
64 MiB in all: too little for FER2013 (34 MB of JPEGs) and FER+ (86 MB of PNGs) as they are.
This packs the *decoded* pixels of the splits that training reads, once each, as one lossless
WebP mosaic (~0.7 of the raw bytes), plus a manifest; ``unpack.py`` rebuilds, there, folders in
the readers' own layouts, pixel for pixel what ferkit reads here:

* ``fer2013/train/<class>/Training_<n>.png``: FER2013's Training faces as ferkit trains on them
  here with ``--clean-from`` (the clean FER+ twin of each blurred JPEG, FER2013's label; faces
  without a twin left out), so there no ``--clean-from`` is needed;
* ``fer2013/test/<class>/PublicTest_<n>.png``: the selection split, decoded from its JPEGs;
* ``ferplus/FER2013{Train,Valid}/``: the PNGs and ``label.csv`` as they are;
* ``ckplus48/``: the CK+ crops as they are.

No test split (FER2013 PrivateTest, FER+ Test) travels: test numbers are measured here, on the
weights that come back. Nothing here may be committed: the pack holds dataset images.

    .venv/bin/python tools/gpu/pack.py --data ../shared/data --out .gpu/pack
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

COLS = 340  # mosaic columns: 340 * 48 = 16320 px, under WebP's 16383 px limit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="the folder holding fer2013/, ferplus/ and ckplus48/")
    ap.add_argument("--out", default=".gpu/pack", help="output folder (git-ignored)")
    a = ap.parse_args(argv)
    from ferkit.data.readers import FER2013Folders
    from ferkit.io import read_image

    data, final = Path(a.data), Path(a.out)
    need = [data / "ferplus" / "FER2013Train" / "label.csv", data / "ferplus" / "FER2013Valid" / "label.csv",
            data / "fer2013", data / "ckplus48"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        ap.error(f"--data {a.data}: missing {', '.join(missing)}")
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / "manifest.json").exists())):
        # only an earlier pack (or an empty folder) is replaced: --out . must not wipe a checkout
        ap.error(f"--out {a.out}: exists and is not an earlier pack (no manifest.json); give a new or empty folder")
    out = final.with_name(final.name + ".part")  # built aside, swapped in at the end: a failure loses nothing
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pool: list[np.ndarray] = []
    index: dict[str, int] = {}  # source file -> pool row

    def add(path: str) -> int:
        if path not in index:
            img = read_image(path, name=path)
            assert img.shape == (48, 48) and img.dtype == np.uint8, (path, img.shape)
            index[path] = len(pool)
            pool.append(img)
        return index[path]

    files: list[tuple[str, int]] = []  # (relative path there, pool row)
    for split in ("FER2013Train", "FER2013Valid"):
        src = data / "ferplus" / split
        (out / "ferplus" / split).mkdir(parents=True)
        shutil.copyfile(src / "label.csv", out / "ferplus" / split / "label.csv")
        for p in sorted(src.glob("*.png")):
            files.append((f"ferplus/{split}/{p.name}", add(str(p))))
    classes = FER2013Folders.classes
    fer = FER2013Folders(data / "fer2013", clean_from=data / "ferplus")
    recs, _ = fer.records("Training")
    print(fer.notes[0] if fer.notes else "fer2013: no clean-from note", file=sys.stderr)
    for i, r in enumerate(recs):
        files.append((f"fer2013/train/{classes[r.label]}/Training_{i:05d}.png", add(r.source)))
    recs, _ = fer.records("PublicTest")
    for i, r in enumerate(recs):
        files.append((f"fer2013/test/{classes[r.label]}/PublicTest_{i:05d}.png", add(r.source)))
    shutil.copytree(data / "ckplus48", out / "ckplus48")

    arr = np.stack(pool)
    rows = -(-len(arr) // COLS)
    mosaic = np.zeros((rows * COLS, 48, 48), np.uint8)
    mosaic[: len(arr)] = arr
    mosaic = mosaic.reshape(rows, COLS, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, COLS * 48)
    ok, buf = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
    back = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if not ok or back is None or not np.array_equal(back, mosaic):
        raise SystemExit("WebP round trip is not lossless here")
    (out / "images.webp").write_bytes(buf.tobytes())
    (out / "manifest.json").write_text(json.dumps({"count": len(arr), "cols": COLS, "files": files}))
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    print(f"{len(arr)} images ({arr.nbytes / 1e6:.1f} MB raw) -> {len(buf) / 1e6:.1f} MB WebP; {len(files)} files",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

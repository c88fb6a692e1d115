"""Rebuild the dataset folders of a pack made by ``pack.py`` (run on the GPU machine).

    python3 tools/gpu/unpack.py .gpu/pack /tmp/data
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pack", help="the folder pack.py wrote (manifest.json, images.webp, ferplus/, ckplus48/)")
    ap.add_argument("dest", help="where the dataset folders are rebuilt")
    a = ap.parse_args(argv)
    src, dst = Path(a.pack), Path(a.dest)
    if not (src / "manifest.json").is_file():
        ap.error(f"{src}: not a pack (no manifest.json); make one with tools/gpu/pack.py")
    try:
        man = json.loads((src / "manifest.json").read_text())
        man["cols"], man["files"]
    except (ValueError, KeyError, TypeError) as e:
        ap.error(f"{src / 'manifest.json'}: not pack.py's manifest ({e})")
    mosaic = cv2.imread(str(src / "images.webp"), cv2.IMREAD_GRAYSCALE)
    if mosaic is None:
        raise SystemExit(f"{src / 'images.webp'}: missing or not readable (this OpenCV has no WebP?)")
    cols = man["cols"]
    rows = mosaic.shape[0] // 48
    tiles = mosaic.reshape(rows, 48, cols, 48).transpose(0, 2, 1, 3).reshape(rows * cols, 48, 48)
    for sub in ("ferplus", "ckplus48"):
        shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)
    for rel, row in man["files"]:
        p = dst / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(p), tiles[row]):
            raise SystemExit(f"{p}: could not be written")
    print(f"unpacked {len(man['files'])} images into {dst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

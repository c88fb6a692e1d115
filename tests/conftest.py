"""Shared fixtures: tiny datasets in each public layout, generated on the fly (no real images)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferkit import labels as L

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXAMPLE = ROOT / "examples" / "astronaut.jpg"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own dataset cache (never the user's ~/.cache/ferkit)."""
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def face_like(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A synthetic 'face' whose class is learnable: a bright blob at a class-specific place."""
    img = rng.normal(110, 20, (size, size))
    cy = size // 4 + (label // 3) * size // 4
    cx = size // 4 + (label % 3) * size // 4
    yy, xx = np.mgrid[:size, :size]
    img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 10) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def save_gray(path: Path, arr: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def make_fer2013(tmp: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> tuple[Path, Path, dict]:
    """The same synthetic FER2013 in both public forms: (folder root, csv path, {usage: [(label, pixels)]}).
    Folder images are PNGs (lossless, so both forms hold identical pixels)."""
    per_class = per_class or {"Training": 4, "PublicTest": 2, "PrivateTest": 2}
    rng = np.random.default_rng(seed)
    rows, data = [], {u: [] for u in per_class}
    for usage, k in per_class.items():
        for lab in range(7):
            for _ in range(k):
                rows.append((lab, face_like(lab, rng), usage))
    rng.shuffle(rows)
    folders = tmp / "fer2013"
    for i, (lab, px, usage) in enumerate(rows):
        sub = "train" if usage == "Training" else "test"
        save_gray(folders / sub / L.FER2013_IDS[lab] / f"{usage}_{1000 + i}.png", px)
        data[usage].append((lab, px))
    csv_path = tmp / "csv" / "fer2013.csv"
    csv_path.parent.mkdir(parents=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for lab, px, usage in rows:
            w.writerow([lab, " ".join(map(str, px.flatten())), usage])
    return folders, csv_path, data


FERPLUS_ROWS = {
    # file: 10 vote counts (neutral happiness surprise sadness anger disgust fear contempt unknown NF)
    "Train": [
        ("fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),  # neutral (majority and strict? 4 of 10 -> no)
        ("fer0000001.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # happy, both rules
        ("fer0000002.png", [0, 0, 0, 0, 0, 0, 0, 0, 3, 7]),  # not a face: dropped
        ("fer0000003.png", [1, 0, 6, 0, 0, 0, 0, 0, 3, 0]),  # surprise
        ("fer0000004.png", [0, 0, 0, 0, 0, 0, 0, 6, 4, 0]),  # contempt
        ("fer0000005.png", [2, 0, 0, 0, 0, 0, 0, 0, 8, 0]),  # unknown: dropped
    ],
    "Valid": [("fer0000006.png", [0, 0, 0, 7, 1, 1, 1, 0, 0, 0])],  # sad
    "Test": [("fer0000007.png", [0, 0, 0, 0, 9, 1, 0, 0, 0, 0]),  # angry
             ("fer0000008.png", [0, 0, 0, 0, 0, 0, 5, 0, 0, 5])],  # fear vs NF tie -> fear (majority)
}


def make_ferplus(tmp: Path) -> Path:
    root = tmp / "ferplus"
    rng = np.random.default_rng(1)
    for split, rows in FERPLUS_ROWS.items():
        d = root / f"FER2013{split}"
        d.mkdir(parents=True)
        with open(d / "label.csv", "w", newline="") as f:
            w = csv.writer(f)
            for name, votes in rows:
                save_gray(d / name, face_like(0, rng))
                w.writerow([name, "(0, 0, 48, 48)", *votes])
    return root


def make_ckplus(tmp: Path, subjects: int = 12, seed: int = 2) -> Path:
    root = tmp / "ckplus48"
    rng = np.random.default_rng(seed)
    folders = list(L.CKPLUS_FOLDERS)
    for s in range(subjects):
        for j, folder in enumerate(folders):
            if (s + j) % 3 == 0:  # not every subject shows every expression
                continue
            for frame in range(3):
                lab = L.ordered(L.CKPLUS_FOLDERS.values()).index(L.CKPLUS_FOLDERS[folder])
                save_gray(root / folder / f"S{s + 10:03d}_{j + 1:03d}_{frame + 20:08d}.png", face_like(lab, rng))
    return root


def make_jaffe(tmp: Path) -> Path:
    root = tmp / "jaffe"
    root.mkdir()
    rng = np.random.default_rng(3)
    codes = list(L.JAFFE_CODES)
    k = 0
    for subj in ["KA", "KL", "KM", "KR", "MK"]:
        for code in codes:
            k += 1
            arr = face_like(L.CANONICAL.index(L.JAFFE_CODES[code]), rng, size=64)
            img = Image.fromarray(arr)
            if subj == "KA":  # the real KA.* files are palette TIFFs
                img = img.convert("P")
            img.save(root / f"{subj}.{code}1.{k}.tiff")
    return root


def make_rafdb(tmp: Path) -> Path:
    base = tmp / "rafdb" / "basic"
    (base / "EmoLabel").mkdir(parents=True)
    rng = np.random.default_rng(4)
    lines = []
    for split, n in (("train", 14), ("test", 7)):
        for i in range(n):
            lab = i % 7 + 1
            name = f"{split}_{i + 1:05d}.jpg"
            lines.append(f"{name} {lab}")
            rgb = np.stack([face_like(lab - 1, rng, 100)] * 3, axis=-1)
            save_gray(base / "Image" / "aligned" / f"{split}_{i + 1:05d}_aligned.jpg", rgb)
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return tmp / "rafdb"


def make_kdef(tmp: Path) -> Path:
    root = tmp / "kdef_download" / "KDEF"
    rng = np.random.default_rng(5)
    for session in "AB":
        for person in ("F01", "F02", "M01", "M02"):
            d = root / f"{session}{person}"
            for code in L.KDEF_CODES:
                for angle in ("S", "HL", "FR"):
                    save_gray(d / f"{session}{person}{code}{angle}.JPG",
                              np.stack([face_like(0, rng, 64)] * 3, axis=-1))
    return tmp / "kdef_download"


def make_imagefolder(tmp: Path, with_splits: bool = True, per_class: int = 8, seed: int = 6) -> Path:
    root = tmp / "folder"
    rng = np.random.default_rng(seed)
    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    splits = {"train": per_class, "val": max(2, per_class // 2), "test": max(2, per_class // 2)} if with_splits \
        else {"": per_class}
    for split, k in splits.items():
        for lab, name in enumerate(names):
            for i in range(k):
                save_gray(root / split / name / f"{i}.png", face_like(lab, rng))
    return root


requires_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")


def moving_video(path: Path, n: int = 24, fps: float = 12.0, size: tuple[int, int] = (480, 360)) -> Path:
    """A video made of the example photo, drifting right and down and growing (scale 0.55 -> 0.75),
    written with OpenCV's mp4v codec (or MJPG for .avi)."""
    import cv2

    img = cv2.imread(str(EXAMPLE))
    w, h = size
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for i in range(n):
        s = 0.55 + 0.2 * i / max(n - 1, 1)
        m = np.array([[s, 0, 30 + 4 * i], [0, s, -10 + 2 * i]], np.float64)
        wr.write(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40)))
    wr.release()
    return path


def variable_rate_video(path: Path, n: int = 8, fps: float = 10.0) -> Path:
    """:func:`moving_video` (mp4v) made variable-frame-rate: its first n//2 frames 1/fps apart, the
    rest 4/fps apart (as a phone records), by rewriting the MP4's time-to-sample table (``stts``)."""
    import struct

    moving_video(path, n=n, fps=fps, size=(320, 240))
    buf = bytearray(path.read_bytes())

    def find(start: int, end: int, names: list[str]) -> list[tuple[int, int]] | None:
        i = start
        while i < end:
            size, typ = struct.unpack(">I4s", buf[i:i + 8])
            if typ.decode("latin1") == names[0]:
                if len(names) == 1:
                    return [(i, size)]
                sub = find(i + 8, i + size, names[1:])
                if sub:
                    return [(i, size), *sub]
            i += size
        return None

    chain = find(0, len(buf), ["moov", "trak", "mdia", "minf", "stbl", "stts"])
    o, size = chain[-1]
    flags, count = struct.unpack(">II", buf[o + 8:o + 16])
    frames, delta = struct.unpack(">II", buf[o + 16:o + 24])
    assert count == 1 and frames == n  # (a constant rate: one entry)
    body = struct.pack(">IIIIII", flags, 2, n // 2, delta, n - n // 2, 4 * delta)
    stts = struct.pack(">I4s", 8 + len(body), b"stts") + body
    grow = len(stts) - size
    buf[o:o + size] = stts
    for po, ps in chain[:-1]:  # the boxes holding it grow too (moov follows mdat: no chunk offset moves)
        struct.pack_into(">I", buf, po, ps + grow)
    # and the durations (version 0 boxes, as OpenCV writes them): FFmpeg stops reading at them
    o = find(0, len(buf), ["moov", "trak", "mdia", "mdhd"])[-1][0]
    scale = struct.unpack(">I", buf[o + 20:o + 24])[0]
    media = (n // 2) * delta + (n - n // 2) * 4 * delta
    struct.pack_into(">I", buf, o + 24, media)
    o = find(0, len(buf), ["moov", "mvhd"])[-1][0]
    movie = media * struct.unpack(">I", buf[o + 20:o + 24])[0] // scale
    struct.pack_into(">I", buf, o + 24, movie)
    struct.pack_into(">I", buf, find(0, len(buf), ["moov", "trak", "tkhd"])[-1][0] + 28, movie)
    edit = find(0, len(buf), ["moov", "trak", "edts", "elst"])
    if edit:
        struct.pack_into(">I", buf, edit[-1][0] + 16, movie)
    path.write_bytes(bytes(buf))
    return path


def junk_mjpeg_frames(path: Path, frames) -> Path:
    """Zero the whole JPEG data of the given frames of an MJPEG AVI (the AVI's chunks kept): FFmpeg
    finds no JPEG there, and the read fails (an unreadable frame, not a damaged one)."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    for k in frames:
        a, b = starts[k], (starts[k + 1] if k + 1 < len(starts) else len(data))
        end = data.rindex(b"\xff\xd9", a, b) + 2
        data[a:end] = bytes(end - a)
    path.write_bytes(bytes(data))
    return path


def damage_mjpeg_frames(path: Path, frames: tuple[int, ...]) -> Path:
    """Zero the second half of the JPEG data of the given frames of an MJPEG AVI (their headers
    and end markers kept): FFmpeg still decodes them, with errors, to half a picture."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    for k in frames:
        a, b = starts[k], (starts[k + 1] if k + 1 < len(starts) else len(data))
        end = data.rindex(b"\xff\xd9", a, b)
        data[a + (end - a) // 2:end] = bytes(end - a - (end - a) // 2)
    path.write_bytes(bytes(data))
    return path

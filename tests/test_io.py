"""Image decoding: every odd or broken input gives a clear ImageDecodeError or a sane array."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import ferkit.io as fio
from ferkit.errors import ImageDecodeError, ImageTooLargeError
from ferkit.io import read_image


def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_gray_and_rgb_modes(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0] = 255
    p = _save(tmp_path, "red.png", Image.fromarray(rgb))
    assert read_image(p, "RGB").shape == (10, 20, 3)
    g = read_image(p, "L")
    assert g.shape == (10, 20) and g.dtype == np.uint8 and int(g[0, 0]) == 76  # ITU-R 601 luma of pure red


def test_not_an_image_empty_and_truncated(tmp_path):
    txt = tmp_path / "notes.jpg"
    txt.write_text("this is not a picture")
    with pytest.raises(ImageDecodeError, match="notes.jpg: not an image file"):
        read_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.png: empty file"):
        read_image(empty)
    full = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg: corrupt or truncated image"):
        read_image(cut)
    with pytest.raises(ImageDecodeError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageDecodeError, match="https://x.org/a.jpg: a URL; ferkit works offline and fetches nothing"):
        read_image("https://x.org/a.jpg")
    with pytest.raises(ImageDecodeError, match="rtsp://cam/1: a URL; ferkit reads video files and cameras only"):
        fio.VideoReader("rtsp://cam/1")
    assert fio.is_url("s3://b/k.png") and not fio.is_url("photos/a:b.jpg") and not fio.is_url("C:/x.jpg")
    with pytest.raises(ImageDecodeError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(ImageDecodeError, match="empty image data"):
        read_image(b"")


def _forge_jpeg_size(data: bytes, factor: int) -> bytes:
    """The JPEG with its frame header (SOF) claiming ``factor`` times the height and width."""
    import struct

    out, i = bytearray(data), 2
    while out[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", out[i + 2:i + 4])[0]
    h, w = struct.unpack(">HH", out[i + 5:i + 9])
    out[i + 5:i + 9] = struct.pack(">HH", h * factor, w * factor)
    return bytes(out)


def test_jpeg_whose_data_ends_before_its_pixels(tmp_path):
    # libjpeg fills what the data does not cover with flat gray and only warns: without a check
    # this decodes "fine" and a photo silently becomes "no face found"
    rng = np.random.default_rng(0)
    photo = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo, "JPEG")
    forged = tmp_path / "forged.jpg"
    forged.write_bytes(_forge_jpeg_size(photo.getvalue(), 4))
    with Image.open(forged) as im:  # the premise: Pillow alone decodes it, gray below the real data
        a = np.asarray(im)
        assert a.shape == (256, 256, 3) and (a[64:] == 128).all() and not (a[:16] == 128).all()
    with pytest.raises(ImageDecodeError, match=r"forged.jpg: corrupt or truncated image \(the JPEG data ends "
                                               r"before its 256x256 pixels"):
        read_image(forged)
    with pytest.raises(ImageDecodeError, match="ends before"):
        read_image(forged.read_bytes(), "RGB")
    # cut short but with its end marker kept: the same fill, the same error
    cut = photo.getvalue()[: len(photo.getvalue()) // 2] + b"\xff\xd9"
    with pytest.raises(ImageDecodeError, match="ends before its 64x64 pixels"):
        read_image(cut)
    # a bigger photo cut at a third, end marker kept: the fill starts inside a row of blocks
    big = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)).save(big, "JPEG")
    with pytest.raises(ImageDecodeError, match="ends before its 320x256 pixels"):
        read_image(big.getvalue()[: len(big.getvalue()) // 3] + b"\xff\xd9")
    # not flagged: pictures with real mid-gray (128) areas, padding included
    photo_px = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    gray = np.full((64, 64, 3), 128, np.uint8)
    bottom_band = photo_px.copy()
    bottom_band[40:] = 128  # a gray band under the photo, under half of it
    top_and_bottom = photo_px.copy()
    top_and_bottom[:16] = top_and_bottom[-16:] = 128  # letterboxed
    bottom_right = gray.copy()
    bottom_right[:24, :30] = photo_px[:24, :30]  # a photo pasted at the top left of a gray canvas
    bottom_right_8 = gray.copy()
    bottom_right_8[:16, :32] = photo_px[:16, :32]  # the same, on block boundaries
    for arr in (gray, bottom_band, top_and_bottom, bottom_right, bottom_right_8):
        for sub in (0, 2):  # 4:4:4 and 4:2:0 chroma
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=95, subsampling=sub)
            with Image.open(buf) as im:  # the premise: the gray parts decode to exactly 128
                assert (np.asarray(im)[-8:] == 128).all()
            assert read_image(buf.getvalue(), "RGB").shape == (64, 64, 3)


def test_a_jpeg_missing_only_its_end_marker_is_read_with_a_warning(tmp_path):
    # some cameras, MJPEG webcams and uploaders drop the 2-byte end marker (FF D9): every pixel is
    # there, and OpenCV reads it; a file cut any shorter stays refused
    import cv2

    rng = np.random.default_rng(3)
    px = cv2.GaussianBlur(rng.integers(0, 255, (72, 88, 3), dtype=np.uint8), (5, 5), 2)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    assert data[-2:] == b"\xff\xd9"
    full = read_image(data, "RGB")
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(data[:-2])) as im:
        im.load()  # the premise: Pillow alone refuses it
    no_eoi = tmp_path / "no_eoi.jpg"
    no_eoi.write_bytes(data[:-2])
    for source, name in ((no_eoi, "no_eoi.jpg"), (data[:-2], "bytes"), (data[:-1], "bytes")):
        with pytest.warns(UserWarning, match=f"{name}: the JPEG file lacks its 2-byte end marker"):
            got = read_image(source, "RGB")
        assert np.array_equal(got, full)
    with pytest.warns(UserWarning):
        assert np.array_equal(read_image(no_eoi, "L"), read_image(data, "L"))
    notes: list[str] = []  # (the server's way: told in a list, no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(read_image(no_eoi, "RGB", notes=notes), full)
    assert len(notes) == 1 and notes[0].startswith(f"{no_eoi}: the JPEG file lacks its 2-byte end marker")
    # cut inside the scan: refused, wherever the cut falls (the last 40 bytes and beyond)
    for n in list(range(3, 43)) + [len(data) // 2]:
        with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
            read_image(data[:-n], "RGB")
    # with restart markers too; a progressive JPEG (a cut between two scans decodes to a whole,
    # blurred picture) stays refused even when only its end marker is missing
    ok, rst = cv2.imencode(".jpg", px[:, :, ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    rst = rst.tobytes()
    assert ok and b"\xff\xdd" in rst and rst[-2:] == b"\xff\xd9"  # (a DRI segment)
    with pytest.warns(UserWarning, match="end marker"):
        assert np.array_equal(read_image(rst[:-2], "RGB"), read_image(rst, "RGB"))
    for n in (3, 9, 40, len(rst) // 3):
        with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
            read_image(rst[:-n], "RGB")
    prog = io.BytesIO()
    Image.fromarray(px).save(prog, "JPEG", quality=90, progressive=True)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        read_image(prog.getvalue()[:-2], "RGB")


def test_the_end_marker_check_walks_every_block():
    # a cut that loses only the last bits of the last block is a cut: pixels cannot tell (a
    # review found a gray picture whose last block, 2x2 real pixels, decoded alike from any filler)
    import cv2

    from conftest import EXAMPLE
    from ferkit._jpeg import complete_without_end_marker as complete

    face = Image.open(EXAMPLE).convert("RGB").resize((226, 170)).getchannel("G")
    rng = np.random.default_rng(4)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (61, 75, 3), dtype=np.uint8), (5, 5), 2)
    files = []
    for img, kw in ((face, {"quality": 30, "optimize": True}), (face, {"quality": 75}),
                    (Image.fromarray(photo), {"quality": 90}),
                    (Image.fromarray(photo), {"quality": 60, "subsampling": 0, "optimize": True})):
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        files.append(buf.getvalue())
    files.append(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])[1].tobytes())
    for data in files:
        assert complete(data[:-2]) is True and complete(data[:-1].rstrip(b"\xff")) is True
        assert all(complete(data[:-n]) is False for n in range(3, 60))
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        read_image(files[0][:-5])
    # what the walk does not cover is "cannot tell" (None), and stays refused: a scan of some of
    # the components only (more scans follow), a progressive file
    data = bytearray(files[2])
    sos = data.index(b"\xff\xda")
    assert data[sos + 4] == 3
    one = bytes(data[:sos + 2]) + b"\x00\x08\x01" + bytes(data[sos + 5:sos + 7]) + bytes(data[sos + 11:])
    assert complete(one[:-2]) is None
    prog = io.BytesIO()
    Image.fromarray(photo).save(prog, "JPEG", progressive=True)
    assert complete(prog.getvalue()[:-2]) is None and complete(b"\xff\xd8\xff") is None
    # hand-made headers a second review found (both decode whole in libjpeg): repeated component
    # ids (libjpeg pairs the scan's with the frame's by position), FF 00 before a segment (libjpeg
    # skips it as 2 bytes of garbage; a parser that reads a length after it sees another frame)
    dup = bytearray(files[2])
    sof = dup.index(b"\xff\xc0")
    dup[sof + 10], dup[sof + 13], dup[sof + 16] = 1, 1, 2
    dup[sos + 5], dup[sos + 7], dup[sos + 9] = 1, 1, 2
    assert complete(bytes(dup)[:-2]) is None
    assert complete(files[2][:2] + b"\xff\x00" + files[2][2:-2]) is None


def test_the_end_marker_check_knows_the_standard_tables_mjpeg_frames_leave_out():
    # an MJPEG webcam frame carries no Huffman tables (DHT): libjpeg uses ITU T.81 Annex K's, the
    # ones Pillow writes when not optimising
    import struct

    from ferkit._jpeg import STANDARD_TABLES, complete_without_end_marker as complete

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG")
    data, i, written, bare = buf.getvalue(), 2, {}, bytearray(buf.getvalue()[:2])
    while data[i + 1] != 0xDA:
        (n,) = struct.unpack(">H", data[i + 2:i + 4])
        seg = data[i + 4:i + 2 + n]
        if data[i + 1] == 0xC4:
            j = 0
            while j < len(seg):
                k = 17 + sum(seg[j + 1:j + 17])
                written[(seg[j] >> 4, seg[j] & 15)] = (seg[j + 1:j + 17].hex(), seg[j + 17:j + k].hex())
                j += k
        else:
            bare += data[i:i + 2 + n]
        i += 2 + n
    bare += data[i:]
    assert written == STANDARD_TABLES
    assert np.array_equal(read_image(bytes(bare), "RGB"), read_image(data, "RGB"))  # (libjpeg agrees)
    assert complete(bytes(bare)[:-2]) is True and complete(bytes(bare)[:-5]) is False
    with pytest.warns(UserWarning, match="end marker"):
        assert np.array_equal(read_image(bytes(bare)[:-2], "RGB"), read_image(data, "RGB"))


def test_links_pipes_and_unlistable_folders(tmp_path):
    import os

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageDecodeError, match="dangling.jpg: a broken or looping link"):
        read_image(tmp_path / "dangling.jpg")
    with pytest.raises(ImageDecodeError, match="pipe.jpg: not a regular file"):
        read_image(tmp_path / "pipe.jpg")  # (not an "empty file", and no blocking read)
    bad: list = []
    files, skipped = fio.folder_files(tmp_path, bad)
    assert files == [tmp_path / "a.png"] and skipped == [(str(tmp_path / "notes.txt"), "not an image file")]
    assert [f[:2] for f in bad] == [(str(tmp_path / "dangling.jpg"), "a broken or looping link"),
                   (str(tmp_path / "pipe.jpg"), "not a regular file (a pipe, socket or device)")]
    if os.geteuid() != 0:  # root lists any folder
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        try:
            bad = []
            fio.folder_files(tmp_path, bad)
            assert (str(locked), "cannot list this folder (Permission denied)") in [f[:2] for f in bad]
        finally:
            locked.chmod(0o700)


def test_odd_modes(tmp_path):
    # 16-bit PNG: scaled from 0..65535 to 0..255
    a16 = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 256)
    a16[-1, -1] = 65535
    im16 = Image.fromarray(a16)
    assert im16.mode.startswith("I;16")
    p16 = _save(tmp_path, "deep.png", im16)
    assert Image.open(p16).mode.startswith("I")
    g = read_image(p16)
    assert g.dtype == np.uint8 and g.max() == 255 and g.min() == 0 and g[0, 100 // 16 % 16] == 6
    # RGBA: transparent pixels become white, not black
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, 3] = 255  # top half opaque black, bottom half transparent
    g = read_image(_save(tmp_path, "alpha.png", Image.fromarray(rgba, "RGBA")))
    assert g[0, 0] == 0 and g[7, 7] == 255
    # CMYK JPEG
    cmyk = Image.new("CMYK", (12, 12), (0, 0, 0, 0))
    assert read_image(_save(tmp_path, "cmyk.jpg", cmyk), "RGB")[0, 0].tolist() == [255, 255, 255]
    # palette and 1x1
    pal = Image.fromarray(np.full((5, 5), 200, np.uint8)).convert("P")
    assert read_image(_save(tmp_path, "pal.gif", pal))[2, 2] == 200
    assert read_image(_save(tmp_path, "one.png", Image.new("L", (1, 1), 9))).shape == (1, 1)


def test_an_animation_or_a_multi_page_file_says_that_only_its_first_picture_is_read(tmp_path):
    import warnings

    first, second = Image.new("L", (32, 32), 10), Image.new("L", (32, 32), 200)
    first.save(tmp_path / "a.gif", save_all=True, append_images=[second], duration=100)
    first.save(tmp_path / "p.tiff", save_all=True, append_images=[second, second])
    with pytest.warns(UserWarning, match=r"a\.gif: holds 2 frames .*only the first is read"):
        assert read_image(tmp_path / "a.gif").mean() == pytest.approx(10, abs=1)
    with pytest.warns(UserWarning, match=r"p\.tiff: holds 3 pages"):
        assert read_image(tmp_path / "p.tiff").mean() == pytest.approx(10, abs=1)
    first.save(tmp_path / "one.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a still GIF: nothing to say
        read_image(tmp_path / "one.gif")


def test_huge_image_is_refused(tmp_path, monkeypatch):
    p = _save(tmp_path, "big.png", Image.new("L", (400, 300)))
    monkeypatch.setattr(fio, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageTooLargeError, match=r"big.png: image is 400x300 .* over the"):
        read_image(p)
    # an array is held to the same limit (a view of one pixel: no memory spent on the test)
    with pytest.raises(ImageTooLargeError, match=r"ndarray: image is 400x300 .* over the"):
        read_image(np.broadcast_to(np.zeros((1, 1), np.uint8), (300, 400)), name="ndarray")
    with pytest.raises(ImageTooLargeError, match="Image: image is 400x300"):
        read_image(Image.new("L", (400, 300)))
    # too large is its own kind (the HTTP API's 413); a damaged file is not
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(ImageDecodeError) as e:
        read_image(tmp_path / "bad.png")
    assert not isinstance(e.value, ImageTooLargeError)


def test_arrays_and_pil_inputs(tmp_path):
    f = np.linspace(0, 1, 12).reshape(3, 4)  # floats in [0, 1] are scaled to 0..255
    assert read_image(f).tolist()[2][3] == 255
    bgr_like = np.zeros((4, 4, 3), np.uint8)
    assert read_image(bgr_like, "RGB").shape == (4, 4, 3)
    assert read_image(np.zeros((4, 4, 1), np.uint8)).shape == (4, 4)
    with pytest.raises(ImageDecodeError, match="expected 1, 3 or 4 channels"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageDecodeError, match="expected an HxW"):
        read_image(np.zeros((0,), np.uint8))
    assert read_image(Image.new("RGB", (3, 2), (0, 0, 255))).shape == (2, 3)
    # RGBA arrays in RGB mode: composited on white like RGBA images (was: passed on with 4 channels)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest transparent
    assert read_image(rgba, "RGB").tolist() == [[[255, 0, 0], [255, 255, 255]], [[255, 255, 255]] * 2]
    # uint16 pixels are scaled from 0..65535 like 16-bit files, not clipped at 255
    assert read_image(np.array([[0, 257, 32896, 65535]], np.uint16)).tolist() == [[0, 1, 128, 255]]
    # ... so 8-bit values kept in uint16 come out nearly black: read as asked, with a warning
    with pytest.warns(UserWarning, match=r"uint16 array whose values are all below 4096 \(the largest 200\)"):
        assert read_image(np.array([[0, 200]], np.uint16)).tolist() == [[0, 1]]
    # the same pixels as a 16-bit PIL image: the same warning (it was read as nearly black in silence)
    with pytest.warns(UserWarning, match=r"16-bit PIL image whose values are all below 4096 \(the largest 200\)"):
        assert read_image(Image.fromarray(np.array([[0, 200]], np.uint16))).tolist() == [[0, 1]]
    # ... and as a 16-bit PNG file (a 12-bit camera's values): read nearly black, said
    png = tmp_path / "twelve.png"
    Image.fromarray(np.array([[0, 3000]], np.uint16)).save(png)
    with pytest.warns(UserWarning, match=r"twelve.png: a 16-bit image whose values are all below 4096 \(the largest 3000"):
        assert read_image(png).tolist() == [[0, 12]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no warning for a real 16-bit picture, nor an all-black one)
        read_image(np.array([[0, 5000]], np.uint16)), read_image(np.zeros((2, 2), np.uint16))
        read_image(Image.fromarray(np.array([[0, 5000]], np.uint16)))
    with pytest.raises(ImageDecodeError, match="int32 pixel values up to 1000"):
        read_image(np.array([[0, 1000]], np.int32))
    assert read_image(np.array([[0, 200]], np.int64)).tolist() == [[0, 200]]
    with pytest.raises(ValueError):
        read_image(np.zeros((2, 2), np.uint8), mode="CMYK")


def test_exif_orientation_is_applied(tmp_path):
    """A camera photo stored sideways with EXIF Orientation comes out upright; without the tag the
    pixels come out as stored (no rotation, and the same bytes in L and RGB as Pillow decodes)."""
    arr = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; a red block at the top-left corner
    arr[:5, :10, 0] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the viewer rotates 90 degrees clockwise
    rotated = _save(tmp_path, "sideways.png", img, exif=exif.tobytes())
    plain = _save(tmp_path, "plain.png", img)
    up = read_image(rotated, "RGB")
    assert up.shape == (40, 20, 3)
    assert np.array_equal(up, np.rot90(arr, k=-1))  # the red block now at the top-right
    assert up[0, -1, 0] == 255 and up[0, 0, 0] == 0
    assert np.array_equal(read_image(plain, "RGB"), arr)
    assert np.array_equal(read_image(plain.read_bytes(), "L"), np.asarray(Image.fromarray(arr).convert("L")))
    assert read_image(rotated, "L").shape == (40, 20)


def test_arrays_already_in_form_are_not_copied():
    """A contiguous uint8 RGB (or gray) array asked for in its own mode is passed through as is;
    any other form is converted into a new array (the caller's is never modified)."""
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert read_image(rgb, "RGB") is rgb and read_image(gray, "L") is gray
    view = rgb[:, ::-1]  # not contiguous: a contiguous copy with the same pixels
    got = read_image(view, "RGB")
    assert got is not view and got.flags.c_contiguous and np.array_equal(got, view)
    g = read_image(rgb, "L")
    assert g.shape == (2, 3) and np.array_equal(g, np.asarray(Image.fromarray(rgb).convert("L")))
    assert read_image(gray, "RGB").shape == (2, 3, 3) and np.array_equal(read_image(gray, "RGB")[..., 1], gray)
    assert rgb.ravel().tolist() == list(range(18))


def test_float_images_with_nan_are_refused_and_the_limit_is_ferkits(tmp_path, monkeypatch):
    p = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32), "F").save(p)
    with pytest.raises(ImageDecodeError, match="nan.tif: the image holds NaN"):
        read_image(p)
    # Pillow's 89 MP "decompression bomb" warning does not decide: ferkit's MAX_PIXELS does
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # warns above 2,000, refuses above 4,000
    big = _save(tmp_path, "wide.png", Image.new("L", (60, 40)))  # 2,400 px: over Pillow's (patched) warning level
    assert read_image(big).shape == (40, 60)
    # over Pillow's (patched) ceiling, which refuses before the size can be read: ferkit's words, the pixel count
    huge = _save(tmp_path, "huge.png", Image.new("L", (100, 50)))
    with pytest.raises(ImageTooLargeError, match=r"huge.png: image is 0 MP, over the 150 MP limit$"):
        read_image(huge)
    assert fio.bomb_pixels(ValueError("Image size (5000 pixels) exceeds limit of 4000 pixels")) == 5000
    assert fio.bomb_pixels(ValueError("something else")) is None


def test_float_images_a_little_over_one_are_read_as_0_to_1_as_predict_tensor_takes_them():
    """One pixel at 1.001 (a brightness change, a bicubic resize) made the whole float image read as
    0..255: nearly black, no face or a wrong label, silently; predict_tensor took up to 1.25."""
    rgb = np.linspace(0, 1, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    want = read_image(rgb, "RGB")
    assert want.max() == 255 and want.min() == 0
    for over in (1.001, 1.02, 1.25):
        bright = rgb.copy()
        bright[0, 0, 0] = over
        got = read_image(bright, "RGB")
        assert got[0, 0, 0] == 255 and np.array_equal(got.ravel()[1:], want.ravel()[1:])  # clipped; the rest kept
    cubic = cv2.resize(rgb, (12, 8), interpolation=cv2.INTER_CUBIC) * 1.1 - 0.05  # overshot both ways
    assert cubic.min() < 0 and cubic.max() > 1
    got = read_image(cubic, "RGB")
    assert np.array_equal(got, np.clip(cubic * 255 + 0.5, 0, 255).astype(np.uint8))  # (it was refused)
    with pytest.raises(ImageDecodeError, match="pixel values down to -0.3"):
        read_image(np.array([[-0.3, 0.5]], np.float32), "L")  # normalised pixels: still refused
    dim = np.array([[0.0, 1.5], [10.0, 200.0]], np.float64)  # beyond the slack: 0..255 floats, as before
    assert read_image(dim, "L").tolist() == [[0, 2], [10, 200]]


def test_frame_failures_are_grouped_by_runs():
    errs = [(3, "unreadable frame (skipped)")] + [(i, "unreadable frame (skipped)") for i in range(21, 40)] + \
        [(40, "odd size"), (42, "odd size")]
    got = fio.frame_failures("clip.avi", errs)
    # the source is the file's path (as in the frames' results), the run in `frames`
    assert [(f.source, f.error, f.frames) for f in got] == [
        ("clip.avi", "unreadable frame (skipped)", (3, 3)), ("clip.avi", "unreadable frame (skipped)", (21, 39)),
        ("clip.avi", "odd size", (40, 40)), ("clip.avi", "odd size", (42, 42))]
    assert got[0] == ("clip.avi", "unreadable frame (skipped)")  # still a (source, reason) pair
    src, why = got[1]
    assert (src, why) == ("clip.avi", "unreadable frame (skipped)")
    damaged = [(4, fio.VideoReader.DAMAGED), (5, fio.VideoReader.DAMAGED)]
    assert [f.frames for f in fio.frame_failures("clip.avi", damaged, every=5)] == [(5, 5)]  # 4 not processed
    assert [f.where for f in got] == ["clip.avi frame 3", "clip.avi frames 21-39 (19 frames)",
                                      "clip.avi frame 40", "clip.avi frame 42"]
    assert fio.frame_failures("clip.avi", []) == []
    # read every 4th frame of a file cut short at frame 20 of 40: frames 20, 24 ... 36 lost, 5 of them
    cut = [(i, "unreadable frame (skipped)") for i in range(20, 40)]
    (f,) = fio.frame_failures("clip.avi", cut, every=4)
    assert (f.frames, f.step, f.lost) == ((20, 36), 4, 5)
    assert f.where == "clip.avi frames 20-36 (every 4th: 5 frames)"
    from ferkit.results import failure_dict

    assert failure_dict(f)["frames"] == [20, 36] and failure_dict(f)["every"] == 4
    import copy

    assert copy.deepcopy(f).lost == 5  # (pickling keeps the step)
    # runs are evenly spaced: 1, 2 then 5 are two runs, not "1-5, every 3rd: 2 frames"
    runs = fio.frame_failures("c", [(1, "x"), (2, "x"), (5, "x")], every=3)
    assert [(g.frames, g.lost) for g in runs] == [((1, 2), 2), ((5, 5), 1)]
    assert "every 3rd" in fio.frame_failures("c", [(3, "x"), (6, "x")], every=3)[0].span


def test_a_long_run_of_unreadable_frames_is_read_through_and_a_stop_lists_the_rest(tmp_path, monkeypatch):
    """60 unreadable frames in a row, then good ones: all read (a run of 50 used to end the file there,
    the frames after it neither analysed nor listed). A run that goes on past MAX_BAD_RUN frames and
    BAD_RUN_SECONDS stops the reading, and the header's remaining frames are one run of NOT_READ."""
    from conftest import junk_mjpeg_frames, moving_video

    clip = junk_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=70, size=(64, 48)), range(3, 63))
    with fio.VideoReader(clip) as reader:
        assert [i for i, _, _ in reader] == [0, 1, 2, *range(63, 70)]
    assert [(f.frames, f.error) for f in fio.frame_failures("c", reader.errors)] == [((3, 62), reader.UNREADABLE)]
    monkeypatch.setattr(fio.VideoReader, "BAD_RUN_SECONDS", 0.0)
    with fio.VideoReader(clip) as reader:
        assert [i for i, _, _ in reader] == [0, 1, 2]
    got = fio.frame_failures("c", reader.errors)
    assert [(f.frames, f.error, f.lost) for f in got] == [((3, 52), reader.UNREADABLE, 50),
                                                          ((53, 69), reader.NOT_READ, 17)]
    assert 3 + sum(f.lost for f in got) == 70  # every frame of the header's count accounted for


def test_a_frame_the_decoder_reports_errors_in_is_skipped_and_listed(tmp_path, capfd, monkeypatch):
    from conftest import damage_mjpeg_frames, moving_video

    clip = damage_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=8, size=(160, 120)), (3, 4))
    with fio.VideoReader(clip) as reader:
        got = [i for i, _, _ in reader]
    assert got == [0, 1, 2, 5, 6, 7]
    assert reader.errors == [(3, reader.DAMAGED), (4, reader.DAMAGED)]
    assert fio.frame_failures(str(clip), reader.errors)[0].where == f"{clip} frames 3-4 (2 frames)"
    out = capfd.readouterr()
    assert "FFMPEG" not in out.out + out.err  # FFmpeg's own lines are caught, not shown
    with fio.VideoReader(moving_video(tmp_path / "good.avi", n=5, size=(160, 120))) as reader:
        assert len(list(reader)) == 5 and reader.errors == []  # an intact file loses nothing
    monkeypatch.setenv("FERKIT_CHECK_DECODING", "0")  # the check off: the damaged frames are read as OpenCV gives them
    with fio.VideoReader(clip) as reader:
        assert [i for i, _, _ in reader] == list(range(8)) and reader.errors == []


@pytest.mark.parametrize("fourcc,ext", [("MJPG", ".avi"), ("mp4v", ".mp4"), ("XVID", ".avi"), ("FMP4", ".avi"),
                                        ("VP80", ".webm"), ("VP90", ".webm"), ("FFV1", ".mkv"), ("HFYU", ".avi"),
                                        ("MPEG", ".avi")])
def test_healthy_videos_of_every_writable_codec_lose_no_frame(tmp_path, fourcc, ext, capfd):
    """The damaged-frame check on intact streams (inter-frame codecs too): nothing is flagged."""
    import cv2

    path = tmp_path / f"clip{ext}"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 12, (160, 120))
    if not wr.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc}")
    for i in range(30):  # a moving disc over a changing pattern: P-frames with real motion
        img = np.full((120, 160, 3), 30, np.uint8)
        img[:: 5 + i % 3] = 90
        cv2.circle(img, (20 + 4 * i, 60), 18, (0, 200, 255), -1)
        wr.write(img)
    wr.release()
    capfd.readouterr()
    with fio.VideoReader(path) as reader:
        assert reader._said is not None  # the check is on
        got = list(reader)
        assert len(got) == 30 and reader.errors == []
    assert "FFMPEG" not in capfd.readouterr().out
    # a constant rate: the file's time stamps are the frame counts at 12 frames/s (to the millisecond)
    assert [t for _, t, _ in got] == pytest.approx([i / 12 for i in range(30)], abs=0.0015)


def test_a_variable_rate_video_is_timed_by_its_stamps(tmp_path):
    # frames 0-3 0.1 s apart, then 0.4 s (the container's average rate, 4 frames/s, gave 0, 0.25, 0.5...)
    from conftest import variable_rate_video

    with fio.VideoReader(variable_rate_video(tmp_path / "vfr.mp4", n=8, fps=10)) as reader:
        got = [(i, round(t, 3)) for i, t, _ in reader]
    assert got == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.8), (6, 1.2), (7, 1.6)]


CODEC_CLIPS = Path(__file__).parent / "data" / "codecs"  # synthetic, tools/make_codec_clips.py


@pytest.mark.parametrize("name", ["h264.mp4", "hevc.mp4", "av1.mkv"])
def test_intact_h264_hevc_av1_lose_no_frame_and_damaged_ones_account_for_every_frame(tmp_path, name, capfd):
    """Codecs OpenCV cannot write here (H.264 and HEVC with B-frames, AV1): the check flags nothing
    in an intact file; in one with 200 bytes overwritten, every frame is read or listed."""
    with fio.VideoReader(CODEC_CLIPS / name) as reader:
        assert reader._said is not None
        assert len(list(reader)) == 30 and reader.errors == [] and reader.fps == 12
    data = bytearray((CODEC_CLIPS / name).read_bytes())
    at = len(data) * (3 if name == "hevc.mp4" else 5) // 10
    data[at:at + 200] = np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8).tobytes()
    (tmp_path / name).write_bytes(bytes(data))
    capfd.readouterr()
    with fio.VideoReader(tmp_path / name) as reader:
        read = [i for i, _, _ in reader]
    listed = [i for i, _ in reader.errors]
    assert listed and sorted(read + listed) == list(range(30))  # nothing lost without a word
    assert "FFMPEG" not in capfd.readouterr().out


def test_a_damaged_clip_with_b_frames_keeps_each_frames_index_by_its_time_stamp(tmp_path):
    # H.264 with B-frames, 30 bytes zeroed at six places: the decoder fails reads that are no frames
    # and loses frames without a failed read; each frame read keeps the index its time stamp gives
    # (one came out as frame 17 at 1.25 s, frame 15's time and picture) and the lost ones fill the rest
    data = bytearray((CODEC_CLIPS / "h264.mp4").read_bytes())
    for k in range(6):
        at = len(data) // 2 + k * 100
        data[at:at + 30] = bytes(30)
    (tmp_path / "dmg.mp4").write_bytes(bytes(data))
    with fio.VideoReader(tmp_path / "dmg.mp4") as reader:
        got = [(i, t) for i, t, _ in reader]
    assert all(i == round(t * 12) for i, t in got), got
    listed = [i for i, _ in reader.errors]
    assert sorted([i for i, _ in got] + listed) == list(range(30))  # every frame read or listed, once


def test_a_variable_rate_video_keeps_counting_reads_past_a_lost_frame(tmp_path, monkeypatch):
    # its stamps part from the average rate: after a failed read the count of reads stays the index
    # (the stamp-based resync of a constant-rate clip would move correct indices)
    from conftest import variable_rate_video

    clip = variable_rate_video(tmp_path / "vfr.mp4", n=24, fps=4)
    class Flaky:  # the 22nd read (frame 21) fails
        def __init__(self, cap):
            self.cap, self.n = cap, 0

        def read(self):
            self.n += 1
            ok, frame = self.cap.read()
            return (False, None) if self.n == 22 else (ok, frame)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    with fio.VideoReader(clip) as reader:
        reader.cap = Flaky(reader.cap)
        got = [i for i, _, _ in reader]
    assert [i for i, _ in reader.errors] == [21] and got == [i for i in range(24) if i != 21]


def test_a_variable_rate_videos_estimated_frame_count_is_no_lost_frames(tmp_path):
    # WebM and Matroska store no frame count: OpenCV's is the duration times the rate, which a variable-rate
    # video's frames do not fill; the reads that fail past its last frame were listed as lost frames (21 of
    # a 40-frame phone clip), the exit status 1 and the annotated video padded with cards
    from conftest import variable_rate_video

    clip = variable_rate_video(tmp_path / "vfr.mp4", n=24, fps=4)  # 12 frames 0.25 s apart, 12 1 s apart: 15 s
    clip = clip.rename(tmp_path / "vfr.mkv")  # (FFmpeg reads it by its contents; the name says: no count stored)
    with fio.VideoReader(clip) as reader:
        assert reader.count_estimated
        reader.fps, reader.frame_count = 4.0, 60  # as OpenCV says a WebM's: 4 frames/s x 15 s
        got = [i for i, _, _ in reader]
    assert got == list(range(24)) and reader.errors == [] and reader.frame_count == 24
    # the same file cut short of its time (the last frames' bytes lost): those are lost frames
    with fio.VideoReader(clip) as reader:
        reader.fps, reader.frame_count = 4.0, 60
        real = reader.cap.read

        def cut(n=[0]):
            n[0] += 1
            return real() if n[0] <= 20 else (False, None)

        reader.cap = type("Cut", (), {"read": staticmethod(cut), "get": reader.cap.get,
                                      "release": reader.cap.release})()
        got = [i for i, _, _ in reader]
    assert got == list(range(20))
    assert [i for i, _ in reader.errors] == list(range(20, 60)) and reader.frame_count == 60
    # the same clip as an MP4 (a count stored: its own is true) keeps the reads past its end as lost
    with fio.VideoReader(clip.rename(tmp_path / "vfr.mp4")) as reader:
        assert not reader.count_estimated
        reader.fps, reader.frame_count = 4.0, 60
        assert len(list(reader)) == 24 and [i for i, _ in reader.errors] == list(range(24, 60))
    # a constant-rate clip whose reads skipped frames 10-13 unsaid: its stamps ran ahead once, and the
    # reads that fail after its last frame are lost frames, in Matroska too (they were taken for its end)
    from conftest import moving_video

    cfr = moving_video(tmp_path / "cfr.mkv", n=24, fps=8, size=(160, 120))
    with fio.VideoReader(cfr) as reader:
        assert reader.count_estimated and reader.frame_count == 24
        real, n = reader.cap.read, [0]

        def skipping():
            n[0] += 1
            if n[0] == 11:
                for _ in range(4):
                    real()
            return real()

        reader.cap = type("Skip", (), {"read": staticmethod(skipping), "get": reader.cap.get,
                                       "release": reader.cap.release})()
        got = [i for i, _, _ in reader]
    assert len(got) == 20 and [i for i, _ in reader.errors] == [20, 21, 22, 23], (got, reader.errors)


def test_a_log_level_that_silences_ffmpeg_errors_is_said_once(tmp_path, monkeypatch):
    import warnings

    from conftest import damage_mjpeg_frames, moving_video

    clip = damage_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=6, size=(160, 120)), (2,))
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")  # the user's: FFmpeg quiet, errors too
    monkeypatch.setattr(fio, "_CHECK_OFF_SAID", False)
    with pytest.warns(UserWarning, match=r"OPENCV_FFMPEG_LOGLEVEL=-8 is below 16 .* damaged video frames are not found"):
        reader = fio.VideoReader(clip)
    with reader:
        assert len(list(reader)) == 6 and reader.errors == []  # unchecked: the damaged frame is read
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once a process, not once a file
        fio.VideoReader(clip).close()
    monkeypatch.setenv("FERKIT_CHECK_DECODING", "0")  # the check turned off on purpose: no note
    monkeypatch.setattr(fio, "_CHECK_OFF_SAID", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fio.VideoReader(clip).close()


def test_the_decoder_message_catcher_passes_other_output_on(capfd):
    catcher = fio.DecoderMessages()
    catcher.echo_ffmpeg = False
    import os

    with catcher.catch() as said:
        os.write(1, b"[OPENCV:FFMPEG:16] bad vlc\nplain line\n[OPENCV:FFMPEG:24] a warning\n")
        os.write(2, b"to stderr, untouched\n")  # only stdout (where FFmpeg's printf goes) is caught
    catcher.close()
    assert said == [(16, "bad vlc"), (24, "a warning")]
    out = capfd.readouterr()
    assert out.out == "plain line\n" and out.err == "to stderr, untouched\n"


def _exif_turned_jpeg_with_a_damaged_tag(fmt: str = "JPEG") -> bytes:
    """The example photo stored turned (EXIF orientation 6) with a damaged EXIF entry: a Make tag
    renamed ImageWidth (a number tag holding text), which Pillow's exif_transpose fails on."""
    from conftest import EXAMPLE

    src = Image.open(EXAMPLE).convert("RGB").crop((0, 0, 512, 400)).transpose(Image.Transpose.ROTATE_90)
    ex = Image.Exif()
    ex[0x0112] = 6
    ex[0x010F] = "Cam"
    buf = io.BytesIO()
    src.save(buf, fmt, exif=ex)
    return buf.getvalue().replace(b"\x01\x0f\x00\x02", b"\x01\x00\x00\x02").replace(b"\x0f\x01\x02\x00",
                                                                                  b"\x00\x01\x02\x00")


def test_damaged_files_are_decode_errors_or_read_never_tracebacks(tmp_path):
    import struct

    # a damaged EXIF tag beside the orientation: read, turned upright
    for fmt in ("JPEG", "WEBP"):
        data = _exif_turned_jpeg_with_a_damaged_tag(fmt)
        assert read_image(data, "RGB").shape == (400, 512, 3)
        assert read_image(Image.open(io.BytesIO(data)), "RGB").shape == (400, 512, 3)
    # a TIFF whose second page's header is broken: the first page is read (counting pages failed)
    b = io.BytesIO()
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(b, "TIFF")
    t = bytearray(b.getvalue())
    ifd = struct.unpack_from("<I", t, 4)[0]
    nxt = ifd + 2 + 12 * struct.unpack_from("<H", t, ifd)[0]
    extra = len(t) + (len(t) & 1)
    t += b"\0" * (extra - len(t)) + struct.pack("<H", 1) + struct.pack("<HHII", 0x0103, 3, 1, 1) + struct.pack("<I", 0)
    struct.pack_into("<I", t, nxt, extra)
    assert read_image(bytes(t), "RGB").shape == (32, 48, 3)
    # a PIL image used after its file was closed
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    with Image.open(path) as im:
        pass
    with pytest.raises(ImageDecodeError, match="file was closed before its pixels were read"):
        read_image(im)
    # the same JPEG cut short: refused as a PIL image too, as it is as bytes
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 320, 3), dtype=np.uint8)).save(photo, "JPEG")
    cut = photo.getvalue()[: len(photo.getvalue()) // 3] + b"\xff\xd9"
    with pytest.raises(ImageDecodeError, match="ends before its 320x256 pixels"):
        read_image(Image.open(io.BytesIO(cut)))


def test_a_real_gray_lower_half_is_read_with_a_warning():
    rng = np.random.default_rng(2)
    canvas = np.full((256, 128, 3), 128, np.uint8)
    canvas[:96] = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)  # a photo on the top 96 of 256 rows
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=95)
    with pytest.warns(UserWarning, match="flat gray"):
        assert read_image(buf.getvalue(), "RGB").shape == (256, 128, 3)


def test_arrays_out_of_the_pixel_range_and_other_16_bit_forms():
    rgb = np.random.default_rng(3).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    with pytest.raises(ImageDecodeError, match="values down to -0.5: give 0..255"):
        read_image(rgb / 255 - 0.5, "RGB")
    with pytest.raises(ImageDecodeError, match="down to"):
        read_image(rgb.astype(np.int16) - 128, "RGB")
    g16 = rgb[:, :, 0].astype(np.uint16) * 257
    big_endian = g16.astype(">u2")
    assert (read_image(big_endian, "L") == rgb[:, :, 0]).all()  # 16-bit, either byte order: scaled, not refused
    native = Image.frombytes("I;16N", (30, 20), g16.tobytes())
    assert abs(read_image(native, "L").astype(int) - rgb[:, :, 0]).max() <= 1  # not clipped to white


def test_staged_files_are_written_all_or_none(tmp_path):
    from ferkit.errors import FerkitError

    (tmp_path / "a.txt").write_text("old a")
    # the block fails after writing one file: nothing moved, the earlier a.txt kept, no temporary file left
    with pytest.raises(RuntimeError), fio.staged_files() as st:
        t = st.path(tmp_path / "a.txt")
        assert t.parent == tmp_path and t.suffix == ".txt" and t.name.startswith(".ferkit-")
        t.write_text("new a")
        raise RuntimeError("a later step failed")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old a"
    # a name that is a folder is refused before anything is moved
    (tmp_path / "b.txt").mkdir()
    with pytest.raises(FerkitError, match=r"b\.txt: it is a folder; nothing was written"), fio.staged_files() as st:
        st.path(tmp_path / "a.txt").write_text("new a")
        st.path(tmp_path / "b.txt").write_text("new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"
    # all written: each moved onto its name, with the usual permissions (not mkstemp's 0600); a dropped one is not
    with fio.staged_files() as st:
        st.path(tmp_path / "a.txt").write_text("new a")
        st.path(tmp_path / "c.txt").write_text("c")
        st.drop(st.path(tmp_path / "d.txt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "c.txt").read_text() == "c"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "c.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    # a folder it cannot write in is named as the file asked for, not as the temporary one
    with pytest.raises(OSError) as e, fio.staged_files() as st:
        st.path(tmp_path / "missing" / "e.txt")
    assert e.value.filename == str(tmp_path / "missing" / "e.txt")
    # an earlier file keeps its mode; a link is written through, onto its target; a name near the
    # file system's 255-byte limit still fits (the temporary name is short)
    os.chmod(tmp_path / "a.txt", 0o640)
    (tmp_path / "real.txt").write_text("r")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    long = "p" * 251 + ".txt"
    with fio.staged_files() as st:
        st.path(tmp_path / "a.txt").write_text("newer a")
        st.path(tmp_path / "link.txt").write_text("through the link")
        st.path(tmp_path / long).write_text("long")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640 and (tmp_path / "a.txt").read_text() == "newer a"
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "through the link"
    assert (tmp_path / long).read_text() == "long"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ferkit-")]
    # a link to a file without an extension: the format (and the messages) from the name asked for
    (tmp_path / "blob").write_bytes(b"")
    (tmp_path / "pic.png").symlink_to(tmp_path / "blob")
    with fio.staged_files() as st:
        t = st.path(tmp_path / "pic.png")
        assert t.suffix == ".png" and fio.write_image_file(t, np.zeros((4, 4, 3), np.uint8))
    assert (tmp_path / "blob").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "pic.png").is_symlink()


def test_a_damaged_avi_is_refused_in_ferkits_words_only(tmp_path):
    """OpenCV's own AVI reader prints "Unexpected element. Expected: LIST ..." on stderr for a cut
    file, past its log level; ferkit's one-line error says it instead (run apart: fd 2 is caught)."""
    import subprocess
    import sys

    from conftest import moving_video

    cut = tmp_path / "cut.avi"
    cut.write_bytes(moving_video(tmp_path / "whole.avi", n=4).read_bytes()[:300])
    code = ("import sys\nfrom ferkit.io import VideoReader\nfrom ferkit.errors import ImageDecodeError\n"
            "try:\n    VideoReader(sys.argv[1])\nexcept ImageDecodeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(cut)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "not a video OpenCV can open" in r.stdout, (r.stdout, r.stderr)
    assert "Unexpected element" not in r.stderr and r.stderr.strip() == "", r.stderr


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(tmp_path):
    """A 1 MB progressive JPEG repeating one scan 32,000 times took a server worker for minutes (libjpeg only
    warns; each scan walks every block): more than MAX_JPEG_SCANS scans are refused unread. Scans are counted
    by walking the markers, so a thumbnail or metadata bytes that look like one are not."""
    from conftest import EXAMPLE

    buf = io.BytesIO()
    Image.open(EXAMPLE).save(buf, "JPEG", progressive=True)
    prog = buf.getvalue()
    assert fio._jpeg_scans(prog, 100) == 10 and fio._jpeg_scans(EXAMPLE.read_bytes(), 100) == 1
    assert read_image(prog).shape == (512, 512)  # a real progressive photo reads
    last = prog.rindex(b"\xff\xda")
    bomb = prog[:-2] + prog[last:-2] * 150 + prog[-2:]  # its last scan 150 times more
    assert fio._jpeg_scans(bomb, 100) == 101  # (counted only past the limit)
    for source in (bomb, tmp_path / "b.jpg"):
        (tmp_path / "b.jpg").write_bytes(bomb)
        with pytest.raises(ImageDecodeError, match="a JPEG of more than 100 scans .*refused"):
            read_image(source)
    # a stray byte between two segments (libjpeg skips it, and decodes on): still counted (it stopped the count)
    stray = bomb[:20] + b"\x00" + bomb[20:]
    assert bomb[20] == 0xFF and fio._jpeg_scans(stray, 100) == 101
    # nor does FF 00 there (a stuffed zero, which libjpeg drops: it was read as a marker with a length and skipped
    # 65 KB of scans), and megabytes of fill bytes are skipped at once
    for pad in (b"\xff\x00", b"\xff\xfe\x00\x02\xff\x00", b"\xff" * 5_000_000):
        assert fio._jpeg_scans(bomb[:20] + pad + bomb[20:], 100) == 101, pad[:6]
    # a file of thousands of tiny segments (seconds to walk, where a real one has tens) is refused as well
    for tiny in (b"\xff\xfe\x00\x02", b"\xff\xd0", b"\x00\xff\xd0"):  # comments, restart markers, strays
        many = prog[:20] + tiny * (fio.MAX_JPEG_SEGMENTS + 1) + prog[20:]
        with pytest.raises(ImageDecodeError, match="or 10,000 segments: refused"):
            read_image(many)
    # a comment full of start-of-scan bytes is no scan: read
    commented = prog[:2] + b"\xff\xfe" + (2 + 2000).to_bytes(2, "big") + b"\xff\xda" * 1000 + prog[2:]
    assert fio._jpeg_scans(commented, 100) == 10 and read_image(commented).shape == (512, 512)


def test_a_tiff_of_a_hundred_thousand_pages_is_counted_to_a_bound():
    """Pillow's page count walked every page of a TIFF, slower than linearly (a 10 MB file of 100,000
    one-pixel pages took over a minute): pages are counted up to MAX_PAGES_COUNTED."""
    import struct

    def tiff(n: int) -> bytes:  # n one-pixel gray pages sharing one strip
        entries = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (278, 3, 1),
                   (279, 4, 1)]
        out = bytearray(b"II*\x00" + struct.pack("<I", 12) + b"\x80\x00\x00\x00")
        size = 2 + 12 * len(entries) + 4
        for i in range(n):
            nxt = len(out) + size if i < n - 1 else 0
            out += struct.pack("<H", len(entries))
            for tag, typ, val in entries:
                out += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else
                                                           struct.pack("<I", val))
            out += struct.pack("<I", nxt)
        return bytes(out)

    with pytest.warns(UserWarning, match=r"holds 1000 or more pages"):
        assert read_image(tiff(3000)).shape == (1, 1)
    with pytest.warns(UserWarning, match=r"holds 3 pages \("):
        read_image(tiff(3))


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_a_tiny_annotated_video_is_one_a_reader_opens(tmp_path, suffix):
    """A 1x1 (or 4x4) source's WebM was written and said written, and no reader opened it (VP8 under 8 pixels a
    side); it is stretched to 8x8 now, as MP4's 1-pixel sides are to 2."""
    for side in (1, 4):
        path = tmp_path / f"t{side}{suffix}"
        w = fio.VideoWriter(path, 10.0, (side, side))
        for k in range(3):
            w.write(np.full((side, side, 3), 60 * k, np.uint8))
        w.close()
        with fio.VideoReader(path) as r:
            frames = [f for _, _, f in r]
        assert len(frames) == 3 and min(frames[0].shape[:2]) == max(side, 8 if suffix == ".webm" else 2)


def test_a_readers_rate_and_count_as_the_header_gives_them_or_unknown(tmp_path, monkeypatch):
    """A rate of 0 fell back to 25 (kept as 0 for a moment: every frame's time divided by it); a negative or
    absurd count is no count; an estimated count (a duration times a rate of 1000 not taken) is no count either,
    so no phantom lost frames; a reader read twice says so (its spent capture listed every frame as lost)."""
    import cv2

    from conftest import moving_video

    clip = moving_video(tmp_path / "c.mkv", n=6, fps=10.0, size=(64, 48))
    real = cv2.VideoCapture
    told = {}

    class Header:  # what a container's header says, as the test wants it (a subclass of OpenCV's crashes in gc)
        def __init__(self, *args):
            self.cap = real(*args)

        def get(self, prop):
            return told.get(prop, self.cap.get(prop))

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Header)
    for fps, count, want_fps, want_count in ((0.0, None, 25.0, 0), (None, -1.9e14, 10.0, 0), (1000.0, None, 25.0, 0)):
        told.clear()
        told.update({k: v for k, v in ((cv2.CAP_PROP_FPS, fps), (cv2.CAP_PROP_FRAME_COUNT, count)) if v is not None})
        with fio.VideoReader(clip) as r:
            assert (r.fps, r.frame_count) == (want_fps, want_count)
            assert len(list(r)) == 6 and r.errors == []
            with pytest.raises(ImageDecodeError, match="was read already: it reads its video once"):
                list(r)


def test_a_stopped_readings_rest_counts_the_frames_to_be_read():
    nr = fio.VideoReader.NOT_READ
    (f,) = fio.frame_failures("c", [(13, nr), (39, nr)], every=4)
    assert (f.frames, f.step, f.lost) == ((16, 36), 4, 6)
    assert fio.frame_failures("c", [(13, nr), (15, nr)], every=4) == []  # (no frame of it was to be read)
    assert [(g.frames, g.lost) for g in fio.frame_failures("c", [(13, nr), (39, nr)])] == [((13, 39), 27)]

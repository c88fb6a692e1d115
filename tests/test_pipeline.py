"""The Recognizer: one API for images, arrays, folders and videos; results, tracking and smoothing."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLE, moving_video
from PIL import Image

import ferkit
from ferkit import Recognizer
from ferkit.errors import FerkitError
from ferkit.pipeline import Tracker, iou_matrix, source_kind
from ferkit.results import Results, csv_columns


@pytest.fixture(scope="module")
def rec():
    return Recognizer()


def test_one_photo_gives_one_happy_face_with_the_documented_json(rec):
    r = rec.predict(str(EXAMPLE))
    d = json.loads(r.to_json())
    assert set(d) == {"source", "width", "height", "faces"} and (d["width"], d["height"]) == (512, 512)
    assert len(d["faces"]) == 1
    f = d["faces"][0]
    assert set(f) == {"box", "landmarks", "score", "label", "probabilities"}
    assert len(f["box"]) == 4 and all(isinstance(v, int) for v in f["box"])
    assert np.array(f["landmarks"]).shape == (5, 2)
    (lex, ley), (rex, rey), _, (mlx, mly), (mrx, mry) = f["landmarks"]
    assert max(ley, rey) < min(mly, mry)  # eyes above the mouth
    assert f["label"] == "happy" and f["probabilities"]["happy"] > 0.8
    assert list(f["probabilities"]) == list(ferkit.CANONICAL)
    assert sum(f["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_every_kind_of_image_input_gives_the_same_answer(rec):
    base = rec.predict(str(EXAMPLE)).faces[0]
    arr = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    for src in (EXAMPLE, arr, Image.open(EXAMPLE), EXAMPLE.read_bytes()):
        f = rec.predict(src).faces[0]
        assert f.box == base.box and f.probabilities == pytest.approx(base.probabilities, abs=1e-6)
    gray = rec.predict(np.asarray(Image.open(EXAMPLE).convert("L")))
    assert len(gray.faces) == 1 and gray.faces[0].label == "happy"


def test_result_records_plot_and_save(rec, tmp_path):
    r = rec.predict(str(EXAMPLE))
    # results compare by what was found (the kept pixels are not compared: == on two results raised
    # "the truth value of an array ... is ambiguous")
    import pickle

    again = rec.predict(str(EXAMPLE))
    assert again == r and r in [again] and pickle.loads(pickle.dumps(r)) == r
    flipped = rec.predict(np.ascontiguousarray(r.image[:, ::-1]))
    assert flipped != r and flipped.faces[0].box != r.faces[0].box
    rows = r.to_records()
    assert len(rows) == 1 and rows[0]["label"] == "happy" and rows[0]["x"] == r.faces[0].box[0]
    assert rows[0]["happy"] == pytest.approx(r.faces[0].probabilities["happy"], abs=1e-6)
    img = r.plot()
    assert img.shape == (512, 512, 3) and (img != r.image).any()
    x, y, w, h = r.faces[0].box
    assert (img[y + h // 2, x] != r.image[y + h // 2, x]).any()  # the box is drawn on its left edge
    # bars=False / landmarks=False leave those parts out: the landmark dots only with landmarks, and the
    # probability bars (most of the ink: 7 labelled bars) only with bars; the box in every case
    full = (img != r.image).any(2)
    without = {k: (r.plot(**{k: False}) != r.image).any(2) for k in ("bars", "landmarks")}
    dots = [(int(round(py)), int(round(px))) for px, py in r.faces[0].landmarks]
    assert all(full[p] and without["bars"][p] and not without["landmarks"][p] for p in dots)
    assert without["bars"].sum() < full.sum() / 2 and without["landmarks"].sum() < full.sum()
    bare = (r.plot(bars=False, landmarks=False) != r.image).any(2)
    assert np.array_equal(bare, without["bars"] & without["landmarks"]) and bare[y + h // 2, x]
    p = r.save(tmp_path / "a.jpg")
    assert Image.open(p).size == (512, 512)


def test_detectors_none_and_haar(rec):
    crop = np.asarray(Image.open(EXAMPLE).convert("RGB"))[55:175, 170:290]
    r = Recognizer(rec.model, detector="none").predict(crop)
    assert r.faces[0].box == [0, 0, 120, 120] and r.faces[0].label == "happy" and r.faces[0].landmarks is None
    # a face crop is read as model.predict reads it (and the datasets' images: Pillow's bilinear resize);
    # OpenCV's area filter gave other probabilities (happy 0.923 against 0.908 on a crop of 150x160)
    noise = np.random.default_rng(0).integers(0, 256, (90, 100, 3), dtype=np.uint8)  # (gray made as Pillow makes it)
    for face in (crop, np.ascontiguousarray(np.asarray(Image.open(EXAMPLE).convert("RGB"))[40:200, 150:300]), noise):
        p = Recognizer(rec.model, detector="none").predict(face).faces[0].probabilities
        assert np.array_equal([p[c] for c in rec.model.classes], rec.model.predict_proba(face)[0])
    h = Recognizer(rec.model, detector="haar").predict(str(EXAMPLE))
    assert len(h.faces) == 1 and h.faces[0].label == "happy" and h.faces[0].landmarks_estimated
    assert "landmarks_estimated" in h.faces[0].to_dict()


def test_several_faces_and_max_faces(rec):
    arr = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    two = np.concatenate([arr, arr[:, ::-1]], axis=1)  # the photo and its mirror side by side
    r = rec.predict(two)
    assert len(r.faces) == 2 and all(f.label == "happy" for f in r.faces)
    xs = sorted(f.box[0] for f in r.faces)
    assert xs[0] < 512 < xs[1]
    one = Recognizer(rec.model, max_faces=1).predict(two).faces
    best = max(r.faces, key=lambda f: f.score)
    assert len(one) == 1 and one[0].box == pytest.approx(best.box) and one[0].score == pytest.approx(best.score)


def test_no_face_is_an_empty_result_not_an_error(rec):
    r = rec.predict(np.full((300, 400, 3), 200, np.uint8))
    assert r.faces == [] and r.to_dict()["faces"] == []
    assert r.to_records() == [] and r.to_records(empty_row=True)[0]["source"] == "ndarray"


def test_the_pixels_kept_are_not_the_callers_array(rec):
    """r.image was the caller's own array: a camera loop that reuses its frame buffer, or draws on the
    frame after predicting, changed the result's picture (r.plot() and r.save() drew on the new pixels)."""
    frame = np.asarray(Image.open(EXAMPLE).convert("RGB")).copy()
    want = frame.copy()
    r = rec.predict(frame)
    frame[:] = 0
    assert r.image is not frame and (r.image == want).all() and len(r.faces) == 1
    listed = rec.predict([want])  # (a list's arrays are kept too)
    want[:] = 0
    assert listed[0].image.max() > 0
    # an image made for the reading (gray to RGB) is kept as made, not copied again
    gray = np.asarray(Image.open(EXAMPLE).convert("L"))
    assert rec.predict(gray).image.shape == (512, 512, 3)


def test_folder_carries_on_past_junk(rec, tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.open(EXAMPLE).save(d / "a.png")
    Image.open(EXAMPLE).convert("L").save(d / "sub" / "b.jpg")
    (d / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (d / "readme.txt").write_text("x")
    res = rec.predict(d)
    assert isinstance(res, Results) and [r.source.rsplit("/", 1)[-1] for r in res] == ["a.png", "b.jpg"]
    assert all(len(r.faces) == 1 for r in res)
    failed = {f.source: f.error for f in res.failed}
    assert set(failed) == {str(d / "c.jpg")}  # an image by its name that cannot be read: a failure
    assert "corrupt" in failed[str(d / "c.jpg")] or "not an image" in failed[str(d / "c.jpg")]
    assert res.ignored == [(str(d / "readme.txt"), ferkit.io.NEITHER)]  # listed, not a failure
    # a folder's pixels are not kept (memory); drawing reads the file again, saving into a folder
    # names the file after the source
    assert all(r.image is None for r in res)
    assert res[0].plot().shape == (512, 512, 3)
    out = res[1].save(tmp_path)
    assert out == tmp_path / "b_ferkit.png" and Image.open(out).size == (512, 512)
    assert out.parent == tmp_path and not (tmp_path.parent / f"{tmp_path.name}.png").exists()
    out = res[1].save(f"{tmp_path}/new/")  # the README's rs[0].save("out/"): a folder made, not out.png
    assert out == tmp_path / "new" / "b_ferkit.png" and out.exists() and not (tmp_path / "new.png").exists()
    (d / "a.png").unlink()
    with pytest.raises(FerkitError, match="the file is gone since it was analysed"):
        res[0].plot()
    Image.open(EXAMPLE).resize((100, 80)).save(d / "a.png")
    with pytest.raises(FerkitError, match="changed since it was analysed"):
        res[0].plot()
    assert rec.predict(d, keep_images=True)[0].image.shape == (80, 100, 3)
    one = rec.predict(d / "a.png", keep_images=False)  # one image: kept unless told not to
    assert one.image is None and rec.predict(d / "a.png").image.shape == (80, 100, 3)
    assert one.plot().shape == (80, 100, 3)  # read again to draw
    # a folder where every file failed: its CSV has the class columns all the same (the CLI's had them, the API's
    # not), so that the files of several runs line up; slices keep them
    (d / "a.png").unlink()
    shutil.rmtree(d / "sub")
    bad = rec.predict(d)
    assert len(bad) == 0 and len(bad.failed) == 1 and bad.classes == rec.classes
    assert list(bad.to_records(empty_row=True)[0]) == list(bad[:].to_records(empty_row=True)[0]) == csv_columns(
        rec.classes)


def test_results_save_names_every_image_apart(rec, tmp_path):
    # a/face.jpg, b/face.jpg, face.jpg and face.png: the subfolders mirrored as `predict --out`
    # does, and the two names one folder would share told apart (Result.save on each gave one file)
    d = tmp_path / "photos"
    for i, (sub, ext) in enumerate((("a", "jpg"), ("b", "jpg"), ("", "jpg"), ("", "png"))):
        (d / sub).mkdir(parents=True, exist_ok=True)
        Image.open(EXAMPLE).resize((128 + i * 32, 128)).save(d / sub / f"face.{ext}")
    res = rec.predict(d)
    written = res.save(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "a/face_ferkit.png", "b/face_ferkit.png", "face_ferkit.png", "face_2_ferkit.png"]
    assert [Image.open(p).size[0] for p in written] == [128, 160, 192, 224]  # a/, b/, face.jpg, face.png
    assert res[2:].save(tmp_path / "part")[0] == tmp_path / "part" / "face_ferkit.png"  # a slice keeps the folder
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    arrays = Results([rec.predict(photo), rec.predict(photo)])
    names = [p.name for p in arrays.save(tmp_path / "arr")]
    assert len(set(names)) == 2 and names[1] == names[0].replace("_ferkit", "_2_ferkit")
    with pytest.raises(FerkitError, match="is a file"):
        res.save(written[0])
    # a video's or an image's name: a folder of that name was made and filled with PNGs
    for name, hint in (("annotated.mp4", "ferkit predict VIDEO --out FOLDER"), ("all.png", r"results\[i\].save")):
        with pytest.raises(FerkitError, match=f"save writes a folder of annotated pictures.*{hint}"):
            res.save(tmp_path / name)
        assert not (tmp_path / name).exists()
    assert res[:1].save(f"{tmp_path / 'pics.png'}/")[0] == tmp_path / "pics.png" / "a" / "face_ferkit.png"  # (a slash)


def test_source_kinds(tmp_path):
    assert source_kind(0) == "webcam" and source_kind(np.zeros((2, 2))) == "image"
    assert source_kind(str(tmp_path)) == "folder" and source_kind("clip.MP4") == "video"
    assert source_kind("x.png") == "image"
    with pytest.raises(FerkitError, match="cannot read faces from a dict"):
        source_kind({})


def test_tracker_keeps_ids_and_ends_lost_tracks():
    t = Tracker(max_age=2)
    a, b = np.array([0, 0, 10, 10.0]), np.array([50, 50, 70, 70.0])
    assert t.update(np.stack([a, b])) == [1, 2]
    assert t.update(np.stack([b + 2, a + 1])) == [2, 1]  # order of detections does not matter
    assert t.update(np.stack([b + 2 + [11, 0, 11, 0]])) == [2]  # IoU 0.29 < 0.3: matched by centre distance
    assert t.update(np.zeros((0, 4))) == []
    assert t.update(np.stack([a + 1])) == [1]  # unseen for 2 frames: still alive
    for _ in range(3):
        t.update(np.zeros((0, 4)))
    assert t.update(np.stack([a])) == [3]  # gone for longer than max_age: a new id


def test_tracker_crossing_faces_keep_their_ids():
    """A stale track that overlaps a face more does not take it from the track seen a frame ago."""
    t = Tracker()
    assert t.update(np.array([[253, 122, 305, 193], [181, 135, 232, 204.0]])) == [1, 2]  # B, A
    for x in (195, 206, 217, 228, 242):  # B hidden behind A, which moves right
        assert t.update(np.array([[x, 134, x + 51, 202.0]])) == [2]
    assert t.update(np.array([[253, 134, 304, 203.0]])) == [2]  # A, over B's old place: still A
    assert t.update(np.array([[264, 134, 315, 203.0]])) == [2]


def test_tracker_follows_a_fast_face_by_its_velocity():
    # 25 px a frame, boxes 51 px wide, missed for 2 frames: 75 px from its last box when it is seen
    # again (beyond the distance gate), where its velocity puts it
    t = Tracker()
    for x in (0, 25, 50):
        assert t.update(np.array([[x, 100, x + 51, 160.0]])) == [1]
    t.update(np.zeros((0, 4)))
    t.update(np.zeros((0, 4)))
    assert t.update(np.array([[125, 100, 176, 160.0]])) == [1]
    # a shrinking face, then missed: its size is not carried forward (the box turned inside out)
    t = Tracker()
    for s in (60, 52, 44, 36):  # about its centre, (130, 130)
        t.update(np.array([[130 - s / 2, 130 - s / 2, 130 + s / 2, 130 + s / 2]]))
    for _ in range(3):
        t.update(np.zeros((0, 4)))
    assert t.update(np.array([[115, 115, 145, 145.0]])) == [1]


def test_tracker_wide_gate_matches_the_nearest_face_first():
    # --every 6: 60 px a processed frame, boxes 51 px wide; the stream widens the gate
    boxes = [np.array([[x, 100, x + 51, 160.0]]) for x in range(0, 600, 60)]
    wide, plain = Tracker(dist=0.6 * 4), Tracker()
    assert {i for b in boxes for i in wide.update(b)} == {1}
    assert len({i for b in boxes for i in plain.update(b)}) > 1  # (the gate of every frame alone)
    # A seen last frame lost its face; B, missed once, is back 40 px from its place: B's id, not A's
    t = Tracker(dist=2.4, max_age=3)
    assert t.update(np.array([[0, 100, 50, 150], [120, 100, 170, 150.0]])) == [1, 2]
    assert t.update(np.array([[0, 100, 50, 150.0]])) == [1]
    assert t.update(np.array([[80, 100, 130, 150.0]])) == [2]


def test_a_stream_keeps_the_faces_it_follows_under_max_faces():
    from types import SimpleNamespace

    from ferkit.faces.detect import Detection
    from ferkit.pipeline import Recognizer

    rec = SimpleNamespace(max_faces=1)
    t = Tracker()
    a, b = Detection(np.array([0, 0, 50, 50.0]), 0.99), Detection(np.array([200, 0, 250, 50.0]), 0.98)
    (kept,) = Recognizer._keep(rec, [a, b], t)
    assert kept is a
    t.update(np.array([a.box]))
    a2, b2 = Detection(a.box + 3, 0.97), Detection(b.box, 0.99)  # the other face now scores higher
    assert Recognizer._keep(rec, [b2, a2], t) == [a2]  # the face followed stays
    assert Recognizer._keep(SimpleNamespace(max_faces=0), [b2, a2], t) == [b2, a2]


def test_tracker_smoothing_is_an_exponential_average():
    t = Tracker(smooth=0.75)
    (tid,) = t.update(np.array([[0, 0, 10, 10.0]]))
    p1, p2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(t.smooth_probs(tid, p1), p1)
    assert np.allclose(t.smooth_probs(tid, p2), [0.75, 0.25])
    assert np.allclose(Tracker(smooth=0).smooth_probs(1, p2), p2)
    with pytest.raises(FerkitError):
        Tracker(smooth=1.0)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10.0]])
    b = np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0], [0, 0, 10, 10.0]])
    assert iou_matrix(a, b) == pytest.approx(np.array([[1 / 3, 0, 1]]))


def test_video_end_to_end_tracks_one_face(rec, tmp_path, capfd):
    video = moving_video(tmp_path / "clip.mp4", n=24, fps=12)
    res = rec.predict(str(video))
    assert isinstance(res, Results) and len(res) == 24 and res.fps == pytest.approx(12)
    assert [r.frame for r in res] == list(range(24))
    assert [r.time for r in res] == pytest.approx([i / 12 for i in range(24)], abs=1e-3)
    assert all(len(r.faces) == 1 for r in res) and {r.faces[0].track_id for r in res} == {1}
    assert sum(r.faces[0].label == "happy" for r in res) >= 22
    xs = [r.faces[0].box[0] for r in res]
    assert xs[-1] - xs[0] > 60  # the face drifted right and the boxes followed
    assert res[0].image is None  # frames' pixels are not kept
    capfd.readouterr()
    half = rec.predict(str(video), every=2, progress=True)
    assert [r.frame for r in half] == list(range(0, 24, 2))
    err = capfd.readouterr().err  # a bar of the frames processed (progress=True was for a folder's images only)
    assert "clip.mp4: 100%" in err and "12/12" in err, err


def test_video_fast_path_matches_full_detection(rec, tmp_path):
    video = moving_video(tmp_path / "clip.avi", n=20, fps=10)
    full = Recognizer(rec.model, detect_every=1).predict(str(video))
    fast = Recognizer(rec.model, detect_every=5).predict(str(video))
    assert len(fast) == 20 and {r.faces[0].track_id for r in fast} == {1}
    for a, b in zip(full, fast):
        ba, bb = np.array(a.faces[0].box, float), np.array(b.faces[0].box, float)
        assert iou_matrix(np.r_[ba[:2], ba[:2] + ba[2:]][None], np.r_[bb[:2], bb[:2] + bb[2:]][None])[0, 0] > 0.6
        assert b.faces[0].label == "happy"


def test_smoothing_in_streams(rec, tmp_path):
    video = moving_video(tmp_path / "clip.mp4", n=6)
    raw = Recognizer(rec.model, smooth=0).predict(str(video))
    sm = Recognizer(rec.model, smooth=0.5).predict(str(video))
    c = "happy"
    expect = raw[0].faces[0].probabilities[c]
    for r0, r1 in zip(raw, sm):
        expect = 0.5 * expect + 0.5 * r0.faces[0].probabilities[c] if r0.frame else expect
        assert r1.faces[0].probabilities[c] == pytest.approx(expect, abs=1e-5)
    # what was smoothed says so (the JSON's faces had nothing to tell smoothed probabilities from raw ones)
    assert all(f.to_dict().get("smoothed") == (0.5 if r.frame else None) for r in sm for f in r.faces)
    assert all("smoothed" not in f.to_dict() for r in raw for f in r.faces)
    assert "smoothed" not in rec.predict(str(EXAMPLE)).faces[0].to_dict()


def test_bad_videos_are_clear_errors(rec, tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(FerkitError, match="fake.mp4"):
        rec.predict(str(fake))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FerkitError, match="empty file"):
        rec.predict(str(empty))
    noframes = tmp_path / "none.avi"
    cv2.VideoWriter(str(noframes), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    with pytest.raises(FerkitError, match="none.avi"):
        rec.predict(str(noframes))


def test_an_exif_rotated_pil_image_reads_as_its_file_does(rec, tmp_path):
    im = Image.open(EXAMPLE).convert("RGB").rotate(90, expand=True)
    ex = im.getexif()
    ex[0x0112] = 6  # "rotate 90 clockwise to show": the photo upright again
    im.save(tmp_path / "exif.jpg", exif=ex)
    by_path = rec.predict(tmp_path / "exif.jpg").faces
    pil = Image.open(tmp_path / "exif.jpg")
    by_pil = rec.predict(pil).faces
    assert len(by_path) == len(by_pil) == 1 and by_pil[0].box == by_path[0].box and by_pil[0].label == "happy"
    assert pil.size == (512, 512) and pil.getexif().get(0x0112) == 6  # the caller's image untouched


def test_odd_values_and_sources_are_ferkit_errors(rec, tmp_path):
    m = rec.model
    face = np.asarray(Image.open(EXAMPLE).convert("RGB"))[58:173, 179:267]
    with pytest.raises(FerkitError, match=r"shape \[3, 115, 88\] is ambiguous"):
        m.predict(np.ascontiguousarray(face.transpose(2, 0, 1)))  # not three gray faces in silence
    assert len(m.predict(np.zeros((5, 48, 48), np.uint8))) == 5  # a batch of gray faces
    # an image of 5 or 6 channels was read as 48 gray faces 5 or 6 pixels wide
    for shape in ((48, 48, 5), (48, 40, 6)):
        with pytest.raises(FerkitError, match=rf"an array of shape \[{shape[0]}, {shape[1]}, {shape[2]}\]: an image "
                                              rf"of {shape[2]} channels \(1, 3 or 4 are read\), or {shape[0]} gray"):
            m.predict(np.zeros(shape, np.uint8))
    assert len(m.predict(np.zeros((2, 40, 32), np.uint8))) == 2  # gray faces of another size: resized, as before
    # three gray faces at the model's size (what Recognizer.crops gives): read as faces, not refused
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    dets = rec.detector.detect(rgb) * 3
    crops = rec.crops(rgb, dets)
    assert crops.shape == (3, 48, 48) and [p.label for p in m.predict(crops)] == ["happy"] * 3
    with pytest.raises(FerkitError, match="dtype int64: give uint8"):  # 0-255 ints read as 0-1 would be noise
        m.predict_tensor(crops[:, None].astype(np.int64))
    flipped = m.predict_tensor(crops[:, None, :, ::-1])  # a flipped view: no raw error from torch
    assert flipped.shape == (3, 7)
    assert Recognizer(m, smooth=np.float32(0.5), min_face_size=np.int64(20), detect_every=np.int64(2)).smooth == 0.5
    png = io.BytesIO()
    Image.fromarray(face).save(png, "PNG")
    assert m.predict(bytearray(png.getvalue()))[0].label == m.predict(face)[0].label == "happy"
    png.seek(0)
    assert m.predict(png)[0].label == "happy"  # a file object: its bytes (it was refused: "pass its bytes")
    with pytest.raises(FerkitError, match="cannot read faces from a dict"):
        m.predict({"a": face})
    for bad in (0, -1, 10 ** 6, 1.5, "2", True):
        with pytest.raises(FerkitError, match="threads must be a whole number from 1 to 1024"):
            ferkit.load_model(threads=bad)
    for kw, msg in ((dict(detect_every="5"), "detect_every must be a whole number"),
                    (dict(detect_every=1.5), "detect_every must be a whole number"),
                    (dict(smooth="0.5"), r"smooth \(--smooth\) must be a number"), (dict(max_faces=True), "max_faces"),
                    (dict(min_face_size="20"), "min_face_size"), (dict(min_face_size=float("nan")), "min_face_size"),
                    (dict(max_side=float("inf")), "max_side")):
        with pytest.raises(FerkitError, match=msg):
            Recognizer(m, **kw)
    clip = moving_video(tmp_path / "clip.avi", n=4, size=(160, 120))
    for kw in (dict(every=1.5), dict(every="2"), dict(max_frames=2.5)):
        with pytest.raises(FerkitError, match="must be a whole number"):
            rec.predict(clip, **kw)
    for src in (face, None):
        with pytest.raises(FerkitError, match="stream reads a video file"):
            list(rec.stream(src))
    with pytest.raises(FerkitError, match="a folder; stream reads a video file or a webcam"):  # (was "corrupt")
        list(rec.stream(tmp_path))
    with pytest.raises(FerkitError, match="an image; stream reads a video file"):  # (was "no readable frame")
        list(rec.stream(EXAMPLE))
    frames = [Image.open(EXAMPLE).resize((128, 128)).rotate(a) for a in (0, 5, 10)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert len(list(rec.stream(tmp_path / "anim.gif"))) == 3  # an animated GIF still streams
    with pytest.raises(FerkitError, match="an empty path"):
        rec.predict("")
    r = rec.predict(str(EXAMPLE))
    (tmp_path / "f").write_text("x")
    for bad, msg in ((tmp_path / "f" / "a.png", "f: is a file; name a folder"), (None, "save wants a file or folder"),
                     ("", "save wants a file or folder")):
        with pytest.raises(FerkitError, match=msg):
            r.save(bad)
    import shutil

    (tmp_path / "folder").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "folder" / "gone.jpg")
    gone = rec.predict(tmp_path / "folder")[0]  # a folder's images are not kept: plot reads the file again
    (tmp_path / "folder" / "gone.jpg").unlink()
    with pytest.raises(FerkitError, match="the file is gone since it was analysed"):
        gone.plot()


def test_recognizer_options_are_checked(rec):
    with pytest.raises(FerkitError, match="detect_every"):
        Recognizer(rec.model, detect_every=0)
    with pytest.raises(FerkitError, match="max_faces"):
        Recognizer(rec.model, max_faces=0)
    with pytest.raises(FerkitError, match="unknown detector"):
        Recognizer(rec.model, detector="dlib")


def test_timeline_plots_every_reading_leaves_gaps_and_spans_the_frames(tmp_path, monkeypatch):
    import matplotlib.figure

    from ferkit.results import FaceResult, Result, plot_timeline

    classes = ("happy", "sad")

    def face(tid, p):
        return FaceResult([0, 0, 10, 10], 0.99, "happy" if p >= 0.5 else "sad", {"happy": p, "sad": 1 - p},
                          track_id=tid)

    # 10 frames at 0.1 s: face 1 in frames 2-4 and 7-8 (out of view in 5-6), faces 2..8 once each
    results = []
    for i in range(10):
        faces = [face(1, 0.8)] if i in (2, 3, 4, 7, 8) else []
        faces += [face(i - 1, 0.3)] if 3 <= i <= 9 else []
        results.append(Result("v.mp4", 64, 64, faces, frame=i, time=round(0.1 * i, 4), classes=classes))
    seen = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: seen.setdefault("fig", fig))
    plot_timeline(results, classes, tmp_path / "t.png", title="v.mp4")
    fig = seen["fig"]
    axes = fig.axes
    assert len(axes) == 6 and "(2 more in the CSV and JSON)" in fig._suptitle.get_text()
    # the six seen longest (face 1, then the one-frame faces 2..6 by id), drawn in the order of their ids
    assert [ax.get_title() for ax in axes] == [f"face #{k}" for k in range(1, 7)]
    seen.clear()  # (face #2 seen longer than #1: still drawn second, as the summary lists them)
    plot_timeline([Result("v.mp4", 64, 64, [face(2, 0.3)] + ([face(1, 0.8)] if i == 0 else []), frame=i,
                          time=0.1 * i, classes=classes) for i in range(3)], classes, tmp_path / "o.png")
    assert [ax.get_title() for ax in seen["fig"].axes] == ["face #1", "face #2"]
    happy = axes[0].lines[0]
    t = happy.get_xdata()
    assert np.isnan(t).sum() == 1 and list(np.asarray(t)[~np.isnan(t)]) == pytest.approx([0.2, 0.3, 0.4, 0.7, 0.8])
    assert happy.get_marker() == "."  # a face seen in one frame is a dot, not an invisible line
    assert axes[-1].get_xlim()[0] < 0.0 + 1e-9 and axes[-1].get_xlim()[1] > 0.9 - 1e-9  # all frames processed
    # a video's lost frames (here 3-6 of a 10 fps clip, the face read in 2 and 7): a gap, not a line
    from ferkit.errors import Failure
    from ferkit.results import Results

    lossy = Results([Result("v.mp4", 64, 64, [face(1, 0.8)], frame=i, time=0.1 * i, classes=classes)
                     for i in (0, 1, 2, 7, 8)], failed=[Failure("v.mp4", "damaged", (3, 6))], fps=10.0)
    seen.clear()  # (it keeps the first figure drawn)
    plot_timeline(lossy, classes, tmp_path / "l.png")
    t = seen["fig"].axes[0].lines[0].get_xdata()
    assert np.isnan(t).sum() == 1 and int(np.flatnonzero(np.isnan(t))[0]) == 3  # between 0.2 s and 0.7 s
    seen.clear()
    plot_timeline(lossy[:1], classes, tmp_path / "one.png")  # one frame: a second around it
    assert seen["fig"].axes[-1].get_xlim() == pytest.approx((-0.5, 0.5))


def test_caveats_warn_at_the_callers_line_and_results_read_again_after_a_chdir(rec, tmp_path, monkeypatch):
    import warnings

    d = tmp_path / "photos"
    d.mkdir()
    (d / "noeoi.jpg").write_bytes(EXAMPLE.read_bytes()[:-2])  # a JPEG without its end marker: a caveat
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rec.predict(d / "noeoi.jpg")
        rec.predict(d)
    assert len(w) == 2 and all(x.filename == __file__ for x in w), [(x.filename, x.lineno) for x in w]
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="end marker"):
        res = rec.predict("photos")  # relative paths, as given
    assert res[0].source == "photos/noeoi.jpg"
    monkeypatch.chdir(d)  # the relative name no longer leads to the file: its absolute path does
    assert res[0].plot().shape == (512, 512, 3) and res.save(tmp_path / "out")[0].exists()


def test_probability_panels_of_faces_side_by_side_do_not_cover_each_other(monkeypatch):
    # two faces filling a 512x256 frame side by side: the right one's panel has no room on its right;
    # it went to its left, over the left face's panel; now each lands where nothing else is
    import ferkit.results as R

    probs = {c: 1 / 7 for c in ferkit.CANONICAL}
    faces = [R.FaceResult([40, 60, 150, 150], 0.99, "happy", probs), R.FaceResult([300, 60, 150, 150], 0.99, "sad",
                                                                                   probs)]
    got = []
    real = R._bars
    monkeypatch.setattr(R, "_bars", lambda *a, **k: got.append(real(*a, **k)) or got[-1])
    R.draw(np.zeros((256, 512, 3), np.uint8), faces)
    (a, b), boxes = got, [(40, 60, 190, 210), (300, 60, 450, 210)]

    def meet(p, q):
        return p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]

    assert not meet(a, b) and not any(meet(p, q) for p, q in ((a, boxes[1]), (b, boxes[0])))
    assert all(0 <= p[0] and p[2] <= 512 and 0 <= p[1] and p[3] <= 256 for p in (a, b))
    assert a[0] == 190 + 4  # the usual place, right of the box, where it is free


def test_a_still_face_keeps_its_box_size_between_full_detections(rec, tmp_path):
    # 12 identical frames, a full detection every 5th: the frames between re-locate the face with
    # O-Net alone; its box keeps the full detection's size (it grew and shrank with period 5)
    photo = cv2.imread(str(EXAMPLE))
    w = cv2.VideoWriter(str(tmp_path / "still.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for _ in range(12):
        w.write(photo)
    w.release()
    res = rec.predict(tmp_path / "still.avi")
    assert len(res) == 12 and all(len(r.faces) == 1 for r in res)
    for first in (0, 5, 10):  # each full detection's size, kept until the next one (the first frame
        # decodes a little apart from the others: its detection may differ)
        sizes = [tuple(r.faces[0].box[2:]) for r in res[first:first + 5]]
        assert all(abs(a - b) <= 1 for s in sizes for a, b in zip(s, sizes[0])), (first, sizes)


def test_backend_and_device_given_with_a_loaded_model_are_said_to_be_ignored(rec):
    """Recognizer(model_object, backend="torch") ran the model as it was loaded, without a word."""
    import warnings

    with pytest.warns(UserWarning, match=r"backend='torch' ignored: the model given is loaded already"):
        r = ferkit.Recognizer(rec.model, detector="none", backend="torch")
    assert r.model is rec.model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ferkit.Recognizer(rec.model, detector="none")  # (the defaults: nothing to say)


def test_a_list_of_images_gives_results_in_order_and_carries_on_past_a_bad_one(rec, tmp_path):
    """predict([...]) raised 'cannot read faces from a list' (ExpressionModel.predict takes lists):
    each item is now analysed in turn, what cannot be read listed with its place, a folder or a
    video inside refused with what to do, and pixels given in memory kept for drawing."""
    pil = Image.open(EXAMPLE)
    arr = np.asarray(pil.convert("RGB"))
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    rs = rec.predict([str(EXAMPLE), pil, arr, EXAMPLE.read_bytes(), tmp_path / "junk.jpg", tmp_path, arr[:0]])
    assert isinstance(rs, Results) and [r.source for r in rs] == [str(EXAMPLE), f"[1] {EXAMPLE}", "[2] ndarray",
                                                                   "[3] bytes"]
    assert [r.faces[0].label for r in rs] == ["happy"] * 4
    assert rs[0] == rec.predict(str(EXAMPLE)) and rs[2].faces == rs[0].faces  # the same as one by one
    assert [r.image is not None for r in rs] == [False, True, True, True]  # a file's pixels are not kept
    assert [(f.source, f.at) for f in rs.failed] == [(str(tmp_path / "junk.jpg"), 4), (str(tmp_path), 4),
                                                     ("[6] ndarray", 4)]
    assert "a folder inside a list: give it to predict on its own" in rs.failed[1].error
    assert rec.predict((str(EXAMPLE),), keep_images=True)[0].image is not None and len(rec.predict([])) == 0
    assert rec.predict(pil).source == str(EXAMPLE)  # a PIL image is named by its file (it was 'JpegImageFile')
    assert rec.predict(pil.convert("L")).source == "Image"


def test_results_show_in_a_notebook_as_a_summary_and_a_result_as_its_picture(rec):
    r = rec.predict(str(EXAMPLE))
    png = r._repr_png_()
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.array_equal(shown, r.plot())  # (512 px: not resized)
    big = rec.predict(np.asarray(Image.open(EXAMPLE).convert("RGB").resize((2048, 2048))))
    assert Image.open(io.BytesIO(big._repr_png_())).size == (1024, 1024)
    frame = ferkit.Result("clip.mp4", 64, 48, frame=3, time=0.1)
    assert frame._repr_png_() is None  # nothing to draw: the text repr
    rs = Results([r] * 7, failed=[("a.jpg", "no such file")], source="photos/")
    text = repr(rs)
    lines = text.splitlines()
    assert lines[0] == "Results(7 results, 1 failed, 0 ignored, source='photos/')"
    assert lines[1] == f"  {EXAMPLE} (512x512): 1 face: happy {r.faces[0].confidence:.2f}"
    assert len(lines) == 1 + 5 + 1 + 1 and lines[6] == "  ... 2 more" and lines[7] == "  failed: a.jpg: no such file"


def test_the_recognizer_takes_threads_for_its_runtimes():
    r = Recognizer(threads=1)
    assert r.detector.net.pnet.get_session_options().intra_op_num_threads == 1
    assert r.detector.net._one is None  # (one thread: no split in two halves)
    for bad in (0, 10**6, 1.5):
        with pytest.raises(FerkitError, match="threads must be a whole number from 1 to"):
            Recognizer(threads=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ready-made model keeps its own threads; MTCNN takes these: no warning
        again = Recognizer(r.model, threads=2)
    assert again.detector.net.pnet.get_session_options().intra_op_num_threads == 2


def test_a_folder_s_videos_are_read_after_its_photos_as_ferkit_predict_reads_them(rec, tmp_path):
    """Recognizer.predict(folder) listed a folder's videos as ignored ('rec.predict each by name'), where
    `ferkit predict` reads them: now its photos, then each video's frames, bad ones said."""
    import shutil

    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "a.jpg")
    moving_video(d / "clip.mp4", n=4, fps=8)
    (d / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (d / "types.ts").write_text("export const x = 1;\n")  # TypeScript, not a transport stream
    (d / "notes.txt").write_text("hello")
    rs = rec.predict(d)
    assert [(Path(r.source).name, r.frame) for r in rs] == [("a.jpg", None)] + [("clip.mp4", i) for i in range(4)]
    assert all(r.image is None for r in rs[1:]) and rs[1].faces and rs[1].faces[0].track_id is not None
    assert [(Path(f.source).name, f.at) for f in rs.failed] == [("broken.mp4", 1)]  # (before clip.mp4, by name)
    assert "not a video OpenCV can open" in rs.failed[0].error
    assert sorted(Path(n).name for n, _ in rs.ignored) == ["notes.txt", "types.ts"]
    every = rec.predict(d, every=2, max_frames=1)
    assert [(Path(r.source).name, r.frame) for r in every] == [("a.jpg", None), ("clip.mp4", 0)]
    assert [type(e).__name__ for e in rs.in_order()] == ["Result", "Failure"] + ["Result"] * 4  # (as the JSON lists)


def test_lost_frames_sit_among_their_own_video_s_frames():
    """A folder's results hold several videos: a run of lost frames of the second video was placed by its
    frame index among the first video's frames."""
    from ferkit.errors import Failure
    from ferkit.results import Result, merge_by_frame

    results = [Result("a.jpg", 4, 4)] + [Result("v1.mp4", 4, 4, frame=i) for i in (0, 1, 5, 6)] + \
        [Result("v2.mp4", 4, 4, frame=i) for i in (0, 4)]
    runs = [Failure("v2.mp4", "unreadable frame (skipped)", (1, 3)), Failure("v1.mp4", "unreadable frame (skipped)",
                                                                         (2, 4)),
            Failure("v1.mp4", "unreadable frame (skipped)", (7, 9)), Failure("bad.jpg", "no such file", at=1)]
    got = [(e.source, e.frame) if isinstance(e, Result) else (e.source, e.frames)
           for e in merge_by_frame(results, runs)]
    assert got == [("a.jpg", None), ("bad.jpg", None), ("v1.mp4", 0), ("v1.mp4", 1), ("v1.mp4", (2, 4)),
                   ("v1.mp4", 5), ("v1.mp4", 6), ("v1.mp4", (7, 9)), ("v2.mp4", 0), ("v2.mp4", (1, 3)),
                   ("v2.mp4", 4)]


def test_a_folder_goes_on_past_a_video_with_no_readable_frame_and_saves_its_photos(rec, tmp_path):
    """A folder's video that opened but held no readable frame raised out of predict (ferkit predict lists
    it and goes on); Results.save on a folder with a video raised on its frames' missing pixels."""
    import shutil

    d = tmp_path / "f"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "a.jpg")
    data = moving_video(tmp_path / "ok.avi", n=6, fps=8, size=(160, 120)).read_bytes()
    k = data.find(b"00dc", data.find(b"movi"))  # the first frame's data, and all after it, zeroed
    (d / "zero.avi").write_bytes(data[:k + 8] + bytes(len(data) - k - 8))
    moving_video(d / "clip.avi", n=2, fps=8, size=(160, 120))
    rs = rec.predict(d)
    assert [(Path(r.source).name, r.frame) for r in rs] == [("a.jpg", None), ("clip.avi", 0), ("clip.avi", 1)]
    assert [(Path(f.source).name, f.at) for f in rs.failed] == [("zero.avi", 3)]
    assert "no readable frame" in rs.failed[0].error
    with pytest.warns(UserWarning, match=r"2 video frame\(s\) not saved: their pixels were not kept"):
        written = rs.save(tmp_path / "out")
    assert [p.name for p in written] == ["a_ferkit.png"]


def test_a_slice_keeps_only_its_own_videos_lost_frames_and_runs_of_an_unread_video_stay_in_place():
    from ferkit.errors import Failure
    from ferkit.results import Result, merge_by_frame

    rs = Results([Result("v1.mp4", 4, 4, frame=i) for i in (0, 1, 5, 6)] + [Result("v2.mp4", 4, 4, frame=i)
                                                                             for i in (0, 4)],
                 failed=[Failure("v2.mp4", "lost", (1, 3)), Failure("v1.mp4", "lost", (2, 4))])
    assert [(f.source, f.frames) for f in rs[0:4].failed] == [("v1.mp4", (2, 4))]  # (v2's run leaked in)
    assert [(f.source, f.frames) for f in rs[4:].failed] == [("v2.mp4", (1, 3))]
    # a video none of whose frames was read, among others: its runs where it was met (at), not by frame index
    # inside another video
    results = [Result("v2.mp4", 4, 4, frame=i) for i in range(4)] + [Result("v3.mp4", 4, 4, frame=0)]
    runs = [Failure("v1.mp4", "lost", (0, 0), at=0), Failure("v1.mp4", "lost", (1, 1), at=0)]
    got = [(e.source, e.frame if isinstance(e, Result) else e.frames) for e in merge_by_frame(results, runs)]
    assert got[:2] == [("v1.mp4", (0, 0)), ("v1.mp4", (1, 1))] and got[2:] == [(r.source, r.frame) for r in results]
    # one video (or a webcam's runs under another name): by frame index, as before
    one = [Result("cam", 4, 4, frame=i) for i in (0, 3)]
    got = [(e.source, e.frame if isinstance(e, Result) else e.frames)
           for e in merge_by_frame(one, [Failure("webcam:0", "lost", (1, 2))])]
    assert got == [("cam", 0), ("webcam:0", (1, 2)), ("cam", 3)]


def test_paging_through_a_videos_results_keeps_each_lost_frame_run_once():
    """A run between two pages' frames, or after the last frame (a cut file), was in no page, nor in rs[:]."""
    from ferkit.errors import Failure
    from ferkit.results import Result

    rs = Results([Result("v.mp4", 4, 4, frame=i) for i in (0, 3, 6, 9, 12, 15)], source="v.mp4",
                 failed=[Failure("v.mp4", "lost", (1, 2)), Failure("v.mp4", "lost", (13, 14)),
                         Failure("v.mp4", "lost", (18, 39), step=3)])
    assert rs[:].failed == rs.failed
    pages = [rs[0:3], rs[3:5], rs[5:6]]  # run 13-14 lies between frames 12 (page 2) and 15 (page 3)
    assert [[f.frames for f in p.failed] for p in pages] == [[(1, 2)], [], [(13, 14), (18, 39)]]
    assert sum(len(p.to_dict()) for p in pages) == len(rs.to_dict()) == 9
    # in a folder: a run after a video's last frame goes with that frame's page, not the next video's
    two = Results([Result("a.mp4", 4, 4, frame=i) for i in (0, 1)] + [Result("b.mp4", 4, 4, frame=0)],
                  failed=[Failure("a.mp4", "lost", (2, 5))])
    assert [len(two[0:2].failed), len(two[2:].failed)] == [1, 0]


def test_a_videos_faces_come_in_track_order_frame_after_frame(rec, tmp_path):
    """Two people: by detection score the CSV's `face 1` was one of them in some frames and the other in the
    rest; a video's faces now come in track order."""
    img = cv2.imread(str(EXAMPLE))
    two = np.concatenate([img, img[:, ::-1]], axis=1)
    path = tmp_path / "two.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (two.shape[1] // 2, two.shape[0] // 2))
    for i in range(12):
        shifted = np.roll(two, (i % 4) * 3, axis=1)
        w.write(cv2.resize(shifted, (two.shape[1] // 2, two.shape[0] // 2)))
    w.release()
    rs = Recognizer(detect_every=1).predict(str(path))
    ids = [[f.track_id for f in r.faces] for r in rs]
    assert all(len(x) == 2 for x in ids) and all(x == sorted(x) for x in ids), ids
    assert len({tuple(x) for x in ids}) == 1  # the same two people throughout


def test_paging_through_a_folders_results_lists_each_failure_once():
    """rs[:16] and rs[16:] each kept every failed file: a job exported in pages counted them twice."""
    from ferkit.errors import Failure
    from ferkit.results import Result

    rs = Results([Result(f"{i}.jpg", 4, 4) for i in range(6)], source="photos",
                 failed=[Failure("bad0.jpg", "x", at=0), Failure("bad3.jpg", "x", at=3), Failure("end.jpg", "x", at=6)])
    pages = [rs[0:2], rs[2:4], rs[4:6]]
    assert [[f.source for f in p.failed] for p in pages] == [["bad0.jpg"], ["bad3.jpg"], ["end.jpg"]]
    assert sum(len(p.to_dict()) for p in pages) == len(rs.to_dict()) == 9
    assert [e.source for e in rs[2:4].in_order()] == ["2.jpg", "bad3.jpg", "3.jpg"]  # (its place kept)
    assert [f.source for f in rs[::2].failed] == ["bad0.jpg", "bad3.jpg", "end.jpg"]  # (a stepped slice: all)


def test_every_warning_ferkit_gives_is_a_ferkit_warning(rec, tmp_path):
    """Warnings were plain UserWarnings: an app could not silence ferkit's alone. Each warnings.warn in the
    package names FerkitWarning (a UserWarning still), and a caveat of a reading arrives as one."""
    import ast

    import ferkit

    pkg = Path(ferkit.__file__).parent
    calls = []
    for f in sorted(pkg.rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "warn" \
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == "warnings":
                cat = n.args[1] if len(n.args) > 1 else next((k.value for k in n.keywords if k.arg == "category"), None)
                calls.append((f"{f.name}:{n.lineno}", getattr(cat, "id", None)))
    others = [x for x in calls if x[1] != "FerkitWarning"]
    assert len(calls) >= 14 and not others, others
    assert issubclass(ferkit.FerkitWarning, UserWarning) and "FerkitWarning" in ferkit.__all__
    gif = tmp_path / "two.gif"
    frames = [Image.open(EXAMPLE).convert("RGB"), Image.new("RGB", (512, 512))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with pytest.warns(ferkit.FerkitWarning, match="only the first is read") as said:
        rec.predict(str(gif))
    assert said[0].filename == __file__


def test_stream_takes_a_capture_or_frames_the_caller_reads(rec, tmp_path):
    """stream() refused a cv2.VideoCapture and a generator of frames ("not a VideoCapture"): an app reading
    an IP camera itself, or holding frames already, could not have track ids and smoothing. Both stream now,
    as the file does."""
    video = moving_video(tmp_path / "m.mp4", n=10)
    want = list(rec.stream(str(video)))
    cap = cv2.VideoCapture(str(video))
    got = list(rec.stream(cap))
    assert cap.isOpened()  # (the caller's: left open)
    with pytest.raises(FerkitError, match=r"a cv2.VideoCapture: read its frames with Recognizer.stream"):
        rec.predict(cap)  # (it took the capture for a file object, and read a frame as bytes)
    cap.release()
    cap = cv2.VideoCapture(str(video))
    assert [r.time for r in rec.stream(cap, fps=4, max_frames=3)] == [0.0, 0.25, 0.5]  # fps given: its clock
    cap.release()
    frames = []
    cap = cv2.VideoCapture(str(video))
    while (f := cap.read())[0]:
        frames.append(cv2.cvtColor(f[1], cv2.COLOR_BGR2RGB))
    cap.release()
    timed = list(rec.stream((f for f in frames), fps=12))  # a generator, given its rate
    plain = list(rec.stream(frames, every=2, name="cam"))
    assert len(want) == len(got) == len(timed) == 10 and len(plain) == 5
    assert all(a.faces == b.faces == c.faces for a, b, c in zip(want, got, timed))
    assert [r.time for r in got] == [r.time for r in want] == [r.time for r in timed]
    assert {f.track_id for r in timed for f in r.faces} == {1} and got[0].source == "VideoCapture"
    assert [r.frame for r in plain] == [0, 2, 4, 6, 8] and plain[0].time is None and plain[0].source == "cam"
    assert plain[1].to_dict()["frame"] == 2 and plain[1].faces[0].label == want[2].faces[0].label == "happy"
    # frames are copied: a caller reusing one buffer does not change the results kept
    buf = frames[0].copy()

    def reused():
        for f in frames[:3]:
            buf[:] = f
            yield buf
    kept = [r.image.copy() for r in rec.stream(reused())]
    assert not (kept[0] == kept[2]).all()
    # what it refuses, in words
    # a frame that is None or empty (a camera read that failed) is skipped, its number kept (the stream ended
    # there, and an app's tracks with it); said at the first, and the count at the end
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        got = list(rec.stream([frames[0], None, np.zeros((0, 0, 3), np.uint8), frames[1]], fps=10))
    assert [(r.frame, r.time) for r in got] == [(0, 0.0), (3, 0.3)] and got[1].faces[0].track_id == 1
    told = [str(w.message) for w in said if issubclass(w.category, ferkit.FerkitWarning)]
    assert len(told) == 2 and "frame 1 is None (a camera read that failed?): skipped" in told[0]
    assert told[1] == "frames: 2 frames skipped in all (None or empty)"
    with pytest.raises(FerkitError, match=r"frames\[0\]: not an image"):
        list(rec.stream([b"not an image"]))
    with pytest.raises(FerkitError, match="not open"):
        list(rec.stream(cv2.VideoCapture(str(tmp_path / "none.mp4"))))
    with pytest.raises(FerkitError, match="fps must be a positive number"):
        list(rec.stream(frames, fps=0))
    with pytest.raises(FerkitError, match="for one image use analyze"):
        list(rec.stream(frames[0]))  # (an array iterates too: one image, not frames)
    with pytest.raises(FerkitError, match="fps and name are for a cv2.VideoCapture or frames you give"):
        list(rec.stream(str(video), fps=30))  # (a file's own rate: not overridden in silence)
    # a capture moved on before: times from its first frame read, as the frame numbers (frame 0 was at 0.5 s)
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 6)
    assert [(r.frame, r.time) for r in rec.stream(cap)] == [(i, round(i / 12, 4)) for i in range(4)]
    cap.release()


def test_stream_of_a_video_says_the_frames_it_could_not_read(rec, tmp_path):
    """stream(path) skipped damaged and unreadable frames without a word (predict lists them in .failed):
    one FerkitWarning at the end names the runs; a VideoReader given keeps them in .errors, unsaid."""
    from conftest import damage_mjpeg_frames, junk_mjpeg_frames

    clip = junk_mjpeg_frames(damage_mjpeg_frames(moving_video(tmp_path / "c.avi", n=8, size=(160, 120)), (3,)), (5,))
    with pytest.warns(ferkit.FerkitWarning, match=r"c.avi: 2 frame\(s\) not analysed: frame 3: damaged.*; "
                                                  r"frame 5: unreadable frame"):
        assert [r.frame for r in rec.stream(str(clip))] == [0, 1, 2, 4, 6, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ferkit.io.VideoReader(clip) as reader:
            assert len(list(rec.stream(reader))) == 6
        assert [e[0] for e in reader.errors] == [3, 5]
        assert [f.frames for f in rec.predict(str(clip)).failed] == [(3, 3), (5, 5)]  # (said there, not warned)
        # predict takes a VideoReader, as its signature said (it was refused: "cannot read faces from a VideoReader")
        with ferkit.io.VideoReader(clip) as reader:
            rs = rec.predict(reader, every=2)
            assert reader.cap.isOpened()  # (the caller's: left open)
        assert [r.frame for r in rs] == [0, 2, 4, 6] and [f.frames for f in rs.failed] == []  # (3, 5: not to be read)


def test_a_file_object_is_read_as_its_image(rec, tmp_path):
    """A binary file object (open(path, "rb"), io.BytesIO, an upload's file) was refused ("pass the bytes of
    the image file"), where PIL and the peers read it: read now, named by its file where it has one."""
    with open(EXAMPLE, "rb") as f:
        r = rec.predict(f)
    assert r.source == str(EXAMPLE) and [x.label for x in r.faces] == ["happy"]
    one = rec.predict(io.BytesIO(EXAMPLE.read_bytes()))
    assert one.source == "BytesIO" and one.faces == r.faces
    with open(EXAMPLE, "rb") as f:
        rs = rec.predict([f, str(EXAMPLE)])
    assert len(rs) == 2 and not rs.failed and rs[0].faces == rs[1].faces
    with open(EXAMPLE, errors="ignore") as f, pytest.raises(FerkitError, match="text mode: open the image with 'rb'"):
        rec.predict(f)
    closed = open(EXAMPLE, "rb")
    closed.close()
    with pytest.raises(FerkitError, match="cannot read the file object"):
        rec.predict(closed)
    with pytest.raises(FerkitError, match="empty image data"):
        rec.predict(io.BytesIO(b""))
    with pytest.raises(FerkitError, match="for one image use analyze"):  # (a file is no stream of frames)
        list(rec.stream(io.BytesIO(EXAMPLE.read_bytes())))
    with pytest.raises(FerkitError, match="not a BytesIO"):  # (what it is, said before what fps is for)
        list(rec.stream(io.BytesIO(EXAMPLE.read_bytes()), fps=30))


def test_a_recognizer_that_cannot_pickle_says_what_to_do_instead(rec):
    import pickle

    with pytest.raises(TypeError, match="does not pickle .*build one in each process"):
        pickle.dumps(rec)
    import copy

    assert copy.copy(rec).model is rec.model  # (a shallow copy still works)
    r = rec.predict(str(EXAMPLE))
    assert pickle.loads(pickle.dumps(r)) == r  # (its results do)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_release_memory_hands_back_what_a_large_image_grew(monkeypatch):
    """onnxruntime's arenas keep what a run grew them to (a 2048x2048 photo of 900 faces left 1.6 GB held):
    Recognizer.release_memory shrinks every session's arena, the detector's and the classifier's, and trims
    the heap. A fresh recognizer (a shared one's arenas may have grown already); the answers stay the same."""
    import platform
    import sys

    import ferkit.runtime.memory as mem

    if not (sys.platform == "linux" and platform.libc_ver()[0] == "glibc"):
        pytest.skip("reads /proc and trims glibc's heap")
    r = Recognizer(threads=2)
    ex = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    first = r.analyze(ex).to_dict()
    face = cv2.resize(ex, (60, 60 * ex.shape[0] // ex.shape[1]))
    big = np.ascontiguousarray(np.tile(face, (1024 // face.shape[0] + 1, 1024 // face.shape[1] + 1, 1))[:1024, :1024])
    before = _rss_mb()
    assert len(r.analyze(big, keep_image=False).faces) > 100
    grown = _rss_mb() - before
    assert grown > 50, grown  # (else this test measures nothing)
    shrunk = []
    real = mem.shrink_arena
    monkeypatch.setattr(mem, "shrink_arena", lambda s, feeds: shrunk.append(s) or real(s, feeds))
    assert r.release_memory() is True
    assert len({id(s) for s in shrunk}) == 6 + (r.model.session is not r.model.session1) + 1  # MTCNN's 3 x 2
    assert _rss_mb() - before < grown / 2, (before, grown, _rss_mb())
    assert r.analyze(ex).to_dict() == first


def test_release_memory_with_every_kind_of_part(rec):
    """A torch classifier, Haar, no detector, an ensemble and a detector of the caller's without the method:
    release_memory works the same (nothing to shrink there) and the answers do not change."""
    from ferkit.faces.detect import Detector

    class Mine(Detector):  # (a caller's detector, the base's release_memory deleted as an older one would lack it)
        release_memory = None

        def _detect(self, rgb):
            return rec.detector.detect(rgb)

    ex = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    for r in (Recognizer("lite_cnn-fer2013", "haar", backend="torch"), Recognizer("lite_cnn-fer2013", "none"),
              Recognizer("lite_cnn-fer2013+lite_plain-fer2013", Mine(), backend="onnx")):
        first = r.analyze(ex).to_dict()
        assert isinstance(r.release_memory(), bool)
        assert r.analyze(ex).to_dict() == first

"""`ferkit predict`: images, folders, videos and the webcam from the command line, and every bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLE, moving_video
from PIL import Image

import ferkit
from ferkit.cli import main
from ferkit.io import VideoReader, frame_failures, shown
from ferkit.results import Result, Results, write_csv


def test_one_photo_prints_the_face_and_writes_json_and_annotation(tmp_path, capsys):
    js, out = tmp_path / "r.json", tmp_path / "out"
    assert main(["predict", str(EXAMPLE), "--json", str(js), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "astronaut.jpg: 1 face" in printed and ": happy 0." in printed
    res = json.loads(js.read_text())
    assert res["source"] == str(EXAMPLE) and len(res["faces"]) == 1 and res["faces"][0]["label"] == "happy"
    assert json.loads((out / "astronaut.json").read_text()) == res
    with Image.open(out / "astronaut_ferkit.png") as im:
        assert im.size == (512, 512)


def test_json_or_csv_dash_writes_the_results_to_standard_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(EXAMPLE), "--json", "-"]) == 0
    got = capsys.readouterr()
    res = json.loads(got.out)  # the JSON alone: the per-face lines went to standard error
    assert res["faces"][0]["label"] == "happy" and "astronaut.jpg: 1 face" in got.err
    # one image that cannot be read: an object too, its failure's (a script's `.faces` reads both)
    (tmp_path / "junk.jpg").write_text("not a picture")
    for bad, why in (("missing.jpg", "no such file or folder"), ("junk.jpg", "not an image file")):
        assert main(["predict", str(tmp_path / bad), "--json", "-"]) == 1
        res = json.loads(capsys.readouterr().out)
        assert res["source"] == str(tmp_path / bad) and res["faces"] == [] and res["error"].startswith(why)
    (tmp_path / "junk.jpg").unlink()
    # two images, one missing: a list, the failure an entry
    assert main(["predict", str(EXAMPLE), str(tmp_path / "missing.jpg"), "--json", "-"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert [e.get("error") for e in res] == [None, "no such file or folder"]
    assert main(["predict", str(EXAMPLE), str(tmp_path / "missing.jpg"), "--csv", "-"]) == 1
    got = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(got.out)))
    assert [r["label"] for r in rows] == ["happy", ""] and rows[1]["error"] == "no such file or folder"
    assert "1 source(s) failed" in got.err
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    assert main(["predict", str(EXAMPLE), "--json", "-", "--csv", "-"]) == 1
    assert "only one of them can write to standard output" in capsys.readouterr().err


def test_a_folder_of_one_image_gives_a_list_like_any_folder(tmp_path, capsys):
    """--json: an image file named alone gives its object; a folder gives a list of its images even
    when it holds one (a script reads every folder the same way, as the Python API's Results)."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(EXAMPLE, one / "a.jpg")
    assert main(["predict", str(one), "--json", str(tmp_path / "f.json")]) == 0
    res = json.loads((tmp_path / "f.json").read_text())
    assert isinstance(res, list) and len(res) == 1 and res[0]["faces"][0]["label"] == "happy"
    assert main(["predict", str(one / "a.jpg"), "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text()) == res[0]
    capsys.readouterr()


def test_a_file_named_dash_is_not_standard_output(tmp_path, capsys, monkeypatch):
    # ./- is a file of that name, so it and standard output are not the same place
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(EXAMPLE), "--json", "./-", "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["label"] for r in rows] == ["happy"]
    assert json.loads((tmp_path / "-").read_text())["faces"][0]["label"] == "happy"


def test_a_reader_that_goes_away_loses_only_standard_output(tmp_path):
    # `--csv - | head -0`: the pipe closes before the rows are written. The JSON file is written
    # all the same, the failed source is reported and the exit status is still the batch's (1)
    import subprocess
    import sys

    js = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "ferkit", "predict", str(EXAMPLE), str(tmp_path / "missing.jpg"),
                          "--csv", "-", "--json", str(js)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # nobody reads
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1, err
    assert "standard output was closed" in err and "1 source(s) failed" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert [e.get("label") or e["faces"][0]["label"] for e in json.loads(js.read_text())[:1]] == ["happy"]


def test_detector_options(tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["predict", str(EXAMPLE), "--detector", "none", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["faces"][0]["box"] == [0, 0, 512, 512]
    said = capsys.readouterr().out  # no detection was made: none is claimed
    assert "  the whole image (--detector none): " in said and "detection" not in said
    assert main(["predict", str(EXAMPLE), "--detector", "haar", "--min-face", "40", "--json", str(js)]) == 0
    f = json.loads(js.read_text())["faces"][0]
    assert f["label"] == "happy" and f["landmarks_estimated"] is True
    assert main(["predict", str(EXAMPLE), "--thresholds", "0.6,0.7,0.99999999", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["faces"] == []


@pytest.fixture()
def odd_inputs(tmp_path):
    """One of each kind of bad or odd input the issue lists, next to two good photos."""
    d = tmp_path / "mixed"
    d.mkdir()
    photo = Image.open(EXAMPLE)
    photo.save(d / "good.png")
    (d / "not_an_image.jpg").write_text("hello, I am text")
    buf = io.BytesIO()
    photo.save(buf, "JPEG")
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (d / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(d / "one_pixel.png")
    g16 = (np.asarray(photo.convert("L"), np.uint16) * 257)
    Image.fromarray(g16).save(d / "sixteen_bit.png")
    assert Image.open(d / "sixteen_bit.png").mode.startswith("I")
    photo.convert("RGBA").save(d / "rgba.png")
    photo.convert("CMYK").save(d / "cmyk.jpg")
    photo.convert("P").save(d / "palette.gif")
    (d / "notes.txt").write_text("junk")
    return d


def test_an_image_read_with_a_caveat_says_so_in_json_and_csv(tmp_path):
    """A JPEG without its end marker is read and analysed as usual; its caveat is printed and kept in
    its JSON entry (``warnings``, absent from a clean image's), its CSV rows (last column) and its
    own JSON under --out."""
    d = tmp_path / "in"
    d.mkdir()
    photo = EXAMPLE.read_bytes()
    assert photo.endswith(b"\xff\xd9")
    (d / "a_clean.jpg").write_bytes(photo)
    (d / "b_no_end.jpg").write_bytes(photo[:-2])
    out_csv, out_js = tmp_path / "r.csv", tmp_path / "r.json"
    said = f"{d / 'b_no_end.jpg'}: the JPEG file lacks its 2-byte end marker (FF D9) but holds all of its picture"
    with pytest.warns(UserWarning) as told:  # (the CLI prints warnings as "ferkit: warning: ...")
        assert main(["predict", str(d), "--csv", str(out_csv), "--json", str(out_js), "--out",
                     str(tmp_path / "o")]) == 0
    assert [str(w.message) for w in told if "end marker" in str(w.message)] == [said + "; read as it is"]
    clean, caveat = json.loads(out_js.read_text())
    assert "warnings" not in clean and clean["faces"][0]["label"] == "happy"
    assert caveat["faces"][0]["label"] == "happy" and len(caveat["warnings"]) == 1
    assert caveat["warnings"][0].startswith(said)
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["warnings"] for r in rows] == ["", caveat["warnings"][0]] and rows[1]["label"] == "happy"
    assert json.loads((tmp_path / "o" / "b_no_end.json").read_text())["warnings"] == caveat["warnings"]
    assert "warnings" not in json.loads((tmp_path / "o" / "a_clean.json").read_text())


def test_file_names_with_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    """A name holding a terminal escape or a newline is printed with them escaped (it could clear
    the screen, recolour it or forge a line of the report); the JSON keeps the real name."""
    d = tmp_path / "in"
    d.mkdir()
    good, bad = "a\x1b[31mred\nforged.jpg", "b\x1b[2J\u202egpj.jpg"
    shutil.copy(EXAMPLE, d / good)
    (d / bad).write_bytes(b"junk")
    out_js = tmp_path / "r.json"
    assert main(["predict", str(d), "--json", str(out_js)]) == 1
    cap = capsys.readouterr()
    assert "\x1b" not in cap.out + cap.err and "\u202e" not in cap.out + cap.err
    assert "a\\x1b[31mred\\x0aforged.jpg: 1 face" in cap.out
    assert not any(line.startswith("forged") for line in (cap.out + cap.err).splitlines())
    assert f"{d}/b\\x1b[2J\\u202egpj.jpg: not an image file" in cap.err
    assert [Path(e["source"]).name for e in json.loads(out_js.read_text())] == [good, bad]
    assert main(["predict", str(d / bad)]) == 1
    assert capsys.readouterr().err.startswith(f"ferkit: error: {d}/b\\x1b[2J\\u202egpj.jpg: not an image file")
    # a warning naming the file (an animation: only its first frame read), printed by the CLI
    anim = d / "c\nferkit: error: FORGED.gif"
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:])
    run = subprocess.run([sys.executable, "-m", "ferkit", "predict", str(anim)], capture_output=True, text=True,
                         errors="replace", timeout=300)
    assert run.returncode == 0 and "c\\x0aferkit: error: FORGED.gif: holds 2 frames" in run.stderr
    assert not any(line.startswith("ferkit: error: FORGED") for line in (run.stdout + run.stderr).splitlines())
    # a name that is a letter of real names stays as it is (a zero-width joiner in a Persian name)
    assert shown("\u0645\u06cc\u200c\u062e\u0648\u0627\u0645.jpg") == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645.jpg"


def test_hidden_images_and_folders_are_listed_not_read(tmp_path, capsys):
    """Hidden files and folders are not read, but a hidden image and a hidden folder are listed as
    ignored (nothing goes unaccounted for); a macOS '._' file is named as metadata; a hidden
    file that is no image (.DS_Store) is not listed. Given by name, a hidden photo is read."""
    d = tmp_path / "in"
    (d / ".thumbs").mkdir(parents=True)
    shutil.copy(EXAMPLE, d / "good.jpg")
    shutil.copy(EXAMPLE, d / ".beach.jpg")
    shutil.copy(EXAMPLE, d / ".thumbs" / "t.jpg")
    (d / "._good.jpg").write_bytes(b"\x00\x05\x16\x07")
    (d / ".DS_Store").write_bytes(b"x")
    (d / ".clip.mp4").write_bytes(b"x")
    js = tmp_path / "r.json"
    assert main(["predict", str(d), "--json", str(js)]) == 0
    err = capsys.readouterr().err
    assert "4 file(s) in the folder(s) ignored:" in err and ".DS_Store" not in err
    assert f"{d / '.clip.mp4'}: a hidden file (not read" in err
    assert f"{d / '.beach.jpg'}: a hidden file (not read; give its path to read it)" in err
    assert f"{d / '.thumbs'}: a hidden folder (not searched" in err
    assert f"{d / '._good.jpg'}: macOS metadata" in err
    assert [Path(e["source"]).name for e in json.loads(js.read_text())] == ["good.jpg"]
    assert [Path(r.source).name for r in ferkit.Recognizer().predict(d)] == ["good.jpg"]
    assert main(["predict", str(d / ".beach.jpg")]) == 0 and ": 1 face" in capsys.readouterr().out


def test_a_folder_of_odd_inputs_reports_bad_ones_and_reads_the_rest(odd_inputs, tmp_path, capsys):
    out_csv, out_js = tmp_path / "r.csv", tmp_path / "r.json"
    code = main(["predict", str(odd_inputs), "--csv", str(out_csv), "--json", str(out_js), "--out",
                 str(tmp_path / "ann")])
    assert code == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert "3 source(s) failed" in cap.err  # files with an image's extension that cannot be read
    assert f"{odd_inputs / 'empty.png'}: empty file (0 bytes)" in cap.err
    assert f"{odd_inputs / 'not_an_image.jpg'}: not an image file" in cap.err
    assert f"{odd_inputs / 'truncated.jpg'}: corrupt or truncated image" in cap.err
    # a file that is no image by its name is listed as ignored, not a failure
    assert "1 file(s) in the folder(s) ignored:" in cap.err
    ignored = cap.err.split("ignored:")[1].split("failed:")[0]
    assert f"{odd_inputs / 'notes.txt'}: neither an image nor a video" in ignored
    rows = list(csv.DictReader(open(out_csv)))
    assert list(rows[0])[-2:] == ["error", "warnings"]
    by = {r["source"].rsplit("/", 1)[-1]: r for r in rows}
    # every input is listed, read or not; the odd colour modes all still show the happy astronaut
    read = {"good.png", "one_pixel.png", "sixteen_bit.png", "rgba.png", "cmyk.jpg", "palette.gif"}
    assert set(by) == read | {"empty.png", "not_an_image.jpg", "truncated.jpg"} and len(rows) == 9
    for name in ("good.png", "sixteen_bit.png", "rgba.png", "cmyk.jpg", "palette.gif"):
        assert by[name]["label"] == "happy" and by[name]["error"] == "", name
        assert by[name]["face"] == "1", name  # counted from 1, as the console's "face 1 at ..." line
    assert "face 1 at (" in cap.out
    assert by["one_pixel.png"]["label"] == "" and by["one_pixel.png"]["face"] == ""  # no face: an empty row
    assert by["empty.png"]["error"] == "empty file (0 bytes)" and by["empty.png"]["label"] == ""
    assert by["truncated.jpg"]["error"].startswith("corrupt or truncated image")
    entries = json.loads(out_js.read_text())
    assert [e["source"] for e in entries] == [r["source"] for r in rows]  # the same order: as met
    errors = {Path(e["source"]).name: e["error"] for e in entries if "error" in e}
    assert errors == {n: by[n]["error"] for n in ("empty.png", "not_an_image.jpg", "truncated.jpg")}
    assert all(e["faces"] == [] for e in entries if "error" in e) and len(entries) == 9
    assert (tmp_path / "ann" / "cmyk_ferkit.png").exists()


def test_a_folder_with_notes_beside_the_photos_succeeds(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "a.jpg")
    (d / "README.txt").write_text("shot on 2026-11-30")
    (d / ".DS_Store").write_bytes(b"hidden: not even listed")
    js = tmp_path / "r.json"
    assert main(["predict", str(d), "--json", str(js)]) == 0  # nothing failed: exit 0
    err = capsys.readouterr().err
    assert "1 file(s) in the folder(s) ignored:" in err and "failed" not in err and ".DS_Store" not in err
    assert f"{d / 'README.txt'}: neither an image nor a video by its extension" in err
    assert [r["faces"][0]["label"] for r in json.loads(js.read_text())] == ["happy"]  # a folder: a list


def test_the_videos_of_a_folder_are_read_after_its_photos(tmp_path, capsys):
    """`ferkit predict clips/` refused a folder of videos ("holds no image files") and left a mixed
    folder's videos out ("give it as its own source"): a video user's folder is read whole."""
    d = tmp_path / "clips"
    (d / "day2").mkdir(parents=True)
    shutil.copy(EXAMPLE, d / "z.jpg")
    bgr = cv2.imread(str(EXAMPLE))
    wr = cv2.VideoWriter(str(d / "day2" / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, bgr.shape[1::-1])
    for _ in range(4):
        wr.write(bgr)
    wr.release()
    (d / "broken.mp4").write_bytes(b"not a video")
    js, out = tmp_path / "r.json", tmp_path / "out"
    assert main(["predict", str(d), "--json", str(js), "--out", str(out)]) == 1  # broken.mp4 failed, the rest done
    err = capsys.readouterr().err
    assert f"{d / 'broken.mp4'}: not a video OpenCV can open" in err and "ignored" not in err
    entries = json.loads(js.read_text())
    # the folder's photo, then its videos in order (a failure is an entry too)
    assert [(Path(e["source"]).name, e.get("frame")) for e in entries] == [
        ("z.jpg", None), ("broken.mp4", None), *[("clip.avi", i) for i in range(4)]]
    assert all(e["faces"][0]["label"] == "happy" for e in entries if "error" not in e)
    assert (out / "day2" / "clip_ferkit.mp4").is_file() and (out / "day2" / "clip.csv").is_file()
    # an earlier run's outputs inside the folder (--out elsewhere then) are not read again as inputs
    assert main(["predict", str(d / "day2" / "clip.avi"), "--out", str(d / "res")]) == 0
    capsys.readouterr()
    assert main(["predict", str(d / "day2"), str(d / "res"), "--csv", str(tmp_path / "r.csv")]) == 1
    err = capsys.readouterr().err
    assert f"{d / 'res' / 'clip_ferkit.mp4'}: an annotated copy ferkit wrote of {d / 'day2' / 'clip.avi'}" in err
    assert "res: folder holds no image or video files" in err
    # a folder's .ts file that is no video (TypeScript): ignored, as a notes.txt, not a failure
    (d / "day2" / "app.ts").write_text("export const x: number = 1;\n")
    assert main(["predict", str(d / "day2"), "--csv", str(tmp_path / "r.csv")]) == 0
    assert f"{d / 'day2' / 'app.ts'}: not a video OpenCV can open (a .ts file: TypeScript" in capsys.readouterr().err
    (d / "day2" / "app.ts").unlink()
    # a folder of videos alone
    (d / "res").rename(tmp_path / "res")
    assert main(["predict", str(d / "day2"), "--csv", str(tmp_path / "r.csv")]) == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 5


def test_a_huge_image_is_refused_clearly_and_a_large_one_is_read(tmp_path, capsys):
    huge = tmp_path / "huge.png"
    Image.new("L", (13000, 12000), 0).save(huge)  # 156 MP of black, a small file
    big = tmp_path / "big.jpg"
    Image.open(EXAMPLE).resize((4096, 4096)).save(big, quality=80)
    js = tmp_path / "r.json"
    assert main(["predict", str(huge), str(big), "--json", str(js)]) == 1
    err = capsys.readouterr().err
    assert f"{huge}: image" in err and ("too large" in err or "over the" in err) and "Traceback" not in err
    res = json.loads(js.read_text())
    assert len(res) == 2 and res[1]["faces"][0]["label"] == "happy"
    assert res[0]["source"] == str(huge) and res[0]["faces"] == []  # the failure is an entry too
    assert "too large" in res[0]["error"] or "over the" in res[0]["error"]
    assert res[1]["faces"][0]["box"][2] > 400  # found in the downscaled copy, reported in full-size pixels


def test_video_writes_annotated_video_csv_json_and_plot(tmp_path, capsys):
    video = moving_video(tmp_path / "clip.mp4", n=16, fps=8)
    out = tmp_path / "out"
    assert main(["predict", str(video), "--out", str(out), "--every", "2", "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: no lines, for a video as for a photo
    assert main(["predict", str(video), "--out", str(out), "--every", "2"]) == 0
    printed = capsys.readouterr().out
    assert "clip.mp4: 8 frame(s) processed" in printed and "face #1: in 8 frame(s), mostly happy" in printed
    rows = list(csv.DictReader(open(out / "clip.csv")))
    assert [int(r["frame"]) for r in rows] == list(range(0, 16, 2))
    assert [float(r["time"]) for r in rows] == pytest.approx([i / 8 for i in range(0, 16, 2)], abs=1e-3)
    assert {r["track_id"] for r in rows} == {"1"} and set(ferkit.CANONICAL) <= set(rows[0])
    assert len(json.loads((out / "clip.json").read_text())) == 8
    cap = cv2.VideoCapture(str(out / "clip_ferkit.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 8 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(4)
    with Image.open(out / "clip_expressions.png") as im:
        assert im.size[0] > 500


def test_broken_and_empty_videos_fail_clearly_and_the_batch_goes_on(tmp_path, capsys):
    good = moving_video(tmp_path / "good.mp4", n=4)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all")
    noframes = tmp_path / "noframes.avi"
    cv2.VideoWriter(str(noframes), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code = main(["predict", str(fake), str(noframes), str(cut), str(good), str(EXAMPLE), "--no-progress",
                 "--csv", str(tmp_path / "r.csv")])
    cap = capsys.readouterr()
    assert code == 1 and "Traceback" not in cap.err
    assert str(fake) in cap.err and str(noframes) in cap.err
    assert "good.mp4: 4 frame(s) processed" in cap.out
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert sum(r["source"].endswith("good.mp4") for r in rows) == 4
    assert any(r["source"].endswith("astronaut.jpg") for r in rows)
    failed = {r["source"]: r["error"] for r in rows if r["error"]}
    assert str(fake) in failed and str(noframes) in failed and failed[str(fake)] in cap.err
    assert all(r["label"] == "" for r in rows if r["error"])
    if hasattr(os, "mkfifo"):  # a FIFO named as a video: said as such (it was "empty file (0 bytes)")
        os.mkfifo(tmp_path / "pipe.mp4")
        assert main(["predict", str(tmp_path / "pipe.mp4"), "--quiet"]) == 1
        assert "pipe.mp4: not a regular file (a pipe, socket or device)" in capsys.readouterr().err


def test_a_video_with_damaged_frames_reports_them_beside_the_frames_read(tmp_path, capfd):
    from conftest import damage_mjpeg_frames

    clip = damage_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=6, size=(320, 240)), (2,))
    code = main(["predict", str(clip), "--quiet", "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")])
    cap = capfd.readouterr()
    assert code == 1 and "Traceback" not in cap.err and "FFMPEG" not in cap.out + cap.err
    assert f"1 video frame(s) skipped in 1 file(s):\n  {clip} frame 2: {VideoReader.DAMAGED}" in cap.err
    with open(tmp_path / "r.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["source"] == str(clip) for r in rows)  # one source column: the file's path
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3", "4", "5"]  # the lost frame where it was
    assert [r["frame"] for r in rows if not r["error"]] == ["0", "1", "3", "4", "5"]
    assert all(r["label"] == "happy" for r in rows if not r["error"])
    assert [(r["frame"], r["error"]) for r in rows if r["error"]] == [("2", "frame 2: " + VideoReader.DAMAGED)]
    lost = [e for e in json.loads((tmp_path / "r.json").read_text()) if "error" in e]
    assert lost == [{"source": str(clip), "frames": [2, 2], "error": VideoReader.DAMAGED, "faces": []}]


@pytest.mark.parametrize("every,damaged,cards", [(1, (0, 3), [0, 3]), (2, (2, 3), [1]), (1, (4, 5), [4, 5]),
                                                 (2, (4,), [2])])
def test_the_annotated_video_keeps_its_timing_with_a_card_for_each_lost_frame(tmp_path, every, damaged, cards):
    """A frame that could not be read (here damaged) becomes a dark card naming it in the annotated
    video, at its place (the last ones too), so that the video keeps the source's length and timing;
    a damaged frame that --every would not have read is no loss and gets no card."""
    from conftest import damage_mjpeg_frames

    clip = damage_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=6, size=(320, 240)), damaged)
    out = tmp_path / "out"
    assert main(["predict", str(clip), "--quiet", "--every", str(every), "--out", str(out)]) == 1
    cap = cv2.VideoCapture(str(out / "clip_ferkit.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 6 // every  # the source's frames to be read, lost ones included
    dark = [i for i, f in enumerate(frames) if np.median(f) < 60 and f.std() < 40]  # the cards: flat dark gray
    assert dark == cards


def _frame_count(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


def test_a_high_speed_video_keeps_every_frame_and_a_stopped_reading_few_cards(tmp_path, monkeypatch):
    """A 1000 frames/s file whose time stamps keep to that rate is read at it (taken for a time base, 25
    frames/s, its annotated video kept 1 frame of 20); a reading stopped by a long unreadable run lists
    every frame left, and the annotated video gets at most TAIL_CARDS cards for them."""
    import ferkit.predict as P
    from conftest import junk_mjpeg_frames

    fast = moving_video(tmp_path / "fast.avi", n=8, fps=1000.0, size=(160, 120))
    with VideoReader(fast) as r:
        assert r.fps == 1000.0 and [round(t * 1000) for _, t, _ in r] == list(range(8))
    out = tmp_path / "o"
    assert main(["predict", str(fast), "--quiet", "--out", str(out)]) == 0
    assert _frame_count(out / "fast_ferkit.mp4") == (8, 1000.0)
    clip = junk_mjpeg_frames(moving_video(tmp_path / "clip.avi", n=40, size=(160, 120)), range(3, 40))
    monkeypatch.setattr(VideoReader, "MAX_BAD_RUN", 10)
    monkeypatch.setattr(VideoReader, "BAD_RUN_SECONDS", 0.0)
    monkeypatch.setattr(P, "TAIL_CARDS", 5)
    assert main(["predict", str(clip), "--quiet", "--out", str(out), "--json", str(tmp_path / "c.json")]) == 1
    lost = [(e["frames"], e["error"]) for e in json.loads((tmp_path / "c.json").read_text()) if "error" in e]
    assert lost == [([3, 12], VideoReader.UNREADABLE), ([13, 39], VideoReader.NOT_READ)]
    assert _frame_count(out / "clip_ferkit.mp4")[0] == 3 + 5


def test_results_of_a_video_list_its_lost_frames_in_json_and_csv():
    res = Results([Result("clip.avi", 64, 48, frame=0, time=0.0), Result("clip.avi", 64, 48, frame=5, time=0.5)],
                  source="clip.avi",
                  failed=frame_failures("clip.avi", [(i, "unreadable frame (skipped)") for i in (1, 2, 3)]))
    assert [d.get("frame", d.get("frames")) for d in res.to_dict()] == [0, [1, 3], 5]  # in the video's order
    assert res.to_dict()[1] == {"source": "clip.avi", "frames": [1, 3], "error": "unreadable frame (skipped)",
                                "faces": []}
    rows = res.to_records(empty_row=True)
    assert {k: v for k, v in rows[1].items() if v is not None} == {
        "source": "clip.avi", "frame": 1, "error": "frames 1-3 (3 frames): unreadable frame (skipped)"}
    assert len(res.to_records()) == 0  # rows of faces only: no face, no failure row
    buf = io.StringIO()
    write_csv(rows, buf, ferkit.CANONICAL)
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith(",error,warnings") and lines[2].startswith("clip.avi,1,")
    assert lines[2].endswith(",frames 1-3 (3 frames): unreadable frame (skipped),")


def test_webcam_without_display_or_camera_is_a_clear_error(monkeypatch, capsys, tmp_path):
    import ferkit.io as fio
    import ferkit.predict as fpredict

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(fpredict, "camera_missing", lambda i: False)  # (a camera there: the display is what lacks)
    assert main(["predict", "--webcam", "0"]) == 1
    err = capsys.readouterr().err
    assert "ferkit: error: no display" in err and "Traceback" not in err
    # no camera either: that is said first (the display's "record instead with --headless" led only to it)
    monkeypatch.setattr(fpredict, "camera_missing", lambda i: True)
    assert main(["predict", "--webcam", "0"]) == 1
    assert capsys.readouterr().err == ("ferkit: error: no camera at index 0: none is connected, or this user may not "
                                       "open /dev/video0\n")
    monkeypatch.setattr(fpredict, "camera_missing", fio.camera_missing)
    # recording without a window still needs a camera: index 99 is never there
    assert main(["predict", "--webcam", "99", "--headless", "--out", str(tmp_path / "rec")]) == 1
    err = capsys.readouterr().err  # (one wording: it said "webcam:99: no camera at index 99" recording headless)
    assert err == ("ferkit: error: no camera at index 99: none is connected, or this user may not open "
                   "/dev/video99\n")
    with pytest.raises(ferkit.errors.CameraError, match="no camera at index 99"):  # (its own name in the API)
        next(ferkit.Recognizer().stream(99))
    assert issubclass(ferkit.errors.CameraError, ferkit.ImageDecodeError)  # (as it was, for except clauses)
    assert not fio.camera_missing(200)  # (an index coding OpenCV's backend, V4L2's camera 0: not told by /dev)


class FakeCamera:
    """cv2.VideoCapture for a camera: the example photo for ``good`` reads; then reads fail
    (``(False, None)``, or cv2.error with ``raises``) for ``glitch`` reads and the photo comes
    back, ``rounds`` times; then every read fails (the camera was unplugged)."""

    frame = None

    def __init__(self, index, *args, good=4, glitch=0, rounds=1, raises=False, delay=0.0):
        if FakeCamera.frame is None:
            FakeCamera.frame = np.ascontiguousarray(np.asarray(Image.open(EXAMPLE).convert("RGB"))[:, :, ::-1])
        self.plan = ([True] * good + [False] * glitch) * rounds
        self.raises, self.released, self.delay = raises, False, delay

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 512, cv2.CAP_PROP_FRAME_HEIGHT: 512}.get(prop, 0.0)

    def read(self):
        time.sleep(self.delay)  # (a frame comes when the camera has one)
        ok = self.plan.pop(0) if self.plan else False
        if not ok and self.raises:
            raise cv2.error("select() timeout")
        return (True, self.frame.copy()) if ok else (False, None)

    def release(self):
        self.released = True


def fake_camera(monkeypatch, **plan):
    monkeypatch.setattr(VideoReader, "CAMERA_PATIENCE", 0.2)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *a: FakeCamera(index, *a, **plan))
    monkeypatch.setattr("ferkit.predict.camera_missing", lambda index: False)  # (no /dev/video0 here: one is faked)


@pytest.mark.parametrize("raises", [False, True])
def test_a_camera_that_misses_frames_goes_on_and_one_that_stops_is_reported(monkeypatch, raises):
    # a few failed reads in a row (a webcam's timeout), twice: every good frame is read, no error
    fake_camera(monkeypatch, good=3, glitch=4, rounds=2, raises=raises)
    with VideoReader(0) as r:
        frames = [i for i, _, _ in r]
    assert frames == list(range(6))
    # then the camera gave nothing for CAMERA_PATIENCE seconds: the stream ends, said in errors
    assert len(r.errors) == 1 and r.errors[0][0] == 6 and r.errors[0][1].startswith(VideoReader.CAMERA_STOPPED)
    # a camera that never gives a frame, even after waiting
    fake_camera(monkeypatch, good=0, raises=raises)
    with pytest.raises(ferkit.errors.ImageDecodeError, match="opened but gives no frames"):
        list(VideoReader(0))


def test_a_slow_webcams_times_and_recording_keep_to_the_clock(monkeypatch, tmp_path, capsys):
    """A camera's frames were timed at its nominal rate (30 frames/s) and recorded at it, however few
    the analysis kept up with: at 10 frames/s its timeline and its recording ran 3x fast."""
    fake_camera(monkeypatch, good=5, delay=0.1)
    js = tmp_path / "cam.json"
    assert main(["predict", "--webcam", "0", "--headless", "--json", str(js), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 1  # (the camera stops after 5 frames)
    times = [e["time"] for e in json.loads(js.read_text()) if "error" not in e]
    assert len(times) == 5 and times[0] == 0 and all(0.09 <= b - a < 1 for a, b in zip(times, times[1:]))
    monkeypatch.undo()  # (OpenCV's own VideoCapture again, to read the recording)
    cap = cv2.VideoCapture(str(tmp_path / "o" / "webcam0_ferkit.mp4"))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert fps == 30 and abs(n - (times[-1] * 30 + 1)) <= 1  # as long as it took, not 5 frames at 30/s
    capsys.readouterr()


def test_a_variable_rate_videos_annotated_video_keeps_its_timing(tmp_path):
    # written one frame per frame at the average rate, a phone's slow half played fast and its fast half slow:
    # frame 12 of 24 (at 3 s of 15) came at 7.5 s
    from conftest import variable_rate_video

    clip = variable_rate_video(tmp_path / "vfr.mp4", n=24, fps=4)  # 12 frames 0.25 s apart, then 12 1 s apart
    assert main(["predict", str(clip), "--out", str(tmp_path / "o"), "--json", str(tmp_path / "v.json"),
                 "--quiet", "--model", "fast"]) == 0
    times = [e["time"] for e in json.loads((tmp_path / "v.json").read_text())]
    assert len(times) == 24 and times[12] == pytest.approx(3.0, abs=0.01)  # (the results: every frame, its time)
    def frames(path):
        cap, out = cv2.VideoCapture(str(path)), []
        while True:
            ok, f = cap.read()
            if not ok:
                return out, cap.get(cv2.CAP_PROP_FPS)
            out.append(cv2.resize(f, (80, 60), interpolation=cv2.INTER_AREA).astype(np.float32))

    source, _ = frames(clip)
    drawn, fps = frames(tmp_path / "o" / "vfr_ferkit.mp4")
    shows = [int(np.argmin([np.mean((d - f) ** 2) for f in source])) for d in drawn]  # the source frame each shows
    assert abs(len(drawn) / fps - 15.0) <= 1.0 / fps + 1e-6  # as long as the source
    # each moment shows the frame taken then: at 3 s frame 12 (not 5), at 7 s frame 16 (not 11), at 13 s frame 22
    assert [shows[round(t * fps)] for t in (3.0, 7.0, 13.0)] == [12, 16, 22], shows


def test_predict_on_a_webcam_returns_its_frames_when_interrupted(monkeypatch):
    # a camera runs until stopped: Ctrl+C (a notebook's stop) threw away every frame read so far
    fake_camera(monkeypatch, good=50)
    real, reads = FakeCamera.read, []

    def read(self):
        reads.append(1)
        if len(reads) == 4:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(FakeCamera, "read", read)
    with pytest.warns(UserWarning, match="webcam:0: interrupted after 3 frame"):
        try:
            rs = ferkit.Recognizer(model="fast").predict(0)
        except KeyboardInterrupt:  # (the bug: let out, it would stop the whole test session)
            pytest.fail("predict(0) let the KeyboardInterrupt out and lost the frames read")
    assert [r.frame for r in rs] == [0, 1, 2] and rs.source == "webcam:0" and rs.failed == []


def test_a_second_webcam_recording_into_one_out_folder_keeps_the_first(monkeypatch, tmp_path, capsys):
    # a camera's recording is new data each time: the second one replaced the first's video, CSV and JSON
    out = tmp_path / "o"
    for good in (4, 2):
        fake_camera(monkeypatch, good=good)
        assert main(["predict", "--webcam", "0", "--headless", "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "earlier recording" in err and "webcam0_2" in err
    frames = {stem: sum(1 for e in json.loads((out / f"{stem}.json").read_text()) if "error" not in e)
              for stem in ("webcam0", "webcam0_2")}
    assert frames == {"webcam0": 4, "webcam0_2": 2}
    assert (out / "webcam0_ferkit.mp4").is_file() and (out / "webcam0_2_ferkit.mp4").is_file()


def test_webcam_that_stops_exits_1_with_its_frames_kept(monkeypatch, tmp_path, capsys):
    fake_camera(monkeypatch, good=4)
    js = tmp_path / "cam.json"
    assert main(["predict", "--webcam", "0", "--headless", "--json", str(js), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "webcam:0: 4 frame(s) processed" in captured.out
    assert "the camera stopped giving frames" in captured.err and "Traceback" not in captured.err
    assert "1 camera(s) stopped:" in captured.err and "frame(s) skipped" not in captured.err  # (it lost none)
    entries = json.loads(js.read_text())
    assert sum(1 for e in entries if "error" not in e) == 4 and entries[-1]["source"] == "webcam:0"
    assert "the camera stopped giving frames" in entries[-1]["error"]
    # one that gives nothing: its name once, not "0: webcam:0: ..."
    fake_camera(monkeypatch, good=0)
    assert main(["predict", "--webcam", "0", "--headless"]) == 1
    err = capsys.readouterr().err  # (and a camera read with nothing shown or saved: said at the start)
    assert err.startswith("ferkit: note: --webcam --headless without --out, --json or --csv: nothing is shown")
    assert "\nferkit: error: webcam:0: the camera opened but gives no frames" in err


def test_show_on_a_display_that_cannot_be_reached_fails_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DISPLAY", ":7391")  # no X server there
    monkeypatch.setattr(ferkit.predict, "Recognizer", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["predict", str(EXAMPLE), "--show", "--json", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: cannot open a window") and "Traceback" not in err


def test_usage_errors(tmp_path, capsys):
    assert main(["predict"]) == 1
    assert "give at least one SOURCE" in capsys.readouterr().err
    assert main(["predict", str(EXAMPLE), "--thresholds", "0.5,x"]) == 1
    assert "--thresholds wants three numbers" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope.jpg")]) == 1  # one input, unreadable: one line, as any error
    assert capsys.readouterr().err == f"ferkit: error: {tmp_path / 'nope.jpg'}: no such file or folder\n"
    assert main(["predict", "https://example.org/a.jpg"]) == 1  # not fetched (offline), and said so
    assert capsys.readouterr().err == ("ferkit: error: https://example.org/a.jpg: a URL; ferkit works offline and "
                                       "fetches nothing: download it and give its path\n")
    assert main(["predict", str(EXAMPLE), "--model", "no_such_model"]) == 1
    assert "no model 'no_such_model'" in capsys.readouterr().err
    assert main(["predict", str(EXAMPLE), "--out", "-"]) == 1  # (it made a folder named "-")
    assert "'-' (standard output) is for --json - or --csv -" in capsys.readouterr().err
    assert main(["predict", str(EXAMPLE), "--show", "--headless"]) == 1  # (--show was ignored in silence)
    assert "--show and --headless" in capsys.readouterr().err
    clip = tmp_path / "clip"  # a video under a name ferkit does not know as a video's: said how it tells
    clip.write_bytes(moving_video(tmp_path / "c.mp4", n=2, fps=4).read_bytes())
    assert main(["predict", str(clip)]) == 1
    assert "videos are told by their extension (.mp4" in capsys.readouterr().err
    heic = tmp_path / "IMG_0001.HEIC"  # an iPhone photo Pillow cannot read: no word of videos
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100))
    assert main(["predict", str(heic)]) == 1
    err = capsys.readouterr().err
    assert "not an image file" in err and "videos" not in err


@pytest.fixture()
def xdisplay(monkeypatch):
    """A virtual X display (Xvfb), or skip where it is not installed."""
    import shutil
    import subprocess
    import time

    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed")
    num = 90 + (os.getpid() % 400)
    proc = subprocess.Popen(["Xvfb", f":{num}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    monkeypatch.setenv("DISPLAY", f":{num}")
    yield f":{num}"
    proc.terminate()
    proc.wait(5)


def test_show_opens_a_window_and_draws_each_frame(xdisplay, tmp_path, monkeypatch, capsys):
    from PIL import ImageGrab

    from ferkit import predict as fp

    video = moving_video(tmp_path / "clip.mp4", n=6)
    shown, grabs = [], []
    real_show = fp.Window.show

    def spy(self, rgb, wait_key=False):
        ok = real_show(self, rgb, wait_key)
        shown.append(rgb.shape)
        grabs.append(np.asarray(ImageGrab.grab(xdisplay=xdisplay)))
        return ok

    monkeypatch.setattr(fp.Window, "show", spy)
    assert main(["predict", str(video), "--show", "--quiet"]) == 0
    assert shown == [(360, 480, 3)] * 6
    # the frame (the drifting photo: far from black) is on screen while the window is open
    assert grabs[-1][:360, :480].mean() > 40


def test_outputs_of_inputs_with_one_name_do_not_overwrite(tmp_path):
    from ferkit.cli import main

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    face = Image.open(EXAMPLE).convert("RGB").resize((256, 256))
    face.save(src / "a.jpg")
    face.save(src / "a.png")
    out = tmp_path / "out"
    assert main(["predict", str(src / "a.jpg"), str(src / "a.png"), "--out", str(out), "--quiet"]) == 0
    sources = {json.loads(p.read_text())["source"] for p in out.glob("*.json")}
    assert sources == {str(src / "a.jpg"), str(src / "a.png")}
    assert {p.name for p in out.glob("*_ferkit.png")} == {"a_ferkit.png", "a_png_ferkit.png"}
    assert main(["predict", str(src / "a.jpg"), "--json", str(src / "a.jpg")]) == 1  # would overwrite the photo
    assert Image.open(src / "a.jpg").size == (256, 256)


def test_the_whole_runs_json_and_csv_inside_out_do_not_take_an_inputs_outputs(tmp_path):
    """--json out/astronaut.json and --csv out/clip.csv beside --out out: the run's files were written over the
    photo's and the video's own (said written, then gone). Those take another name now, as for two inputs."""
    clip = moving_video(tmp_path / "clip.mp4", n=3, size=(160, 120))
    out = tmp_path / "out"
    assert main(["predict", str(EXAMPLE), str(clip), "--quiet", "--out", str(out), "--json",
                 str(out / "astronaut.json"), "--csv", str(out / "clip.csv")]) == 0
    whole = json.loads((out / "astronaut.json").read_text())
    assert isinstance(whole, list) and len(whole) == 4  # the photo and the three frames
    assert json.loads((out / "astronaut_jpg.json").read_text())["source"] == str(EXAMPLE)
    assert len(json.loads((out / "clip_mp4.json").read_text())) == 3 and (out / "clip_mp4.csv").exists()
    assert (out / "clip.csv").read_text().count(str(EXAMPLE)) == 1  # the run's CSV, the photo's row in it


def test_json_and_csv_written_over_an_earlier_file_say_so(tmp_path, capsys):
    """predict --json over a file that was there replaced it without a word (evaluate and export say it)."""
    js, table = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["predict", str(EXAMPLE), "--quiet", "--json", str(js), "--csv", str(table)]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["predict", str(EXAMPLE), "--quiet", "--json", str(js), "--csv", str(table)]) == 0
    err = capsys.readouterr().err
    assert f"--json {js}: replacing the earlier file" in err and f"--csv {table}: replacing the earlier file" in err


def test_videos_and_photos_with_one_name_keep_their_own_outputs(tmp_path):
    # one.avi, one.mp4 and one.png to one --out: three sets of outputs (the videos' overwrote each
    # other's and the photo's JSON, with exit 0)
    moving_video(tmp_path / "one.avi", n=3, size=(320, 240))
    moving_video(tmp_path / "one.mp4", n=3, size=(320, 240))
    Image.open(EXAMPLE).convert("RGB").resize((256, 256)).save(tmp_path / "one.png")
    out = tmp_path / "out"
    assert main(["predict", *(str(tmp_path / f"one.{x}") for x in ("avi", "mp4", "png")), "--out", str(out),
                 "--quiet"]) == 0
    found = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}  # a video's: a list of frames
    sources = {n: (d[0] if isinstance(d, list) else d)["source"] for n, d in found.items()}
    assert sources == {"one.json": str(tmp_path / "one.avi"), "one_mp4.json": str(tmp_path / "one.mp4"),
                       "one_png.json": str(tmp_path / "one.png")}
    assert {p.name for p in out.glob("*.csv")} == {"one.csv", "one_mp4.csv"}
    assert {p.name for p in out.glob("*_ferkit.*")} == {"one_ferkit.mp4", "one_mp4_ferkit.mp4", "one_png_ferkit.png"}


def test_out_is_never_written_over_the_inputs(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    face = Image.open(EXAMPLE).convert("RGB").resize((256, 256))
    face.save(src / "a.jpg")
    face.save(src / "a_ferkit.png")  # an input named like an output
    (src / "b.json").write_text("mine")  # a file of the user's beside the photos
    face.save(src / "b.bmp")
    # --out the input folder itself: refused before any work (outputs among the photos, over b.json)
    assert main(["predict", str(src), "--out", str(src), "--quiet"]) == 1
    err = capsys.readouterr().err
    # the advice names a folder beside the input one: a subfolder would be read as photos by a
    # later run over the folder given no --out (or another one)
    assert "is the input folder" in err and f"(e.g. {tmp_path / 'in-ferkit'}, beside it)" in err
    assert (src / "b.json").read_text() == "mine" and sorted(p.name for p in src.iterdir()) == [
        "a.jpg", "a_ferkit.png", "b.bmp", "b.json"]
    # --out inside it: written there, and not read back as inputs by the next run
    for _ in range(2):
        assert main(["predict", str(src), "--out", str(src / "ferkit"), "--json", str(tmp_path / "r.json"),
                     "--quiet"]) == 0
        assert len(json.loads((tmp_path / "r.json").read_text())) == 3  # the three photos, not their outputs
    assert (src / "ferkit" / "a.json").exists() and (src / "ferkit" / "a_ferkit_ferkit.png").exists()
    # a later run without --out: the annotated copies there are listed as such, not read as photos
    # (the input a_ferkit.png, a photo of the user's named like a copy, has no JSON naming another source)
    assert main(["predict", str(src), "--json", str(tmp_path / "r2.json")]) == 0
    assert sorted(Path(e["source"]).name for e in json.loads((tmp_path / "r2.json").read_text())) == [
        "a.jpg", "a_ferkit.png", "b.bmp"]
    assert f"{src / 'ferkit' / 'a_ferkit.png'}: an annotated copy ferkit wrote of {src / 'a.jpg'}" in \
        capsys.readouterr().err
    # files given one by one with --out their folder: a.jpg's annotation is not written over the
    # input a_ferkit.png
    assert main(["predict", str(src / "a.jpg"), str(src / "a_ferkit.png"), "--out", str(src), "--quiet"]) == 0
    with Image.open(src / "a_ferkit.png") as im:
        assert im.size == (256, 256)  # still the input (an annotation would be 256x256 too: check its pixels)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(face))
    assert json.loads((src / "a_jpg.json").read_text())["source"] == str(src / "a.jpg")
    # a photo given alone, --out its own folder: a file of the user's there named like an output
    # (b.json: notes) is not written over; the outputs take other names
    assert main(["predict", str(src / "b.bmp"), "--out", str(src), "--quiet"]) == 0
    assert (src / "b.json").read_text() == "mine" and (src / "b_bmp.json").exists()
    before = sorted(p.name for p in src.iterdir())  # a rerun writes over its own outputs: no b_bmp_2.json
    assert main(["predict", str(src / "b.bmp"), "--out", str(src), "--quiet"]) == 0
    assert sorted(p.name for p in src.iterdir()) == before and (src / "b.json").read_text() == "mine"
    # the --out folder inside an input folder is listed as left out, not passed over in silence
    assert main(["predict", str(src), "--out", str(src / "ferkit")]) == 0
    assert f"{src / 'ferkit'}: not read as input (the --out folder)" in capsys.readouterr().err
    for opt in ("--json", "--csv", "--out"):  # an empty value (a script's unset variable): refused
        assert main(["predict", str(src / "a.jpg"), opt, ""]) == 1
        assert f"ferkit: error: {opt} is empty" in capsys.readouterr().err


def test_a_video_whose_annotation_cannot_be_written_keeps_its_results(tmp_path, capsys, monkeypatch):
    # 1 pixel wide: the encoders refuse it, so the annotated copy is 2 wide (it failed the whole source)
    import ferkit.predict as fp

    thin = tmp_path / "thin.avi"
    wr = cv2.VideoWriter(str(thin), cv2.VideoWriter_fourcc(*"MJPG"), 25, (1, 5))
    for _ in range(3):
        wr.write(np.full((5, 1, 3), 100, np.uint8))
    wr.release()
    assert main(["predict", str(thin), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert VideoReader(tmp_path / "o" / "thin_ferkit.mp4").width == 2
    # odd sides: the codecs keep even ones, and 65x49 came out 64x48 (a column and a row lost): now 66x50,
    # the edge repeated, the whole picture kept
    odd = tmp_path / "odd.avi"
    wr = cv2.VideoWriter(str(odd), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (65, 49))  # (odd kept)
    for _ in range(3):
        wr.write(np.full((49, 65, 3), 100, np.uint8))
    wr.release()
    assert main(["predict", str(odd), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    got = VideoReader(tmp_path / "o" / "odd_ferkit.mp4")
    assert (got.width, got.height) == (66, 50)
    # a writer that cannot start (a codec missing): the CSV, JSON and plot are written all the same,
    # and the lost annotation is reported (exit 1)
    clip = moving_video(tmp_path / "clip.mp4", n=3, size=(320, 240))

    def no_writer(*args, **kw):
        raise fp.ImageDecodeError("cannot write a video here (codec mp4v unavailable)")

    monkeypatch.setattr(fp, "VideoWriter", no_writer)
    capsys.readouterr()
    assert main(["predict", str(clip), "--out", str(tmp_path / "p"), "--quiet"]) == 1
    got = capsys.readouterr()
    assert "annotated video not written (cannot write a video here" in got.err
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"clip.csv", "clip.json", "clip_expressions.png"}
    entries = json.loads((tmp_path / "p" / "clip.json").read_text())  # the frames, then what failed
    assert [e.get("frame") for e in entries[:3]] == [0, 1, 2] and "annotated video not written" in entries[3]["error"]


def test_video_options_reach_the_recognizer(tmp_path):
    # --max-frames, --detect-every, --smooth and --tta on the command line give what the Python API
    # gives with the same settings, and differ from the defaults where they should
    video = moving_video(tmp_path / "clip.mp4", n=10, fps=8)

    def cli(*opts):
        js = tmp_path / f"r{len(list(tmp_path.glob('*.json')))}.json"
        assert main(["predict", str(video), "--json", str(js), "--quiet", *opts]) == 0
        return [[f["probabilities"] for f in r["faces"]] for r in json.loads(js.read_text())]

    def api(**kw):
        rs = ferkit.Recognizer(**kw).predict(str(video), max_frames=5)
        return [[f.to_dict()["probabilities"] for f in r.faces] for r in rs]

    tuned = cli("--max-frames", "5", "--detect-every", "1", "--smooth", "0", "--tta", "flip")
    assert len(tuned) == 5 and all(len(faces) == 1 for faces in tuned)
    assert tuned == api(detect_every=1, smooth=0, tta="flip")
    assert tuned != api(detect_every=1, smooth=0)  # flip changes the numbers
    assert cli("--max-frames", "5") == api() != tuned  # the defaults: smoothing, detection every 5th frame


def test_a_videos_summary_says_how_much_of_it_was_read(tmp_path, capsys):
    """`--max-frames 5` said "5 frame(s) processed" of a 10-frame video as of a 5-frame one; --every too."""
    video = moving_video(tmp_path / "clip.mp4", n=10, fps=8)

    def first_line(*opts):
        assert main(["predict", str(video), "--no-progress", *opts]) == 0
        return capsys.readouterr().out.splitlines()[0]

    assert "5 frame(s) processed (stopped by --max-frames 5, of 10 in the file, as its header says) in" in first_line("--max-frames", "5")
    assert "4 frame(s) processed (one frame in 3, of 10 in the file, as its header says) in" in first_line("--every", "3")
    assert "10 frame(s) processed in" in first_line("--max-frames", "10")  # (the whole file: nothing to say)
    assert "probabilities smoothed over time (--smooth 0.5; 0: each frame's own)" in first_line()
    assert "smoothed" not in first_line("--smooth", "0")


def test_ctrl_c_writes_what_was_finished_and_exits_130(tmp_path, monkeypatch, capsys):
    from ferkit.pipeline import Recognizer

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        shutil.copy(EXAMPLE, folder / f"p{i}.jpg")
    analyze, calls = Recognizer.analyze, []

    def interrupted_third(self, src, *args, **kw):  # Ctrl+C while the third photo is read
        calls.append(src)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return analyze(self, src, *args, **kw)

    monkeypatch.setattr(Recognizer, "analyze", interrupted_third)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["predict", str(folder), "--json", str(js), "--csv", str(cs), "--quiet"]) == 130
    assert f"interrupted; what was finished is written ({js}, {cs})" in capsys.readouterr().err
    assert [Path(e["source"]).name for e in json.loads(js.read_text())] == ["p0.jpg", "p1.jpg"]
    assert [Path(r["source"]).name for r in csv.DictReader(open(cs))] == ["p0.jpg", "p1.jpg"]
    monkeypatch.setattr(Recognizer, "analyze", analyze)
    # a video file: its outputs hold the frames before the Ctrl+C, and so does --json
    video = moving_video(tmp_path / "clip.mp4", n=16, fps=8)
    stream = Recognizer.stream

    def interrupted_stream(self, *args, **kw):
        for i, r in enumerate(stream(self, *args, **kw)):
            if i == 5:
                raise KeyboardInterrupt
            yield r

    monkeypatch.setattr(Recognizer, "stream", interrupted_stream)
    out = tmp_path / "out"
    assert main(["predict", str(video), "--out", str(out), "--json", str(js), "--no-progress"]) == 130
    assert "clip.mp4: 5 frame(s) processed before the interruption" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(out / "clip.csv")))) == 5 == len(json.loads((out / "clip.json").read_text()))
    assert len(json.loads(js.read_text())) == 5


def test_an_empty_path_and_an_unlistable_folder_are_said_once(tmp_path, monkeypatch, capsys):
    assert main(["predict", ""]) == 1
    assert capsys.readouterr().err == 'ferkit: error: "": an empty path\n'
    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.scandir

    def refused(path=".", *a, **kw):  # (tests run as root: chmod would not lock it)
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "scandir", refused)
    assert main(["predict", str(folder)]) == 1
    assert capsys.readouterr().err == f"ferkit: error: {folder}: cannot list this folder (Permission denied)\n"


def test_a_window_that_fails_is_a_warning_and_the_results_are_kept(monkeypatch, tmp_path, capsys):
    from ferkit import predict as fp

    class Broken:
        def __init__(self, title="ferkit"):
            pass

        @staticmethod
        def check():
            pass

        def show(self, rgb, wait_key=False):
            raise RuntimeError("the display went away")

        def close(self):
            pass

    monkeypatch.setattr(fp, "Window", Broken)
    js = tmp_path / "one.json"
    assert main(["predict", str(EXAMPLE), "--show", "--json", str(js)]) == 0
    assert "the window failed (the display went away)" in capsys.readouterr().err
    assert json.loads(js.read_text())["faces"][0]["label"] == "happy"  # the image's result, not an error entry
    video = moving_video(tmp_path / "clip.mp4", n=6)
    js = tmp_path / "clip.json"
    assert main(["predict", str(video), "--show", "--json", str(js), "--quiet"]) == 0
    assert "the window failed" in capsys.readouterr().err
    assert len(json.loads(js.read_text())) == 6  # every frame analysed


def test_a_slice_of_results_is_results_with_its_own_lost_frames(tmp_path):
    lost = frame_failures("clip.avi", [(i, "unreadable frame (skipped)") for i in (1, 2, 3, 8)])
    res = Results([Result("clip.avi", 64, 48, frame=f, time=f / 10) for f in (0, 5, 6, 9)], source="clip.avi",
                  fps=10.0, failed=[*lost, ("other.avi", "could not be opened")], ignored=[("notes.txt", "no image")])
    assert isinstance(res[0], Result) and res[-1].frame == 9
    head = res[:2]
    assert isinstance(head, Results) and [r.frame for r in head] == [0, 5]
    assert head.source == "clip.avi" and head.fps == 10.0 and head.ignored == [("notes.txt", "no image")]
    # frames 1-3 lie between 0 and 5; frame 8 does not; a whole failed source stays
    assert [(f.frames, f.source) for f in head.failed] == [((1, 3), "clip.avi"), (None, "other.avi")]
    assert [d.get("frame", d.get("frames")) for d in head.to_dict()][:3] == [0, [1, 3], 5]
    assert [(f.frames, f.source) for f in res[2:].failed] == [((8, 8), "clip.avi"), (None, "other.avi")]
    assert json.loads(res[1:1].to_json()) == [{"source": "other.avi", "error": "could not be opened", "faces": []}]
    assert type(list(res)) is list and len(res[::2]) == 2


def _latin1_name(folder: Path, made: Path, name: bytes) -> Path:
    """``made`` renamed to ``name`` (bytes, not UTF-8) in ``folder``, as a str path (surrogate escapes)."""
    target = os.path.join(os.fsencode(folder), name)
    os.rename(os.fsencode(made), target)
    return Path(os.fsdecode(target))


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="file names that are not UTF-8: Linux filesystems")
def test_file_names_that_are_not_utf8_are_read_and_written(tmp_path, capsys):
    # an old archive's Latin-1 name ("caf\xe9.jpg") reaches Python with surrogate escapes; OpenCV
    # crashed the whole process on it (a segmentation fault) when writing the annotated copy or
    # opening the video, and the CSV writer raised: nothing of the batch was written
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLE, photos / "plain.jpg")
    shutil.copy(EXAMPLE, photos / "tmp.jpg")
    odd = _latin1_name(photos, photos / "tmp.jpg", b"caf\xe9.jpg")
    assert "\udce9" in str(odd) and odd.exists()
    out, table, js = tmp_path / "out", tmp_path / "r.csv", tmp_path / "r.json"
    assert main(["predict", str(photos), "--out", str(out), "--csv", str(table), "--json", str(js), "--quiet"]) == 0
    assert sorted(os.listdir(os.fsencode(out))) == [b"caf\xe9.json", b"caf\xe9_ferkit.png", b"plain.json",
                                                     b"plain_ferkit.png"]
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [(r["source"], r["label"]) for r in rows] == [(str(photos / "caf\\udce9.jpg"), "happy"),
                                                         (str(photos / "plain.jpg"), "happy")]
    assert [e["source"] for e in json.loads(js.read_text())] == [str(odd), str(photos / "plain.jpg")]
    # a video: read through a link of a plain name, written under a plain name and renamed
    clip = _latin1_name(tmp_path, moving_video(tmp_path / "tmp.avi", n=6), b"vid\xe9o.avi")
    vout = tmp_path / "vout"
    assert main(["predict", str(clip), "--out", str(vout)]) == 0
    assert "6 frame(s) processed" in capsys.readouterr().out
    assert sorted(os.listdir(os.fsencode(vout))) == [b"vid\xe9o.csv", b"vid\xe9o.json", b"vid\xe9o_expressions.png",
                                                      b"vid\xe9o_ferkit.mp4"]
    with VideoReader(vout / "vid\udce9o_ferkit.mp4") as r:
        assert sum(1 for _ in r) == 6
    # into a folder whose own name is not UTF-8 (written in a temporary folder, moved into place)
    odd_out = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"r\xe9sultats")))
    assert main(["predict", str(clip), "--out", str(odd_out), "--quiet"]) == 0
    with VideoReader(odd_out / "vid\udce9o_ferkit.mp4") as r:
        assert sum(1 for _ in r) == 6


def test_reruns_recognise_only_ferkits_own_outputs(tmp_path):
    # a second review: a JSON of the user's with a "source" key, a CSV of theirs beside a video's
    # stem, and JSON that cannot be read (a FIFO would hang, absurd nesting, a NUL in "source")
    home = tmp_path / "h"
    home.mkdir()
    shutil.copy(EXAMPLE, home / "a.jpg")
    (home / "a.json").write_text('{"source": "a.jpg", "label": "happy", "annotator": "me"}')
    moving_video(home / "a.mp4", n=4)
    (home / "a.csv").write_text("my,spreadsheet")
    (home / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (home / "a_jpg_2.json").write_text('{"source": "x\\u0000y", "width": 1, "height": 1, "faces": []}')
    os.mkfifo(home / "p.json")
    for _ in range(2):
        assert main(["predict", str(home / "a.mp4"), str(home / "a.jpg"), "--out", str(home), "--quiet"]) == 0
    assert (home / "a.json").read_text().endswith('"annotator": "me"}') and (home / "a.csv").read_text() == "my,spreadsheet"
    made = sorted(p.name for p in home.iterdir())
    assert made == sorted(["a.jpg", "a.json", "a.mp4", "a.csv", "deep.json", "a_jpg_2.json", "p.json", "a_jpg.json",
                           "a_jpg_ferkit.png", "a_mp4.csv", "a_mp4.json", "a_mp4_expressions.png",
                           "a_mp4_ferkit.mp4"]), made  # the rerun wrote over its own outputs, no a_jpg_3
    # a photo of the user's named like a copy, beside a JSON of theirs: read
    ph = tmp_path / "ph"
    ph.mkdir()
    shutil.copy(EXAMPLE, ph / "b_ferkit.png")
    (ph / "b.json").write_text('{"source": "camera 2", "iso": 200}')
    shutil.copy(EXAMPLE, ph / "c_ferkit.png")
    (ph / "c.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["predict", str(ph), "--json", str(tmp_path / "ph.json"), "--quiet"]) == 0
    assert len(json.loads((tmp_path / "ph.json").read_text())) == 2
    # a video's plot from an earlier run into a folder now read: listed, not read as a photo
    assert main(["predict", str(home / "a.mp4"), "--out", str(ph / "v"), "--quiet"]) == 0
    assert main(["predict", str(ph), "--json", str(tmp_path / "ph2.json"), "--quiet"]) == 0
    assert sorted(Path(e["source"]).name for e in json.loads((tmp_path / "ph2.json").read_text())) == [
        "b_ferkit.png", "c_ferkit.png"]


def test_a_rerun_from_another_folder_recognises_its_own_outputs(tmp_path, monkeypatch):
    """The JSON of a run given 'photos/a.jpg' from the parent names that relative path; a rerun
    from inside 'photos' ('a.jpg') writes over it, not beside it as a_jpg.json; a JSON naming
    another photo of the same name (other/a.jpg, ../a.jpg) stays protected."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLE, photos / "a.jpg")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "photos/a.jpg", "--out", "photos", "--quiet"]) == 0
    assert json.loads((photos / "a.json").read_text())["source"] == "photos/a.jpg"
    monkeypatch.chdir(photos)
    assert main(["predict", "a.jpg", "--out", ".", "--quiet"]) == 0
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.json", "a_ferkit.png"]
    assert json.loads((photos / "a.json").read_text())["source"] == "a.jpg"
    # a bare name written from another folder may be another photo of that name: kept
    monkeypatch.chdir(tmp_path)
    d = json.loads((photos / "a.json").read_text())
    (photos / "a.json").write_text(json.dumps({**d, "source": "a.jpg"}))
    assert main(["predict", "photos/a.jpg", "--out", "photos", "--quiet"]) == 0
    assert json.loads((photos / "a.json").read_text())["source"] == "a.jpg"
    assert json.loads((photos / "a_jpg.json").read_text())["source"] == "photos/a.jpg"
    (photos / "a_jpg.json").unlink()
    (photos / "a_jpg_ferkit.png").unlink()
    monkeypatch.chdir(photos)
    for other in ("other/a.jpg", "../a.jpg"):
        d = json.loads((photos / "a.json").read_text())
        (photos / "a.json").write_text(json.dumps({**d, "source": other}))
        assert main(["predict", "a.jpg", "--out", ".", "--quiet"]) == 0
        assert json.loads((photos / "a.json").read_text())["source"] == other, other
        (photos / "a_jpg.json").unlink()
        (photos / "a_jpg_ferkit.png").unlink()


def test_out_its_own_folder_protects_every_entry_there(tmp_path):
    # a third review: a link to a photo elsewhere as the input (the folder is the link's), and a
    # symlink loop or a FIFO at an output's name (a traceback; a hang)
    home, other = tmp_path / "home", tmp_path / "else"
    home.mkdir()
    other.mkdir()
    shutil.copy(EXAMPLE, other / "real.jpg")
    (home / "link.jpg").symlink_to(other / "real.jpg")
    (home / "link.json").write_text('{"my": "notes"}')
    (home / "a.json").symlink_to("a.json")  # a loop
    shutil.copy(EXAMPLE, home / "a.jpg")
    os.mkfifo(home / "b_ferkit.png")
    shutil.copy(EXAMPLE, home / "b.jpg")
    for name in ("link.jpg", "a.jpg", "b.jpg"):
        assert main(["predict", str(home / name), "--out", str(home), "--quiet"]) == 0
    assert (home / "link.json").read_text() == '{"my": "notes"}' and (home / "link_jpg.json").exists()
    assert (home / "a.json").is_symlink() and (home / "a_jpg_ferkit.png").exists()
    assert stat_is_fifo(home / "b_ferkit.png") and (home / "b_jpg_ferkit.png").exists()


def stat_is_fifo(p: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(p).st_mode)


def test_a_glob_that_names_an_earlier_runs_outputs_does_not_read_them(tmp_path, capsys, monkeypatch):
    """`ferkit predict q/*.jpg q/*.png --out q`, twice: the second glob also names the first run's
    annotated copies. They are not read as photos (annotated again as a_ferkit_ferkit.png) and do
    not push the photos' outputs to other names (a_jpg.json...): the rerun writes over its own
    outputs, as a folder's rerun does. With q/* the earlier JSONs too are listed, not failures."""
    q = tmp_path / "q"
    q.mkdir()
    face = Image.open(EXAMPLE).convert("RGB").resize((256, 256))
    face.save(q / "a.jpg")
    face.save(q / "a.png")
    face.save(q / "b.png")
    monkeypatch.chdir(tmp_path)

    def run(*globs):
        names = sorted(str(p.relative_to(tmp_path)) for g in globs for p in tmp_path.glob(g))
        return main(["predict", *names, "--out", "q", "--quiet"])

    assert run("q/*.jpg", "q/*.png") == 0
    first = sorted(p.name for p in q.iterdir())
    assert first == ["a.jpg", "a.json", "a.png", "a_ferkit.png", "a_png.json", "a_png_ferkit.png", "b.json", "b.png",
                     "b_ferkit.png"]
    capsys.readouterr()
    (q / "a_ferkit.png").write_bytes(b"stale")  # (to see it written over)
    assert run("q/*.jpg", "q/*.png") == 0
    assert sorted(p.name for p in q.iterdir()) == first
    assert (q / "a_ferkit.png").read_bytes()[:4] == b"\x89PNG"  # a.jpg's annotation again, over its old one
    err = capsys.readouterr().err
    assert "3 file(s) ignored:" in err
    assert "q/a_ferkit.png: an earlier run's output for q/a.jpg (named too): not read as an input" in err
    assert run("q/*") == 0
    assert sorted(p.name for p in q.iterdir()) == first
    err = capsys.readouterr().err
    assert "6 file(s) ignored:" in err and "q/b.json: an earlier run's output for q/b.png" in err
    assert "failed" not in err
    # named without the photo it was written for, a copy is read: the user asked for it
    assert main(["predict", "q/a_ferkit.png", "--json", "r.json", "--quiet"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["source"] == "q/a_ferkit.png"


def test_out_keeps_an_earlier_runs_results_for_another_photo_of_the_same_name(tmp_path, capsys, monkeypatch):
    """a/x.jpg then b/x.jpg into one --out: b's results do not replace a's (both x.json before);
    they take x_jpg.json, said in a note, and each photo's rerun writes over its own outputs."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    face = Image.open(EXAMPLE).convert("RGB").resize((256, 256))
    face.save(tmp_path / "a" / "x.jpg")
    face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "b" / "x.jpg")
    monkeypatch.chdir(tmp_path)
    for src in ("a/x.jpg", "b/x.jpg", "b/x.jpg", "a/x.jpg"):
        assert main(["predict", src, "--out", "o", "--quiet"]) == 0
    o = tmp_path / "o"
    assert sorted(p.name for p in o.iterdir()) == ["x.json", "x_ferkit.png", "x_jpg.json", "x_jpg_ferkit.png"]
    assert json.loads((o / "x.json").read_text())["source"] == "a/x.jpg"
    assert json.loads((o / "x_jpg.json").read_text())["source"] == "b/x.jpg"
    err = capsys.readouterr().err
    assert err.count("ferkit: note: o/x.json holds an earlier run's results for a/x.jpg: b/x.jpg's go to "
                     "o/x_jpg.json and beside it") == 2


def test_earlier_outputs_among_many_named_files_are_found_in_linear_work(tmp_path, monkeypatch):
    """A glob over a folder of N photos and their outputs: each candidate output is matched against
    the inputs of its own name, not against all N (a second run over 1,000 photos took minutes)."""
    import ferkit.predict as P

    monkeypatch.chdir(tmp_path)
    (tmp_path / "q").mkdir()
    for i in range(200):
        (tmp_path / "q" / f"x{i}.jpg").write_bytes(b"j")
        (tmp_path / "q" / f"x{i}.json").write_text(json.dumps({"source": f"q/x{i}.jpg", "width": 1, "height": 1,
                                                               "faces": []}))
        (tmp_path / "q" / f"x{i}_ferkit.png").write_bytes(b"p")
    named = sorted(Path("q").iterdir())
    calls = []
    names = P._names
    monkeypatch.setattr(P, "_names", lambda s, f: calls.append(1) or names(s, f))
    index = P._Named(named)
    earlier = {str(f): of for f in named for of in [P._output_of_named(f, index)] if of is not None}
    assert len(earlier) == 400 and earlier["q/x7_ferkit.png"] == earlier["q/x7.json"] == "q/x7.jpg"
    assert len(calls) <= 2 * len(named)  # (was one per pair: 360,000)
    # an input named by a link: an earlier run's outputs for the file it points at are found too
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "real.jpg").write_bytes(b"j")
    (tmp_path / "q" / "link.jpg").symlink_to(tmp_path / "photos" / "real.jpg")
    (tmp_path / "q" / "real.json").write_text(json.dumps({"source": "photos/real.jpg", "width": 1, "height": 1,
                                                          "faces": []}))
    named = [Path("q/link.jpg"), Path("q/real.json")]
    assert P._output_of_named(Path("q/real.json"), P._Named(named)) == "photos/real.jpg"


def test_a_rerun_from_another_folder_of_a_bare_named_photo_writes_over_its_outputs(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "photos" / "x.jpg")
    monkeypatch.chdir(tmp_path / "photos")
    assert main(["predict", "x.jpg", "--out", "../o", "--quiet"]) == 0  # its JSON names "x.jpg"
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "photos/x.jpg", "--out", "o", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x.json", "x_ferkit.png"]
    assert json.loads((tmp_path / "o" / "x.json").read_text())["source"] == "photos/x.jpg"


def test_no_progress_hides_the_bars_and_keeps_the_lines(tmp_path, capsys, monkeypatch):
    # on a terminal a folder of 10 images shows a bar; --no-progress hides it, the per-image lines
    # stay (--quiet hides both); evaluate takes the option too
    d = tmp_path / "faces"
    d.mkdir()
    face = Image.open(EXAMPLE).convert("L").crop((150, 40, 310, 200)).resize((48, 48))
    for i in range(10):
        face.save(d / f"f{i}.png")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    for extra, bar, lines in (([], True, True), (["--no-progress"], False, True), (["--quiet"], False, False)):
        assert main(["predict", str(d), "--detector", "none", *extra]) == 0
        got = capsys.readouterr()
        assert ("predicting" in got.err) is bar, (extra, got.err)
        assert ("f9.png: 1 face" in got.out) is lines, (extra, got.out)
    from ferkit.cli import build_parser

    assert build_parser().parse_args(["evaluate", "--dataset", "fer2013", "--data", "d", "--no-progress"]).no_progress is True


def test_a_folders_json_lists_entries_in_one_order_from_the_api_and_the_cli(tmp_path, capsys):
    # an unreadable file between good ones: where it was met, in the API's JSON as in the CLI's
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    face = Image.open(EXAMPLE).convert("L").crop((150, 40, 310, 200)).resize((48, 48))
    for name in ("a.png", "c.png", "sub/e.png"):
        face.save(d / name)
    (d / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (d / "sub" / "d.jpg").write_bytes(b"")
    js = tmp_path / "r.json"
    assert main(["predict", str(d), "--detector", "none", "--json", str(js), "--quiet"]) == 1
    cli = json.loads(js.read_text())
    res = ferkit.Recognizer(detector="none").predict(d)
    api = json.loads(res.to_json())
    names = [Path(e["source"]).name for e in cli]
    assert names == ["a.png", "b.jpg", "c.png", "d.jpg", "e.png"] and api == cli
    # a slice keeps the failures met where its results were (paging lists each once), each in its place
    assert [Path(e["source"]).name for e in res[2:].to_dict()] == ["d.jpg", "e.png"]
    assert [Path(e["source"]).name for e in res[:2].to_dict()] == ["a.png", "b.jpg", "c.png"]


def test_a_source_named_twice_is_read_once_and_a_failed_runs_out_folder_is_not_left(tmp_path, capsys):
    """`ferkit predict x.jpg ./x.jpg --out d` read it twice (x.json and x_jpg.json, two entries); a run whose
    every source failed left its new, empty --out folder behind."""
    shutil.copy(EXAMPLE, tmp_path / "x.jpg")
    js, out = tmp_path / "r.json", tmp_path / "d"
    assert main(["predict", str(tmp_path / "x.jpg"), str(tmp_path / "." / "x.jpg"), "--json", str(js),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 file(s) ignored:" in err and f"{tmp_path / '.' / 'x.jpg'}: named again: read once" in err
    assert json.loads(js.read_text())["source"] == str(tmp_path / "x.jpg")  # one image: its dict, as for one name
    assert sorted(p.name for p in out.iterdir()) == ["x.json", "x_ferkit.png"]
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert main(["predict", str(tmp_path / "empty.mp4"), "--out", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # (a folder that was there before is left as it was)
    assert main(["predict", str(tmp_path / "empty.mp4"), "--out", str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept").is_dir()
    capsys.readouterr()


def test_an_annotated_video_browsers_play(tmp_path, capfd):
    """The annotated video was MPEG-4 Part 2 only, which browsers and notebooks do not play: --video-format
    webm writes VP8 (this OpenCV has no H.264 encoder), named .webm, and it is not read again as an input.
    OpenCV's line on the VP80 tag (it writes VP8 all the same) is not shown: it read as a failure."""
    capsys = capfd
    (tmp_path / "in").mkdir()
    video = moving_video(tmp_path / "in" / "clip.mp4", n=4, fps=8)
    out = tmp_path / "in" / "o"
    capfd.readouterr()
    assert main(["predict", str(video), "--out", str(out), "--video-format", "webm", "--no-progress"]) == 0
    said = capfd.readouterr()
    assert "wrote clip_ferkit.webm, clip.csv, clip.json, clip_expressions.png in" in said.out
    assert "VP80" not in said.err and "FFMPEG" not in said.err, said.err
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.json", "clip_expressions.png", "clip_ferkit.webm"]
    got = VideoReader(out / "clip_ferkit.webm")
    with got:
        assert len(list(got)) == 4 and got.fps == 8
    assert main(["predict", str(tmp_path / "in"), "--csv", str(tmp_path / "r.csv"), "--no-progress"]) == 0
    assert f"{out / 'clip_ferkit.webm'}: an annotated copy ferkit wrote of" in capsys.readouterr().err
    # without --out there is no annotated video: the option is said to do nothing (it was taken silently)
    assert main(["predict", str(video), "--json", str(tmp_path / "v.json"), "--video-format", "webm", "--quiet"]) == 0
    assert "--video-format webm does nothing without --out" in capsys.readouterr().err


def test_records_share_the_csv_columns_and_to_csv_writes_the_cli_file(tmp_path):
    """A failed file's row had 2 keys, an image without a face 4 and a face 20: csv.DictWriter with the first
    row's keys refused the next row ('dict contains fields not in fieldnames'), and a DataFrame's columns
    came in the order met. Every row now has the CSV's columns in order; Results.to_csv writes --csv's file."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "0bad.jpg").write_bytes(b"not a jpeg")
    shutil.copy(EXAMPLE, folder / "astronaut.jpg")
    Image.new("RGB", (64, 64)).save(folder / "blank.png")
    rs = ferkit.Recognizer().predict(str(folder))
    rows = rs.to_records(empty_row=True)
    cols = ["source", "frame", "time", "face", "track_id", "x", "y", "w", "h", "score", "label", "confidence",
            *ferkit.CANONICAL, "error", "warnings"]
    assert len(rows) == 3 and all(list(r) == cols for r in rows)
    assert [r["error"] is None for r in rows] == [False, True, True] and rows[1]["label"] == "happy"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))  # (the first row's keys: a failure's)
    w.writeheader()
    w.writerows(rows)
    assert len(buf.getvalue().splitlines()) == 4
    assert all(list(r) == cols for r in rs.to_records()) and len(rs.to_records()) == 1  # faces only
    assert all(list(r) == cols for r in rs[1].to_records(empty_row=True))  # one Result's, without a face
    rs.to_csv(tmp_path / "api.csv")
    assert main(["predict", str(folder), "--csv", str(tmp_path / "cli.csv"), "--quiet"]) == 1  # (the bad file)
    assert (tmp_path / "api.csv").read_text() == (tmp_path / "cli.csv").read_text()
    one = io.StringIO()
    rs[0].to_csv(one)
    assert one.getvalue().splitlines()[0] == ",".join(cols) and ",happy," in one.getvalue()

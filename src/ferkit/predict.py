"""``ferkit predict``: every face's expression in images, folders, videos and a live webcam.

Per kind of source (see ``ferkit predict --help``):

* image: prints each face; ``--out DIR`` writes ``<stem>_ferkit.png`` (boxes, labels,
  probability bars) and ``<stem>.json``;
* folder: one row per face in ``--csv`` / ``--json``, a progress bar, annotated copies under
  ``--out``; unreadable files are listed at the end, and in ``--csv`` / ``--json`` too (a row or
  entry with the reason in ``error``, so that the files account for every input);
* video: ``--out DIR`` writes ``<stem>_ferkit.mp4`` (annotated; ``--video-format webm``: ``.webm``),
  ``<stem>.csv`` (a row per face
  per processed frame: time, track id, probabilities), ``<stem>_expressions.png`` (expression
  over time per face) and ``<stem>.json``;
* ``--webcam N``: a live window with boxes, labels and FPS (``q`` or Esc quits).

The exit code is 0 when every source was read, 1 when any failed (all others are still done),
130 after Ctrl+C (what was finished is written first: ``--csv``, ``--json``, a video's outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from .errors import CameraError, Failure, FerkitError, ImageDecodeError
from .io import (STDOUT, TS_NOT_VIDEO, VideoReader, VideoWriter, camera_missing, camera_missing_message,
                 check_out_folder, check_writable, escaped, ferkit_json, frame_failures, is_url, is_video_file,
                 resolved_path, same_file, shown, write_to_stdout)
from .pipeline import Recognizer, _reason, folder_files, source_kind
from .results import Result, Results, _text, draw, entry_dict, entry_records, plot_timeline, write_csv


# ---------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------
class Window:
    """A window that shows RGB frames: OpenCV's own when its build has a GUI, else Tk (the
    ``opencv-python-headless`` that ferkit depends on has none). ``show(rgb)`` returns False once
    the user pressed q or Esc, or closed the window."""

    @staticmethod
    def _no_display() -> bool:
        return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

    @staticmethod
    def check() -> None:
        """Fail early, before any work, where no window can be shown: no display at all, or one
        that cannot be reached (a window is opened and closed again to find out)."""
        if Window._no_display():
            raise FerkitError("no display to open a window on (DISPLAY is not set): run on a desktop, or record "
                              "instead with --headless --out DIR")
        Window("ferkit").close()

    def __init__(self, title: str = "ferkit") -> None:
        if self._no_display():
            self.check()  # its message
        # (a file name that is not UTF-8 in the title would crash OpenCV: shown with its escapes)
        title = escaped(title)
        self.title, self.closed, self._tk = title, False, None
        import cv2

        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            return
        except cv2.error:
            pass
        try:
            import tkinter as tk

            root = tk.Tk()
        except Exception as e:  # ImportError, TclError: no Tk, or the display refused us
            raise FerkitError(f"cannot open a window: OpenCV here has no GUI (opencv-python-headless) and Tk "
                              f"failed ({e}); record instead with --headless --out DIR") from None
        root.title(title)
        root.protocol("WM_DELETE_WINDOW", self._close)
        root.bind("<Key>", lambda ev: self._close() if ev.keysym in ("q", "Q", "Escape") else None)
        self._label = tk.Label(root)
        self._label.pack()
        self._tk = root

    def _close(self) -> None:
        self.closed = True

    def show(self, rgb, wait_key: bool = False) -> bool:
        """Show a frame; with ``wait_key``, wait for a key (next image) before returning."""
        if self.closed:
            return False
        if self._tk is None:
            import cv2

            cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            key = cv2.waitKey(0 if wait_key else 1) & 0xFF
            self.closed = key in (ord("q"), 27)
            return not self.closed
        from PIL import Image, ImageTk

        photo = ImageTk.PhotoImage(Image.fromarray(rgb))
        self._label.configure(image=photo)
        self._label.image = photo  # keep a reference, or Tk shows nothing
        if wait_key:
            import tkinter as tk

            pressed = tk.BooleanVar(value=False)
            self._tk.bind("<Key>", lambda ev: (pressed.set(True), self._close() if ev.keysym in ("q", "Q", "Escape")
                                               else None))
            self._tk.protocol("WM_DELETE_WINDOW", lambda: (self._close(), pressed.set(True)))
            self._tk.wait_variable(pressed)
        else:
            self._tk.update()
        return not self.closed

    def close(self) -> None:
        if self._tk is not None:
            try:
                self._tk.destroy()
            except Exception:  # already gone
                pass
            self._tk = None
        else:
            import cv2

            cv2.destroyAllWindows()


# ---------------------------------------------------------------------------------------
def describe(r: Result) -> str:
    """Human-readable lines for one image's faces."""
    if not r.faces:
        return f"{shown(r.source)}: no face found"
    lines = [f"{shown(r.source)}: {len(r.faces)} face{'s' if len(r.faces) > 1 else ''}"]
    for i, f in enumerate(r.faces, 1):
        x, y, w, h = f.box
        rest = sorted(((c, p) for c, p in f.probabilities.items() if c != f.label), key=lambda kv: -kv[1])[:2]
        whole = f.landmarks is None and f.score == 1.0 and (x, y, w, h) == (0, 0, r.width, r.height)
        found = ("the whole image (--detector none)" if whole else
                 f"face {i} at ({x}, {y}) {w}x{h}, detection {f.score:.2f}")
        lines.append(f"  {found}: {f.label} {f.confidence:.2f}  ({', '.join(f'{c} {p:.2f}' for c, p in rest)})")
    return "\n".join(lines)


#: the files ``--out`` holds for an image and for a video (or camera), after its stem
IMAGE_OUTPUTS = (".json", "_ferkit.png")
#: (the annotated video is one of the first two, as --video-format says; both are kept from being written over)
VIDEO_OUTPUTS = ("_ferkit.mp4", "_ferkit.webm", ".csv", ".json", "_expressions.png")


def lost_frame_card(shape: tuple[int, ...], index: int, why: str) -> np.ndarray:
    """What an annotated video shows in place of a frame that could not be read: dark gray, with
    the frame's number and the reason (so that the video keeps the source's timing)."""
    import cv2

    card = np.full((shape[0], shape[1], 3), 40, np.uint8)
    scale = max(0.35, min(1.0, shape[1] / 900))
    lines, cur = [f"frame {index}"], ""
    for word in why.split():  # the reason wrapped to the frame's width
        wider = f"{cur} {word}".strip()
        if cur and cv2.getTextSize(wider, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > shape[1] - 20:
            lines.append(cur)
            wider = word
        cur = wider
    for i, line in enumerate(lines + [cur]):
        _text(card, line, (8, int((i + 1) * 34 * scale) + 8), scale, (230, 230, 230), (40, 40, 40))
    return card


def _say_replaced(option: str, path: str) -> None:
    """A note when --json or --csv writes over a file that was there (as evaluate and export say it)."""
    if Path(path).is_file():
        print(f"ferkit: note: {option} {shown(path)}: replacing the earlier file", file=sys.stderr)


#: lost frames after the last frame read that get a card each in the annotated video, at most (a recording
#: cut short after its first minute lost an hour of frames: an hour of cards would take minutes to write)
TAIL_CARDS = 250


def write_cards(writer: VideoWriter, shape: tuple[int, ...], errors: list[tuple[int, str]], start: int, stop: int,
                every: int) -> None:
    """A :func:`lost_frame_card` for each frame to be read (``start``, ``start + every``... before
    ``stop``) that was lost; ``errors``: the reader's ``(index, reason)`` list."""
    if stop <= start:
        return
    why = {i: reason for i, reason in errors if start <= i < stop}
    for k in range(start, stop, every):
        writer.write(lost_frame_card(shape, k, why.get(k, "not read")))


def _out_stem(out: Path, path: Path, root: Path | None, used: set[Path] | None = None,
              protected: frozenset[Path] | set[Path] = frozenset(), outputs: tuple[str, ...] = IMAGE_OUTPUTS,
              notes: list[str] | None = None, camera: bool = False) -> Path:
    """Where a file's outputs go: mirrored under ``out`` relative to its folder root. With ``used``
    (the stems given so far), a name taken by another input (``a.jpg`` and ``a.png``, or two
    folders' ``a.jpg``, or a video and a photo) gets its extension, then a number, appended: no
    output overwrites another. Nor an input: a stem whose ``outputs`` would land on one of the
    ``protected`` files (resolved paths: this run's inputs and the files beside them) is taken too,
    and so is one whose JSON an earlier run wrote for another input (said in ``notes``). A ``camera``'s
    recording (``path``: ``webcamN``) is new each time: a stem an earlier one wrote is taken, and the
    next is numbered (``webcam0_2``)."""
    rel = path.relative_to(root).with_suffix("") if root is not None else Path(path.stem)
    stem = out / rel
    if used is None:
        return stem

    seen: dict[Path, str | None] = {}  # (each stem's JSON read once)

    def others(s: Path) -> str | None:
        """The input an earlier run wrote ``s``'s outputs for, when that is another file than this
        one (``a/x.jpg`` then ``b/x.jpg`` into one --out): kept, not written over."""
        if s in seen:
            return seen[s]
        found = ferkit_json(s.parent / f"{s.name}.json") if path.exists() else None  # (not a webcam's)
        src = found[1] if found is not None else None
        # a bare name of this photo's (a run from inside its folder wrote "x.jpg"): this photo's, as
        # it may be (another folder's x.jpg run so from inside its folder is not told apart)
        mine = src is None or _names(src, path) or (len(Path(src).parts) == 1 and Path(src).name == path.name)
        seen[s] = None if mine else src
        return seen[s]

    def taken(s: Path) -> bool:
        return (s in used or any(resolved_path(s.parent / f"{s.name}{x}") in protected for x in outputs)
                or (any((s.parent / f"{s.name}{x}").exists() for x in outputs) if camera else others(s) is not None))

    first = stem
    names = (f"{stem.name}_{n}" for n in itertools.count(2)) if camera else _stem_names(path, stem.name)
    stem = next(s for s in (stem.with_name(n) for n in itertools.chain([first.name] if camera else [], names))
                if not taken(s))
    used.add(stem)
    if camera and stem != first and notes is not None:
        notes.append(f"{shown(first)}'s outputs hold an earlier recording: this one's go to {shown(stem)}_ferkit.* "
                     f"and beside it")
    if stem != first and first not in used and others(first) is not None and notes is not None:
        notes.append(f"{shown(first)}.json holds an earlier run's results for {shown(others(first))}: "
                     f"{shown(path)}'s go to {shown(stem)}.json and beside it")
    return stem


def _stem_names(path: Path, first: str) -> Iterator[str]:
    """The output stems :func:`_out_stem` tries for input ``path``, in order: ``first`` (``a``), then
    with its extension (``a_jpg``), then numbered (``a_jpg_2``, ``a_jpg_3``...)."""
    yield first
    base = f"{first}_{path.suffix.lstrip('.').lower() or 'file'}"
    yield base
    yield from (f"{base}_{n}" for n in itertools.count(2))


def _write_image_outputs(r: Result, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    r.save(stem.parent / f"{stem.name}_ferkit.png")
    (stem.parent / f"{stem.name}.json").write_text(r.to_json() + "\n")


def _progress(total: int | None, desc: str, unit: str, quiet: bool):
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=quiet or not sys.stderr.isatty())


def video_format(a: argparse.Namespace) -> str:
    """The annotated video's extension: mp4 (the default) or webm (--video-format)."""
    return getattr(a, "video_format", None) or "mp4"


def run_video(rec: Recognizer, path: str | int, a: argparse.Namespace, stem: Path | None) -> Results:
    """Process one video file or camera; write its outputs (at ``stem``, VIDEO_OUTPUTS, when given);
    return its results (no pixels kept)."""
    reader = VideoReader(path)
    is_cam = reader.is_camera
    try:
        window = Window(f"ferkit: {reader.name} (q to quit)") if not a.headless and (is_cam or a.show) else None
    except BaseException:
        reader.close()  # (a camera stays taken until released)
        raise
    writer, unwritten = None, None  # unwritten: why the annotated video could not be written
    res = Results(source=reader.name, fps=reader.fps, classes=rec.classes)
    every = a.every
    total = -(-reader.frame_count // every) if reader.frame_count else None  # frames 0, every, 2 every...
    if total is not None and a.max_frames is not None:
        total = min(total, a.max_frames)
    bar = _progress(total, shown(Path(reader.name).name), "frame", a.quiet or a.no_progress)
    t0, fps_ema, last = time.perf_counter(), None, time.perf_counter()
    interrupted = stopped = False
    next_frame = 0  # the index of the next frame to be read (0, every, 2 every...)
    written, shown_last = 0, None  # a camera's recording: frames written so far, the last one drawn
    annotated = f"_ferkit.{video_format(a)}"  # the annotated video's suffix (one of VIDEO_OUTPUTS)

    def hold(until: int) -> None:
        """The last frame written again until the video holds ``until`` frames."""
        nonlocal written
        while shown_last is not None and written < until:
            writer.write(shown_last)
            written += 1

    try:
        with reader:
            for r in rec.stream(reader, every=every, max_frames=a.max_frames):
                now = time.perf_counter()
                inst = 1.0 / max(now - last, 1e-6)
                fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
                last = now
                if stem is not None or window is not None:
                    frame = draw(r.image, r.faces, fps=fps_ema if is_cam else None)
                    if stem is not None and unwritten is None:
                        if writer is None:
                            try:
                                writer = VideoWriter(stem.parent / f"{stem.name}{annotated}", reader.fps / every,
                                                     (frame.shape[1], frame.shape[0]))
                            except ImageDecodeError as e:  # the analysis goes on: its CSV, JSON and plot
                                unwritten = str(e)
                        if writer is not None:
                            t = r.time or 0.0
                            if not is_cam and abs(t * reader.fps - (r.frame or 0)) <= 0.5:
                                # on the file's clock: the frames to be read that were lost before this one a
                                # card each, so that the annotated video keeps the source's timing (and shows
                                # the loss); counted from the frames written so far (after a stretch off the
                                # clock, held or left-out frames included), so this frame lands in its place
                                place = (r.frame or 0) // every
                                cards = min(len(range(next_frame, r.frame or 0, every)), max(0, place - written))
                                hold(place - cards)
                                write_cards(writer, frame.shape, reader.errors, (r.frame or 0) - cards * every,
                                            r.frame or 0, every)
                                written += cards
                                put = True
                            else:
                                # a camera's frames come as fast as they are analysed, fewer than its rate; a
                                # variable-rate video's are off its average rate's clock: the last frame is held
                                # until this one's time, so that the video keeps to the clock (one frame per
                                # frame at the nominal rate, a camera's recording played fast, a phone's slow
                                # second fast and its fast second slow). A video's frame whose place a faster
                                # one before it took is left out of the video (not of the results).
                                due = int(t * reader.fps / every) if is_cam else int(round(t * reader.fps / every))
                                hold(due)
                                put = is_cam or written <= due
                            if put:
                                writer.write(frame)
                                written += 1
                            shown_last = frame
                    next_frame = (r.frame or 0) + every
                    if window is not None:
                        try:
                            on_screen = window.show(frame)
                        except Exception as e:  # the display went away: the analysis goes on without it
                            tqdm.write(f"ferkit: warning: {shown(reader.name)}: the window failed ({e}); going on "
                                       f"without it", file=sys.stderr)
                            window, on_screen = None, True
                            if is_cam and stem is None:  # a live view that cannot be shown: stop
                                on_screen = False
                        if not on_screen:
                            r.image = None
                            res.append(r)
                            stopped = True
                            break
                r.image = None
                res.append(r)
                bar.update(1)
        # lost frames after the last one read (a file cut short): cards too, unless the run was
        # stopped before the end (--max-frames, the window closed)
        ended = not stopped and (a.max_frames is None or len(res) < a.max_frames)
        if writer is not None and ended and not is_cam and reader.errors:
            stop = max(i for i, _ in reader.errors) + 1  # (a long-lost end: TAIL_CARDS; the results list them all)
            write_cards(writer, (writer.size[1], writer.size[0]), reader.errors, next_frame,
                        min(stop, next_frame + TAIL_CARDS * every), every)
    except KeyboardInterrupt:  # a webcam's usual stop; a file's results so far are written all the same
        interrupted = not is_cam
    finally:
        bar.close()
        if window is not None:
            window.close()
        if writer is not None:
            try:  # (a video that cannot be moved into place: said below; the analysis is kept)
                writer.close()
            except ImageDecodeError as e:
                unwritten = unwritten or str(e)
    res.failed = frame_failures(reader.name, reader.errors, every)
    if unwritten is not None:
        res.failed.append(Failure(reader.name, f"annotated video not written ({unwritten})"))
    elapsed = time.perf_counter() - t0
    tracks: dict = {}
    for r in res:
        for f in r.faces:
            tracks.setdefault(f.track_id, []).append(f.label)
    say = (lambda *_: None) if a.quiet else print  # --quiet: no per-source lines, for videos as for photos
    # how much of the file that is: every N-th frame, or stopped by --max-frames (a file's count only)
    part = []
    if every > 1:
        part.append(f"one frame in {every}")
    last_read = max((r.frame for r in res if r.frame is not None), default=-1)
    if (a.max_frames is not None and len(res) >= a.max_frames and not interrupted and not is_cam
            and reader.frame_count and last_read + every < reader.frame_count):
        part.append(f"stopped by --max-frames {a.max_frames}")
    if part and reader.frame_count and not is_cam:
        part.append(f"of {reader.frame_count} in the file, as its header says")
    say(f"{shown(reader.name)}: {len(res)} frame(s) processed{' before the interruption' if interrupted else ''}"
        f"{' (' + ', '.join(part) + ')' if part else ''} "
        f"in {elapsed:.1f} s ({len(res) / max(elapsed, 1e-9):.1f} "
        f"frames/s), {len(tracks)} face track(s)"
        + (f"; probabilities smoothed over time (--smooth {rec.smooth:g}; 0: each frame's own)"
           if rec.smooth and tracks else ""))
    for tid, labels in sorted(tracks.items()):
        top = Counter(labels).most_common(1)[0][0]  # (a tie: the label seen first)
        say(f"  face #{tid}: in {len(labels)} frame(s), mostly {top} ({labels.count(top) / len(labels):.0%})")
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        write_csv(res.to_records(empty_row=True), stem.parent / f"{stem.name}.csv", rec.classes)
        (stem.parent / f"{stem.name}.json").write_text(res.to_json() + "\n")
        plot_timeline(res, rec.classes, stem.parent / f"{stem.name}_expressions.png",
                      title=f"{Path(reader.name).name}: expression over time")
        video_written = writer is not None and unwritten is None
        made = [f"{stem.name}{s}" for s in VIDEO_OUTPUTS
                if not s.startswith("_ferkit.") or (s == annotated and video_written)]
        say(f"  wrote {shown(', '.join(made))} in {shown(stem.parent)}")
    if interrupted:
        raise Interrupted(res)
    return res


class Interrupted(KeyboardInterrupt):
    """Ctrl+C during a video file, raised once its results so far are written: they are in ``results``."""

    def __init__(self, results: Results) -> None:
        super().__init__()
        self.results = results


def _earlier_outputs(home: Path, inputs: list[Path]) -> set[Path]:
    """Files in ``home`` an earlier run wrote for the ``inputs`` (as given, absolute) that lie there: for each,
    under the stems this run would give it (``a``, ``a_jpg``, ``a_jpg_2``...), a JSON in ferkit's form
    for that kind of input whose ``source`` is that input, and that stem's other outputs of that
    kind. A rerun writes over them, as it does in a folder of its own; any other file there (a
    JSON of the user's, a CSV) is the user's and is not written over."""
    found: set[Path] = set()
    for f in inputs:
        if resolved_path(f.parent) != home:
            continue
        kind, outputs = ("video", VIDEO_OUTPUTS) if is_video_file(f) else ("image", IMAGE_OUTPUTS)
        for stem in itertools.islice(_stem_names(f, f.stem), 10):
            mine = ferkit_json(home / f"{stem}.json")
            if mine is not None and mine[0] == kind and _names(mine[1], f):
                found.update(resolved_path(home / f"{stem}{x}") for x in outputs)
    return found


class _Named:
    """The files named in a run, indexed for :func:`_output_of_named`: by resolved path, by folder and
    name, and by the last two parts of their path (as given and as resolved), so that each candidate
    output is matched against the few inputs it can name (a glob over thousands of photos and
    their outputs, or thousands of folders each with its photo.jpg: linear, not one comparison per
    pair)."""

    def __init__(self, given: list[Path]) -> None:
        self.resolved: set[Path] = set()
        self.by_folder: dict[tuple[Path, str], list[tuple[Path, Path]]] = {}  # -> [(input, resolved)]
        self.by_tail: dict[tuple[str, ...], list[tuple[Path, Path]]] = {}
        for g in given:
            r = resolved_path(g)
            self.resolved.add(r)
            for where, name in ((resolved_path(g.parent), g.name), (r.parent, r.name)):
                self.by_folder.setdefault((where, name), []).append((g, r))
            for full in (Path(os.path.normpath(g.absolute())).parts, r.parts):
                self.by_tail.setdefault(tuple(full[-2:]), []).append((g, r))

    def names(self, source: str, f: Path) -> bool:
        """Whether ``source`` (an earlier run's JSON beside ``f``, one of its outputs) names an input
        of this run other than ``f``: the same file, a relative path ending as an input's does
        (:func:`_names`), or a bare name (a run from inside the folder wrote ``a.jpg``) of an input
        lying in ``f``'s folder."""
        me = resolved_path(f)
        r = resolved_path(Path(source))
        if r in self.resolved and r != me:
            return True
        p = Path(source)
        parts = tuple(x for x in p.parts if x != ".")
        if p.is_absolute() or ".." in parts or not parts:
            return False
        if len(parts) == 1:  # bare: an input of that name in the output's own folder
            return any(r != me for _, r in self.by_folder.get((resolved_path(f.parent), parts[0]), []))
        return any(r != me and _names(source, g) for g, r in self.by_tail.get(parts[-2:], []))


def _output_of_named(f: Path, named: _Named) -> str | None:
    """The input an earlier ``predict --out`` run wrote ``f`` for, when ``f`` is one of that run's
    outputs (a JSON in ferkit's form, or a file of its stem beside one: ``a_ferkit.png`` beside
    ``a.json``) and that input is named in this run too. The shell's glob in a second
    ``ferkit predict q/*.jpg q/*.png --out q`` names the first run's outputs beside the photos:
    they are not inputs (an annotated copy read as a photo, annotated again, and its name keeping
    the photo's own outputs from theirs), as a folder's listing leaves them out. A file named like
    an output without such a JSON, or whose JSON names no input of this run, is read."""
    name = f.name
    for tail in sorted(set(IMAGE_OUTPUTS + VIDEO_OUTPUTS), key=len, reverse=True):
        if not name.endswith(tail) or len(name) == len(tail):
            continue
        found = ferkit_json(f if tail == ".json" else f.with_name(name[:-len(tail)] + ".json"))
        if found is None or tail not in (IMAGE_OUTPUTS if found[0] == "image" else VIDEO_OUTPUTS):
            continue
        if not same_file(found[1], f) and named.names(found[1], f):
            return found[1]
    return None


def _names(source: str, f: Path) -> bool:
    """Whether an earlier run's ``source`` names the input ``f``: the same file, or a relative path
    of a folder and more (without ``..``) that is the tail of ``f``'s full path, as a run from another
    folder wrote it (``photos/a.jpg`` run from the parent, now ``a.jpg`` run from ``photos``)."""
    if same_file(source, f):
        return True
    p = Path(source)
    if p.is_absolute() or ".." in p.parts:
        return False
    parts = tuple(x for x in p.parts if x != ".")
    if len(parts) < 2:  # a bare name ("a.jpg") may be any folder's photo of that name
        return False
    # the path as it lies (a link by its own name and folder) and as it resolves
    return any(len(parts) <= len(full) and full[-len(parts):] == parts
               for full in (Path(os.path.normpath(f.absolute())).parts, resolved_path(f).parts))


def _beside(folder: str) -> str:
    """`` (e.g. photos-ferkit, beside it)`` for input folder ``photos``: a folder outside the input
    one, so that no later run over the inputs reads ferkit's outputs as photos (a subfolder is
    left out only by a run given the same ``--out``)."""
    res = Path(folder).resolve()
    if res.parent == res:  # the root folder: nothing beside it
        return ""
    sib = res.with_name(res.name + "-ferkit")
    return f" (e.g. {os.path.relpath(sib) if not Path(folder).is_absolute() else sib}, beside it)"


def predict_cli(a: argparse.Namespace) -> int:
    """``ferkit predict``. ``--json -`` or ``--csv -`` writes those results to standard output (for a
    pipe); everything else the command prints goes to standard error meanwhile."""
    for opt, value in (("--json", a.json), ("--csv", a.csv), ("--out", a.out)):
        if value is not None and not str(value).strip():  # (a script's unset $OUT: results lost in silence)
            raise FerkitError(f"{opt} is empty: name {'a folder' if opt == '--out' else 'a file (or -)'} "
                              f"for it, or leave the option out")
    if a.json == STDOUT and a.csv == STDOUT:
        raise FerkitError("--json - and --csv -: only one of them can write to standard output")
    if a.out == STDOUT:  # (it made a folder named "-")
        raise FerkitError("--out - : --out names a folder for the annotated copies; '-' (standard output) is for "
                          "--json - or --csv -")
    if a.show and a.headless:
        raise FerkitError("--show and --headless: one opens a window, the other never does; choose one")
    if STDOUT not in (a.json, a.csv):
        return _predict(a, sys.stdout)
    results_out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        return _predict(a, results_out)


def _predict(a: argparse.Namespace, results_out) -> int:
    if not a.sources and a.webcam is None:
        raise FerkitError("give at least one SOURCE (image, folder or video), or --webcam N")
    thresholds = None
    if a.thresholds:
        try:
            thresholds = tuple(float(t) for t in a.thresholds.split(","))
        except ValueError:
            raise FerkitError(f"--thresholds wants three numbers like 0.6,0.7,0.9, got {a.thresholds!r}") from None
        if len(thresholds) != 3:
            raise FerkitError(f"--thresholds wants three numbers like 0.6,0.7,0.9, got {a.thresholds!r}")
    if a.max_faces is not None and a.max_faces < 1:
        raise FerkitError(f"--max-faces must be 1 or more, got {a.max_faces}")
    if a.detector == "mtcnn" and a.min_face < 12:
        raise FerkitError(f"--min-face must be 12 pixels or more with MTCNN (its smallest window), got {a.min_face}")
    if a.min_face < 1:
        raise FerkitError(f"--min-face must be 1 pixel or more, got {a.min_face}")
    if a.every < 1 or a.detect_every < 1:
        raise FerkitError("--every and --detect-every must be >= 1")
    if a.webcam is not None and int(a.webcam) < 0:
        raise FerkitError(f"--webcam wants a camera index, 0 or more; got {a.webcam}")
    if a.max_frames is not None and a.max_frames < 1:
        raise FerkitError(f"--max-frames must be at least 1, got {a.max_frames}")
    if a.webcam is not None and camera_missing(int(a.webcam)) and (not a.headless or not a.sources):
        # (before the display's: its "record instead with --headless" would only lead to this; headless, the
        # camera alone is said so too, not as the failure "webcam:0: no camera at index 0" of a batch)
        raise CameraError(camera_missing_message(int(a.webcam)))
    if not a.headless and (a.show or a.webcam is not None):
        Window.check()
    if getattr(a, "video_format", "mp4") != "mp4" and not a.out:
        print(f"ferkit: note: --video-format {a.video_format} does nothing without --out (it is the annotated "
              f"video's format, which --out writes)", file=sys.stderr)
    if a.webcam is not None and a.headless and not (a.out or a.json or a.csv):
        print("ferkit: note: --webcam --headless without --out, --json or --csv: nothing is shown or saved; the "
              "camera is read until Ctrl+C (or --max-frames), then a summary is printed", file=sys.stderr)
    from .api import ExpressionModel

    loaded = isinstance(a.model, ExpressionModel)  # (loaded on its --device and --backend by cmd_predict)
    rec = Recognizer(a.model, a.detector, device="cpu" if loaded else a.device, min_face_size=a.min_face,
                     thresholds=thresholds,
                     max_faces=a.max_faces, tta=None if a.tta == "none" else a.tta, smooth=a.smooth,
                     detect_every=a.detect_every)
    from .cli import say_dynamic_int8

    say_dynamic_int8(rec.model, getattr(a, "backend", None))
    out = Path(a.out) if a.out else None
    # an earlier run's outputs named beside the inputs they were written for (a glob over a folder
    # that holds both): listed as ignored, not read; written over like this run's other outputs
    ignored: list[tuple[str, str]] = []  # files not read: in folders, not images; named, earlier outputs
    index = _Named([Path(s) for s in a.sources if s and Path(s).is_file()])
    earlier = {s: of for s in a.sources if s and Path(s).is_file()
               for of in [_output_of_named(Path(s), index)] if of is not None}
    if earlier:
        ignored.extend((s, f"an earlier run's output for {of} (named too): not read as an input")
                       for s, of in earlier.items())
        a.sources = [s for s in a.sources if s not in earlier]
    # a file or folder named twice (x.mp4 x.mp4, or a/x.jpg and ./a/x.jpg): read once (twice, its
    # outputs were written twice, under two names, and its entries doubled in --json/--csv)
    once, kept = set(), []
    for s in a.sources:
        key = resolved_path(Path(s)) if s and Path(s).exists() else s
        if key in once:
            ignored.append((s, "named again: read once"))
            continue
        once.add(key)
        kept.append(s)
    named_again = len(kept) < len(a.sources)
    a.sources = kept
    inputs = {Path(s).resolve() for s in a.sources if Path(s).is_file()}
    # the input folders, listed once, up front: the files no output may overwrite are the inputs
    # and what lies beside them there
    protected = set(inputs)
    if out is not None and out.is_dir():  # files given one by one, --out their own folder: what lies
        home = out.resolve()               # there is the user's too (an a.json of their own notes),
        given = [Path(s).absolute() for s in a.sources if Path(s).is_file()]  # (a link: where it lies, its name)
        if any(g.parent.resolve() == home for g in given):  # but an earlier run's outputs for these inputs
            mine = _earlier_outputs(home, given)
            # every entry, not only files: a FIFO, a link or a folder at an output's name is not written to
            protected.update(r for r in map(resolved_path, home.iterdir()) if r not in mine)
    listings: dict[str, tuple[list[Path], list[tuple[str, str]], list[Failure]]] = {}
    for src in a.sources:
        if src and Path(src).is_dir() and src not in listings:
            if out is not None and Path(src).resolve() == out.resolve():
                raise FerkitError(f"--out {a.out} is the input folder {src}: its outputs would be written among the "
                                  f"images there, over files of the same names; name another folder{_beside(src)}")
            unreadable: list[Failure] = []
            listed, others = folder_files(src, unreadable, exclude=out, hidden=True, videos=True)
            listings[src] = (listed, others, unreadable)
            protected.update(f.resolve() for f in listed)
            protected.update(Path(f).resolve() for f, _ in others)
    for opt, value in (("--json", a.json), ("--csv", a.csv)):
        if value and value != STDOUT and Path(value).resolve() in inputs:
            raise FerkitError(f"{opt} {value} is one of the input files: it would be overwritten")
        if value and value != STDOUT:  # (inside --out: an input's own JSON or CSV of that name takes another)
            protected.add(resolved_path(Path(value)))
    if a.json and a.csv and STDOUT not in (a.json, a.csv) and Path(a.json).resolve() == Path(a.csv).resolve():
        raise FerkitError(f"--json and --csv name the same file ({a.json})")
    check_writable("--json", a.json if a.json != STDOUT else None)
    check_writable("--csv", a.csv if a.csv != STDOUT else None)
    check_out_folder("--out", out)
    used_stems: set[Path] = set()
    moved: list[str] = []  # outputs given other names, an earlier run's for another input being there
    made_out = out is not None and not out.exists()  # (made here: taken away again if nothing was written)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    failed: list[Failure] = []
    # results and failures in the order met, for --json and --csv (a failure is an entry too)
    entries: list[Result | Failure] = []
    seen = 0

    def note(r: Result | None = None) -> None:
        nonlocal seen
        entries.extend(failed[seen:])
        seen = len(failed)
        if r is not None:
            entries.append(r)

    def note_video(res: Results) -> None:
        nonlocal seen
        note()
        entries.extend(res.in_order())  # its lost frames where they were in the video
        failed.extend(res.failed)
        seen = len(failed)

    def video(src: str | int, named: Path, root: Path | None) -> None:
        """One video file (given, or found under the folder ``root``) or camera: run, its outputs
        written, its frames and lost frames noted; one that cannot be opened is a failure (but for a
        folder's ``.ts`` file, which may be TypeScript: ignored, as other files that are not videos)."""
        stem = (_out_stem(out, named, root, used_stems, protected, VIDEO_OUTPUTS, moved, camera=isinstance(src, int))
                if out else None)
        try:
            res = run_video(rec, src, a, stem)
        except FerkitError as e:
            name = f"webcam:{src}" if isinstance(src, int) else str(src)  # (the reader's name)
            if root is not None and named.suffix.lower() == ".ts":
                ignored.append((name, TS_NOT_VIDEO))
                return
            failed.append(Failure(name, _reason(e, name)))
            return
        note_video(res)

    n_images = 0
    image_window: Window | None = None
    sources: list = list(a.sources)
    if a.webcam is not None:
        sources.append(int(a.webcam))
    interrupted = False  # Ctrl+C: what was finished is still written (--csv, --json), then exit 130
    bar = None
    try:
        for src in sources:
            try:
                kind = source_kind(src) if isinstance(src, int) or (src and Path(src).exists()) else "missing"
            except FerkitError as e:
                failed.append(Failure(str(src), str(e)))
                continue
            if kind == "missing":
                failed.append(Failure(str(src) or '""', "an empty path" if not src else "a broken or looping link"
                                      if Path(src).is_symlink() else "a URL; ferkit works offline and fetches "
                                      "nothing: download it and give its path" if is_url(src)
                                      else "no such file or folder"))
                continue
            if kind in ("video", "webcam"):
                video(src, Path(f"webcam{src}" if kind == "webcam" else str(src)), None)
                continue
            videos: list[Path] = []
            if kind == "folder":
                listed = len(failed)
                files, skipped, unreadable = listings[src]
                failed.extend(unreadable)
                ignored.extend(skipped)
                if not files and len(failed) == listed:  # (one that cannot be listed is said once)
                    failed.append(Failure(str(src), "folder holds no image or video files"))
                root = Path(src)
                # its videos after its images (each video has its own progress bar)
                videos = [f for f in files if is_video_file(f)]
                files = [f for f in files if not is_video_file(f)]
            else:
                files, root = [Path(src)], None
            bar = _progress(len(files), "predicting", "img", a.quiet or a.no_progress or len(files) < 10)
            for f in files:
                bar.update(1)
                try:
                    r = rec.analyze(f)
                except FerkitError as e:
                    failed.append(Failure(str(f), _reason(e, str(f))))
                    continue
                n_images += 1
                if not a.quiet:
                    tqdm.write(describe(r))
                if out:
                    _write_image_outputs(r, _out_stem(out, f, root, used_stems, protected, notes=moved))
                if a.show and not a.headless:
                    try:
                        if image_window is None:
                            image_window = Window("ferkit (any key: next image, q: quit)")
                        if not image_window.show(r.plot(), wait_key=True):
                            a.show = False
                    except Exception as e:  # the display went away (Tk's or OpenCV's error): no more
                        # windows; the results are still written, the image was read (not a failure)
                        tqdm.write(f"ferkit: warning: --show: the window failed ({e}); going on without it",
                                   file=sys.stderr)
                        a.show = False
                r.image = None
                note(r)
            bar.close()
            for f in videos:
                video(str(f), f, root)
    except KeyboardInterrupt as e:
        interrupted = True
        if bar is not None:
            bar.close()
        if isinstance(e, Interrupted):  # a video file: its frames so far
            note_video(e.results)
    if image_window is not None:
        image_window.close()
    note()
    # files first: a reader of standard output that goes away (| head) loses only its own copy
    stdout_text = None
    if a.json:
        # one image named: its dict (as the HTTP API answers), or its failure's ({"source", "error", "faces": []},
        # so that `jq .faces` reads both); else a list, failures included (a folder gives a list even when it
        # holds one image, so that a script reads every folder alike; a video a list of its frames)
        one = sources[0] if len(sources) == 1 else None
        single = (one is not None and not isinstance(one, int) and (one == "" or not Path(one).is_dir())
                  and not is_video_file(one) and len(entries) == 1)
        text = json.dumps(entry_dict(entries[0]) if single else [entry_dict(e) for e in entries], indent=2) + "\n"
        if a.json == STDOUT:
            stdout_text = text
        else:
            _say_replaced("--json", a.json)
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(text)
    if a.csv:
        rows = [row for e in entries for row in entry_records(e)]
        if a.csv == STDOUT:
            write_to_stdout(results_out, lambda f: write_csv(rows, f, rec.classes))
        else:
            _say_replaced("--csv", a.csv)
            Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
            write_csv(rows, a.csv, rec.classes)
    if stdout_text is not None:
        write_to_stdout(results_out, lambda f: f.write(stdout_text))
    if made_out and out is not None and out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # every source failed: no empty folder left behind
    if out and n_images:
        print(f"annotated images and JSON in {shown(out)}/")
    for m in moved[:5]:
        print(f"ferkit: note: {m}", file=sys.stderr)
    if len(moved) > 5:
        print(f"ferkit: note: ... and {len(moved) - 5} more kept so", file=sys.stderr)
    if interrupted:
        written = [w if w != STDOUT else "standard output" for w in (a.json, a.csv) if w]
        print(f"\nferkit: interrupted; what was finished is written"
              f"{' (' + ', '.join(written) + ')' if written else ''}", file=sys.stderr)
        return 130
    if ignored:
        # a notes.txt beside the photos (or a folder's .ts that is no video) is not a failure (exit 0), but said
        print(f"\n{len(ignored)} file(s){'' if earlier or named_again else ' in the folder(s)'} ignored:",
              file=sys.stderr)
        for s, why in ignored[:20]:
            print(f"  {shown(s)}: {shown(why)}", file=sys.stderr)
        if len(ignored) > 20:
            print(f"  ... and {len(ignored) - 20} more", file=sys.stderr)
    if len(failed) == 1 and len(sources) == 1 and failed[0].frames is None and not n_images \
            and not any(isinstance(e, Result) for e in entries):
        # one input, and it could not be read: the one line of any other error
        print(f"ferkit: error: {shown(failed[0].where)}: {shown(failed[0].error)}", file=sys.stderr)
        return 1
    if failed:
        whole = sum(f.frames is None for f in failed)
        # a camera that stopped giving frames lost no frame: it ended (said as such, not as 1 frame skipped)
        stops, runs = [], []
        for f in failed:
            if f.frames is not None:
                (stops if f.error.startswith(VideoReader.CAMERA_STOPPED) else runs).append(f)
        lost = sum(f.lost for f in runs)
        videos = len({f.source for f in runs})
        print("\n" + "; ".join(([f"{whole} source(s) failed"] if whole else []) +
                               ([f"{lost} video frame(s) skipped in {videos} file(s)"] if lost else []) +
                               ([f"{len(stops)} camera(s) stopped"] if stops else [])) + ":",
              file=sys.stderr)
        for f in failed:
            print(f"  {shown(f.where)}: {shown(f.error)}", file=sys.stderr)
        return 1
    return 0

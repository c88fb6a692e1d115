"""Image decoding in one place. Every failure becomes :class:`ImageDecodeError` with the source named.

Odd inputs handled here so that no caller has to: palette/CMYK/RGBA/16-bit/float images,
EXIF rotation, truncated or empty files, non-image files, and decompression bombs.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
from contextlib import contextmanager
from pathlib import Path
from struct import error as struct_error
from typing import Any, Callable, Iterator, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CameraError, Failure, FerkitWarning, ImageDecodeError, ImageTooLargeError

#: Images with more pixels than this are refused (a 12k x 12k photo is ~144 MP).
MAX_PIXELS = 150_000_000


def bomb_pixels(err: Exception) -> int | None:
    """The pixel count in Pillow's decompression-bomb error ("Image size (N pixels) exceeds limit
    ..."): Pillow refuses such an image (over 179 MP) before ferkit can read its size, and ferkit
    reports its own limit instead of Pillow's text. None when the message has no count."""
    import re

    m = re.search(r"\((\d+) pixels\)", str(err))
    return int(m.group(1)) if m else None

#: ``--json -`` / ``--csv -``: write those results to standard output instead of a file
STDOUT = "-"


def utf8_name(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is valid UTF-8. A file name that is not (a Latin-1 name from an old archive
    reaches Python with surrogate escapes) must never reach OpenCV, which crashes the process on it
    (a segmentation fault): :func:`write_image_file`, :class:`VideoReader` and :class:`VideoWriter`
    go around it."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def escaped(text: str) -> str:
    """``text`` with what is not UTF-8 (a file name's surrogate escapes) as backslash escapes, for
    what takes no surrogates (OpenCV's window titles, which crash on them; matplotlib's text)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: the format characters that reorder text on screen (a name "photo\u202egpj.exe" shows as
#: "photoexe.jpg"); other format characters (zero-width joiners in Persian names and emoji, soft
#: hyphens) are letters of real names and stay
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(text: object, lines: bool = False) -> str:
    """``text`` as a terminal may show it: control characters (terminal escapes, carriage
    returns, newlines) and bidirectional controls (:data:`_BIDI_CONTROLS`) as ``\\xNN`` or
    ``\\uNNNN`` escapes, what is not UTF-8 (a file name's surrogate escapes) as backslash escapes.
    A file named ``"a\\x1b[2J.jpg"`` would otherwise clear the screen when its name is printed, and
    one with a newline would forge a line of ferkit's report. ``lines``: newlines kept (a message
    of several lines); names within it should be escaped first."""
    out = []
    for ch in str(text):
        if ch == "\n" and lines:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return escaped("".join(out))


def resolved_path(p: Path) -> Path:
    """``p`` resolved; as it is (absolute) where it cannot be (a symlink loop, a NUL byte)."""
    try:
        return p.resolve()
    except Exception:
        return p.absolute()


def write_image_file(path: Union[str, os.PathLike], bgr: np.ndarray) -> bool:
    """``cv2.imwrite`` for any file name: encoded by OpenCV (the format from the extension), written
    by Python. False when the extension is not an image format OpenCV writes."""
    import cv2

    ext = Path(path).suffix
    if not ext or not utf8_name(ext):
        return False
    try:
        ok, buf = cv2.imencode(ext, bgr)
    except cv2.error:
        return False
    if not ok:
        return False
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return True


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` sets it for
    every thread while it is read)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_usual_mode(path: str | os.PathLike, like: str | os.PathLike | None = None) -> None:
    """Permissions for a file written through a temporary one (mkstemp, safetensors: 0600): those of
    ``like`` (the file it replaces) where that exists, else the usual ones (0666 less the umask).
    Where the file system cannot set them (FAT, some network mounts) the file stays as it is."""
    with contextlib.suppress(OSError):
        final = Path(like) if like is not None else None
        os.chmod(path, stat.S_IMODE(final.stat().st_mode) if final is not None and final.is_file()
                 else 0o666 & ~_umask())


class StagedFiles:
    """Several output files written all or none: each is written under a temporary name in its own
    folder (:meth:`path`) and moved onto its name by :meth:`commit`, after all were written. Until
    then an earlier file of the same name is left as it was; :meth:`discard` removes the temporary
    files (:func:`staged_files` does either)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)
        self._asked: dict[Path, Path] = {}  # final -> the name asked for (a link's own name), for messages

    def path(self, final: Union[str, os.PathLike]) -> Path:
        """The temporary file to write ``final``'s contents into (same folder, same extension: a
        writer that takes the format from the name writes the right one)."""
        asked = Path(final)
        # written through a link, as a plain write would: onto its target (the format still from the
        # name asked for: a link may point at a file without an extension)
        final = Path(os.path.realpath(asked)) if asked.is_symlink() else asked
        try:  # (a short fixed prefix: a name near the file system's limit still fits)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".ferkit-", suffix=asked.suffix[:16])
        except OSError as e:  # named by the file asked for, not by the temporary one
            raise OSError(e.errno, e.strerror, str(asked)) from None
        os.close(fd)
        self._pending.append((Path(tmp), final))
        self._asked[final] = asked
        return Path(tmp)

    def commit(self) -> list[Path]:
        """Move every file onto its name; returns the names. A name that is a folder (or otherwise
        not a file) is refused before any is moved."""
        from .errors import FerkitError

        for _, final in self._pending:
            if final.exists() and not final.is_file():
                what = "it is a folder" if final.is_dir() else "it is not a regular file"
                raise FerkitError(f"cannot write {self._asked.get(final, final)}: {what}; nothing was written")
        done: list[Path] = []
        for tmp, final in self._pending:
            try:
                give_usual_mode(tmp, final)  # (mkstemp makes 0600: an earlier file's mode is kept)
                os.replace(tmp, final)
            except OSError as e:
                raise FerkitError(f"cannot write {self._asked.get(final, final)}: {e.strerror or e}" +
                                  (f" (written: {', '.join(map(str, done))})" if done else "; nothing was written")
                                  ) from None
            done.append(self._asked.get(final, final))
        self._pending = []
        return done

    def drop(self, tmp: Union[str, os.PathLike]) -> None:
        """Forget (and remove) the temporary file :meth:`path` gave: its name is not written."""
        self._pending = [(t, f) for t, f in self._pending if t != Path(tmp)]
        with contextlib.suppress(OSError):
            Path(tmp).unlink()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending = []


@contextmanager
def staged_files() -> Iterator[StagedFiles]:
    """``with staged_files() as st: write(st.path(name)) ...``: the files are moved onto their names
    when the block ends normally, and removed (the earlier files of those names kept) when it raises."""
    st = StagedFiles()
    try:
        yield st
    except BaseException:
        st.discard()
        raise
    try:
        st.commit()
    finally:
        st.discard()  # (whatever a failed commit left)


def write_to_stdout(out: Any, write: Callable[[Any], None]) -> bool:
    """``write(out)`` then flush, for results sent to standard output (``--json -``): False, and a
    note on standard error, when the reader has gone (``| head``), rather than a BrokenPipeError
    that skips what the command still has to do (its files, its failure report, its exit status).
    Standard output is pointed at /dev/null then, so the interpreter's last flush stays quiet."""
    try:
        write(out)
        out.flush()
        return True
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        print("ferkit: standard output was closed before the results were all written", file=sys.stderr)
        return False

#: what operating systems leave in folders (macOS archives, Windows Explorer): never anyone's images
OS_LITTER = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini", "$RECYCLE.BIN", "System Volume Information"})


def is_hidden_name(name: str) -> bool:
    """A hidden file or folder (``.name``) or operating-system litter (:data:`OS_LITTER`): not read."""
    return name.startswith(".") or name in OS_LITTER


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"})

Source = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


def check_writable(option: str, path: Union[str, os.PathLike, None]) -> None:
    """Before any work: ``path`` (an output file named by ``option``) can be written, so that a
    long run is not lost at its end. Makes the parent folder; raises :class:`FerkitError`."""
    if not path:
        return
    from .errors import FerkitError

    p = Path(path)
    if p.is_dir():
        raise FerkitError(f"{option} {p}: is a folder; name a file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FerkitError(f"{option} {p}: cannot make its folder ({e.strerror or e})") from None
    # tried, not asked (os.access says yes to root, and to /proc or a read-only mount's folders);
    # a pipe or device (/dev/stdout, a FIFO) is not opened: a reader at its other end would see an end
    if p.exists() and not p.is_file():
        if not os.access(p, os.W_OK):
            raise FerkitError(f"{option} {p}: not writable")
        return
    try:
        if p.exists():
            with open(p, "ab"):  # opened to append, nothing written: the file is left as it was
                pass
        else:
            with open(p, "xb"):
                pass
            p.unlink()
    except FileExistsError:  # made meanwhile (another run), or a link to a file yet to be written
        pass
    except OSError as e:
        raise FerkitError(f"{option} {p}: not writable ({e.strerror or e})") from None


def check_out_folder(option: str, path: Union[str, os.PathLike, None]) -> None:
    """Before any work: ``path`` (an output folder named by ``option``) is not a file, nor under
    one. Raises :class:`FerkitError`."""
    if not path:
        return
    from .errors import FerkitError

    p = Path(path)
    for q in (p, *p.parents):
        if q.is_symlink() and not q.exists():
            raise FerkitError(f"{option} {p}: {q} is a broken link")
        if q.exists():
            if not q.is_dir():
                raise FerkitError(f"{option} {p}: " + ("is a file; name a folder" if q == p
                                                       else f"{q} is a file, not a folder"))
            # something can be written where the output goes (a folder made and removed at once)
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".ferkit-check-", dir=q))
            except OSError as e:
                raise FerkitError(f"{option} {p}: cannot write in {q} ({e.strerror or e})") from None
            break


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


#: EXIF orientation -> the transpose that turns the stored pixels upright (2..8; 1 is upright)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _orientation(img: Image.Image) -> int:
    """The image's EXIF orientation, 1 when it has none or its EXIF cannot be read (a malformed
    block must not make a readable picture unreadable)."""
    try:
        o = img.getexif().get(0x0112, 1)
        return o if isinstance(o, int) and o in _UPRIGHT else 1
    except Exception:  # Pillow's EXIF parser raises many kinds on damaged blocks
        return 1


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned upright by its EXIF orientation (a new image; ``img`` itself when upright).
    Unlike ``ImageOps.exif_transpose`` it does not rewrite the EXIF, which fails on damaged tags."""
    o = _orientation(img)
    return img if o == 1 else img.transpose(_UPRIGHT[o])


def _to_mode(img: Image.Image, mode: str, label: str = "image") -> Image.Image:
    """Convert any PIL mode to ``L`` or ``RGB`` without surprises (16-bit, float, alpha, palette)."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():  # a float image with NaN or inf pixels: no meaningful gray levels
            raise ImageDecodeError(f"{label}: the image holds NaN or infinite pixel values")
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        elif hi <= lo:
            hi = lo + 1.0
        arr = np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        # composite on white: transparent pixels should not turn into black blobs
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return img if img.mode == mode else img.convert(mode)  # convert() to the same mode would copy


def _looks_like_video(path: Union[str, os.PathLike]) -> bool:
    """Whether a file's first bytes are a video container's (MP4/MOV other than HEIC/AVIF photos,
    AVI, Matroska/WebM, MPEG program or transport streams, FLV, ASF/WMV): said when such a file,
    under a name ferkit does not know as a video's, fails as an image."""
    try:
        with open(path, "rb") as f:
            head = f.read(400)
    except OSError:
        return False
    if head[4:8] == b"ftyp":
        return head[8:12] not in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")
    return (head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or head[:4] == b"\x00\x00\x01\xba" or head[:3] == b"FLV" or head[:4] == b"\x30\x26\xb2\x75"
            or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47))


def caller_level() -> int:
    """The ``stacklevel`` that makes a warning raised inside ferkit name the first frame outside it
    (the user's line that called ``predict``, ``analyze`` or ``read_image``, however deep inside
    ferkit the warning is raised)."""
    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    f, level = sys._getframe(1), 1  # the function that warns
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(pkg):
        f, level = f.f_back, level + 1
    return level


def is_file_object(source: Any) -> bool:
    """A file object to read an image's bytes from (anything with ``read``, not a path or an image)."""
    cv2 = sys.modules.get("cv2")  # (a capture reads frames, not bytes; without OpenCV loaded there is none)
    capture = (cv2.VideoCapture,) if cv2 is not None and isinstance(getattr(cv2, "VideoCapture", None), type) else ()
    return hasattr(source, "read") and not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview,
                                                                np.ndarray, Image.Image, *capture))


def file_object_name(source: Any) -> str | None:
    """The name of the file a file object reads (``open(path, "rb")``'s path), else None."""
    n = getattr(source, "name", None) if is_file_object(source) else None
    return n if isinstance(n, str) and n else None


def read_image(source: Source, mode: str = "L", name: str | None = None,
               formats: tuple[str, ...] | list[str] | None = None, *,
               notes: list[str] | None = None) -> np.ndarray:
    """Decode ``source`` (path, bytes, a binary file object, array or PIL image) to a uint8 array.

    ``mode="L"`` gives ``H x W`` grayscale, ``mode="RGB"`` gives ``H x W x 3``. A uint8 array
    already in that form comes back as it is (the same array when contiguous, not a copy).
    ``formats``: for a path or bytes, the only Pillow formats tried (None: all it knows; a file
    of another format is "not an image file"). Raises :class:`ImageDecodeError` naming the source
    when it cannot be read. What is read with a caveat (only the first frame of an animation, a
    JPEG without its end marker, a picture that may be cut short) is a ``UserWarning``, or, given
    a ``notes`` list, appended to it instead (the server's way: each request's own list, where a
    warning would go to whichever thread's filters are in force).
    """

    def warn(message: str) -> None:  # (warned at the first frame outside ferkit: the user's call)
        if notes is not None:
            notes.append(message)
        else:
            warnings.warn(message, FerkitWarning, stacklevel=caller_level())

    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', not {mode!r}")
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else file_object_name(source)
                     or type(source).__name__)
    if is_file_object(source):  # open(path, "rb"), io.BytesIO, an upload's file: its bytes from where it stands
        try:
            data = source.read()  # type: ignore[union-attr]
        except (OSError, ValueError) as e:  # (closed, not readable)
            raise ImageDecodeError(f"{label}: cannot read the file object ({e})") from None
        if isinstance(data, str):
            raise ImageDecodeError(f"{label}: a file opened in text mode: open the image with 'rb'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageDecodeError(f"{label}: its read() gave a {type(data).__name__}, not bytes")
        source = data
    if isinstance(source, np.ndarray):
        return _from_array(source, mode, label, warn)
    if isinstance(source, Image.Image):
        w, h = source.size
        if w < 1 or h < 1:
            raise ImageDecodeError(f"{label}: image has no pixels ({w}x{h})")
        if w * h > MAX_PIXELS:
            raise ImageTooLargeError(f"{label}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
                                   f"{MAX_PIXELS / 1e6:.0f} MP limit")
        if getattr(source, "fp", True) is None and getattr(source, "tile", None):
            raise ImageDecodeError(f"{label}: the image's file was closed before its pixels were read (read it "
                                   f"inside its `with Image.open(...)` block, or call .load() there)")
        try:
            # a lazily opened file decodes here; EXIF rotation as for a path or bytes (on a copy:
            # the caller's image stays as it is)
            source.load()
            if source.format in ("JPEG", "MPO") and _jpeg_ends_blank(source) == "cut":
                raise ImageDecodeError(_cut_jpeg(label, w, h))
            if source.mode.startswith("I;16") and warn is not None:  # as for a uint16 array (the same pixels)
                _warn_low16(label, int(np.asarray(source).max()), "16-bit PIL image", warn)
            return np.asarray(_to_mode(_upright(source), mode, label))
        except ImageDecodeError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # Pillow's plugins raise OSError, ValueError, TypeError, struct.error...
            raise ImageDecodeError(f"{label}: cannot decode or convert this image ({e})") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageDecodeError(f"{label}: empty image data (0 bytes)")
        fp: object = _io.BytesIO(data)
    elif not isinstance(source, (str, os.PathLike)):
        raise ImageDecodeError(f"{label}: cannot read an image from a {type(source).__name__} "
                               f"(give a file path, bytes, a file object, a numpy array or a PIL image)")
    else:
        if not str(source).strip():
            raise ImageDecodeError("an empty path (no file named)")
        path = Path(source)
        if not path.exists():
            if not path.is_symlink() and is_url(source):
                raise ImageDecodeError(f"{label}: a URL; ferkit works offline and fetches nothing: download the "
                                       f"image and give its path (or its bytes)")
            raise ImageDecodeError(f"{label}: " + ("a broken or looping link" if path.is_symlink() else "no such file"))
        if path.is_dir():
            raise ImageDecodeError(f"{label}: is a folder, not an image")
        if not path.is_file():
            raise ImageDecodeError(f"{label}: not a regular file (a pipe, socket or device)")
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"{label}: empty file (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP: ferkit's own limit (MAX_PIXELS, checked below before decoding)
            # decides instead; Pillow's hard error (179 MP) stays a second ceiling
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp, formats=formats) as img:  # type: ignore[arg-type]
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageTooLargeError(
                        f"{label}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {MAX_PIXELS / 1e6:.0f} MP limit"
                    )
                if w < 1 or h < 1:
                    raise ImageDecodeError(f"{label}: image has no pixels ({w}x{h})")
                if img.format in ("JPEG", "MPO"):
                    _check_jpeg_scans(fp, label)
                img.load()
                blank = _jpeg_ends_blank(img) if img.format in ("JPEG", "MPO") else None
                if blank == "cut":
                    raise ImageDecodeError(_cut_jpeg(label, w, h))
                if blank == "maybe":
                    warn(f"{label}: the lower half or more of the picture is flat gray (128) from a row of "
                         f"blocks down, as libjpeg fills a file cut short; read as it is")
                if img.mode.startswith("I;16"):  # a 12-bit camera's values in a 16-bit PNG: said, as for arrays
                    _warn_low16(label, int(np.asarray(img).max()), "16-bit image", warn)
                out = np.ascontiguousarray(np.asarray(_to_mode(_upright(img), mode, label)))
                try:  # (counting pages walks the whole file, whose later pages may be damaged)
                    frames = _tiff_pages(img) if img.format == "TIFF" else getattr(img, "n_frames", 1)
                except Exception:
                    frames = 1
                if frames > 1 and img.format != "MPO":  # (a phone's MPO: its photo first, then depth maps)
                    many = f"{frames} or more" if img.format == "TIFF" and frames >= MAX_PAGES_COUNTED else frames
                    warn(f"{label}: holds {many} {'pages' if img.format == 'TIFF' else 'frames'} (an "
                         f"animation or a multi-page file); only the first is read")
                return out
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        n = bomb_pixels(e)
        raise ImageTooLargeError(f"{label}: " + (f"image is {n / 1e6:.0f} MP, over the {MAX_PIXELS / 1e6:.0f} MP limit"
                                                 if n else f"image too large to decode safely ({e})")) from None
    except UnidentifiedImageError:
        hint = ""
        if isinstance(source, (str, os.PathLike)) and _looks_like_video(source):  # (a clip named "clip" or .m2ts)
            hint = "; videos are told by their extension (.mp4, .avi, .mov, .mkv, .webm, ...): rename a video so"
        raise ImageDecodeError(f"{label}: not an image file (or a format Pillow cannot read){hint}") from None
    except PermissionError:
        raise ImageDecodeError(f"{label}: permission denied (cannot read the file)") from None
    except MemoryError:
        raise
    except Exception as e:  # OSError, SyntaxError, ValueError, and what Pillow's plugins raise on damaged
        # files besides (TypeError, struct.error, IndexError, KeyError...)
        whole = _only_end_marker_missing(fp, e)
        if whole is not None:
            out = read_image(whole, mode, name=label, formats=formats, notes=notes)
            warn(f"{label}: the JPEG file lacks its 2-byte end marker (FF D9) but holds all of its picture; read "
                 f"as it is")
            return out
        raise ImageDecodeError(f"{label}: corrupt or truncated image ({e})") from None


#: the most scans a JPEG may hold: a progressive one from a camera or an encoder has about 10 (mozjpeg's
#: up to some 20); each scan walks every block of the picture, so a small file of thousands of scans
#: (libjpeg only warns) costs minutes of decoding
MAX_JPEG_SCANS = 100
#: a TIFF's pages are counted up to this many (Pillow's own count walks them all, slower than linearly:
#: a 10 MB file of 100,000 one-pixel pages took over a minute)
MAX_PAGES_COUNTED = 1000


def _check_jpeg_scans(fp: object, label: str) -> None:
    """Refuse a JPEG of more than :data:`MAX_JPEG_SCANS` scans, before it is decoded: its markers
    walked from the start (each segment by its length, each scan's coded data to its next marker:
    bytes of metadata, an ICC profile or a thumbnail, are not counted)."""
    if isinstance(fp, _io.BytesIO):
        data = fp.getbuffer().tobytes()
    else:
        try:
            data = Path(fp).read_bytes()  # type: ignore[arg-type]
        except (OSError, TypeError):
            return
    scans = _jpeg_scans(data, MAX_JPEG_SCANS)
    if scans > MAX_JPEG_SCANS:
        raise ImageDecodeError(f"{label}: a JPEG of more than {MAX_JPEG_SCANS} scans (a progressive photo has about "
                               f"10) or {MAX_JPEG_SEGMENTS:,} segments: refused, as decoding it would take minutes")


#: a marker between segments: FF then neither 00 (a stuffed zero) nor FF (fill)
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xff]")
#: the first marker after a scan's coded data (FF then neither 00, a restart marker, nor FF)
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: segments walked before a JPEG is refused as made to be slow to walk (a real one has tens)
MAX_JPEG_SEGMENTS = 10_000


def _jpeg_scans(data: bytes, stop: int) -> int:
    """How many scans (start-of-scan segments) the JPEG ``data`` holds, counted up to ``stop`` + 1
    (bytes between segments skipped to the next marker, as libjpeg does)."""
    i, n, end, segments = 2, 0, len(data), 0
    while n <= stop:
        # the next marker, as libjpeg's next_marker finds it: stray bytes, FF 00 and FF fill skipped in one search
        # (walked a few bytes at a time, 10 MB of them took seconds)
        found = _JPEG_NEXT_MARKER.search(data, i)
        if found is None or found.start() + 4 > end:
            break
        i = found.start()
        m = data[i + 1]
        if m == 0xD9:  # end of image
            break
        segments += 1  # (every marker: a real file has tens; millions of tiny ones took seconds to walk)
        if segments > MAX_JPEG_SEGMENTS:
            return stop + 1
        if m in (0x01, 0xD8) or 0xD0 <= m <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if m == 0xDA:
            n += 1
            # the scan's coded data: every FF in it is followed by 00 (stuffed), a restart marker or more FF
            found = _JPEG_MARKER.search(data, i)
            if found is None:
                return n
            i = found.start()
    return n


def _tiff_pages(img: Image.Image) -> int:
    """A TIFF's pages, counted one by one up to :data:`MAX_PAGES_COUNTED` (then that number)."""
    n = 1
    try:
        while n < MAX_PAGES_COUNTED:
            img.seek(n)
            n += 1
    except EOFError:
        pass
    finally:
        with contextlib.suppress(Exception):
            img.seek(0)
    return n


def _only_end_marker_missing(fp: object, err: Exception) -> bytes | None:
    """For a JPEG that Pillow refuses as truncated: its bytes with the end marker (``FF D9``)
    added, when that marker is all it lacks (some cameras, MJPEG webcams and uploaders drop it;
    OpenCV and browsers decode every pixel), as :func:`ferkit._jpeg.complete_without_end_marker`
    finds by walking its Huffman-coded blocks. None otherwise: the file stays refused."""
    from ._jpeg import MAX_WALK_BYTES, complete_without_end_marker

    if not (isinstance(err, OSError) and "truncated" in str(err)):
        return None
    try:
        if isinstance(fp, _io.BytesIO):
            data = fp.getvalue()
        else:
            if os.path.getsize(fp) > 4 * MAX_WALK_BYTES:  # type: ignore[arg-type]  # (not read: the walk refuses it)
                return None
            with open(fp, "rb") as f:  # type: ignore[arg-type]
                if f.read(2) != b"\xff\xd8":  # (a truncated PNG, say: not read further)
                    return None
                data = b"\xff\xd8" + f.read()
    except (OSError, TypeError, ValueError, MemoryError):
        return None
    if data[:2] != b"\xff\xd8" or data[-2:] == b"\xff\xd9":
        return None
    try:
        complete = complete_without_end_marker(data)
    except (IndexError, KeyError, ValueError, struct_error):  # a malformed header the walk did not foresee
        return None
    return data.rstrip(b"\xff") + b"\xff\xd9" if complete else None


def _cut_jpeg(label: str, w: int, h: int) -> str:
    return (f"{label}: corrupt or truncated image (the JPEG data ends before its {w}x{h} pixels do: the file is cut "
            f"short or its header's size is wrong)")


def _gray_rows(img: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Per row in ``[top, bottom)``: whether every pixel, in every channel, is exactly 128."""
    band = np.asarray(img.crop((0, top, img.width, bottom)))
    return (band == 128).reshape(bottom - top, -1).all(1)


def _jpeg_ends_blank(img: Image.Image) -> str | None:
    """Whether a decoded JPEG ends in libjpeg's fill for missing data: ``"cut"`` (surely),
    ``"maybe"`` (a picture whose lower half to three quarters is exactly that gray: a file cut
    short, or a real gray band; read, with a warning) or None. When the scan runs out
    before the header's height (a file cut short but for its end marker, or a forged, larger
    size), libjpeg only warns (Pillow drops the warning) and decodes every remaining 8x8 block
    as zeros: flat gray, exactly 128 in every channel, from a block boundary to the last pixel.

    Flagged: the image ends in rows that are all 128 while its top rows are not, and either
    (a) the fill starts inside a row of blocks: the 8 rows above the gray band are 128 from a
    block boundary ``x0 > 0`` (or one pixel after it) to the right edge, and the top rows are not gray there (so a photo
    padded at the bottom right is not flagged), or (b) the data ended exactly at a row of blocks
    and the gray band is three quarters of the picture or more (a forged size: most of it gray;
    half to three quarters: "maybe").
    Not flagged: a plain gray picture, gray padding at the top and bottom, a gray band under a
    photo (under half of it). Missed: a file cut exactly at a row of blocks that loses less than
    half of the picture, and truncated progressive JPEGs (their first scans cover the whole
    picture, blurred, not gray)."""
    if img.mode not in ("L", "RGB") or img.height < 16 or img.width < 16:
        return None
    h = img.height
    if not _gray_rows(img, h - 8, h).all() or _gray_rows(img, 0, 8).all():
        return None
    r0, step = h - 8, 64  # r0: the first row of the gray band that runs to the bottom
    while r0 > 0:
        top = max(0, r0 - step)
        rows = _gray_rows(img, top, r0)
        if not rows.all():
            r0 = top + int(np.flatnonzero(~rows)[-1]) + 1
            break
        r0 = top
    if r0 < 8:
        return None
    above = (np.asarray(img.crop((0, r0 - 8, img.width, r0))) == 128)
    above = above.reshape(8, img.width, -1).all(2).all(0)  # columns gray in all 8 rows above the band
    x0 = img.width - int(np.argmin(above[::-1]))  # where the gray run that ends each row above starts
    if x0 < img.width:  # (a): the fill starts inside a row of blocks, at a block boundary
        # (4:2:0 chroma is upsampled smoothly: the colour of the last decoded block bleeds one pixel
        # into the fill, right and down)
        return "cut" if x0 % 8 <= 1 and not (np.asarray(img.crop((x0, 0, img.width, 8))) == 128).all() else None
    # (b): a row of blocks ends the data, and three quarters of the picture or more is gray (half: maybe)
    return "cut" if h - r0 >= 0.75 * h else "maybe" if h - r0 >= h / 2 else None


def resize(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image to ``(height, width)``; Pillow's bilinear filter antialiases when shrinking."""
    if arr.shape[:2] == tuple(hw):
        return arr
    return np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), Image.BILINEAR))


def _warn_low16(label: str, top: int, what: str, warn: Callable[..., None]) -> None:
    """8-, 10- or 12-bit values kept in 16 bits (all below 4096, not all black): read as 16-bit
    (0..65535), so nearly black, and labelled as such; said, since the label is then wrong."""
    if 0 < top < 4096:
        warn(f"{label}: a {what} whose values are all below 4096 (the largest {top}) is read as 16-bit "
             f"(0..65535), so nearly black; give 8-bit values as uint8, or scale 10- or 12-bit ones to 0..65535")


#: how far float pixels may stray above 1 and still be read as 0..1 (clipped): a bicubic resize or a
#: brightness change overshoots by up to ~0.2 at sharp edges; 0..255 floats lie far beyond
FLOAT_SLACK = 0.25


def is_url(source: Union[str, os.PathLike]) -> bool:
    """``http://...``, ``https://...``, ``s3://...``: a scheme and ``://`` (a file of that name would be
    read, not this)."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", os.fspath(source) if isinstance(source, os.PathLike)
                    else str(source)) is not None


def _from_array(arr: np.ndarray, mode: str, label: str, warn: Callable[..., None] | None = None) -> np.ndarray:
    """Accept HxW, HxWx1, HxWx3 (RGB order) or HxWx4 (RGBA: composited on white) arrays: uint8,
    uint16 (scaled from 0..65535), or other numbers in 0..255 (0..1, clipped, when none is above
    1 + :data:`FLOAT_SLACK`, nor for floats below -:data:`FLOAT_SLACK`: one pixel at 1.001 made the
    whole image read as 0..255, nearly black, and a bicubic resize's -0.1 was refused)."""
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ImageDecodeError(f"{label}: expected an HxW or HxWxC image array, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        raise ImageDecodeError(f"{label}: expected 1, 3 or 4 channels, got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h * w > MAX_PIXELS:  # as for files: the pyramid and crops of such an image would not fit the memory
        raise ImageTooLargeError(f"{label}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
                               f"{MAX_PIXELS / 1e6:.0f} MP limit")
    if arr.dtype.kind not in "buif":
        raise ImageDecodeError(f"{label}: expected a numeric image array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageDecodeError(f"{label}: the image array holds NaN or infinite values")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # (either byte order)
        # 16-bit pixels (0..65535), as 16-bit image files decode: scaled, not clipped at 255
        if warn is not None:
            _warn_low16(label, int(arr.max()), "uint16 array", warn)
        arr = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        hi, lo = a.max(initial=0), a.min(initial=0)
        # 0..1 floats a resize overshot both ways (bicubic: about -0.1..1.1): read as 0..1, clipped
        near01 = arr.dtype.kind == "f" and lo >= -FLOAT_SLACK and hi <= 1 + FLOAT_SLACK
        if lo < 0 and not near01:  # normalised (mean-subtracted) pixels: clipping would blacken half the picture
            raise ImageDecodeError(f"{label}: {arr.dtype} pixel values down to {lo:g}: give 0..255 (uint8), 0..65535 "
                                   f"(uint16) or 0..1 (float); undo any normalisation first")
        if hi > 255:  # not a pixel range: clipping would give a white image
            raise ImageDecodeError(f"{label}: {arr.dtype} pixel values up to {hi:g}: give 0..255 (uint8), "
                                   f"0..65535 (uint16) or 0..1 (float)")
        scale = 255.0 if hi <= 1 + FLOAT_SLACK else 1.0
        arr = np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint8 and arr.ndim == (3 if mode == "RGB" else 2) and (arr.ndim == 2 or arr.shape[2] == 3):
        return np.ascontiguousarray(arr)  # already in the asked form: as is (no copy when contiguous)
    img = Image.fromarray(np.ascontiguousarray(arr))
    return np.asarray(_to_mode(img, mode))


# ---------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".ts", ".mts", ".m2ts", ".ogv", ".asf", ".vob", ".mjpeg", ".mjpg",
                              ".3g2", ".divx", ".f4v", ".m2v", ".mxf", ".dv", ".y4m"})

#: why a folder's file is left out where images and videos are read (a video of an extension not known
#: as a video's is one of these: named on its own, ferkit says how to rename it)
NEITHER = "neither an image nor a video by its extension"


#: why a folder's ``.ts`` file that OpenCV cannot open is ignored, not failed (``ferkit predict`` and the API)
TS_NOT_VIDEO = ("not a video OpenCV can open (a .ts file: TypeScript source, or a damaged MPEG transport stream; "
                "give it by name to have it read as a video)")


def camera_missing_message(index: int) -> str:
    return f"no camera at index {index}: none is connected, or this user may not open /dev/video{index}"


def camera_missing(index: int) -> bool:
    """Whether camera ``index`` is surely absent, told without opening it: on Linux, no
    ``/dev/video<index>`` (elsewhere: not known, False)."""
    # (an index of 100 or more codes OpenCV's backend too, 200 = V4L2's camera 0, or names a camera without a
    # /dev/video node: not known)
    return sys.platform.startswith("linux") and index < 100 and not Path(f"/dev/video{index}").exists()


def is_video_file(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def folder_files(folder: Union[str, os.PathLike], unreadable: list[Failure] | None = None,
                 exclude: Union[str, os.PathLike, None] = None,
                 hidden: bool = False, videos: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``folder`` (recursive, sorted; by extension), and its video files too with
    ``videos`` (``predict``), and the other files with the reason each is left out. Hidden files and
    folders (names starting with a dot) are not read; with ``hidden`` the hidden folders and the
    hidden files with an image's or a video's extension are listed among those left out
    (``predict``: a photo named ``.beach.jpg`` is accounted for), else they are not listed (a
    dataset's ``.DS_Store`` and ``._*`` files). What cannot be read at all (a subfolder without
    permission, an image name that is a broken link, a pipe or a device) is appended to
    ``unreadable`` as a :class:`Failure` when given: a failure, not a skip. A subfolder that is
    ``exclude`` (``predict``'s ``--out``, inside the input folder) is not listed: outputs are not
    inputs."""
    files, skipped = [], []
    skip_dir = Path(exclude).resolve() if exclude is not None else None

    def cannot_list(e: OSError) -> None:
        if unreadable is not None:
            unreadable.append(Failure(str(e.filename or folder), f"cannot list this folder ({e.strerror or e})"))

    for top, dirs, names in os.walk(folder, onerror=cannot_list):
        out_dirs = {d for d in dirs if skip_dir is not None and resolved_path(Path(top) / d) == skip_dir}
        # listed, so that the images there (an earlier run's, or the user's) are accounted for
        skipped.extend((str(Path(top) / d), "not read as input (the --out folder)") for d in out_dirs)
        if hidden:
            skipped.extend((str(Path(top) / d), "a hidden folder (not searched; give it as a source to read it)")
                           for d in dirs if is_hidden_name(d) and d not in out_dirs)
        dirs[:] = sorted(d for d in dirs if not is_hidden_name(d) and d not in out_dirs)
        for name in sorted(names):
            f = Path(top) / name
            if is_hidden_name(name):
                if hidden and (is_image_file(f) or is_video_file(f)):
                    skipped.append((str(f), "macOS metadata (an AppleDouble '._' file), not an image or video"
                                    if name.startswith("._") else
                                    "a hidden file (not read; give its path to read it)"))
                continue
            if not f.is_file():
                if (is_image_file(f) or (videos and is_video_file(f))) and unreadable is not None:
                    unreadable.append(Failure(str(f), "a broken or looping link" if f.is_symlink() and not f.exists()
                                              else "not a regular file (a pipe, socket or device)"))
                continue
            if is_image_file(f) or (videos and is_video_file(f)):
                copy_of = _annotated_copy_of(f)
                if copy_of is None:
                    files.append(f)
                else:  # an earlier run's output (its --out inside this folder): listed, not read again
                    skipped.append((str(f), f"an annotated copy ferkit wrote of {copy_of} (not read as input)"))
            else:
                skipped.append((str(f), (NEITHER if videos else "not an image file") if not is_video_file(f) else
                                "a video (give it as its own source)"))
    return sorted(files), sorted(skipped)


def ferkit_json(j: Path) -> tuple[str, str] | None:
    """``(kind, source)`` when ``j`` is a JSON file ``ferkit predict --out`` wrote: ``"image"`` (an
    object with ``source``, ``width``, ``height`` and a ``faces`` list) or ``"video"`` (a list of such
    objects with a ``frame``); None for anything else (a user's file, a FIFO, unreadable, huge)."""
    try:
        if not j.is_file() or j.stat().st_size > 50_000_000:
            return None
        d = json.loads(j.read_text(encoding="utf-8"))
    except Exception:  # (OSError, ValueError, RecursionError on absurd nesting...)
        return None
    kind, entries = ("video", d) if isinstance(d, list) and d else ("image", [d])

    def ferkits(e: Any) -> bool:  # a result entry as ferkit writes it (a failure entry has "error")
        return (isinstance(e, dict) and {"source", "width", "height", "faces"} <= e.keys()
                and isinstance(e["source"], str) and bool(e["source"]) and ("frame" in e) == (kind == "video")
                and all(isinstance(e[k], int) for k in ("width", "height")) and isinstance(e["faces"], list)
                and all(isinstance(f, dict) and {"box", "label"} <= f.keys() for f in e["faces"]))

    def failure(e: Any) -> bool:
        return isinstance(e, dict) and {"source", "error"} <= e.keys()

    if not all(ferkits(e) or (kind == "video" and failure(e)) for e in entries) or not any(map(ferkits, entries)):
        return None
    return kind, next(e for e in entries if ferkits(e))["source"]


def same_file(a: Union[str, os.PathLike], b: Union[str, os.PathLike]) -> bool:
    """Whether two paths name the same file (False where either cannot be resolved: a NUL byte, a
    symlink loop)."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except Exception:
        return False


def _annotated_copy_of(f: Path) -> str | None:
    """The source an earlier ``ferkit predict --out`` drew ``f`` from, when ``f`` is one of its
    outputs: ``<stem>_ferkit.png`` beside an image's ``<stem>.json`` (ferkit's form) whose ``source``
    is another file, or ``<stem>_expressions.png`` or ``<stem>_ferkit.mp4`` (``.webm``) beside a video's. A photo
    (or video) of the user's named so, beside no such JSON, is read."""
    for tail, kind in (("_ferkit.png", "image"), ("_expressions.png", "video"), ("_ferkit.mp4", "video"),
                       ("_ferkit.webm", "video")):
        if f.name.endswith(tail):
            found = ferkit_json(f.with_name(f.name[:-len(tail)] + ".json"))
            if found is not None and found[0] == kind and not same_file(found[1], f):
                return found[1]
    return None


def frame_failures(name: str, errors: list[tuple[int, str]], every: int = 1) -> list[Failure]:
    """A video's per-frame errors ``(index, reason)`` as failures to report, a run of consecutive
    frames with the same reason in one entry: ``Failure("clip.mp4", "unreadable frame (skipped)",
    (21, 39))`` (a video cut short is one entry, not one per lost frame). With ``every`` > 1 (every
    N-th frame processed) a damaged or unreadable frame that would not have been processed is not a
    loss, and the frames of a run are every N-th (``(20, 36)`` with ``every=4``)."""
    errors = [(i, why) for i, why in errors if not (i % every and (why == VideoReader.DAMAGED
                                                                    or why.startswith("unreadable frame")))]
    out: list[Failure] = []
    i = 0
    while i < len(errors):
        j = i
        gap = 0  # the run's spacing: 1, or every (frames that were to be read)
        while j + 1 < len(errors) and errors[j + 1][1] == errors[i][1]:
            d = errors[j + 1][0] - errors[j][0]
            if errors[i][1] == VideoReader.NOT_READ:  # (listed by its first and last frame: every one between)
                j += 1
                continue
            if not (d == 1 or d == every) or (gap and d != gap):
                break
            gap, j = d, j + 1
        a, b = errors[i][0], errors[j][0]
        if errors[i][1] == VideoReader.NOT_READ:  # the frames of the range that were to be read
            a, b, gap = -(-a // every) * every, b // every * every, every
            if a > b:
                i = j + 1
                continue
        out.append(Failure(name, errors[i][1], (a, b), gap or 1))
        i = j + 1
    return out


# FFmpeg (under OpenCV) prints "[OPENCV:FFMPEG:<level>] ..." with printf, on the process's stdout,
# for what goes wrong while it decodes; OpenCV reports a frame decoded with errors (a concealed,
# partly grey or stale picture) as read. ferkit catches those lines around each read (ferkit/__init__
# sets OPENCV_FFMPEG_LOGLEVEL to errors, 16, unless you set it) and skips such frames. Only fd 1 is
# redirected, for the few milliseconds of a read: what another thread prints on stdout meanwhile is
# passed on after the read (so its lines may come out of order). stderr is redirected only while
# OpenCV's own (non-FFmpeg) readers try a file FFmpeg could not open, and passed on unless that
# failed too (:func:`_stderr_kept_if`): another thread's stderr in those milliseconds goes with it.
# FERKIT_CHECK_DECODING=0 turns the check, and the catching, off.
_FFMPEG_LINE = re.compile(rb"\[OPENCV:FFMPEG:(-?\d+)\] ?([^\n]*)\n?")
_CATCH_LOCK = threading.RLock()


def _fflush_c() -> None:
    """Flush C's stdio buffers (FFmpeg's lines go through printf) into the redirected file."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover - no libc by that name (Windows)
        pass


def _save_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 3 or more (never 0-2, even when one of those is closed)."""
    try:
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except ImportError:  # pragma: no cover - Windows
        return os.dup(fd)


def _redirect_fd(fd: int, to: int) -> int | None:
    """Point descriptor ``fd`` at ``to``; a saved copy of what it was (for :func:`_restore_fd`), or
    None where ``fd`` is closed or cannot be moved (nothing is redirected then)."""
    saved = None
    try:
        os.fstat(fd)
        saved = _save_fd(fd)
        os.dup2(to, fd)
        return saved
    except OSError:
        if saved is not None:
            os.close(saved)
        return None


@contextlib.contextmanager
def _stderr_lines() -> Iterator[list[str]]:
    """What C code writes to standard error (descriptor 2) inside the block, as lines in the list
    yielded (filled when the block ends); where descriptor 2 cannot be moved, nothing is caught."""
    said: list[str] = []
    with tempfile.TemporaryFile() as f:
        _fflush_c()
        saved = _redirect_fd(2, f.fileno())
        try:
            yield said
        finally:
            if saved is not None:
                _restore_fd(2, saved)
                f.seek(0)
                said.extend(f.read().decode("utf-8", "replace").splitlines())


def _restore_fd(fd: int, saved: int) -> None:
    """``fd`` back to what :func:`_redirect_fd` saved (C's buffers flushed into the redirection first)."""
    try:
        _fflush_c()
        os.dup2(saved, fd)
    finally:
        os.close(saved)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # a closed pipe (| head): the text has nowhere to go
        pass


@contextmanager
def _stderr_kept_if(keep: Callable[[], bool]) -> Iterator[None]:
    """Catch what is printed at file descriptor 2 meanwhile (OpenCV's own AVI reader prints its
    complaints about a damaged file there, past its log level: "Unexpected element. Expected: LIST"),
    then pass it on only if ``keep()``: where the file could not be opened, ferkit's one-line error
    says so instead. Does nothing where fd 2 cannot be redirected."""
    saved, tmp = None, None
    with _CATCH_LOCK:
        try:
            tmp = tempfile.TemporaryFile()
            sys.stderr.flush()
        except (OSError, AttributeError, ValueError):
            pass
        if tmp is not None:
            saved = _redirect_fd(2, tmp.fileno())
        try:
            yield
        finally:
            try:
                if saved is not None:
                    _restore_fd(2, saved)
                    if keep():
                        tmp.seek(0)
                        _write_all(2, tmp.read())
            finally:
                if tmp is not None:
                    tmp.close()


class DecoderMessages:
    """What FFmpeg says while OpenCV opens a video or decodes a frame, caught at file descriptor 1
    (FFmpeg prints there itself, not through Python). ``with catcher.catch() as said:`` leaves in
    ``said`` the ``(level, text)`` of each FFmpeg line printed meanwhile; anything else printed on
    stdout meanwhile is passed on after, as are FFmpeg's lines when the user set
    ``OPENCV_FFMPEG_LOGLEVEL`` to see them. ``active`` is False where nothing can be caught (no
    stdout descriptor, no temporary folder, Windows): reads then go on uncaught."""

    def __init__(self) -> None:
        from . import FFMPEG_LOG_SET_BY_USER

        self.echo_ffmpeg = FFMPEG_LOG_SET_BY_USER
        self._file = None
        self._pos = 0
        if sys.platform != "win32":
            try:
                self._file = tempfile.TemporaryFile()
            except OSError:
                self._file = None

    @property
    def active(self) -> bool:
        return self._file is not None

    @contextmanager
    def catch(self) -> Iterator[list[tuple[int, str]]]:
        said: list[tuple[int, str]] = []
        saved = None
        with _CATCH_LOCK:
            if self._file is not None:
                stream = sys.stdout
                try:
                    if stream is not None and callable(getattr(stream, "flush", None)):
                        stream.flush()
                except Exception:  # a stand-in stdout that cannot flush: its text stays where it is
                    pass
                saved = _redirect_fd(1, self._file.fileno())  # (None: no stdout descriptor, a daemon's)
            try:
                yield said
            finally:
                if saved is not None:
                    _restore_fd(1, saved)
                    text = self._new_bytes()
                    if text:
                        self._sort(text, said)

    def _new_bytes(self) -> bytes:
        f = self._file
        end = os.fstat(f.fileno()).st_size
        if end == self._pos:
            return b""
        f.seek(self._pos)
        data = f.read(end - self._pos)
        self._pos = end
        if end > 1 << 20:  # keep the scratch file small on a long video
            f.seek(0)
            f.truncate()
            self._pos = 0
        return data

    def _sort(self, text: bytes, said: list[tuple[int, str]]) -> None:
        for m in _FFMPEG_LINE.finditer(text):
            said.append((int(m.group(1)), m.group(2).decode("utf-8", "replace").strip()))
        rest = text if self.echo_ffmpeg else _FFMPEG_LINE.sub(b"", text)
        if rest:
            _write_all(1, rest)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_CHECK_OFF_SAID = False


def _say_check_off() -> None:
    """Once a process: the user's OPENCV_FFMPEG_LOGLEVEL silences the errors the check reads."""
    global _CHECK_OFF_SAID
    if not _CHECK_OFF_SAID:
        _CHECK_OFF_SAID = True
        warnings.warn(f"OPENCV_FFMPEG_LOGLEVEL={os.environ.get('OPENCV_FFMPEG_LOGLEVEL')} is below 16 (errors): FFmpeg "
                      "does not report decoding errors, so damaged video frames are not found and are read as "
                      "decoded (set it to 16 or more, or unset it; FERKIT_CHECK_DECODING=0 turns the check off "
                      "without this note)", FerkitWarning, stacklevel=3)


def _ffmpeg_log_level() -> int:
    try:
        return int(os.environ.get("OPENCV_FFMPEG_LOGLEVEL", "-8"))
    except ValueError:
        return -8


#: containers that store no frame count: OpenCV estimates it (duration x rate)
COUNT_ESTIMATED = (".webm", ".mkv", ".ts", ".mts", ".m2ts", ".flv", ".mpg", ".mpeg", ".vob", ".ogv", ".m2v", ".y4m")


def _stamps_keep_to(path: str, fps: float, frames: int = 4) -> bool:
    """Whether the first ``frames`` frames of the video at ``path`` (opened apart) are ``1 / fps`` apart
    by their time stamps, within a tenth: a header's high rate that is the frames' own."""
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        stamps = []
        for _ in range(frames):
            if not cap.isOpened() or not cap.grab():
                break
            stamps.append(float(cap.get(cv2.CAP_PROP_POS_MSEC)))
    finally:
        cap.release()
    gaps = np.diff(stamps) * fps / 1000 if len(stamps) >= 2 else np.zeros(0)
    return bool(len(gaps)) and bool(np.all(np.abs(gaps - 1) <= 0.1))


class VideoReader:
    """Frames of a video file or a camera (``source`` an int: the camera index), as RGB arrays.

    Iterating yields ``(index, time_s, rgb)``. Unreadable frames of a file are skipped and listed
    in :attr:`errors`, up to the frame count its header stores (a file cut short: its lost frames to
    the end); a run of unreadable frames that goes on past :attr:`MAX_BAD_RUN` frames and
    :attr:`BAD_RUN_SECONDS` seconds of trying (or :attr:`MAX_LOST_RUN` frames) stops the reading, and the
    rest of the count is listed as :attr:`NOT_READ` (where the container stores no count, WebM or
    Matroska, whose count is the duration times the rate, the reading stops after :attr:`MAX_BAD_RUN`).
    A reader reads its video once. Frames of a file the decoder reports errors in are
    skipped and listed too (it would hand over a concealed picture, parts grey or of an earlier
    frame). A file with no readable frame raises
    :class:`ImageDecodeError`. A camera's failed read is tried again (a webcam misses a frame now
    and then) for about :attr:`CAMERA_PATIENCE` seconds; a camera that gives no frame for that long
    (unplugged, taken by another program) ends the stream with an entry in :attr:`errors`.
    """

    MAX_BAD_RUN = 50  #: unreadable frames in a row always tried; past them, up to BAD_RUN_SECONDS of trying
    BAD_RUN_SECONDS = 1.0
    MAX_LOST_RUN = 200_000  #: unreadable frames in a row at most (a header's count can be absurd)
    DAMAGED = "damaged: the decoder reported errors (skipped)"
    UNREADABLE = "unreadable frame (skipped)"
    NOT_READ = "not read: reading stopped after a long run of unreadable frames"
    CAMERA_PATIENCE = 2.0  #: seconds of failed reads before a camera is taken to have stopped
    CAMERA_STOPPED = "the camera stopped giving frames"

    def __init__(self, source: Union[str, os.PathLike, int], name: str | None = None) -> None:
        import cv2

        self._said: DecoderMessages | None = None
        self._high_rate = 0.0
        self.is_camera = isinstance(source, int)
        if self.is_camera and source < 0:  # OpenCV's V4L2 backend crashes (segfault) on "any camera" (-1)
            raise ImageDecodeError(f"camera index must be 0 or more, got {source}")
        self.name = name or (f"webcam:{source}" if self.is_camera else str(source))
        if not self.is_camera:
            p = Path(source)
            if not p.exists():
                raise ImageDecodeError(f"{self.name}: " + ("a URL; ferkit reads video files and cameras only, and "
                                                           "fetches nothing" if is_url(source) else "no such file"))
            if not p.is_file():  # (a FIFO was said to be an empty file; OpenCV would wait on it for a writer)
                cam = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(p))
                raise ImageDecodeError(f"{self.name}: " + (
                    "is a folder, not a video" if p.is_dir() else
                    f"a camera device: give its index ({cam.group(1)}: ferkit predict --webcam {cam.group(1)}, "
                    f"Recognizer.predict({cam.group(1)}))" if cam else
                    "not a regular file (a pipe, socket or device)"))
            if p.stat().st_size == 0:
                raise ImageDecodeError(f"{self.name}: empty file (0 bytes)")
        if self.is_camera:
            # a missing camera is reported below in one line: not OpenCV's own WARN lines from its backends
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                self.cap = cv2.VideoCapture(source)
            finally:
                cv2.utils.logging.setLogLevel(level)
        else:
            said = DecoderMessages()
            heard: list[tuple[int, str]] = []
            try:
                with said.catch() as heard:  # FFmpeg's words on a broken file: ferkit says it in one line below
                    threads = getattr(cv2, "CAP_PROP_N_THREADS", None)  # OpenCV 4.7 or later
                    self.cap = None
                    level = cv2.utils.logging.getLogLevel()  # OpenCV's "can't be used to capture" warnings:
                    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # ferkit says it below
                    alias = None
                    try:
                        opened = str(source)
                        if not utf8_name(opened):  # (OpenCV crashes on such a name: it opens a link to the file)
                            try:
                                alias = tempfile.mkdtemp(prefix="ferkit-")
                                opened = os.path.join(alias, "video" + (p.suffix if utf8_name(p.suffix) else ""))
                                os.symlink(os.path.abspath(source), opened)
                            except OSError as e:
                                raise ImageDecodeError(f"{self.name}: its name is not UTF-8, which OpenCV cannot "
                                                       f"open, and no link under a plain name could be made ({e}): "
                                                       f"rename the file") from None
                            if not utf8_name(opened):
                                raise ImageDecodeError(f"{self.name}: its name is not UTF-8, which OpenCV cannot "
                                                       f"open (nor is the temporary folder's): rename the file")
                        if threads is not None:
                            # one decoding thread: FFmpeg's errors then come while the frame they concern is read
                            self.cap = cv2.VideoCapture(opened, cv2.CAP_FFMPEG, [threads, 1])
                        if self.cap is None or not self.cap.isOpened():  # not for FFmpeg: OpenCV's other readers
                            with _stderr_kept_if(lambda: self.cap is not None and self.cap.isOpened()):
                                self.cap = cv2.VideoCapture(opened)
                        if self.cap.isOpened():
                            high = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
                            if high >= 1000 and math.isfinite(high) and _stamps_keep_to(opened, high):
                                self._high_rate = high
                    finally:
                        cv2.utils.logging.setLogLevel(level)
                        if alias is not None:  # (the file stays open)
                            shutil.rmtree(alias, ignore_errors=True)
            except BaseException:
                said.close()
                raise
            # frames are checked for decoding errors where the lines can be caught, and the level lets
            # FFmpeg say them (OPENCV_FFMPEG_LOGLEVEL 16 or more; frame threads off, or errors would
            # be pinned on a later frame)
            could = said.active and threads is not None and os.environ.get("FERKIT_CHECK_DECODING", "1") != "0"
            if could and _ffmpeg_log_level() >= 16:
                self._said = said
            else:
                said.close()
                if could:
                    _say_check_off()
        if not self.cap.isOpened():
            self.close()
            if self.is_camera:
                raise CameraError(camera_missing_message(int(source)))
            why = next((text for level, text in reversed(heard) if level <= 16), None)  # FFmpeg's last error
            hint = ("; FFmpeg: 'moov atom not found', no MP4 index in it: not an MP4, or a recording cut off "
                    "before it was finished (the index is written last)" if why and "moov atom not found" in why
                    else f"; FFmpeg: {why}" if why else "")
            raise ImageDecodeError(f"{self.name}: not a video OpenCV can open (corrupt, or an unsupported format"
                                   f"{hint})")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # a rate of 1000 or more is most often a container's time base (a browser's WebM says 1000), not
        # the frames': 25 instead, unless the first frames' time stamps keep to it (a high-speed camera's)
        own = 0 < fps < 1000 or (self._high_rate > 0 and fps == self._high_rate)
        self.fps = fps if own else (30.0 if self.is_camera else 25.0)
        count = float(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not self.is_camera else 0.0
        # (a raw stream's can be absurd, negative: unknown then)
        self.frame_count = int(count) if math.isfinite(count) and 0 < count < 2 ** 62 else 0
        #: the container stores no frame count (Matroska, WebM): OpenCV's is the duration times the rate
        self.count_estimated = not self.is_camera and Path(source).suffix.lower() in COUNT_ESTIMATED
        if self.count_estimated and not own:
            self.frame_count = 0  # (its duration times a rate that is not the frames': no count of them)
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self.errors: list[tuple[int, str]] = []
        self.frames_read = 0
        self._read = False

    def __iter__(self):
        import cv2

        if self._read:  # (again, the spent capture's reads would all fail: every frame listed as lost)
            raise ImageDecodeError(f"{self.name}: this VideoReader was read already: it reads its video once "
                                   f"(open a new one)")
        self._read = True
        idx, bad, missed_since, bad_since = 0, 0, None, 0.0
        trouble = 0  # failed or damaged reads since the last good frame
        # a file's frame times are its own time stamps (a phone's video has no constant rate; the
        # container's fps is an average), while they are there and increasing; else, and for a
        # camera, counted at the frame rate from the last stamp. Counted from the first frame: a
        # decoder's delay can stamp it one frame late (MPEG-1 in AVI)
        stamps, last_t, last_i, last_ms, zero, gap = not self.is_camera, None, 0, None, 0.0, 0.0
        off_rate = gaps = 0  # the frame gaps that the average rate does not give, of all gaps
        while True:
            if self._said is not None:
                with self._said.catch() as said:
                    ok, frame = self.cap.read()
                if ok and frame is not None and any(level <= 16 for level, _ in said):
                    # decoded with errors: OpenCV gives the concealed picture (parts grey or of an
                    # earlier frame) as if read; its expression would be read from a broken face
                    self.errors.append((idx, self.DAMAGED))
                    idx += 1
                    trouble += 1
                    continue
            else:
                try:
                    ok, frame = self.cap.read()
                except cv2.error:  # some backends raise where others return False: a failed read
                    ok, frame = False, None
            if not ok or frame is None or frame.size == 0:
                if self.is_camera:
                    if missed_since is None:
                        missed_since = time.monotonic()
                    if time.monotonic() - missed_since < self.CAMERA_PATIENCE:
                        time.sleep(0.02)
                        continue
                    if self.frames_read == 0:
                        raise ImageDecodeError(f"{self.name}: the camera opened but gives no frames (none in "
                                               f"{self.CAMERA_PATIENCE:g} s)")
                    self.errors.append((idx, f"{self.CAMERA_STOPPED} (none for {self.CAMERA_PATIENCE:g} s after "
                                             f"{self.frames_read} frame{'s' if self.frames_read != 1 else ''})"))
                    break
                if self.frame_count and idx < self.frame_count:
                    if bad == 0:
                        bad_since = time.monotonic()
                    if bad < self.MAX_BAD_RUN or (not self.count_estimated and bad < self.MAX_LOST_RUN
                                                  and time.monotonic() - bad_since < self.BAD_RUN_SECONDS):
                        bad += 1
                        self.errors.append((idx, self.UNREADABLE))
                        idx += 1
                        trouble += 1
                        continue
                    # the rest of a stored count, not tried: its first and last frame (frame_failures makes it one
                    # run); an estimated count (a duration times the rate) holds no frames to be sure of
                    if not self.count_estimated:
                        self.errors += [(i, self.NOT_READ) for i in sorted({idx, self.frame_count - 1})]
                break
            bad, missed_since = 0, None
            self.frames_read += 1
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            t = None
            if stamps:
                ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
                if ms is not None and math.isfinite(ms) and ms >= 0 and (last_ms is None or ms > last_ms):
                    if last_ms is None:
                        zero = ms / 1000 - idx / self.fps
                    t, last_ms = ms / 1000 - zero, ms
                else:
                    stamps = False
            if trouble and stamps and t is not None and last_t is not None:
                # after failed or damaged reads, the count of reads and the frames can part (a decoder
                # with B-frames fails reads that are no frames, or loses frames without a failed read):
                # the frame's time stamp says which frame it is, within the run's length (and two
                # frames more, lost unsaid); the lost entries of the run are trimmed or extended to match
                # (only where the stamps kept to the frame count until then: a variable-rate video's
                # do not, and its count of reads is the better index)
                est = int(round(t * self.fps))
                if (last_i < est != idx and abs(est - idx) <= trouble + 2
                        and int(round(last_t * self.fps)) == last_i):
                    if est < idx:
                        self.errors = [e for e in self.errors if not est <= e[0] < idx]
                    else:
                        self.errors.extend((i, self.UNREADABLE) for i in range(idx, est))
                    idx = est
            trouble = 0
            if self.is_camera:  # a camera's frame comes when it is read: its time is the clock's (frames
                # counted at its nominal rate ran fast when the analysis kept up with fewer of them)
                now = time.monotonic()
                zero = now if last_t is None else zero
                t = now - zero
            if t is None:
                t = idx / self.fps if last_t is None else last_t + (idx - last_i) / self.fps
            gap = t - last_t if last_t is not None else 1 / self.fps
            if last_t is not None and abs(gap * self.fps - (idx - last_i)) > 0.25 * (idx - last_i):
                off_rate += 1  # a gap the average rate does not give: the rate varies (or frames went unsaid)
            gaps += last_t is not None
            last_t, last_i = t, idx
            yield idx, t, frame
            idx += 1
        tail = [why for i, why in self.errors if i > last_i]
        if (self.count_estimated and stamps and last_t is not None and tail
                and all(why == self.UNREADABLE for why in tail) and len(tail) == len(self.errors)
                and off_rate >= max(2, 0.1 * gaps)
                and int(round(last_t * self.fps)) > last_i
                and (last_t + max(gap, 1 / self.fps)) * self.fps >= self.frame_count - 1.5):
            # reads that failed after the last frame, which (lasting as long as the one before it) ends the
            # file's time: where the container stores no frame count (WebM, Matroska), OpenCV's is the
            # duration times the rate, which a variable-rate video's frames do not fill; those reads were
            # no frames lost. Only in a clean file whose rate varies throughout (a tenth of its gaps or more
            # off the average): a constant-rate one whose frames went missing unsaid has one or two such
            # gaps, and its lost frames stay.
            self.errors = [e for e in self.errors if e[0] < last_i]
            self.frame_count = last_i + 1
        if self.frames_read == 0:
            if self.errors and all(why == self.DAMAGED for _, why in self.errors):
                raise ImageDecodeError(f"{self.name}: the decoder reported errors in every frame "
                                       f"({len(self.errors)}): the video is damaged")
            raise ImageDecodeError(f"{self.name}: the video holds no readable frame")

    def close(self) -> None:
        self.cap.release()
        if self._said is not None:
            self._said.close()
            self._said = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Write RGB frames to a video file: by extension MP4 (mp4v, MPEG-4 Part 2: fast to write, not
    played by browsers), WebM (VP8: browsers play it; about 10x slower to write) or AVI (MJPG)."""

    def __init__(self, path: Union[str, os.PathLike], fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = {".avi": "MJPG", ".webm": "VP80"}.get(self.path.suffix.lower(), "mp4v")
        # (width, height); a side of 1 pixel, which the encoders refuse, is stretched to 2; both codecs
        # keep even sides only (641x479 came out 640x478, a column and a row lost): an odd side gets one
        # more pixel, its edge repeated, so that the whole picture is kept
        # VP8 at under 8 pixels a side writes a WebM no reader opens ("exceeds containing master element"):
        # stretched to 8 there
        least = 8 if fourcc == "VP80" else 2
        self.size = (max(least, int(size[0])), max(least, int(size[1])))
        self.size = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        # a path OpenCV cannot take (not UTF-8): written under a plain name beside it, renamed at close;
        # where a folder's name is the trouble, in a temporary folder, moved into place at close
        self.writing, self._tmp = self.path, None
        if not utf8_name(self.path):
            if self.path.is_dir():
                raise ImageDecodeError(f"{self.path}: cannot write a video here (a folder has that name)")
            if utf8_name(self.path.parent):
                self.writing = self.path.with_name(f".ferkit-{os.getpid()}-video{self.path.suffix.lower()}")
            else:
                self._make_tmp()
        if fourcc == "VP80":  # OpenCV says "FFMPEG: tag ... 'VP80' is not supported with codec id 139 and format
            # 'webm / WebM'" and writes VP8 all the same (WebM keeps no codec tags): that line is dropped, any
            # other kept
            said: list[str] = []
            try:
                with _stderr_lines() as said:
                    self.w = cv2.VideoWriter(str(self.writing), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
            finally:  # (what else OpenCV said is shown, also when it raised)
                for line in said:
                    if not re.search(r"tag 0x[0-9a-f]+/'VP80' is not supported with codec id \d+ and format 'webm",
                                     line):
                        print(line, file=sys.stderr)
        else:
            self.w = cv2.VideoWriter(str(self.writing), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
        if not self.w.isOpened():
            self._drop_tmp()
            raise ImageDecodeError(f"{self.path}: cannot write a video here (folder or codec {fourcc} unavailable)")
        self.frames = 0

    def _make_tmp(self) -> None:
        """A temporary folder (of a UTF-8 name) to write the video in, for a target folder whose name is not."""
        try:
            self._tmp = tempfile.mkdtemp(prefix="ferkit-video-")
        except OSError as e:
            raise ImageDecodeError(f"{self.path}: cannot write a video here (its name is not UTF-8, which "
                                   f"OpenCV cannot take, and no temporary folder could be made: {e})") from None
        self.writing = Path(self._tmp) / f"video{self.path.suffix.lower()}"
        if not utf8_name(self.writing):
            self._drop_tmp()
            raise ImageDecodeError(f"{self.path}: cannot write a video here (its name is not UTF-8, which "
                                   f"OpenCV cannot take, nor is the temporary folder's)")

    def _drop_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        dw, dh = self.size[0] - rgb.shape[1], self.size[1] - rgb.shape[0]
        if dw in (0, 1) and dh in (0, 1) and rgb.shape[0] > 1 and rgb.shape[1] > 1:
            if dw or dh:  # an odd side made even: its last column or row repeated
                rgb = cv2.copyMakeBorder(rgb, 0, dh, 0, dw, cv2.BORDER_REPLICATE)
        else:
            rgb = cv2.resize(rgb, self.size)
        self.w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self.w.release()
        if self.writing != self.path:
            try:
                if self.writing.exists():
                    if self._tmp is None:
                        os.replace(self.writing, self.path)
                    else:
                        shutil.move(str(self.writing), str(self.path))  # (a copy where /tmp is another filesystem)
            except OSError as e:
                with contextlib.suppress(OSError):  # (no hidden half-way file left in the folder)
                    self.writing.unlink()
                raise ImageDecodeError(f"{self.path}: the video could not be moved into place ({e})") from None
            finally:
                self._drop_tmp()

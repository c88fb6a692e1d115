"""The FastAPI application behind ``ferkit serve``.

One :class:`~ferkit.Recognizer` is loaded when the app is made (and warmed up with one dummy
image); requests share it. The CPU work (decode, detect, classify, draw, PNG) runs on a small
pool of worker threads (``workers``, default 2: on 2 cores two workers gave 38.9 requests/s against
36.5 for one, docs/benchmarks.md, as MTCNN already splits each image's work over both cores), so the event
loop stays free to accept uploads and answer ``/healthz`` while they run.
Sharing is safe: onnxruntime's ``InferenceSession.run`` and torch's forward pass under
``inference_mode`` may be called from several threads at once, and the pipeline keeps no state
between images; the pool just bounds how many analyses run together.

Every request that cannot be served gets a JSON body ``{"error": "...", "detail": ...}``, never
a traceback: 400 (missing field, empty file, not an image, corrupt image, malformed body), 404,
405, 413 (upload over ``max_upload`` bytes, image over ``max_pixels``), 415 (content type not an
image, or the request not multipart), 422 (bad query parameter), 503 (``workers`` busy and
``max_queue`` requests already waiting), 504 (no answer within ``timeout`` seconds), 500 (a bug:
logged with its traceback on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import queue
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import FerkitError, ImageDecodeError, ImageTooLargeError
from ..io import MAX_PIXELS, bomb_pixels, read_image
from ..results import CLASS_COLOURS, encode_png
from .schemas import AnalyzeResult, ErrorBody, Health

log = logging.getLogger("ferkit.serve")

#: the warnings of the analysis running on this thread go to its list (see :func:`_route_warnings`)
_CAUGHT = threading.local()


def _route_warnings() -> None:
    """Send the warnings raised while a request's image is analysed (Pillow's, on a corrupt EXIF
    block, say) to that request (its log line and ``X-Ferkit-Warnings`` header), not to the
    server's standard error, where they would repeat for every request, even at
    ``--log-level critical``. Pillow's size warning is left out: the server's own pixel limit
    decides. python-multipart's complaints about a malformed form are left to the 400 it causes.
    Other warnings go where they went. Process-wide (an app embedding this one shares these
    warning settings: Pillow's size warning off, its other warnings shown each time); installed at
    start and again by :func:`_catching` when it finds it gone (a ``warnings.catch_warnings``
    around the server, a test's, puts its own back on leaving)."""
    import warnings

    if getattr(warnings.showwarning, "ferkit_serve", False):
        return
    shown = warnings.showwarning

    pil = os.path.dirname(Image.__file__) + os.sep

    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        caught = getattr(_CAUGHT, "notes", None)
        if caught is None or not str(filename).startswith(pil):  # (numpy's or ferkit's own: not the photo's)
            return shown(message, category, filename, lineno, file, line)
        caught.append(str(message))

    showwarning.ferkit_serve = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("always", category=UserWarning, module=r"PIL(\.|$)")  # each request its own
    for name in ("python_multipart", "multipart"):
        logging.getLogger(name).addHandler(logging.NullHandler())


@contextlib.contextmanager
def _catching(caught: list[str]) -> Iterator[None]:
    """Pillow's warnings raised on this thread meanwhile go to ``caught`` (:func:`_route_warnings`)."""
    _route_warnings()
    _CAUGHT.notes = caught
    try:
        yield
    finally:
        _CAUGHT.notes = None

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  #: bytes of one uploaded image (10 MiB)
DEFAULT_MAX_PIXELS = 50_000_000  #: width x height of one image (50 MP; a 12 MP phone photo is fine)
DEFAULT_TIMEOUT = 30.0  #: seconds from a request's complete head to its answer (upload and analysis)
DEFAULT_MAX_QUEUE = 32  #: requests that may wait for a worker before the server answers 503
MULTIPART_SLACK = 64 * 1024  #: room for the multipart boundaries and part headers around the file
PNG_MAX_SIDE = 1_000_000  #: libpng (so cv2.imencode) writes no PNG wider or taller than this

#: The upload's declared type must be one of these. ``application/octet-stream`` (or none) is
#: taken too, as clients send it for files they cannot name: the bytes decide then.
ALLOWED_CONTENT_TYPES = frozenset({
    "image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/webp", "image/bmp", "image/x-bmp",
    "image/x-ms-bmp", "image/tiff", "image/tif", "image/gif", "image/x-portable-pixmap",
    "image/x-portable-graymap", "image/x-portable-anymap", "image/x-portable-bitmap",
    # aliases browsers and tools send for the same files (an .apng is a PNG; a .pfm is read by the PPM reader)
    "image/apng", "image/vnd.mozilla.apng", "image/x-png", "image/x-tiff", "image/x-portable-floatmap",
})
#: the formats in words, for the messages that refuse others
FORMATS_IN_WORDS = "JPEG, PNG, WebP, BMP, TIFF, GIF or PPM/PGM/PBM/PFM"
BUSY = "server busy: too many images waiting; retry shortly"  #: the 503's error
LATE = ("no answer in time: the image took too long to arrive or to analyse; retry when the server is less busy, "
        "or send a smaller image")  #: the 504's error
UNTYPED = frozenset({"", "application/octet-stream"})
#: Formats Pillow may open for the API (so that no other decoder, e.g. EPS via Ghostscript, ever runs).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "PPM")  # JPEG covers MPO too

_STATIC = resources.files(__package__) / "static"
NO_FILE_CHOSEN = "no file chosen: the form field 'file' holds no file (empty name, 0 bytes)"


class ApiError(Exception):
    """An answer other than 200, with its JSON error body."""

    def __init__(self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


#: images of this many pixels or more hand their memory back to the system once answered
#: (:meth:`ferkit.Recognizer.release_memory`: glibc keeps freed heap for reuse, an idle server held 4.4 GB
#: after a few large photos, and onnxruntime's arenas what a large photo grew them to)
TRIM_PIXELS = 4_000_000


def _release(recognizer: Any) -> None:
    """The recognizer's :meth:`~ferkit.Recognizer.release_memory`, where it has one; a failure there is
    logged, not answered (the image's analysis is done, and its answer stands)."""
    from ..runtime.memory import release

    try:
        release(recognizer)
    except Exception as e:  # (onnxruntime's own exception types too)
        log.warning("releasing memory after a large image failed: %s", e)


def error_response(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    # (nosniff here too: a 500 is answered by Starlette's outermost error middleware, outside NoSniff)
    return JSONResponse({"error": error, "detail": detail}, status_code=status,
                        headers={**(headers or {}), "X-Content-Type-Options": "nosniff"})


# ---------------------------------------------------------------------------------------
# upload size and time limits, before FastAPI reads the body
# ---------------------------------------------------------------------------------------
ANALYZE_PATH = "/v1/analyze"
UPLOAD_ROUTES = frozenset({ANALYZE_PATH})  # the paths whose POST takes an upload


#: an upload over the limit is still read (and dropped) up to this many bytes more before the 413,
#: as clients that send the whole body before reading the answer (httpx, requests) would otherwise
#: meet a closed connection instead of it; past that the 413 comes at once. Either way the
#: connection closes after it (a kept one would be read to the end of a body of any promised size).
DRAIN = 64 * 2**20
CLOSE = {"connection": "close"}


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every answer (ASGI middleware): a browser shown an
    answer (JSON that echoes an upload's name, an annotated PNG) keeps it as its declared type,
    never reads it as a page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_nosniff)


class UploadLimit:
    """ASGI middleware for ``POST`` to an upload route (``UPLOAD_ROUTES``): answers 413 as soon as
    the body (by its Content-Length, or by what arrived so far) is over ``limit`` bytes, and 408
    when it takes longer than ``timeout`` to arrive; otherwise hands the buffered body on. Records
    when the request started in ``scope["ferkit.t0"]`` (the analysis gets what is left of
    ``timeout``). Other requests go straight on: a body sent to a wrong path or with a wrong method
    gets its 404 or 405 whatever its size (routing answers those without reading the body). At most
    ``max_uploads`` uploads are received or held at once (each up to ``limit`` bytes): past them, a
    503 before the body is read (a thousand slow uploads held about 9 GB)."""

    def __init__(self, app: Callable, limit: int, max_upload: int, timeout: float,
                 max_uploads: int | None = None) -> None:
        self.app, self.limit, self.max_upload, self.timeout = app, limit, max_upload, timeout
        self.max_uploads, self.uploads = max_uploads, 0

    def _too_large(self, size: int | None) -> JSONResponse:
        # (the request's size, form included, as told or read before the form is parsed; the later
        # 413, on a form that fitted, gives the file's own size_bytes)
        return error_response(413, f"upload too large: the limit is {_mb(self.max_upload)}",
                              {"limit_bytes": self.max_upload, "request_bytes": size, "size_bytes": None}, CLOSE)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in UPLOAD_ROUTES:
            return await self.app(scope, receive, send)
        scope["ferkit.t0"] = time.monotonic()
        headers = dict(scope.get("headers") or [])
        coding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if coding not in ("", "identity"):  # (the multipart parser would call it unreadable)
            return await error_response(415, f"compressed uploads ({coding}) are not supported: send the multipart "
                                             f"form uncompressed (images are compressed already)",
                                        {"content_encoding": coding}, CLOSE)(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await error_response(400, "malformed Content-Length header")(scope, receive, send)
            if n > self.limit + DRAIN:
                return await self._too_large(n)(scope, receive, send)
        if self.max_uploads is not None and self.uploads >= self.max_uploads:
            return await error_response(503, BUSY, {"uploads": self.uploads, "max_uploads": self.max_uploads},
                                        {**CLOSE, "Retry-After": "1"})(scope, receive, send)
        self.uploads += 1  # (one event loop: no lock needed)
        try:
            await self._receive(scope, receive, send, length)
        finally:
            self.uploads -= 1

    async def _receive(self, scope: dict, receive: Callable, send: Callable, length: bytes | None) -> None:
        chunks: list[bytes] = []
        total = 0

        async def read() -> bool:
            nonlocal total
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return False
                body = msg.get("body", b"")
                total += len(body)
                if total > self.limit + DRAIN:
                    raise _Oversize
                if total <= self.limit:  # over it: read on, keep nothing
                    chunks.append(body)
                if not msg.get("more_body", False):
                    return True

        try:
            complete = await asyncio.wait_for(read(), self.timeout)
            if complete and total > self.limit:
                raise _Oversize
        except _Oversize:
            return await self._too_large(int(length) if length is not None else None)(scope, receive, send)
        except asyncio.TimeoutError:
            return await error_response(408, f"the upload took longer than {self.timeout:g} s",
                                        {"timeout_s": self.timeout}, CLOSE)(scope, receive, send)
        if not complete:
            return  # the client went away
        body = b"".join(chunks)
        chunks.clear()  # (the upload held once, not twice, while it waits for a worker)
        sent = False

        async def replay() -> dict:
            nonlocal sent, body
            if not sent:
                sent = True
                message, body = {"type": "http.request", "body": body, "more_body": False}, b""
                return message
            return await receive()

        await self.app(scope, replay, send)


class _Oversize(Exception):
    pass


def _mb(n: int) -> str:
    return f"{round(n / 2**20, 3):g} MiB"


# ---------------------------------------------------------------------------------------
# the worker pool
# ---------------------------------------------------------------------------------------
class _DaemonPool:
    """``workers`` daemon threads running submitted calls in order (a ThreadPoolExecutor's threads
    are joined when Python exits, so a server stopped during a long analysis would hang until it
    ended; these are not: the process exits at once)."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():  # cancelled while it waited
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # (handed to the request that waits for it)
                fut.set_exception(e)

    def submit(self, fn: Callable, *args: Any) -> Future:
        fut: Future = Future()
        self._jobs.put((fut, fn, args))
        return fut

    def shutdown(self) -> None:
        """Waiting jobs are cancelled; running ones finish on their own (nothing waits for them)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)


#: threads that read uploads' headers (off the event loop; a header can take seconds to parse)
PROBE_THREADS = 2


class Engine:
    """Runs analyses on ``workers`` threads; at most ``max_queue`` more wait for one. Uploads' headers
    are read on :data:`PROBE_THREADS` threads of their own, at most ``workers + max_queue`` at once
    (counting those a request stopped waiting for, which go on to their end)."""

    def __init__(self, recognizer: Any, workers: int = 1, max_queue: int = DEFAULT_MAX_QUEUE,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.rec, self.workers, self.max_queue, self.timeout = recognizer, workers, max_queue, timeout
        self._lock = threading.Lock()
        self._pool: _DaemonPool | None = None
        self._probes: _DaemonPool | None = None
        self.probing = 0  #: headers being read or waiting to be (whether or not a request still waits)
        self.pending = 0  #: submitted and not finished (running + waiting)
        self.served = 0  #: analyses that finished with a result (not those that failed or were dropped)

    def _submit(self, fn: Callable, *args: Any) -> Future:
        with self._lock:
            if self.pending >= self.workers + self.max_queue:
                raise ApiError(503, BUSY,
                               {"workers": self.workers, "waiting": self.pending - self.workers},
                               headers={"Retry-After": "1"})
            if self._pool is None:
                self._pool = _DaemonPool(self.workers, "ferkit-analyze")
            self.pending += 1
            fut = self._pool.submit(fn, *args)
        fut.add_done_callback(self._finished)
        return fut

    def _finished(self, fut: Future) -> None:
        with self._lock:
            self.pending -= 1
            if not fut.cancelled() and fut.exception() is None and not getattr(fut, "abandoned", False):
                self.served += 1

    async def run(self, fn: Callable, *args: Any, timeout: float) -> Any:
        """``fn(*args)`` on a worker; :class:`ApiError` 503 when full, 504 after ``timeout`` seconds
        (a waiting job is dropped then; a running one finishes in the background, unseen)."""
        late = ApiError(504, LATE, {"timeout_s": self.timeout})
        if timeout <= 0:
            raise late
        fut = self._submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except asyncio.TimeoutError:
            fut.abandoned = True  # type: ignore[attr-defined]  # (a running one's answer goes to no one)
            fut.cancel()
            raise late from None
        except asyncio.CancelledError:  # the client went away (or the server stops): the same
            fut.abandoned = True  # type: ignore[attr-defined]
            fut.cancel()
            raise

    async def probe(self, fn: Callable, *, timeout: float) -> Any:
        """``fn()`` (an upload's header read) on a probe thread: 503 when ``workers + max_queue`` are in
        hand already, 504 after ``timeout`` seconds (it reads on to its end: it still counts until then;
        a client sending headers that take seconds each held every thread Python lends, and then made
        everyone's requests wait their whole time for a 504)."""
        with self._lock:
            if self.probing >= self.workers + self.max_queue:
                raise ApiError(503, BUSY, {"reading_headers": self.probing}, headers={"Retry-After": "1"})
            if self._probes is None:
                self._probes = _DaemonPool(PROBE_THREADS, "ferkit-probe")
            self.probing += 1
            fut = self._probes.submit(fn)
        fut.add_done_callback(self._probed)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), max(0.1, timeout))
        except asyncio.TimeoutError:
            fut.cancel()  # (a waiting one is dropped; a running one ends on its own)
            raise ApiError(504, LATE, {"timeout_s": self.timeout}) from None

    def _probed(self, _fut: Future) -> None:
        with self._lock:
            self.probing -= 1

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            probes, self._probes = self._probes, None
        for p in (pool, probes):
            if p is not None:
                p.shutdown()


# ---------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------
def _too_large(max_pixels: int, w: int | None = None, h: int | None = None, n: int | None = None,
               why: str | None = None) -> ApiError:
    """The 413 of an image over the pixel limit, in one form whatever found it: ``error`` says the
    size and the limit; ``detail`` holds ``max_pixels`` and what is known of the image (``width``,
    ``height``, ``pixels``; ``reason`` where the decoder refused a size it did not tell)."""
    n = w * h if n is None and w is not None and h is not None else n
    size = f"{w}x{h} is {n:,} pixels" if w is not None else f"{n:,} pixels" if n is not None else None
    detail: dict = {k: v for k, v in (("width", w), ("height", h), ("pixels", n)) if v is not None}
    detail["max_pixels"] = max_pixels
    if why:
        detail["reason"] = why
    return ApiError(413, (f"image too large: {size}, the limit is {max_pixels:,} ({max_pixels / 1e6:g} MP)" if size
                          else f"image too large to decode safely (the limit is {max_pixels / 1e6:g} MP)"), detail)


async def _unless_gone(receive: Callable, job: Any) -> Any:
    """The result of the coroutine ``job``, unless the client disconnects first (its request's
    body all read, ``receive`` then tells only that): then ``job`` is cancelled (an analysis still
    waiting for a worker never runs; a running one finishes unseen) and a 499 is raised, for the
    log (the client hears nothing more). A page that drops a photo for a newer one, or a client's
    own timeout, frees the workers for those still waiting."""
    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    run, gone = asyncio.ensure_future(job), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # (the server stops)
        run.cancel()
        raise
    finally:
        gone.cancel()
    if run.done():
        return run.result()
    run.cancel()
    raise ApiError(499, "the client closed the request before its answer")


def _log_gone(scope: dict) -> None:
    """An access-log line, as uvicorn's, with status 499 for a request whose client left before
    its answer (it was not analysed, or its analysis went unseen)."""
    from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope.get("method"),
                                             get_path_with_query_string(scope), scope.get("http_version"), 499)


def _file_schema(schema: dict) -> None:
    """The form field's schema as an upload alone (the text that the handler also takes, to judge
    it with the rest of the form, is no way to send an image): /docs shows a file picker."""
    schema.pop("anyOf", None)
    schema.update({"type": "string", "contentMediaType": "application/octet-stream"})


def _probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Format and size from the image's header (nothing is decoded yet)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            w, h = im.size
            return str(im.format), int(w), int(h)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        n = bomb_pixels(e)  # over Pillow's own ceiling: its size is refused before it can be read
        raise _too_large(max_pixels, n=n, why=None if n else str(e)) from None
    except UnidentifiedImageError:
        raise ApiError(400, "not an image (or a format the server does not read)",
                       {"formats": [f for f in ALLOWED_FORMATS if f != "DIB"]}) from None
    except Exception as e:  # any parser failure on a broken header
        raise ApiError(400, "corrupt image", f"corrupt or truncated image ({e})") from None


def _printable(text: str) -> str:
    """``text`` with control and format characters (newlines, terminal escapes, bidirectional
    overrides) as ``?``: what a client sent cannot forge log lines or recolour a terminal."""
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)


def _safe_filename(name: str | None) -> str:
    """The uploaded file's name as ferkit shows it (``source``, messages, the server's log): its
    last path part, :func:`_printable`."""
    base = _printable((name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return base or "upload"


def _warm_up(rec: Any) -> None:
    """One pass through every network so that the first request is not the slow one."""
    try:
        rec.analyze(np.full((96, 96, 3), 128, np.uint8), source="warm-up")
        h, w = rec.size
        rec.classify(np.zeros((1, h, w) if rec.gray else (1, h, w, 3), np.uint8))
    except Exception:  # a model that cannot run fails on the first request with a clear 500 instead
        log.warning("warm-up failed", exc_info=True)


def _hex(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return f"#{r:02x}{g:02x}{b:02x}"


def create_app(recognizer: Any = None, *, model: str = "default", detector: str = "mtcnn", backend: str = "auto",
               max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS,
               timeout: float = DEFAULT_TIMEOUT, workers: int = 2, max_queue: int = DEFAULT_MAX_QUEUE,
               warm_up: bool = True) -> FastAPI:
    """The ``ferkit serve`` application over ``recognizer`` (default: ``Recognizer(model, detector,
    backend=backend)``, loaded now). Limits: ``max_upload`` bytes per image, ``max_pixels`` per image, ``timeout``
    seconds per request; ``workers`` analyses at once, ``max_queue`` more waiting."""
    from .. import __version__

    if max_upload < 1:
        raise FerkitError(f"the upload limit (--max-upload-mb) must be at least 1 byte, got {max_upload}")
    if not 1 <= max_pixels <= MAX_PIXELS:
        raise FerkitError(f"the pixel limit (--max-pixels) must be between 1 and {MAX_PIXELS:,} (ferkit's decoder refuses "
                          f"larger images), got {max_pixels:,}")
    if not timeout > 0:
        raise FerkitError(f"the timeout (--timeout) must be more than 0 seconds, got {timeout}")
    if workers < 1:
        raise FerkitError(f"workers (--workers) must be at least 1, got {workers}")
    if max_queue < 0:
        raise FerkitError(f"the queue length (--max-queue) must be at least 0, got {max_queue}")
    _route_warnings()
    if recognizer is None:
        from ..pipeline import Recognizer

        recognizer = Recognizer(model, detector, backend=backend)
    if warm_up:
        _warm_up(recognizer)
    engine = Engine(recognizer, workers, max_queue, timeout)
    page = (_STATIC / "index.html").read_text(encoding="utf-8")
    try:  # Swagger UI's files from a package, so that /docs works offline too
        import fastapi_offline

        docs_static = resources.files(fastapi_offline) / "static"
        docs_static = docs_static if (docs_static / "swagger-ui-bundle.js").is_file() else None
    except ImportError:
        docs_static = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()  # (a later request would start a new pool)

    app = FastAPI(
        lifespan=lifespan, title="ferkit", version=__version__,
        redirect_slashes=False,  # /v1/analyze/ is a JSON 404, not a redirect built from the client's Host header
        description="Facial expression recognition: every face in an image, with its box, five landmarks and "
                    "the probability of each expression. `POST /v1/analyze` with a multipart field `file`; "
                    "the page at `/` does it for photos and a live webcam.",
        docs_url=None if docs_static is not None else "/docs", redoc_url=None,
    )
    app.state.engine = engine
    app.state.recognizer = recognizer
    limits = {"max_upload_bytes": max_upload, "max_pixels": max_pixels, "timeout_s": timeout,
              "content_types": sorted(ALLOWED_CONTENT_TYPES)}

    # -- errors: always JSON ----------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status == 499:  # the client is gone: uvicorn writes no access line for an answer never sent
            _log_gone(request.scope)
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # routing answers a wrong path or method without reading the body: then the connection ends
        # with the answer (uvicorn would otherwise wait for the rest of a body that may never come,
        # and its next-request timer would answer the same request a second time, with a 408)
        body_sent = request.headers.get("content-length", "0").strip() not in ("", "0") or \
            "transfer-encoding" in request.headers
        close = CLOSE if body_sent else {}
        if exc.status_code == 404:
            path = request.url.path
            shown = path if len(path) <= 200 else path[:200] + f"... ({len(path):,} characters)"
            return error_response(404, "not found", f"no such path: {shown} (see /docs)", close or None)
        if exc.status_code == 405:
            from starlette.routing import Match

            # every method of every route at this path (Starlette names only the last route's: /healthz's
            # HEAD route, not its GET)
            methods = {m for r in request.app.routes if r.matches(request.scope)[0] is Match.PARTIAL
                       for m in (getattr(r, "methods", None) or ())}
            allowed = ", ".join(sorted(methods)) or (exc.headers or {}).get("Allow", "")
            if allowed:
                exc.headers = {**dict(exc.headers or {}), "Allow": allowed}
            what = ("POST the image as multipart/form-data in a field named 'file' (curl -F file=@photo.jpg); "
                    "see /docs" if request.url.path.rstrip("/") == "/v1/analyze"
                    else f"this path takes {allowed}; see /docs" if allowed else "see /docs")
            return error_response(405, f"method {request.method} not allowed here", what,
                                  {**dict(exc.headers or {}), **close})
        if exc.status_code == 400 and ("Missing boundary" in str(exc.detail) or re.search(
                r";\s*boundary=\s*(;|$)", request.headers.get("content-type", ""), re.I)):
            return error_response(400, "multipart form without a boundary", "the Content-Type header must name "
                                  "the form's boundary (multipart/form-data; boundary=...); a client such as curl "
                                  "-F or a browser form adds it: do not set Content-Type by hand")
        if exc.status_code == 400 and "Invalid multipart data" in str(exc.detail):
            return error_response(400, "the multipart form could not be read (malformed, or a part header too "
                                  "long, such as a file name of thousands of characters)", str(exc.detail))
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return error_response(400, "malformed multipart body", "send multipart/form-data with the image in a "
                                  "field named 'file'")
        return error_response(exc.status_code, str(exc.detail), None, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        first = errs[0] if errs else {"loc": [], "msg": "invalid request"}
        if first["loc"][:1] == ["body"]:
            return error_response(400, "form field 'file' must be an uploaded file (the image), not text", errs)
        where = ".".join(str(x) for x in first["loc"][1:]) or "request"
        hint = " (annotated=1 or annotated=0)" if where == "annotated" else ""
        return error_response(422, f"invalid {where}: {first['msg']}{hint}", errs)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error", None)

    # -- the API ----------------------------------------------------------------------------
    # the example photo's answer, roughly (the label is the most probable class)
    top = "happy" if "happy" in recognizer.classes else recognizer.classes[0]
    probs = {c: round(0.07 / max(1, len(recognizer.classes) - 1), 3) for c in recognizer.classes}
    probs[top] = 0.93
    face_example = {"box": [179, 58, 88, 115], "landmarks": [[201.7, 101.3], [235.4, 98.9], [218.5, 118.0],
                                                             [204.6, 137.1], [233.8, 135.2]],
                    "score": 0.999, "label": top, "probabilities": probs}
    def err_example(error: str, detail: Any) -> dict:  # (a null detail was dropped from the generated schema)
        return {"application/json": {"example": {"error": error, "detail": detail}}}

    def typed(responses: dict) -> dict:
        """Each JSON answer with its model (the schema a generated client types it by): 200's the
        result, the others the error body."""
        return {code: {**r, "model": AnalyzeResult if code == 200 else ErrorBody} for code, r in responses.items()}

    @app.post(
        ANALYZE_PATH, tags=["analyze"], summary="Every face's expression in one image",
        description="Upload one image (JPEG, PNG, WebP, BMP, TIFF, GIF, PPM/PGM) as the multipart form field "
                    "`file`. Answers the same JSON as `ferkit predict IMAGE --json` (`source` is the uploaded "
                    "file's name; an image without faces has `\"faces\": []`), or with `annotated=1` the image "
                    "with boxes, labels, landmarks and probability bars drawn on it, as PNG (header "
                    "`X-Ferkit-Faces`: the number of faces). An image read with a caveat (only the first frame "
                    "of an animation, a JPEG without its end marker, a picture whose lower half is flat gray as in a "
                    "file cut short) has the header `X-Ferkit-Warnings`, a JSON "
                    "list of messages, and its JSON a `warnings` list of them. Errors are JSON "
                    "`{\"error\", \"detail\"}`.",
        responses=typed({
            200: {"content": {"application/json": {"example": {"source": "photo.jpg", "width": 512, "height": 512,
                                                              "faces": [face_example]}},
                              "image/png": {"schema": {"type": "string", "format": "binary"}}},
                  "description": "the faces (JSON), or with annotated=1 the annotated image (PNG)"},
            400: {"description": "missing field, empty file, not an image, corrupt image, unknown query parameter",
                  "content": err_example("corrupt image", "corrupt or truncated image (the decoder's words)")},
            408: {"description": f"the upload did not arrive within {timeout:g} s",
                  "content": err_example(f"the upload took longer than {timeout:g} s", {"timeout_s": timeout})},
            413: {"description": f"over {_mb(max_upload)} (`detail`: `limit_bytes`; `request_bytes`, the request's "
                                 f"size where told; `size_bytes`, the file's where read) or {max_pixels:,} pixels "
                                 f"(`detail`: `max_pixels`, and `width`, `height`, `pixels` where known)",
                  "content": err_example(f"upload too large: the limit is {_mb(max_upload)}",
                                         {"limit_bytes": max_upload, "request_bytes": max_upload + 1234,
                                          "size_bytes": None})},
            415: {"description": "content type not an image, or not a multipart request",
                  "content": err_example(f"unsupported content type 'text/plain': not an image: send "
                                         f"{FORMATS_IN_WORDS}",
                                         {"content_type": "text/plain", "allowed": sorted(ALLOWED_CONTENT_TYPES)})},
            422: {"description": "a query value that is not one (annotated=1 or 0); `detail` lists each as "
                                 "{loc, msg}",
                  "content": {"application/json": {"example": {"error": "invalid annotated: ...",
                                                               "detail": [{"loc": ["query", "annotated"],
                                                                           "msg": "..."}]}}}},
            503: {"description": "busy: too many requests waiting (`detail`: `workers`, `waiting`), or too many "
                                 "uploads arriving at once (`uploads`, `max_uploads`); header `Retry-After`",
                  "content": err_example(BUSY, {"workers": 2, "waiting": 8})},
            504: {"description": f"no answer within {timeout:g} s",
                  "content": err_example(LATE, {"timeout_s": timeout})},
            500: {"description": "a fault of the server (its log has the details)",
                  "content": err_example("internal server error", "see the server's log")},
        }),
    )
    async def analyze(request: Request,
                      # (text taken too, so that a text part named 'file' beside the image, in either
                      # order, is judged below with the whole form, not refused by the last part alone)
                      file: UploadFile | str | None = File(None, description="the image",
                                                           json_schema_extra=_file_schema),
                      annotated: bool = Query(False, description="answer with the annotated image (PNG) "
                                                                 "instead of JSON")) -> Response:
        t0 = request.scope.get("ferkit.t0", time.monotonic())
        unknown = sorted(set(request.query_params) - {"annotated"})
        if unknown:  # a tta=flip or model=... that would be ignored in silence: said instead
            shown = [u if len(u) <= 40 else u[:40] + "..." for u in unknown[:5]]  # not a 70 KB name echoed back
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ApiError(400, f"unknown query parameter(s): {', '.join(shown)}{more} (this endpoint takes "
                                f"'annotated' only; the model and its settings are the server's)",
                           {"unknown": shown, "known": ["annotated"]})
        given = request.query_params.getlist("annotated")
        if len(given) > 1:  # which one would count? said, not the last taken in silence
            raise ApiError(400, f"'annotated' given {len(given)} times: give it once (annotated=1 or 0)",
                           {"annotated": given[:5]})
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            # the form FastAPI parsed (cached). FastAPI hands over the last part named 'file' (or None
            # when that one is empty); a part with no name and no bytes is what a browser sends for a
            # file input left empty, so a form with one chosen file and such parts is that one file
            uploads = [p for p in (await request.form()).getlist("file") if hasattr(p, "read")]
            chosen = [p for p in uploads if (p.filename or "").strip() or (p.size or 0) > 0]
            if len(chosen) > 1:
                raise ApiError(400, f"send one image per request (the form holds {len(chosen)} files named "
                                    f"'file')", {"files": len(chosen)})
            if chosen:
                file = chosen[0]
        if file is None or not hasattr(file, "read"):
            if ctype != "multipart/form-data":
                raise ApiError(415, "send the image as multipart/form-data in a field named 'file'",
                               {"content_type": ctype or None})
            form = await request.form()
            if any(isinstance(v, str) and v for v in form.getlist("file")):
                raise ApiError(400, "form field 'file' must be an uploaded file (the image), not text", None)
            if "file" in form:  # the field is there, with no file in it (FastAPI made it None)
                raise ApiError(400, NO_FILE_CHOSEN, None)
            fields = sorted({_printable(k)[:100] for k in form.keys()})[:20]
            if fields:
                raise ApiError(400, f"missing form field 'file' (the image): the form holds "
                                    f"{', '.join(repr(f) for f in fields)}; name the image's field 'file' (or the "
                                    f"form is cut short: no closing boundary after it)", {"fields": fields})
            raise ApiError(400, "missing form field 'file' (the image), or the form is cut short (no closing "
                                "boundary)", None)
        name = _safe_filename(file.filename)
        ctype = (file.content_type or "").split(";")[0].strip().lower()
        if ctype not in ALLOWED_CONTENT_TYPES and ctype not in UNTYPED:
            says = (f"image format not supported ({ctype})" if ctype.startswith("image/")  # HEIC, AVIF, SVG...
                    else f"unsupported content type {ctype!r}: not an image")
            raise ApiError(415, f"{says}: send {FORMATS_IN_WORDS}",
                           {"content_type": ctype, "allowed": sorted(ALLOWED_CONTENT_TYPES)})
        data = await file.read()
        if len(data) > max_upload:
            told = request.headers.get("content-length", "")
            raise ApiError(413, f"upload too large: the limit is {_mb(max_upload)}",
                           {"limit_bytes": max_upload, "request_bytes": int(told) if told.isdigit() else None,
                            "size_bytes": len(data)})
        if not data:
            if not (file.filename or "").strip():  # what a browser form sends when no file was chosen
                raise ApiError(400, NO_FILE_CHOSEN, None)
            raise ApiError(400, "empty file (0 bytes)", {"filename": name})
        caught: list[str] = []  # warnings raised reading it (Pillow's): the log and the header, not the JSON

        def probe() -> tuple[str, int, int]:
            with _catching(caught):  # (on the thread that reads it)
                return _probe(data, max_pixels)

        # off the event loop: a header of a million chunks takes seconds to parse, in which no other
        # request (not even /healthz) would be answered; within the request's time like its analysis
        fmt, w, h = await engine.probe(probe, timeout=timeout - (time.monotonic() - t0))
        if w * h > max_pixels:
            raise _too_large(max_pixels, w, h)
        if annotated and max(w, h) > PNG_MAX_SIDE:
            raise ApiError(413, f"an annotated PNG can be at most {PNG_MAX_SIDE:,} pixels on a side, this image is "
                                f"{w}x{h}: ask without annotated=1 for its JSON",
                           {"width": w, "height": h, "max_side": PNG_MAX_SIDE})

        notes: list[str] = []  # read with a caveat: told in the log and the X-Ferkit-Warnings header

        def work() -> tuple[dict, bytes | None]:
            try:
                return analysed()
            finally:  # (the image, its result and picture released by now, a failed decoding's too)
                if w * h >= TRIM_PIXELS:
                    _release(recognizer)

        def analysed() -> tuple[dict, bytes | None]:
            with _catching(caught):
                # decoded by the probed format's reader only (Pillow tries some readers without a
                # signature check first: another could claim the bytes, at another size)
                rgb = read_image(data, "RGB", name=name, formats=ALLOWED_FORMATS,  # (the probe's reader: its size)
                                 notes=notes)
                r = recognizer.analyze(rgb, source=name, keep_image=annotated)
                return r.to_dict(), (encode_png(r.plot()) if annotated else None)

        try:
            result, png = await _unless_gone(request.receive,
                                             engine.run(work, timeout=timeout - (time.monotonic() - t0)))
        except ApiError:
            raise
        except ImageDecodeError as e:
            msg = str(e)
            msg = msg[len(name) + 2:] if msg.startswith(name + ": ") else msg
            if isinstance(e, ImageTooLargeError):  # the decoder's own ceiling (its size passed the probe)
                raise _too_large(max_pixels, why=msg) from None
            raise ApiError(400, "corrupt image" if "corrupt" in msg else msg, msg) from None
        except FerkitError as e:
            raise ApiError(400, str(e)) from None
        except Exception as e:
            log.error("analysis of %s (%s, %dx%d) failed", name, fmt, w, h, exc_info=e)
            raise ApiError(500, "the analysis failed (a server error: see its log)") from None
        told = {}
        if notes:
            result["warnings"] = list(notes)  # in the JSON as `ferkit predict --json` has them
        said = list(notes) + [f"{name}: {c}" for c in dict.fromkeys(caught)]  # (`ferkit predict` prints those too)
        if said:
            for n in said:
                log.warning("%s", n)
            # ASCII (non-ASCII letters as \u escapes), each message cut at 300 characters: a crafted
            # name of thousands of emoji would otherwise make a header proxies refuse
            told = {"X-Ferkit-Warnings": json.dumps([n if len(n) <= 300 else n[:299] + "…" for n in said[:4]])}
        if png is not None:
            # (format characters such as U+202E, which turn the text around, could disguise the extension)
            base = "".join(c for c in name.rsplit(".", 1)[0] if unicodedata.category(c) != "Cf")
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:80] or "upload"
            # filename: an ASCII fallback; filename*: the name as uploaded (RFC 6266), for non-ASCII names
            utf8 = quote((re.sub(r"[\x00-\x1f\x7f\"\\/]+", "_", base)[:80] or "upload") + "_ferkit.png", safe="")
            return Response(png, media_type="image/png",
                            headers={**told, "X-Ferkit-Faces": str(len(result["faces"])),
                                     "Content-Disposition": f'inline; filename="{stem}_ferkit.png"; '
                                                            f"filename*=UTF-8''{utf8}"})
        return Response(json.dumps(result), media_type="application/json", headers=told)

    # HEAD too: load balancers and uptime checkers probe with it (GET routes alone answer it 405)
    @app.get("/healthz", tags=["service"], summary="Liveness, model and limits", response_model=None,
             responses={200: {"model": Health, "description": "the server is up: its model, limits and load"}})
    @app.api_route("/healthz", methods=["HEAD"], include_in_schema=False)  # one operation id in the schema
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__, "model": recognizer.model.name,
                "backend": getattr(recognizer.model, "backend", "torch"),
                "detector": getattr(recognizer.detector, "name", type(recognizer.detector).__name__),
                "classes": list(recognizer.classes),
                "colours": {c: _hex(CLASS_COLOURS.get(c, (255, 200, 0))) for c in recognizer.classes},
                "limits": limits, "workers": engine.workers, "pending": engine.pending, "served": engine.served}

    # -- the page ---------------------------------------------------------------------------
    page_headers = {
        "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                   "img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
                                   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        # (framed by another site, a click on its page could land on "Start webcam": no frame may hold it)
        "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
    }

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    if docs_static is not None:
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.staticfiles import StaticFiles

        app.mount("/_docs", StaticFiles(directory=str(docs_static)), name="docs-static")

        @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)  # (HEAD: as / and /healthz)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="ferkit API",
                                       swagger_js_url="/_docs/swagger-ui-bundle.js",
                                       swagger_css_url="/_docs/swagger-ui.css",
                                       swagger_favicon_url="/_docs/favicon.png",
                                       swagger_ui_parameters={"validatorUrl": None})

    # outermost: limits apply before anything reads the body
    # uploads received or held at once: the analyses running and waiting, and as many again arriving, twice
    app.add_middleware(UploadLimit, limit=max_upload + MULTIPART_SLACK, max_upload=max_upload, timeout=timeout,
                       max_uploads=4 * (workers + max_queue))
    app.add_middleware(NoSniff)  # (outermost: the upload limit's own answers have it too)
    # the upload is required (the handler takes none, to answer a missing one with its own 400): so
    # the schema says, for /docs and for client generators
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = default_openapi()
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            body = spec["paths"][ANALYZE_PATH]["post"]["requestBody"]
            body["required"] = True
            ref = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
            form = spec["components"]["schemas"][ref]
            form["required"] = sorted(set(form.get("required", [])) | {"file"})
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return app

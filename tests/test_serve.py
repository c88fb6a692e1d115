"""ferkit serve: the HTTP API (FastAPI's TestClient, and once over a real socket) and the web page,
driven end to end in headless Chromium with Playwright (skipped where Chromium or Playwright is missing)."""

from __future__ import annotations

import contextlib

import io
import json
import logging
import re
import socket
import sys
import threading
import time
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE
from PIL import Image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x would rather see httpx2 than httpx behind its TestClient
    from fastapi.testclient import TestClient

from ferkit import Recognizer
from ferkit.cli import main
from ferkit.serve import DEFAULT_MAX_PIXELS, ServerThread, create_app
from ferkit.serve.app import DRAIN, MULTIPART_SLACK

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def rec():
    return Recognizer()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return EXAMPLE.read_bytes()


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec)) as c:
        yield c


def post(client, data: bytes, name: str = "astronaut.jpg", ctype: str = "image/jpeg", **kw):
    return client.post("/v1/analyze", files={"file": (name, data, ctype)}, **kw)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def assert_json_error(r, status: int, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    for w in words:
        assert w in body["error"].lower(), body
    return body


# ---------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------
def test_analyze_is_the_predict_json(client, rec, photo, tmp_path):
    r = post(client, photo)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = r.json()
    assert [f["label"] for f in got["faces"]] == ["happy"]
    assert got == rec.analyze(photo, source="astronaut.jpg").to_dict()
    # ... and what `ferkit predict IMAGE --json` writes, but for the source's name
    assert main(["predict", str(EXAMPLE), "--json", str(tmp_path / "p.json"), "--quiet"]) == 0
    cli = json.loads((tmp_path / "p.json").read_text())
    assert cli["source"] == str(EXAMPLE)
    assert {**cli, "source": "astronaut.jpg"} == got


def test_source_is_the_uploaded_name_and_png_works(client, photo):
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    got = post(client, png_bytes(rgb), name="some/dir/me.png", ctype="image/png").json()
    assert got["source"] == "me.png" and got["faces"][0]["label"] == "happy"
    got = post(client, photo, ctype="application/octet-stream").json()  # untyped uploads: the bytes decide
    assert got["faces"][0]["label"] == "happy"


def test_annotated_png(client, rec, photo):
    r = post(client, photo, params={"annotated": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-ferkit-faces"] == "1"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "PNG" and img.size == (512, 512)
    assert np.array_equal(np.asarray(img.convert("RGB")), rec.analyze(photo).plot())
    assert r.headers["content-disposition"] == (
        "inline; filename=\"astronaut_ferkit.png\"; filename*=UTF-8''astronaut_ferkit.png")
    # a non-ASCII name: an ASCII fallback and the name itself, percent-encoded (RFC 6266)
    r = post(client, photo, name="名前 ünï.jpg", params={"annotated": 1})
    cd = r.headers["content-disposition"]
    assert 'filename="_n__ferkit.png"' in cd and "filename*=UTF-8''%E5%90%8D%E5%89%8D%20%C3%BCn%C3%AF_ferkit.png" in cd


def test_a_file_name_too_long_for_the_form_parser_is_a_clear_400(client, photo):
    r = client.post("/v1/analyze", files={"file": ("x" * 5000 + ".jpg", photo, "image/jpeg")})
    assert "part header too long" in assert_json_error(r, 400, "multipart form could not be read")["error"]


def test_one_image_per_request(client, photo):
    r = client.post("/v1/analyze", files=[("file", ("a.jpg", photo, "image/jpeg")),
                                          ("file", ("b.jpg", photo, "image/jpeg"))])
    assert assert_json_error(r, 400, "one image")["detail"] == {"files": 2}
    # a file input left empty (no name, no bytes) beside the chosen one, before or after it: that one file
    # (it was "no file chosen" when the empty part came last, "one image per request" when first)
    empty = ("file", ("", b"", "application/octet-stream"))
    for parts in ([("file", ("a.jpg", photo, "image/jpeg")), empty], [empty, ("file", ("a.jpg", photo, "image/jpeg"))]):
        r = client.post("/v1/analyze", files=parts)
        assert r.status_code == 200 and r.json()["source"] == "a.jpg" and r.json()["faces"][0]["label"] == "happy"
    assert assert_json_error(client.post("/v1/analyze", files=[empty, empty]), 400, "no file chosen")


def test_a_multipart_type_without_its_boundary_is_explained(client, photo):
    # curl -H "Content-Type: multipart/form-data" -F file=@x.jpg replaces the header curl would
    # write, boundary included
    for ctype in ("multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; charset=utf-8"):
        r = client.post("/v1/analyze", content=photo, headers={"Content-Type": ctype})
        assert "boundary" in assert_json_error(r, 400, "multipart form without a boundary")["detail"], ctype


def test_an_upload_name_cannot_forge_log_lines_or_escape_codes(client, photo):
    # the name goes into messages and the server's log: newlines, terminal escapes and
    # bidirectional overrides become "?" (sent raw in the multipart header, as a hostile client can)
    evil = 'a\x1b[31mRED\x1b[0m\nINFO:     10.0.0.9:1 - POST 200 OK\u202egpj.exe'.encode()
    body = (b'--b0\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\nContent-Type: image/jpeg'
            b"\r\n\r\n%s\r\n--b0--\r\n" % (evil, photo))
    r = client.post("/v1/analyze", content=body, headers={"Content-Type": "multipart/form-data; boundary=b0"})
    assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happy"
    assert r.json()["source"] == "a?[31mRED?[0m?INFO:     10.0.0.9:1 - POST 200 OK?gpj.exe"


def test_an_image_read_with_a_caveat_says_so_in_a_header(client, photo):
    # the CLI prints these as warnings; an HTTP client has no stderr: X-Ferkit-Warnings (a JSON list)
    r = post(client, photo)
    assert r.status_code == 200 and "x-ferkit-warnings" not in r.headers
    r = client.post("/v1/analyze", files={"file": ("no_end.jpg", photo[:-2], "image/jpeg")})
    assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happy"
    told = json.loads(r.headers["x-ferkit-warnings"])
    assert len(told) == 1 and told[0].startswith("no_end.jpg: the JPEG file lacks its 2-byte end marker")
    assert r.json()["warnings"] == told and "warnings" not in post(client, photo).json()  # as predict --json
    # a crafted name thousands of characters long: each message cut to 300 characters
    r = client.post("/v1/analyze", files={"file": ("\U0001f600" * 900 + ".jpg", photo[:-2], "image/jpeg")})
    told = json.loads(r.headers["x-ferkit-warnings"])
    assert r.status_code == 200 and len(told[0]) == 300 and told[0].endswith("…")
    assert r.json()["warnings"][0].startswith(told[0][:-1]) and len(r.json()["warnings"][0]) > 300  # whole there
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue", "green")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    r = client.post("/v1/analyze?annotated=1", files={"file": ("anim.gif", gif.getvalue(), "image/gif")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert json.loads(r.headers["x-ferkit-warnings"]) == [
        "anim.gif: holds 3 frames (an animation or a multi-page file); only the first is read"]


def test_pillows_warnings_go_to_the_request_not_the_servers_stderr(client, photo, capfd):
    # a JPEG whose EXIF block is cut short: Pillow warns while reading it; that warning is the
    # request's (its header and log line, as `ferkit predict` prints it), every time, not a line on
    # the server's stderr (once, then never again for later requests)
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 22)
    for _ in range(2):
        r = post(client, buf.getvalue(), name="badexif.jpg")
        assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happy"
        told = json.loads(r.headers["x-ferkit-warnings"])
        assert len(told) == 1 and told[0].startswith("badexif.jpg: Corrupt EXIF data"), told
        assert "warnings" not in r.json()  # the JSON stays that of `ferkit predict --json`
    assert "Corrupt EXIF" not in capfd.readouterr().err
    assert "x-ferkit-warnings" not in post(client, photo).headers


def test_only_pillows_warnings_are_the_photos(rec, photo):
    # a warning of the analysis itself (not Pillow's reading the photo) is not the photo's: it goes
    # where warnings go, not into the request's header
    import warnings

    class Noisy(SlowRecognizer):
        def analyze(self, *a, **kw):
            warnings.warn("an internal note of the analysis", UserWarning)
            return self.rec.analyze(*a, **kw)

    with TestClient(create_app(Noisy(rec, 0), warm_up=False)) as c:
        with pytest.warns(UserWarning, match="an internal note"):
            r = post(c, photo)
    assert r.status_code == 200 and "x-ferkit-warnings" not in r.headers


def test_no_face_is_not_an_error(client):
    r = post(client, png_bytes(np.full((120, 160, 3), 200, np.uint8)), name="wall.png", ctype="image/png")
    assert r.status_code == 200
    assert r.json() == {"source": "wall.png", "width": 160, "height": 120, "faces": []}


@pytest.fixture(scope="module")
def small_client(rec):
    """Small limits, so that 413s cost little."""
    with TestClient(create_app(rec, max_upload=200_000, max_pixels=300_000, warm_up=False)) as c:
        yield c


def test_an_image_over_pillows_ceiling_gets_the_servers_limit_in_its_413(small_client, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2,000 before reading the size
    body = assert_json_error(post(small_client, png_bytes(np.zeros((50, 50), np.uint8)), ctype="image/png"), 413,
                             "too large")
    assert body["detail"] == {"pixels": 2500, "max_pixels": 300_000}
    assert body["error"] == "image too large: 2,500 pixels, the limit is 300,000 (0.3 MP)"
    assert "exceeds limit" not in body["error"]


def test_decoder_errors_map_to_413_by_kind_not_by_wording(client, photo, monkeypatch):
    """An image the decoder finds too large is a 413; any other decode failure a 400, even when its
    words happen to say "limit" (the probe's checks come first: this is the decoder's own verdict)."""
    import ferkit.serve.app as app_mod
    from ferkit.errors import ImageDecodeError, ImageTooLargeError

    def raising(exc):
        def read(*args, **kwargs):
            raise exc
        return read

    monkeypatch.setattr(app_mod, "read_image", raising(ImageTooLargeError("astronaut.jpg: image is 9 MP, over the "
                                                                          "8 MP limit")))
    body = assert_json_error(post(client, photo), 413, "image too large to decode safely")
    # the form of every 413 for pixels: the server's limit, and here the decoder's words
    assert body["detail"] == {"max_pixels": DEFAULT_MAX_PIXELS,
                              "reason": "image is 9 MP, over the 8 MP limit"}  # (the upload's name not repeated)
    monkeypatch.setattr(app_mod, "read_image", raising(ImageDecodeError("astronaut.jpg: truncated before the "
                                                                        "scan limit")))
    assert_json_error(post(client, photo), 400, "scan limit")


def test_bad_requests_get_json_errors(client, small_client, photo):
    wrong = assert_json_error(client.post("/v1/analyze", files={"image": ("a.jpg", photo, "image/jpeg")}), 400,
                              "missing", "file")
    assert "the form holds 'image'" in wrong["error"] and wrong["detail"] == {"fields": ["image"]}
    assert "cut short" in wrong["error"]  # (a form without its closing boundary loses its last part)
    # a form without enctype="multipart/form-data" (its field as text): how to send it is said
    assert_json_error(client.post("/v1/analyze", data={"file": "not a file"}), 415, "multipart/form-data")
    assert_json_error(client.post("/v1/analyze", json={"file": "x"}), 415, "multipart")
    assert_json_error(client.post("/v1/analyze"), 415, "multipart")
    assert_json_error(client.post("/v1/analyze", content=b"--x\r\ngarbage", headers={
        "content-type": "multipart/form-data; boundary=x"}), 400)
    assert_json_error(post(client, b""), 400, "empty")
    # a browser form with no file chosen sends the field with an empty name and no bytes
    assert_json_error(client.post("/v1/analyze", files={"file": ("", b"", "application/octet-stream")}), 400,
                      "no file chosen")
    assert_json_error(post(client, b"just some text, not pixels"), 400, "not an image")
    assert_json_error(post(client, b"%PDF-1.4\n" + bytes(2000), name="a.pdf", ctype="image/jpeg"), 400, "not an image")
    assert_json_error(post(client, photo[: len(photo) // 3]), 400, "corrupt")
    png = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert_json_error(post(client, png[: len(png) // 2], ctype="image/png"), 400, "corrupt")
    assert_json_error(post(client, b"hello", name="a.txt", ctype="text/plain"), 415, "content type")
    assert_json_error(post(client, photo, name="a.pdf", ctype="application/pdf"), 415, "content type")
    # an image format the server does not read is said so, with those it reads; aliases of those are taken
    assert_json_error(post(client, photo, name="a.heic", ctype="image/heic"), 415,
                      "image format not supported (image/heic): send jpeg, png")
    assert post(client, png, name="a.apng", ctype="image/apng").status_code == 200
    assert_json_error(post(client, photo, params={"annotated": "perhaps"}), 422, "annotated")
    body = assert_json_error(post(client, photo, params={"tta": "flip", "annotated": "1"}), 400, "unknown query")
    assert body["detail"] == {"unknown": ["tta"], "known": ["annotated"]}  # not ignored in silence
    body = assert_json_error(post(client, photo, params={"x" * 5000: "1"}), 400, "unknown query")
    assert len(json.dumps(body)) < 600  # a long name is cut, not echoed back whole
    assert_json_error(post(client, photo, params=[("annotated", "1"), ("annotated", "0")]), 400, "given 2 times")
    assert_json_error(post(client, photo, params={"annotated": ""}), 422, "annotated=1 or annotated=0")
    assert_json_error(client.post("/v1/analyze/", files={"file": ("a.jpg", photo, "image/jpeg")}), 404, "not found")
    assert_json_error(client.get("/v1/nothing-here"), 404, "not found")
    body = assert_json_error(client.get("/v1/analyze"), 405, "not allowed")
    assert "multipart/form-data in a field named 'file'" in body["detail"]  # what to do instead
    # a wrong path or method gets its 404 or 405 whatever the body's size, not the upload limit's 413
    assert_json_error(small_client.post("/v1/nothing-here", content=bytes(250_000)), 404, "not found")
    assert_json_error(small_client.post("/v1/analyze/", content=bytes(250_000)), 404, "not found")
    assert_json_error(small_client.put("/v1/analyze", content=bytes(250_000)), 405, "not allowed")
    # limits: bytes (by Content-Length, before the body is read) and pixels (from the header, before decoding)
    body = assert_json_error(post(small_client, bytes(300_000)), 413, "too large")  # by Content-Length
    assert body["detail"]["limit_bytes"] == 200_000 and body["detail"]["request_bytes"] > 300_000  # the form's
    assert body["detail"]["size_bytes"] is None  # (not read)
    body = assert_json_error(post(small_client, bytes(200_001)), 413, "too large")  # over by one, inside the slack
    # the same keys whichever check caught it (the later one gave size_bytes alone): the file's own size too
    assert body["detail"]["size_bytes"] == 200_001 and body["detail"]["request_bytes"] > 200_001
    assert set(body["detail"]) == {"limit_bytes", "request_bytes", "size_bytes"}
    big = png_bytes(np.zeros((600, 600), np.uint8))  # 360,000 pixels, a few kB
    assert len(big) < 200_000
    body = assert_json_error(post(small_client, big, ctype="image/png"), 413, "too large")
    assert body["detail"] == {"width": 600, "height": 600, "pixels": 360_000, "max_pixels": 300_000}
    assert "600x600 is 360,000 pixels, the limit is 300,000 (0.3 MP)" in body["error"]
    assert post(small_client, png_bytes(np.zeros((500, 500), np.uint8)), ctype="image/png").status_code == 200
    # a strip within the pixel limit but wider than a PNG can be: its JSON, and a 413 for its annotated PNG
    # (libpng refused to write it: a 500 before)
    strip = png_bytes(np.zeros((1, 1_000_001), np.uint8))
    assert post(client, strip, ctype="image/png").json()["faces"] == []
    body = assert_json_error(post(client, strip, ctype="image/png", params={"annotated": 1}), 413,
                             "at most 1,000,000 pixels on a side", "without annotated=1")
    assert body["detail"] == {"width": 1_000_001, "height": 1, "max_side": 1_000_000}
    # and the server is still fine
    assert post(client, photo).json()["faces"][0]["label"] == "happy"


class SlowRecognizer:
    """The real recognizer, ``delay`` seconds slower."""

    def __init__(self, rec, delay: float) -> None:
        self.rec, self.delay = rec, delay

    def analyze(self, *a, **kw):
        time.sleep(self.delay)
        return self.rec.analyze(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.rec, name)


def test_timeout_is_504_and_busy_is_503(rec, photo):
    import ferkit.serve.app as app_mod

    with TestClient(create_app(SlowRecognizer(rec, 1.5), timeout=0.5, warm_up=False)) as c:
        t = time.monotonic()
        assert_json_error(post(c, photo), 504, "in time")
        assert time.monotonic() - t < 1.4
        assert c.get("/healthz").status_code == 200  # the event loop was never blocked
        wait_until(lambda: c.get("/healthz").json()["pending"] == 0, timeout=10)
        assert c.get("/healthz").json()["served"] == 0  # (its analysis ended, answered to no one)
    with TestClient(create_app(SlowRecognizer(rec, 0.8), workers=1, max_queue=0, warm_up=False)) as c:
        with ThreadPoolExecutor(3) as ex:
            answers = sorted((r.status_code, r.json().get("error")) for r in ex.map(lambda _: post(c, photo), range(3)))
        assert answers[0][0] == 200 and (503, app_mod.BUSY) in answers
        assert c.post("/v1/analyze", files={"file": ("a.jpg", photo, "image/jpeg")}).status_code == 200


def test_server_bug_is_a_json_500(rec, photo):
    class Broken(SlowRecognizer):
        def analyze(self, *a, **kw):
            raise RuntimeError("boom")

    with TestClient(create_app(Broken(rec, 0), warm_up=False)) as c:
        body = assert_json_error(post(c, photo), 500)
        assert "boom" not in json.dumps(body)
        assert c.get("/healthz").status_code == 200


def test_healthz(client, rec):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model"] == rec.model.name == "vgg_fer-fer2013-bn" and h["backend"] == "onnx"
    assert h["detector"] == "mtcnn" and h["classes"] == list(rec.classes)
    assert h["version"] == __import__("ferkit").__version__
    assert h["limits"]["max_upload_bytes"] == 10 * 2**20 and "image/jpeg" in h["limits"]["content_types"]
    assert set(h["colours"]) == set(rec.classes)
    head = client.head("/healthz")  # uptime checkers probe with HEAD: 200 and no body, not 405
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"] == "application/json"
    assert client.head("/").status_code == 200
    r = client.post("/healthz")
    assert r.status_code == 405 and "this path takes GET" in r.json()["detail"]


def test_openapi_types_every_answer_and_the_answers_match(client, photo):
    """The schema names a type for the analysis, each error and /healthz (a generated client gets typed
    answers, not `any`), and the server's real answers fit those types exactly (extra fields refused: a field
    added to the answers and not to the schema fails here)."""
    from ferkit.serve.schemas import AnalyzeResult, ErrorBody, Health

    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    responses = spec["paths"]["/v1/analyze"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnalyzeResult"}
    png = responses["200"]["content"]["image/png"]["schema"]  # (annotated=1 answers a PNG: typed as bytes)
    assert png == {"type": "string", "format": "binary"}
    for code in ("400", "408", "413", "415", "422", "500", "503", "504"):
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    health = spec["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health == {"$ref": "#/components/schemas/Health"}
    assert schemas["Face"]["additionalProperties"] is False and "probabilities" in schemas["Face"]["required"]
    # the examples fit their own types
    AnalyzeResult.model_validate(responses["200"]["content"]["application/json"]["example"])
    for code in ("400", "413", "415", "503"):
        ErrorBody.model_validate(responses[code]["content"]["application/json"]["example"])
    # real answers: faces, none, a caveat, errors, /healthz
    one = AnalyzeResult.model_validate(post(client, photo).json())
    assert len(one.faces) == 1 and one.faces[0].label == "happy" and len(one.faces[0].landmarks) == 5
    blank = AnalyzeResult.model_validate(post(client, png_bytes(np.zeros((64, 64, 3), np.uint8)), "b.png",
                                              "image/png").json())
    assert blank.faces == [] and blank.warnings is None
    frames = [Image.open(io.BytesIO(photo)).convert("RGB").resize((128, 128)), Image.new("RGB", (128, 128))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    warned = AnalyzeResult.model_validate(post(client, gif.getvalue(), "a.gif", "image/gif").json())
    assert warned.warnings and "only the first is read" in warned.warnings[0]
    for r in (post(client, b"hello", "a.txt", "text/plain"), post(client, b"", "e.jpg"),
              post(client, photo, params={"annotated": "maybe"}), post(client, photo[:200])):
        assert r.status_code in (400, 415, 422), r.text
        ErrorBody.model_validate(r.json())
    h = Health.model_validate(client.get("/healthz").json())
    assert h.status == "ok" and h.limits.max_pixels > 0 and set(h.colours) == set(h.classes)


def test_serve_on_static_int8(photo):
    """`ferkit serve --backend onnx-int8`: the default on its shipped static-int8 ranges, the same answer."""
    with TestClient(create_app(backend="onnx-int8", warm_up=False)) as c:
        assert c.get("/healthz").json()["backend"] == "onnx-int8"
        face = post(c, photo).json()["faces"][0]
        assert face["label"] == "happy" and face["probabilities"]["happy"] > 0.8


def test_docs_and_openapi(client, photo):
    import ferkit.serve.app as app_mod

    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert client.head("/docs").status_code == 200  # (405 before, where / and /healthz answered HEAD)
    spec = client.get("/openapi.json").json()
    assert "/v1/analyze" in spec["paths"] and list(spec["paths"]["/healthz"]) == ["get"]  # HEAD: not a 2nd operation
    # the upload is required, errors are {"error", "detail"} (a null detail vanished from the examples), and the
    # example answer's label is its most probable class (it was "happy" at 1/7 each)
    post = spec["paths"]["/v1/analyze"]["post"]
    ref = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert post["requestBody"]["required"] is True and "file" in spec["components"]["schemas"][ref]["required"]
    for code in ("400", "408", "413", "415", "500", "503", "504"):
        assert set(post["responses"][code]["content"]["application/json"]["example"]) == {"error", "detail"}, code
    # the examples' errors are the server's own words (they were short tags, "server busy", "timeout", that a
    # client matching on `error` would never see)
    said = {c: post["responses"][c]["content"]["application/json"]["example"]["error"] for c in post["responses"]
            if "application/json" in post["responses"][c].get("content", {}) and c != "200"}
    assert said["503"] == app_mod.BUSY and said["504"] == app_mod.LATE
    assert said["408"].startswith("the upload took longer than ") and said["413"].startswith("upload too large: ")
    real = client.post("/v1/analyze", files={"file": ("a.txt", b"hello", "text/plain")}).json()
    assert real == post["responses"]["415"]["content"]["application/json"]["example"]
    # a broken header answers in the CLI's words, not Python's class name ("OSError: could not create decoder")
    webp = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(webp, "WEBP")
    cut = client.post("/v1/analyze", files={"file": ("cut.webp", webp.getvalue()[:60], "image/webp")}).json()
    assert cut["error"] == "corrupt image" and cut["detail"].startswith("corrupt or truncated image (")
    face = post["responses"]["200"]["content"]["application/json"]["example"]["faces"][0]
    assert max(face["probabilities"], key=face["probabilities"].get) == face["label"]
    try:
        import fastapi_offline  # noqa: F401
    except ImportError:
        return
    assert "cdn" not in r.text.lower()  # Swagger UI from the package: /docs works offline
    for url in re.findall(r"(?:src|href)=['\"]([^'\"]+)", r.text):
        assert client.get(url).status_code == 200, url


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'id="file"' in html and 'id="camera"' in html and "<canvas" in html and "getUserMedia" in html
    refs = re.findall(r"(?:src|href|action)\s*=\s*['\"]([^'\"]*)", html) + re.findall(r"url\(([^)]*)\)", html)
    assert all(not re.match(r"\s*['\"]?(https?:)?//", u) for u in refs), refs
    assert re.search(r"fetch\(\s*['\"`]https?:", html) is None
    assert "connect-src 'self'" in r.headers["content-security-policy"]


def test_concurrent_requests_agree(rec, photo):
    """16 requests from 8 threads on 3 workers sharing one recognizer: all answer, all the same."""
    with TestClient(create_app(rec, workers=3, warm_up=False)) as c:
        with ThreadPoolExecutor(8) as ex:
            rs = list(ex.map(lambda i: post(c, photo), range(16)))
    assert [r.status_code for r in rs] == [200] * 16
    first = rs[0].json()
    assert first["faces"][0]["label"] == "happy"
    assert all(r.json() == first for r in rs)


# ---------------------------------------------------------------------------------------
# the command and the real server
# ---------------------------------------------------------------------------------------
def test_serve_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ferkit serve" in out and "--max-upload-mb" in out and "examples:" in out and "curl" in out


def test_serve_reports_a_taken_port_and_bad_limits(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: cannot listen on 127.0.0.1:") and "Traceback" not in err
    assert main(["serve", "--max-upload-mb", "0"]) == 1
    assert "--max-upload-mb" in capsys.readouterr().err


def test_serve_options_reach_the_app_and_the_server(monkeypatch):
    # `ferkit serve` with every option: the app it builds and what it hands to uvicorn
    import ferkit.serve

    seen = {}

    def fake_run(app, host, port, log_level="info", sock=None):
        seen.update(app=app, host=host, port=port, log_level=log_level, sock_open=sock.fileno() != -1)

    monkeypatch.setattr(ferkit.serve, "run", fake_run)
    assert main(["serve", "--host", "127.0.0.1", "--port", "0", "--model", "fast", "--backend", "torch",
                 "--detector", "haar", "--max-upload-mb", "1.5", "--max-pixels", "2000000", "--timeout", "7",
                 "--workers", "3", "--max-queue", "5", "--log-level", "warning"]) == 0
    assert (seen["host"], seen["port"], seen["log_level"], seen["sock_open"]) == ("127.0.0.1", 0, "warning", True)
    app = seen["app"]
    assert (app.state.engine.workers, app.state.engine.max_queue, app.state.engine.timeout) == (3, 5, 7.0)
    with TestClient(app) as c:
        h = c.get("/healthz").json()
    assert (h["model"], h["backend"], h["detector"], h["workers"]) == ("lite_cnn-fer2013-bn", "torch", "haar", 3)
    assert h["limits"]["max_upload_bytes"] == int(1.5 * 2**20) and h["limits"]["max_pixels"] == 2_000_000
    assert h["limits"]["timeout_s"] == 7.0


@pytest.fixture(scope="module")
def live(rec):
    with ServerThread(create_app(rec)) as s:
        yield s


def test_every_answer_is_nosniff_and_the_page_cannot_be_framed(client, photo):
    """Answers echo an upload's name (`<svg onload=...>.jpg` in `source`): each says nosniff, so a browser
    keeps it as its declared type; the page may not be framed by another site (a click there could land on
    its "Start webcam")."""
    answers = [post(client, photo), post(client, photo, params={"annotated": "1"}), client.get("/healthz"),
               post(client, b"hello", "a.txt", "text/plain"), client.get("/nowhere"),
               client.post("/v1/analyze", content=b"x" * 100, headers={"Content-Type": "multipart/form-data",
                                                                        "Content-Length": str(64 * 2**20)}),
               client.get("/")]
    assert [r.status_code for r in answers][:5] == [200, 200, 200, 415, 404] and answers[5].status_code >= 400
    for r in answers:
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], (r.status_code, r.headers)
    page = answers[-1].headers
    assert "frame-ancestors 'none'" in page["content-security-policy"] and page["x-frame-options"] == "DENY"
    # a fault of the server (answered outside the middleware) too
    app = create_app(client.app.state.recognizer, warm_up=False)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500 and r.json()["error"] == "internal server error"
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]


def test_a_slow_header_is_read_off_the_event_loop(rec, photo, monkeypatch):
    """An upload's header was parsed on the event loop: a PNG of 870,000 chunks took 3 s, in which /healthz
    waited too. It is parsed on a thread now: the server answers others meanwhile."""
    import httpx

    import ferkit.serve.app as app_mod

    real = app_mod._probe

    def slow(data, max_pixels):
        time.sleep(3)
        return real(data, max_pixels)

    monkeypatch.setattr(app_mod, "_probe", slow)
    with ServerThread(create_app(rec, warm_up=False)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        with ThreadPoolExecutor(1) as pool:
            slow_one = pool.submit(c.post, "/v1/analyze", files={"file": ("a.jpg", photo, "image/jpeg")})
            time.sleep(0.5)
            t0 = time.monotonic()
            assert c.get("/healthz").status_code == 200
            took = time.monotonic() - t0
            assert slow_one.result().status_code == 200
    assert took < 1.5, took
    # and within the request's time: past it, a 504 (the header was read without limit)
    with TestClient(create_app(rec, warm_up=False, timeout=1.0)) as c:
        assert_json_error(post(c, photo), 504, "no answer in time")
    # on threads of their own, workers + max_queue headers at most in hand (those a request gave up on
    # still reading count): past them a 503 at once, where every request waited its time out for a 504
    with TestClient(create_app(rec, warm_up=False, timeout=1.0, workers=1, max_queue=1)) as c:
        engine = c.app.state.engine
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(post, c, photo) for _ in range(2)]
            time.sleep(0.5)
            t0 = time.monotonic()
            busy = post(c, photo)
            assert time.monotonic() - t0 < 0.5
            assert_json_error(busy, 503, "server busy")
            assert busy.json()["detail"] == {"reading_headers": 2} and busy.headers["retry-after"] == "1"
            assert [f.result().status_code for f in held] == [504, 504]
            assert engine.probing == 2  # (given up on, still reading)
        time.sleep(3)
        assert engine.probing == 0 and post(c, photo).status_code == 504  # (the slow reader: on its own time)


def test_a_large_photo_hands_its_memory_back_once_answered(rec, photo, monkeypatch):
    """glibc keeps freed heap for reuse, onnxruntime's arenas what a large photo grew them to: an idle server
    held gigabytes after a few large photos. An image of TRIM_PIXELS or more has the recognizer's memory
    released once answered (Recognizer.release_memory, tested in test_pipeline), a small one not (no cost)."""
    calls = []
    monkeypatch.setattr(rec, "release_memory", lambda: calls.append(1) or True)
    big = io.BytesIO()
    Image.open(io.BytesIO(photo)).resize((2100, 2000)).save(big, "JPEG")
    with TestClient(create_app(rec, warm_up=False)) as c:
        assert post(c, photo).status_code == 200 and calls == []
        assert post(c, big.getvalue(), "big.jpg").status_code == 200 and calls == [1]


def test_real_socket(live, photo):
    import httpx

    with httpx.Client(base_url=live.url, timeout=60) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        r = c.post("/v1/analyze", files={"file": ("astronaut.jpg", photo, "image/jpeg")})
        assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happy"
        r = c.post("/v1/analyze", files={"file": ("big.jpg", bytes(11 * 2**20), "image/jpeg")})
        assert_json_error(r, 413, "too large")
        assert c.post("/v1/analyze", files={"file": ("a.jpg", photo, "image/jpeg")}).status_code == 200


def test_loadtest_script_against_a_running_server(live, tmp_path, capsys):
    """benchmarks/loadtest.py, small: every answer checked against a single request's faces, no
    errors, the percentiles ordered, and the row labelled by what the server reports."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import loadtest

    doc = tmp_path / "b.md"
    assert loadtest.main(["--url", live.url, "--requests", "12", "--clients", "3", "--single", "2",
                          "--out", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "12 ok / 12 sent, 0 errors" in out
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{live.url}`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3" and cells[2] == "12 / 12" and cells[3] == "0"
    import httpx

    h = httpx.get(live.url + "/healthz", timeout=30).json()
    assert cells[0] == f"`{live.url}` ({h['workers']} workers, {h['backend']} per its /healthz)"
    p50, p95, p99, mx = (float(c.split()[0]) for c in cells[5:9])
    assert 0 < p50 <= p95 <= p99 <= mx
    with pytest.raises(SystemExit) as e:  # loopback only: it never loads another machine
        loadtest.main(["--url", "http://example.com:80", "--no-write"])
    assert e.value.code == 2 and "must be on this machine" in capsys.readouterr().err


def _raw_exchange(url_port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", url_port), timeout=30) as c:
        c.sendall(request)
        data = b""
        while chunk := c.recv(65536):  # the server closes the connection after a 400
            data += chunk
    return data


@pytest.mark.parametrize("request_bytes", [
    b"NOT AN HTTP REQUEST\r\n\r\n",
    b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
])
def test_request_uvicorn_cannot_parse_is_a_json_400(live, request_bytes):
    # these never reach the app: uvicorn answers them itself, in ferkit's JSON error form
    head, _, body = _raw_exchange(live.port, request_bytes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    assert head.lower().count(b"x-content-type-options: nosniff") == 1  # (as the app's own answers)
    answer = json.loads(body)  # detail: uvicorn's own words, whatever its version says
    assert answer["error"] == "malformed HTTP request" and isinstance(answer["detail"], str) and answer["detail"]
    assert _raw_exchange(live.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         ).startswith(b"HTTP/1.1 200 ")  # and the server carries on


def test_request_headers_past_the_parsers_limit_are_a_431(live):
    # a 40 KB header arriving in two pieces: h11 stops at 16 KiB of an unfinished head; said as a
    # 431 with the limit (it was a 400 "malformed HTTP request")
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        time.sleep(0.3)
        with contextlib.suppress(OSError):  # (the server may close before the rest is taken)
            c.sendall(b"a" * 20_000 + b"\r\n\r\n")
        data = b""
        with contextlib.suppress(OSError):
            while chunk := c.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head
    assert json.loads(body) == {"error": "request headers too large", "detail": {"limit_bytes": 16384}}
    # a short but malformed head with a long body in the same packet: a 400, not a 431
    data = _raw_exchange(live.port, b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n"
                                    b"Content-Length: 30000\r\n\r\n" + bytes(30_000))
    assert data.startswith(b"HTTP/1.1 400 "), data[:80]


def test_a_request_head_that_never_ends_is_a_408(rec, monkeypatch):
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "HEAD_TIMEOUT", 1.0)
    with ServerThread(create_app(rec, warm_up=False)) as s:
        lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: lines.append(r.getMessage())  # type: ignore[method-assign]
        logging.getLogger("ferkit.serve").addHandler(handler)
        start = time.monotonic()
        try:
            head, _, body = _raw_exchange(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").partition(b"\r\n\r\n")
        finally:
            logging.getLogger("ferkit.serve").removeHandler(handler)
        assert time.monotonic() - start < 20 and head.startswith(b"HTTP/1.1 408 ")
        # and the server's log says it (uvicorn's access log has no line for a request never made)
        assert any(re.fullmatch(r"127\.0\.0\.1:\d+ - request headers not received in 1 s: answered 408, connection "
                                r"closed", t) for t in lines), lines
        assert json.loads(body)["error"] == "request headers not received in time"
        # a request that arrives in time is not cut (the timer is for the head only)
        assert _raw_exchange(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             ).startswith(b"HTTP/1.1 200 ")
        # nor the second request of a keep-alive connection, whose own head that never ends is a 408
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.6)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.6)  # 1.2 s after the first answer, 0.6 s after the second: within each's timer
            start = time.monotonic()
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        assert time.monotonic() - start < 20
        assert data.count(b"HTTP/1.1 200 ") == 2 and data.count(b"HTTP/1.1 408 ") == 1, data
        assert data.index(b"HTTP/1.1 408 ") > data.rindex(b"HTTP/1.1 200 ")
        assert data.endswith(b'"request headers not received in time", "detail": {"timeout_s": 1.0}}')


def test_an_upload_slower_than_the_head_timer_is_answered(rec, monkeypatch):
    # the head timer is for a request's head only: an upload still arriving when it runs out, well
    # within --timeout, is answered (it was dropped without a word when the audit found it: the
    # timer, armed when the connection opened, closed it mid-upload)
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "HEAD_TIMEOUT", 1.0)
    boundary, jpeg = b"ferkitboundary", EXAMPLE.read_bytes()
    body = (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg"
            b"\r\n\r\n%s\r\n--%s--\r\n" % (boundary, jpeg, boundary))
    with ServerThread(create_app(rec, warm_up=False, timeout=20)) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
        c.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (boundary, len(body)))
        start, step = time.monotonic(), len(body) // 5 + 1
        for i in range(0, len(body), step):  # five parts over 2.4 s: past the 1 s head timer
            c.sendall(body[i:i + step])
            time.sleep(0.6)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert time.monotonic() - start > 2
    head, _, answer = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    assert json.loads(answer)["faces"][0]["label"] == "happy"


@pytest.mark.parametrize("head", [b"POST /v1/nothing-here HTTP/1.1", b"PUT /v1/analyze HTTP/1.1"])
def test_a_404_or_405_before_the_body_closes_the_connection(rec, monkeypatch, head):
    # routing answers these without reading the body; the rest of a body that never comes must not
    # earn the same request a second answer (a 408 when the next request's head timer ran out)
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "HEAD_TIMEOUT", 1.0)
    with ServerThread(create_app(rec, warm_up=False)) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        c.sendall(head + b"\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        start, data = time.monotonic(), b""
        with contextlib.suppress(OSError):
            while chunk := c.recv(65536):
                data += chunk
    assert time.monotonic() - start < 15
    assert data.count(b"HTTP/1.1 ") == 1 and b"connection: close" in data.lower(), data
    assert data.startswith(b"HTTP/1.1 404 " if b"nothing" in head else b"HTTP/1.1 405 "), data


def _big_annotated_request(port: int, close: bool = False) -> socket.socket:
    """A socket with a small receive window that has sent POST /v1/analyze?annotated=1 for a
    1500x1500 noise photo: its answer is an annotated PNG of several MB."""
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=90)
    jpeg, boundary = buf.getvalue(), b"ferkitboundary"
    body = (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.jpg\"\r\nContent-Type: image/jpeg"
            b"\r\n\r\n%s\r\n--%s--\r\n" % (boundary, jpeg, boundary))
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connecting: a small window)
    c.settimeout(20)
    c.connect(("127.0.0.1", port))
    c.sendall(b"POST /v1/analyze?annotated=1 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
              b"boundary=%s\r\nContent-Length: %d\r\n%s\r\n%s"
              % (boundary, len(body), b"Connection: close\r\n" if close else b"", body))
    return c


def _png_of(data: bytes) -> tuple[bytes, int]:
    """The body of a 200 answer and its declared length."""
    head, _, png = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    return png, int(re.search(rb"content-length: (\d+)", head.lower()).group(1))


@pytest.mark.parametrize("close", [False, True])
def test_a_client_that_reads_nothing_of_its_answer_is_dropped(rec, monkeypatch, close):
    # an annotated PNG of several MB to a client that never reads: the server drops the connection
    # after WRITE_TIMEOUT without progress, rather than holding the image for as long as it stays;
    # also when the connection is closing once the answer is handed over ("Connection: close", or
    # uvicorn's keep-alive timer, both before the server's own 30 s: a close waits for the
    # client to read the rest, and it never does)
    import httpx

    import ferkit.serve.server as server

    monkeypatch.setattr(server, "WRITE_TIMEOUT", 1.0)
    with ServerThread(create_app(rec, warm_up=False)) as s:
        with _big_annotated_request(s.port, close=close) as c:
            time.sleep(8)  # the analysis (about a second), then WRITE_TIMEOUT with nothing read
            data = b""
            with contextlib.suppress(OSError):  # (a reset)
                while chunk := c.recv(1 << 20):
                    data += chunk
        png, length = _png_of(data)
        assert length > 4_000_000 and len(png) < length  # cut: the connection was dropped part way
        # and the server carries on
        assert httpx.get(s.url + "/healthz", timeout=10).status_code == 200


def test_a_client_that_reads_slowly_gets_its_whole_answer(rec, monkeypatch):
    # the same several-MB PNG read at about 800 KB/s: several WRITE_TIMEOUTs pass before it is all
    # read, but each finds progress, so the connection stays (it was dropped after the first one)
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "WRITE_TIMEOUT", 1.0)
    with ServerThread(create_app(rec, warm_up=False)) as s:
        with _big_annotated_request(s.port, close=True) as c:
            start, data = time.monotonic(), b""
            with contextlib.suppress(OSError):  # (a reset: the failure asserted below)
                while chunk := c.recv(8192):
                    data += chunk
                    time.sleep(0.01)
            took = time.monotonic() - start
        png, length = _png_of(data)
        assert length > 4_000_000 and len(png) == length, (len(png), length)
        assert took > 3 * server.WRITE_TIMEOUT  # it did span several checks


def _paused_protocol(unsent_at):
    """The server's protocol, paused, on a fake clock and transport: ``unsent_at(t)`` is what the
    client has not taken ``t`` s after the pause. Returns the time of the drop (None: never, in 200 s)."""
    import heapq

    import ferkit.serve.server as server

    cls = server._json_400_protocol()
    p = cls.__new__(cls)
    clock, timers, dropped = [0.0], [], []

    class Loop:
        def time(self):
            return clock[0]

        def call_later(self, delay, cb):
            assert delay > 0
            heapq.heappush(timers, (clock[0] + delay, len(timers), cb))
            return types.SimpleNamespace(cancel=lambda: None)

    class Transport:
        def get_write_buffer_size(self):
            return unsent_at(clock[0])

        def get_extra_info(self, name):
            return None  # (no socket: the send queue is not asked)

        def abort(self):
            dropped.append(clock[0])

    p.loop, p.transport = Loop(), Transport()
    p.flow = types.SimpleNamespace(pause_writing=lambda: None)
    p.pause_writing()
    while timers and not dropped and clock[0] < 200:
        clock[0], _, cb = heapq.heappop(timers)
        cb()
    return dropped[0] if dropped else None


def test_the_drop_of_a_client_reading_nothing_counts_from_its_last_progress(monkeypatch):
    """Just after the pause the system still moves bytes into the client's receive buffer (acked,
    read by nobody): one look WRITE_TIMEOUT later took that for progress, and a client that read
    nothing was dropped after about twice WRITE_TIMEOUT (60 s, not the 30 documented). The looks
    are now every WRITE_CHECK s, the wait counted from the last that found progress."""
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "WRITE_TIMEOUT", 30.0)
    settle = _paused_protocol(lambda t: 5_000_000 if t < 0.2 else 4_000_000)  # a receive buffer filled, then nothing
    assert 30.0 <= settle <= 30.2 + server.WRITE_CHECK
    assert _paused_protocol(lambda t: 5_000_000) == 30.0  # nothing moves at all
    # a client reading 1 KB every 20 s (slower than any look, faster than WRITE_TIMEOUT) stays...
    assert _paused_protocol(lambda t: 5_000_000 - 1000 * int(t // 20)) is None
    # ...one that stops after 50 s is dropped 30 s after its last progress, found at the first look after it
    stop = _paused_protocol(lambda t: 5_000_000 - 1000 * int(min(t, 50) // 10))
    assert 80.0 <= stop <= 80.0 + server.WRITE_CHECK
    assert _paused_protocol(lambda t: 0 if t > 3 else 5_000_000) is None  # all taken: nothing held, no drop


def test_no_second_answer_after_an_early_413(rec):
    # the app refuses a chunked upload over the limit (and the bytes it drops, DRAIN) before
    # reading it all; when the rest of the body then turns out malformed, the connection only
    # closes: one response, not a 413 and a 400
    big = 1000 + MULTIPART_SLACK + DRAIN + 1
    with ServerThread(create_app(rec, max_upload=1000, warm_up=False)) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
        with contextlib.suppress(OSError):  # (closed while the chunk was still being sent)
            c.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                      b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (big, b"x" * big))
        time.sleep(0.5)
        try:
            c.sendall(b"not a chunk size\r\n\r\n")
        except OSError:
            pass  # closed already
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 413 ") and data.count(b"HTTP/1.1 ") == 1, data


def test_an_early_413_closes_the_connection(rec):
    # a Content-Length of 100 GB: the 413 says "connection: close" and the server closes, rather
    # than reading (and dropping) the whole body it was promised (it took in 95 GB in 20 s before)
    with ServerThread(create_app(rec, max_upload=1000, warm_up=False)) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000000000\r\n\r\n")
        sent, start, closed = 0, time.monotonic(), False
        while time.monotonic() - start < 10 and not closed:
            try:
                sent += c.send(b"x" * 65536)
            except OSError:  # reset by the server
                closed = True
        assert closed and sent < 200_000_000, sent
        data = b""
        with contextlib.suppress(OSError):
            while chunk := c.recv(65536):
                data += chunk
    if data:  # (a reset may have dropped the answer on the client's side)
        assert data.startswith(b"HTTP/1.1 413 ") and b"connection: close" in data.lower(), data


# ---------------------------------------------------------------------------------------
# the web page in a real browser
# ---------------------------------------------------------------------------------------
def write_y4m(path: Path, rgb: np.ndarray, frames: int = 10) -> Path:
    """A raw 4:2:0 video of one still image, for Chromium's fake webcam."""
    h, w = rgb.shape[:2]
    ycc = Image.fromarray(rgb).convert("YCbCr")
    y, cb, cr = (np.asarray(c) for c in ycc.split())
    cb = np.asarray(Image.fromarray(cb).resize((w // 2, h // 2), Image.BILINEAR))
    cr = np.asarray(Image.fromarray(cr).resize((w // 2, h // 2), Image.BILINEAR))
    frame = b"FRAME\n" + y.tobytes() + cb.tobytes() + cr.tobytes()
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1\n".encode() + frame * frames)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory, photo):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; `make test` does it where it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    cam = write_y4m(tmp_path_factory.mktemp("cam") / "astronaut.y4m", rgb)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + [
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={cam}"])
        try:
            yield b
        finally:
            b.close()


def open_page(browser, live, camera: bool = False):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    if camera:
        ctx.grant_permissions(["camera"], origin=live.url)
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    seen = {"errors": [], "outside": []}
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((live.url, "data:", "blob:"))
            else seen["outside"].append(r.url))
    page.goto(live.url + "/")
    # (Playwright's expect() polls without eval, which the page's Content-Security-Policy forbids)
    expect(page.locator("#model")).to_contain_text("vgg_fer-fer2013", timeout=60_000)
    return ctx, page, seen


def wait_until(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def overlay_pixels(page) -> int:
    return page.evaluate("""() => { const c = document.getElementById('overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_upload_shows_happy(browser, live, tmp_path):
    ctx, page, seen = open_page(browser, live)
    try:
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#faces .label")
        assert page.locator("#faces .label").all_text_contents() == ["happy"]
        assert "1 face in astronaut.jpg" in page.text_content("#status")
        wait_until(lambda: page.evaluate("() => document.getElementById('photo').complete"))
        assert overlay_pixels(page) > 500  # box, label and bars drawn over the photo
        assert page.get_attribute("#photo", "alt") == "the uploaded photo, astronaut.jpg"  # (a screen reader's)
        assert page.get_attribute("#status", "aria-live") == "polite"
        page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
        # a bad file: the server's refusal is shown, not swallowed
        page.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"hello"}])
        page.wait_for_selector("#status.error")
        assert "not an image" in page.text_content("#status")
        assert page.get_attribute("#status", "aria-live") == "assertive"  # an error is said at once
        assert page.locator("#faces .label").count() == 0
        assert page.locator("#photo").is_hidden()  # the empty frame, not a broken picture under the message
        # a format the server reads and this browser cannot show (TIFF): the results without the picture
        tiff = io.BytesIO()  # (two pages: the server's note that only the first is read stays with the message)
        Image.open(EXAMPLE).save(tiff, format="TIFF", save_all=True, append_images=[Image.new("RGB", (8, 8))])
        page.set_input_files("#file", files=[{"name": "a.tiff", "mimeType": "image/tiff", "buffer": tiff.getvalue()}])
        page.wait_for_selector("#faces .label")
        wait_until(lambda: "cannot display the photo's format" in page.text_content("#status"))
        assert "Note: a.tiff: holds 2 pages" in page.text_content("#status")
        assert page.locator("#photo").is_hidden() and page.text_content("#faces .label").startswith("happy")
        # read with a caveat (the server's X-Ferkit-Warnings): said under the result
        page.set_input_files("#file", files=[{"name": "no_end.jpg", "mimeType": "image/jpeg",
                                              "buffer": EXAMPLE.read_bytes()[:-2]}])
        wait_until(lambda: "Note: no_end.jpg: the JPEG file lacks its 2-byte end marker" in page.text_content("#status"))
        assert "1 face in no_end.jpg" in page.text_content("#status") and "warn" in page.get_attribute("#status", "class")
        # a photo without a face
        wall = png_bytes(np.full((200, 300, 3), 190, np.uint8))
        page.set_input_files("#file", files=[{"name": "wall.png", "mimeType": "image/png", "buffer": wall}])
        # (the text, not the class: the previous photo's status was a warning too, and is one until this is read)
        wait_until(lambda: "No face found in wall.png" in page.text_content("#status"))
        assert "warn" in page.get_attribute("#status", "class")
        # a link or text dropped on it: refused, and the photo still shown is named (its status was replaced)
        dt = page.evaluate_handle("() => { const d = new DataTransfer(); d.setData('text/plain', 'hi'); return d; }")
        page.dispatch_event("#stage", "drop", {"dataTransfer": dt})
        assert page.text_content("#status") == "Drop an image file (not a link or text). Still showing wall.png."
        # a corrupt image: the decoder's words once, not "corrupt image (corrupt or truncated image (...))"
        page.set_input_files("#file", files=[{"name": "cut.jpg", "mimeType": "image/jpeg",
                                              "buffer": EXAMPLE.read_bytes()[:300]}])
        # (by its text: the drop's refusal before it is an error too)
        wait_until(lambda: page.text_content("#status").startswith("The server could not read"))
        said = page.text_content("#status")
        assert said.startswith("The server could not read the image: corrupt or truncated image ("), said
        assert "corrupt image" not in said and "((" not in said and said.count("(") == 1, said
        # a photo, then at once a text file: the photo's request is dropped (aborted), and its
        # late answer, had it come, must not replace the refusal
        with page.expect_request("**/v1/analyze"):
            page.set_input_files("#file", str(EXAMPLE))
            page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
        page.wait_for_timeout(300)
        assert "notes.txt is not an image" in page.text_content("#status")
        assert "error" in page.get_attribute("#status", "class") and page.locator("#faces .label").count() == 0
        assert page.evaluate("() => document.getElementById('photo').hidden")  # the old photo is not left up
        # a busy server is said to be busy, not blamed on the image
        page.route("**/v1/analyze", lambda route: route.fulfill(
            status=503, content_type="application/json",
            body=json.dumps({"error": "server busy: too many images waiting; retry shortly", "detail": None})))
        page.set_input_files("#file", str(EXAMPLE))
        wait_until(lambda: page.text_content("#status").startswith("The server is busy (server busy"))  # (by its text:
        # the refusal of notes.txt before it is an error too)
        page.unroute("**/v1/analyze")
        assert not seen["errors"] and not seen["outside"], seen
    finally:
        ctx.close()
    assert (tmp_path / "upload.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("orientation", [6, 3])
def test_browser_shows_an_exif_turned_webp_as_the_server_read_it(browser, live, orientation):
    """Chromium shows a WebP without its EXIF orientation, which the server applies: the page shows
    a copy turned upright, so that the boxes land on the faces."""
    photo = Image.open(EXAMPLE).convert("RGB")
    base = Image.new("RGB", (900, 512), (0, 0, 255))  # the face on the left, blue on the right
    base.paste(photo, (0, 0))
    stored = base.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_180)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="WEBP", quality=90, exif=exif.tobytes())
    ctx, page, seen = open_page(browser, live)
    try:
        page.set_input_files("#file", files=[{"name": "turned.webp", "mimeType": "image/webp",
                                               "buffer": buf.getvalue()}])
        page.wait_for_selector("#faces .label")
        assert "happy" in page.locator("#faces .label").all_text_contents()
        assert "(900×512)" in page.text_content("#status")
        wait_until(lambda: page.evaluate("() => document.getElementById('photo').complete"))
        shown = page.evaluate("""() => { const im = document.getElementById('photo'), c = document.createElement('canvas');
            c.width = im.naturalWidth; c.height = im.naturalHeight; const g = c.getContext('2d'); g.drawImage(im, 0, 0);
            return [im.naturalWidth, im.naturalHeight, Array.from(g.getImageData(880, 256, 1, 1).data),
                    Array.from(g.getImageData(200, 256, 1, 1).data)]; }""")
        assert shown[:2] == [900, 512]
        right, face = shown[2], shown[3]
        assert right[2] > 200 and right[0] < 60 and not (face[2] > 200 and face[0] < 60)  # blue right, face left
        assert overlay_pixels(page) > 500
        assert not seen["errors"] and not seen["outside"], seen
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_webcam_live(browser, live, tmp_path, photo):
    """Chromium's fake camera plays the example photo: the page sends frames and labels them live."""
    import httpx

    served = live.app.state.engine.served
    ctx, page, seen = open_page(browser, live, camera=True)
    try:
        page.click("#camera")
        page.wait_for_selector("#faces .label")
        assert page.locator("#faces .label").first.text_content() == "happy"
        wait_until(lambda: page.text_content("#status").startswith("Live: 1 face: happy."))
        # the live region says the faces, not each frame's timing (a screen reader read it 4 times a second)
        wait_until(lambda: "ms a frame" in page.text_content("#speed"))
        assert "frames/s" not in page.text_content("#status") and page.get_attribute("#speed", "aria-live") is None
        assert page.locator("#faces h2").text_content() == "1 face found"  # the cards' h3 under an h2
        assert overlay_pixels(page) > 500
        page.screenshot(path=str(tmp_path / "webcam.png"))
        time.sleep(1.5)
        assert live.app.state.engine.served >= served + 2  # frames keep coming
        # a label that flickers from frame to frame (happy, sad, happy...) is not read out each time:
        # the live region keeps the last reading two answers agreed on; the cards follow every frame
        answer = httpx.post(live.url + "/v1/analyze", files={"file": ("a.jpg", photo, "image/jpeg")}, timeout=60).json()
        sad = json.loads(json.dumps(answer))
        sad["faces"][0]["label"] = "sad"
        page.evaluate("""() => { window.said = []; window.cards = [];
            const st = document.getElementById('status'), faces = document.getElementById('faces');
            new MutationObserver(() => window.said.push(st.textContent)).observe(st, {childList: true, subtree: true, characterData: true});
            new MutationObserver(() => window.cards.push(Array.from(faces.querySelectorAll('.label'), (e) => e.textContent).join()))
              .observe(faces, {childList: true, subtree: true}); }""")
        answers, asked = [sad, answer] * 4 + [answer] * 1000, []

        def reply(route):
            asked.append(1)
            route.fulfill(status=200, content_type="application/json", body=json.dumps(answers[len(asked) - 1]))

        page.route("**/v1/analyze", reply)
        wait_until(lambda: page.wait_for_timeout(50) or len(asked) >= 11)  # (the wait lets the page call)
        assert "sad" in page.evaluate("() => window.cards") and page.evaluate("() => window.said") == []
        assert page.text_content("#status") == "Live: 1 face: happy."
        page.unroute("**/v1/analyze")
        answers[:] = [sad] * 1000
        page.route("**/v1/analyze", reply)
        wait_until(lambda: page.text_content("#status") == "Live: 1 face: sad.")  # two sad answers in a row
        page.unroute("**/v1/analyze")
        # a server that stops answering: the old result leaves the live picture, the wait is said
        page.route("**/v1/analyze", lambda route: None)  # (never answered)
        wait_until(lambda: "waiting for the server" in page.text_content("#status"), timeout=20)
        assert overlay_pixels(page) == 0 and page.locator("#faces .label").count() == 0
        page.click("#camera")
        assert page.text_content("#camera") == "Start webcam" and "Webcam off" in page.text_content("#status")
        assert page.text_content("#speed") == ""
        assert not seen["errors"] and not seen["outside"], seen
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_says_a_proxys_failure_once(browser, live):
    # a proxy's HTML page (no JSON): "(HTTP 502: HTTP 502 Bad Gateway)" said the status twice
    ctx, page, seen = open_page(browser, live)
    try:
        page.route("**/v1/analyze", lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>",
                                                                content_type="text/html"))
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#status.error")
        assert page.text_content("#status") == "The server failed on this request (HTTP 502 Bad Gateway); see its log."
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_gets_the_servers_limits_later_when_healthz_failed_at_first(browser, live):
    # /healthz failed as the page loaded: the model line stayed empty all session, and a 413 said no size
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        failing = {"on": True}
        page.route("**/healthz", lambda route: route.fulfill(status=503, body="{}") if failing["on"]
                   else route.continue_())
        page.goto(live.url)
        page.wait_for_selector("#status.error")
        failing["on"] = False
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#faces .label")
        wait_until(lambda: "model " in (page.text_content("#model") or ""))
        page.route("**/v1/analyze", lambda route: route.fulfill(
            status=413, content_type="application/json",
            body=json.dumps({"error": "upload too large: the limit is 10 MiB",
                             "detail": {"limit_bytes": 1, "request_bytes": 3 * 1048576, "size_bytes": None}})))
        page.set_input_files("#file", files=[{"name": "big.jpg", "mimeType": "image/jpeg",
                                               "buffer": EXAMPLE.read_bytes()}])
        page.wait_for_selector("#status.error")
        assert "(big.jpg is 3.0 MiB)" in page.text_content("#status")
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_shows_an_animations_first_frame_still(browser, live):
    """The server reads an animation's first frame; the page showed it playing, and the boxes stayed where the
    first frame's face was while the picture moved on (here: to plain blue)."""
    photo = Image.open(EXAMPLE).convert("RGB")
    blue = Image.new("RGB", photo.size, (0, 0, 255))
    buf = io.BytesIO()
    photo.save(buf, format="GIF", save_all=True, append_images=[blue, blue], duration=100, loop=0)
    ctx, page, seen = open_page(browser, live)
    try:
        page.set_input_files("#file", files=[{"name": "anim.gif", "mimeType": "image/gif", "buffer": buf.getvalue()}])
        page.wait_for_selector("#faces .label")
        wait_until(lambda: page.evaluate("() => document.getElementById('photo').complete"))
        page.wait_for_timeout(650)  # (past the first frame's 0.1 s and the loop's 0.3 s: playing, it shows blue)
        # what is on the screen (a canvas's drawImage takes an animation's first frame whatever is shown)
        shot = Image.open(io.BytesIO(page.locator("#photo").screenshot())).convert("RGB")
        cells = np.asarray(shot.resize((32, 32))).astype(int)
        blue = int(((cells[..., 2] > 200) & (cells[..., 0] < 60) & (cells[..., 1] < 60)).sum())
        assert blue < 100, blue  # the photo, not the blue frames (all 1,024 cells blue when it played)
        assert "only the first is read" in page.text_content("#status") and overlay_pixels(page) > 500
        assert not seen["errors"] and not seen["outside"], seen
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_narrow_screen_and_several_faces(browser, live, tmp_path):
    """At 320 px the page scrolled sideways (the frame kept 320 px inside the padding); on a small picture
    of several faces their probability panels were drawn over one another."""
    from PIL import Image

    tiled = Image.new("RGB", (1024, 1024))
    with Image.open(EXAMPLE) as im:
        for i in range(4):
            tiled.paste(im.convert("RGB").resize((512, 512)), (512 * (i % 2), 512 * (i // 2)))
    tiled.save(tmp_path / "tiled.jpg")
    ctx, page, seen = open_page(browser, live)
    try:
        page.set_viewport_size({"width": 320, "height": 700})
        page.set_input_files("#file", str(tmp_path / "tiled.jpg"))
        page.wait_for_selector("#faces .label")
        assert page.locator("#faces .label").count() >= 4
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
        wait_until(lambda: page.evaluate("() => document.getElementById('photo').complete"))
        # the panels drawn: each a black rectangle of opacity 0.55 on the overlay; where two stack, the overlay
        # is black of opacity 0.80 (1 - 0.45^2), which nothing else drawn there is (labels are opaque)
        stacked = page.evaluate("""() => { const c = document.getElementById('overlay');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] >= 195 && d[i] <= 213 && d[i - 1] < 8
              && d[i - 2] < 8 && d[i - 3] < 8) n++; return n; }""")
        assert stacked == 0, stacked
        assert not seen["errors"], seen
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_browser_a_photo_chosen_while_the_camera_starts_wins(browser, live):
    ctx, page, seen = open_page(browser, live, camera=True)
    try:
        # the browser's camera prompt takes its time (a person reading it): 1.5 s here
        page.evaluate("""() => { const md = navigator.mediaDevices, real = md.getUserMedia.bind(md);
            md.getUserMedia = (c) => new Promise((res) => setTimeout(() => res(real(c)), 1500)); }""")
        page.click("#camera")
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#faces .label")
        page.wait_for_timeout(2500)  # the camera's answer has come by now
        assert "1 face in astronaut.jpg" in page.text_content("#status")
        assert page.text_content("#camera") == "Start webcam"  # the camera did not start
        assert page.locator("#video").is_hidden() and page.locator("#photo").is_visible()
        assert not seen["errors"], seen
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_browser_camera_refused(browser, live):
    ctx, page, seen = open_page(browser, live, camera=False)  # no permission: the prompt is dismissed
    try:
        page.click("#camera")
        page.wait_for_selector("#status.error")
        assert "Camera access was refused" in page.text_content("#status")
        assert page.text_content("#camera") == "Start webcam"
    finally:
        ctx.close()


def test_server_thread_stops(rec):
    s = ServerThread(create_app(rec, warm_up=False)).start()
    url = s.url
    s.stop()
    assert not s.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()



def test_an_image_is_decoded_by_the_reader_of_its_probed_format(client):
    """Pillow tries some readers without a signature check (IM) before TIFF's: bytes that are a
    16x16 TIFF and also parse as a 1000x1000 IM file are read as the TIFF the probe saw."""
    import struct

    small = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(small, "TIFF")
    tif = small.getvalue()
    ifd_at = struct.unpack_from("<I", tif, 4)[0]
    head = b"II*\x00" + struct.pack("<I", 0) + b": x\r\nImage type: Greyscale image\r\nImage size (x*y): 1000*1000\r\n\x1a"
    pad = 1024
    data = bytearray(head.ljust(pad, b"\0")) + bytearray(tif[8:])
    ifd = ifd_at - 8 + pad
    struct.pack_into("<I", data, 4, ifd)
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        tag, typ, cnt, val = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        if tag == 273 or {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}.get(typ, 4) * cnt > 4:
            struct.pack_into("<I", data, ifd + 2 + 12 * i + 8, val - 8 + pad)
    data = bytes(data) + bytes(1000 * 1000)
    import warnings

    with warnings.catch_warnings():  # (Pillow deprecates its IM reader)
        warnings.simplefilter("ignore", DeprecationWarning)
        # the premise: the bytes are also a 1000x1000 IM file (which reader Pillow alone tries first
        # depends on the order its plugins were imported in, so IM is named here)
        assert Image.open(io.BytesIO(data), formats=["IM"]).size == (1000, 1000)
    r = post(client, data, "poly.tif", "image/tiff")
    assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (16, 16)


def test_a_body_declared_and_never_sent_gets_no_second_answer(rec, monkeypatch):
    import ferkit.serve.server as server

    monkeypatch.setattr(server, "HEAD_TIMEOUT", 1.0)
    with ServerThread(create_app(rec, warm_up=False)) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            time.sleep(0.5)
            c.sendall(b"0123456789")  # part of the body the route never reads
            data = b""
            with contextlib.suppress(OSError):
                while chunk := c.recv(65536):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"408" not in data, data


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stopping_with_a_request_in_flight_answers_it_503_and_exits(rec, photo):
    import httpx

    s = ServerThread(create_app(SlowRecognizer(rec, 60), warm_up=False)).start()
    answer = {}

    def ask():
        try:
            answer["r"] = httpx.post(s.url + "/v1/analyze", files={"file": ("a.jpg", photo, "image/jpeg")}, timeout=60)
        except httpx.HTTPError as e:
            answer["e"] = e

    t = threading.Thread(target=ask)
    t.start()
    wait_until(lambda: s.app.state.engine.pending == 1, timeout=10)
    start = time.monotonic()
    s.stop(timeout=30)
    t.join(30)
    assert time.monotonic() - start < 15 and not s.thread.is_alive()  # (uvicorn's 5 s grace, then the end)
    r = answer["r"]
    assert r.status_code == 503 and r.json()["error"] == "server shutting down"
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]


def test_a_compressed_upload_is_a_415(client, photo):
    import gzip

    r = client.post("/v1/analyze", content=gzip.compress(photo), headers={"content-encoding": "gzip",
                                                                          "content-type": "multipart/form-data; "
                                                                                          "boundary=x"})
    assert r.status_code == 415 and r.json()["error"].startswith("compressed uploads (gzip) are not supported")


def test_a_text_part_named_file_beside_the_image_is_judged_with_the_whole_form(client, photo):
    # a text field and the image both named 'file': the image is read whichever comes last (it was
    # refused as text when the text came last); text alone is said to be text
    def form(*parts: tuple[str, bytes]) -> tuple[bytes, dict]:
        b = b"ferkitboundary"
        body = b"".join(b"--%s\r\nContent-Disposition: form-data; name=\"file\"%s\r\n\r\n%s\r\n"
                        % (b, (b"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg" if kind == "image" else b""), data)
                        for kind, data in parts) + b"--%s--\r\n" % b
        return body, {"Content-Type": "multipart/form-data; boundary=ferkitboundary"}

    for parts in ((("image", photo), ("text", b"abc")), (("text", b"abc"), ("image", photo))):
        body, headers = form(*parts)
        r = client.post("/v1/analyze", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happy", r.text
    body, headers = form(("text", b"abc"))
    assert_json_error(client.post("/v1/analyze", content=body, headers=headers), 400,
                      "must be an uploaded file (the image), not text")
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Body_analyze_v1_analyze_post"]
    assert schema["properties"]["file"]["contentMediaType"] == "application/octet-stream"  # /docs: a file picker


def test_a_request_whose_client_went_away_is_not_analysed(rec, photo):
    # one worker, held by a first request; a second request's client sends its photo and leaves:
    # its analysis, still waiting for the worker, is dropped (the worker would otherwise spend
    # itself on an answer no one reads: a page that swaps photos, a client's own timeout)
    import httpx

    gate, calls = threading.Event(), []

    class Gated(SlowRecognizer):
        def analyze(self, *a, **kw):
            calls.append(kw.get("source"))
            gate.wait(20)
            return self.rec.analyze(*a, **kw)

    boundary = b"ferkitboundary"
    body = (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%%s\"\r\nContent-Type: image/jpeg"
            b"\r\n\r\n%s\r\n--%s--\r\n" % (boundary, photo, boundary))

    def send(name: bytes) -> socket.socket:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=20)
        b = body.replace(b"%s", name, 1)
        c.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (boundary, len(b), b))
        return c

    with ServerThread(create_app(Gated(rec, 0), workers=1, warm_up=False), log_level="info") as s:
        def health() -> dict:
            return httpx.get(s.url + "/healthz", timeout=10).json()

        first = send(b"first.jpg")
        wait_until(lambda: calls == ["first.jpg"], timeout=10)
        second = send(b"second.jpg")
        wait_until(lambda: health()["pending"] == 2, timeout=10)  # waiting for the worker
        access = logging.getLogger("uvicorn.access")
        lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: lines.append(r.getMessage())  # type: ignore[method-assign]
        access.addHandler(handler)
        try:
            second.close()
            wait_until(lambda: health()["pending"] == 1, timeout=10)  # dropped once its client left
            # and logged as 499 (README says so; uvicorn writes no line for an answer it never sent)
            wait_until(lambda: any('"POST /v1/analyze HTTP/1.1" 499' in t for t in lines), timeout=10)
        finally:
            access.removeHandler(handler)
        gate.set()
        with first:
            data = b""
            while chunk := first.recv(1 << 16):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b'"label": "happy"' in data
        assert calls == ["first.jpg"] and health()["served"] == 1 and health()["pending"] == 0


def test_a_taken_port_suggests_one_that_can_be_had():
    """The hint said 'try --port N+1' without looking (taken too, or 65536 for 65535): now --port 0,
    which the system answers with a free port (and the server prints it)."""
    from ferkit.errors import FerkitError
    from ferkit.serve.server import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FerkitError, match=rf"cannot listen on 127.0.0.1:{port}: .*try another --port, or --port 0"):
            bind("127.0.0.1", port)
    with bind("127.0.0.1", 0) as free:
        assert free.getsockname()[1] > 0


def test_uploads_at_once_are_bounded_with_a_json_503():
    """Each upload in progress held up to 10 MiB before the queue's limit was ever checked: a thousand slow
    uploads would hold about 9 GB. Past max_uploads at once, a JSON 503 (busy) before the body is read."""
    import asyncio

    from ferkit.serve.app import BUSY, UploadLimit

    async def app(scope, receive, send):  # the analysis: reads the body, answers 200
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario():
        mw = UploadLimit(app, limit=1000, max_upload=1000, timeout=5, max_uploads=1)
        scope = {"type": "http", "method": "POST", "path": "/v1/analyze", "headers": [(b"content-length", b"10")]}
        gate, sent = asyncio.Event(), {1: [], 2: [], 3: []}

        async def slow():  # the first upload's body arrives only when the gate opens
            await gate.wait()
            return {"type": "http.request", "body": b"x" * 10, "more_body": False}

        async def fast():
            return {"type": "http.request", "body": b"x" * 10, "more_body": False}

        def sink(k):
            async def send(message):
                sent[k].append(message)
            return send

        first = asyncio.create_task(mw(dict(scope), slow, sink(1)))
        await asyncio.sleep(0.05)
        await mw(dict(scope), fast, sink(2))  # one upload is arriving: the second is refused at once
        gate.set()
        await first
        await mw(dict(scope), fast, sink(3))  # the first done: room again
        return mw.uploads, sent

    with ThreadPoolExecutor(1) as pool:  # (a loop of its own: Playwright's runs in this thread when the page tests do)
        left, sent = pool.submit(asyncio.run, scenario()).result()
    assert left == 0 and [m["status"] for m in (sent[1][0], sent[2][0], sent[3][0])] == [200, 503, 200]
    body = json.loads(sent[2][1]["body"])
    assert body == {"error": BUSY, "detail": {"uploads": 1, "max_uploads": 1}}
    assert (b"retry-after", b"1") in sent[2][0]["headers"]

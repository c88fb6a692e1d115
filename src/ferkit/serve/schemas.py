"""The HTTP API's answers as pydantic models: the OpenAPI schema's response types (so that a
generated client gets typed answers), and what the tests check the server's real answers against.
The server builds its answers as plain dicts (the same as ``ferkit predict --json``); these models
describe them and forbid anything else, so that a field added to one and not the other fails a test."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Face(_Strict):
    """One face found in the image."""

    box: list[int] = Field(description="x, y, width, height in pixels of the uploaded image",
                           min_length=4, max_length=4)
    landmarks: list[list[float]] | None = Field(
        description="the 5 landmarks as [x, y]: left eye, right eye, nose, left and right mouth corner (as seen "
                    "in the image); null where the detector gives none")
    landmarks_estimated: bool | None = Field(None, description="present (true) where the landmarks were guessed "
                                                               "from the box, not found")
    score: float = Field(description="the detector's confidence that this is a face, 0-1")
    label: str = Field(description="the most probable expression")
    probabilities: dict[str, float] = Field(description="each expression class's probability (they sum to 1); "
                                                        "the classes are /healthz's `classes`")


class AnalyzeResult(_Strict):
    """Every face of one image: the same JSON as ``ferkit predict IMAGE --json``."""

    source: str = Field(description="the uploaded file's name")
    width: int = Field(description="the image's width in pixels")
    height: int = Field(description="the image's height in pixels")
    faces: list[Face] = Field(description="the faces found; [] where none was")
    warnings: list[str] | None = Field(None, description="present where the image was read with a caveat (only "
                                                         "the first frame of an animation, a JPEG cut short...)")


class ErrorBody(_Strict):
    """Every error's answer."""

    error: str = Field(description="what went wrong, in words")
    detail: Any = Field(None, description="the particulars: an object (sizes, limits, names), a string "
                                          "(the decoder's words), a list ({loc, msg} for 422), or null")


class Limits(_Strict):
    max_upload_bytes: int
    max_pixels: int
    timeout_s: float
    content_types: list[str]


class Health(_Strict):
    """Liveness, the model served and the limits."""

    status: str = Field(description="\"ok\"")
    version: str = Field(description="ferkit's version")
    model: str = Field(description="the model's name")
    backend: str = Field(description="torch, onnx or onnx-int8")
    detector: str = Field(description="the face detector")
    classes: list[str] = Field(description="the expression classes, in the model's order")
    colours: dict[str, str] = Field(description="each class's colour as #rrggbb (the annotated image's)")
    limits: Limits
    workers: int = Field(description="analyses run at once")
    pending: int = Field(description="requests waiting or running now")
    served: int = Field(description="requests answered since the start")

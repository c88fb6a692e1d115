"""On-disk cache of decoded dataset splits (uint8 tensors in safetensors + a JSON sidecar).

Location: ``$FERKIT_CACHE`` if set, else ``~/.cache/ferkit``. Keys hash the reader, the split,
the image size and the files' sizes and modification times, so edits invalidate the entry.
`ferkit cache` shows what it holds; `ferkit cache --clear` (or deleting the folder) clears it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .._paths import cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from .base import FaceDataset




def _paths(key: str) -> tuple[Path, Path]:
    d = cache_dir() / "datasets"
    return d / f"{key}.safetensors", d / f"{key}.json"


def load(key: str) -> FaceDataset | None:
    from safetensors.torch import load_file

    from .base import FaceDataset

    tpath, jpath = _paths(key)
    if not (tpath.exists() and jpath.exists()):
        return None
    try:
        tensors = load_file(str(tpath))
        meta = json.loads(jpath.read_text())
        return FaceDataset(
            images=tensors["images"], labels=tensors["labels"], soft=tensors.get("soft"),
            classes=tuple(meta["classes"]), sources=meta["sources"], subjects=meta["subjects"],
            name=meta["name"], split=meta["split"], skipped=[tuple(s) for s in meta["skipped"]],
            no_face=list(meta.get("no_face", [])),
        )
    except Exception:  # a damaged cache entry is rebuilt, never fatal
        return None


def save(key: str, ds: FaceDataset) -> None:
    from safetensors.torch import save_file

    tpath, jpath = _paths(key)
    try:
        tpath.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"images": ds.images.contiguous(), "labels": ds.labels}
        if ds.soft is not None:
            tensors["soft"] = ds.soft.contiguous()
        meta = {"classes": list(ds.classes), "sources": ds.sources, "subjects": ds.subjects, "name": ds.name,
                "split": ds.split, "skipped": [list(s) for s in ds.skipped], "no_face": ds.no_face}
        # write both to temp names then rename: a crash never leaves a half entry behind
        fd, tmp_t = tempfile.mkstemp(dir=tpath.parent, suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp_t)
        fd, tmp_j = tempfile.mkstemp(dir=tpath.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f)
        os.replace(tmp_t, tpath)
        os.replace(tmp_j, jpath)
    except OSError:
        pass  # caching is an optimisation; a read-only home must not break training

"""ferkit: facial expression recognition toolkit.

>>> import ferkit
>>> model = ferkit.load_model("default")        # shipped, no download
>>> model.predict("face.png")[0].label           # a face crop                # doctest: +SKIP
'happy'
>>> ferkit.Recognizer().predict("photo.jpg").faces[0].label   # any photo: MTCNN + alignment  # doctest: +SKIP
'happy'
"""

import os as _os

# FFmpeg (under OpenCV's video reader) prints its own lines for broken videos ("moov atom not
# found", "bad vlc"); ferkit catches them (errors only, level 16), skips the frames they concern
# and reports each such source or frame itself, in one line. Set OPENCV_FFMPEG_LOGLEVEL yourself
# (e.g. 24, warnings) to see FFmpeg's words as well.
FFMPEG_LOG_SET_BY_USER = "OPENCV_FFMPEG_LOGLEVEL" in _os.environ
# (on Windows FFmpeg's lines cannot be caught: kept quiet there, as before)
# (and with FERKIT_CHECK_DECODING=0, no check: then quiet too)
_quiet = __import__("sys").platform == "win32" or _os.environ.get("FERKIT_CHECK_DECODING") == "0"
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8" if _quiet else "16")

from ._lazy import lazy_names  # noqa: E402
from .errors import (DatasetError, FerkitError, FerkitWarning, ImageDecodeError, ImageTooLargeError,  # noqa: E402
                     ModelError)
from .labels import CANONICAL, CANONICAL_8  # noqa: E402

# the models, the pipeline and the results load torch, OpenCV and onnxruntime (about 2 s): imported
# when first named (ferkit.load_model, from ferkit import Recognizer), so that `ferkit --help`, a
# usage error or `import ferkit.errors` start at once
_LAZY = {"load_model": "api", "ExpressionModel": "api", "Prediction": "api", "Recognizer": "pipeline",
         "FaceResult": "results", "Result": "results", "Results": "results"}
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # type checkers see the real names (at run time they load when first named)
    from .api import ExpressionModel, Prediction, load_model
    from .pipeline import Recognizer
    from .results import FaceResult, Result, Results

__version__ = "0.1.0"

__all__ = ["load_model", "ExpressionModel", "Prediction", "Recognizer", "Result", "Results", "FaceResult",
           "FerkitError", "FerkitWarning", "DatasetError", "ImageDecodeError", "ImageTooLargeError", "ModelError",
           "CANONICAL", "CANONICAL_8", "__version__"]

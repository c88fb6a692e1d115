"""ferkit: facial expression recognition toolkit.

>>> import ferkit
>>> model = ferkit.load_model("default")        # shipped, no download
>>> model.predict("face.png")[0].label           # a face crop                # doctest: +SKIP
'happy'
>>> ferkit.Recognizer().predict("photo.jpg").faces[0].label   # any photo: MTCNN + alignment  # doctest: +SKIP
'happy'
"""

from .api import ExpressionModel, Prediction, load_model
from .errors import DatasetError, FerkitError, ImageDecodeError, ModelError
from .labels import CANONICAL, CANONICAL_8
from .pipeline import Recognizer
from .results import FaceResult, Result, Results

__version__ = "0.1.0"

__all__ = ["load_model", "ExpressionModel", "Prediction", "Recognizer", "Result", "Results", "FaceResult",
           "FerkitError", "DatasetError", "ImageDecodeError", "ModelError", "CANONICAL", "CANONICAL_8",
           "__version__"]

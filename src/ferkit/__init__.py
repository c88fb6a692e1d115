"""ferkit: facial expression recognition toolkit.

>>> import ferkit
>>> model = ferkit.load_model("default")        # shipped, no download
>>> model.predict("face.png")[0].label           # doctest: +SKIP
'happy'
"""

from .api import ExpressionModel, Prediction, load_model
from .errors import DatasetError, FerkitError, ImageDecodeError, ModelError
from .labels import CANONICAL, CANONICAL_8

__version__ = "0.1.0"

__all__ = ["load_model", "ExpressionModel", "Prediction", "FerkitError", "DatasetError", "ImageDecodeError",
           "ModelError", "CANONICAL", "CANONICAL_8", "__version__"]

"""Explain what a network learned: deconvolution, feature maps mapped to facial action units, saliency.

    from ferkit import load_model
    from ferkit.explain import explain_image, analyse, write_report

    explain_image("photo.jpg", "out/", method="deconv", maps=8)   # or gradcam / guided; layer="stages.8"
    res = analyse(load_model("default"), dataset_split)            # maps -> AUs
    write_report(res, "docs/au-analysis")

* :mod:`~ferkit.explain.deconv`: Zeiler & Fergus' deconvnet for any registered model (the backward
  rules of each layer type are in its docstring), and where a map's maximum lies in the image;
* :mod:`~ferkit.explain.au`: where each facial action unit acts in the aligned frame, the distance
  function of Zhu et al. 2019 and the assignment of maps to AUs;
* :mod:`~ferkit.explain.analysis`: the dataset-wide analysis and its report (``ferkit au-analysis``);
* :mod:`~ferkit.explain.saliency`: Grad-CAM and guided backpropagation;
* :mod:`~ferkit.explain.image`: the faces of one photo through the face pipeline (``ferkit explain``);
* :mod:`~ferkit.explain.layers`: layer names (``ferkit explain --list-layers``), hooks, ReLU rules.
"""

from .._lazy import lazy_names

# imported when first named (they load torch and matplotlib): `ferkit --help` builds the explain
# verbs' parsers from .commands without them
_LAZY = {**dict.fromkeys(["AUAnalysis", "analyse", "write_report"], "analysis"),
         **dict.fromkeys(["AU_NAMES", "AUS", "FACS", "Assignment", "assign", "au_points", "distances", "nearest"], "au"),
         **dict.fromkeys(["Projection", "activations", "project", "receptive_field_centres"], "deconv"),
         **dict.fromkeys(["explain_image", "format_layers"], "image"),
         **dict.fromkeys(["LayerInfo", "default_layer", "list_layers", "patched_relus"], "layers"),
         **dict.fromkeys(["CAM", "gradcam", "guided_backprop"], "saliency")}
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # type checkers see the real names (at run time they load when first named)
    from .analysis import AUAnalysis, analyse, write_report
    from .au import AU_NAMES, AUS, FACS, Assignment, assign, au_points, distances, nearest
    from .deconv import Projection, activations, project, receptive_field_centres
    from .image import explain_image, format_layers
    from .layers import LayerInfo, default_layer, list_layers, patched_relus
    from .saliency import CAM, gradcam, guided_backprop

__all__ = ["explain_image", "format_layers", "analyse", "write_report", "AUAnalysis", "project", "activations",
           "receptive_field_centres", "Projection", "gradcam", "guided_backprop", "CAM", "AU_NAMES", "AUS", "FACS",
           "au_points", "distances", "nearest", "assign", "Assignment", "list_layers", "default_layer", "LayerInfo",
           "patched_relus"]

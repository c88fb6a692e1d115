"""``ferkit explain`` and ``ferkit au-analysis``: the command-line side of :mod:`ferkit.explain`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import _command, positive_int, seed_int
from ..errors import FerkitError


def explain_cli(a: argparse.Namespace) -> int:
    from .image import explain_image, format_layers, torch_model

    model = torch_model(a.model, a.device)
    if a.list_layers:
        print(format_layers(model))
        return 0
    if not a.image:
        raise FerkitError("give an IMAGE to explain (or --list-layers to see the model's layers)")
    if a.out is None:
        raise FerkitError("give --out DIR: the folder the pictures and JSON are written to")
    from ..io import is_video_file

    if is_video_file(a.image):
        raise FerkitError(f"{a.image}: a video; explain reads one image (ferkit predict reads videos; a frame saved "
                          f"as an image can be explained)")
    if a.method != "deconv" and a.maps is not None:
        print(f"note: --maps is for --method deconv; {a.method} draws one map per face", file=sys.stderr)
    if a.detector == "none" and a.min_face is not None:  # (taken in silence: no face is searched for)
        print("note: --min-face does nothing with --detector none (the image is taken as the face)", file=sys.stderr)
    if a.map_ids is not None and a.maps is not None:
        raise FerkitError("--map names the maps, --maps asks for the strongest K: give one of them")
    if a.map_ids is not None and a.method != "deconv":  # (before the model loads)
        raise FerkitError("--map names feature maps to deconvolve: it is for --method deconv")
    a.maps = a.map_ids if a.map_ids is not None else a.maps or 8
    if a.target is not None and a.method == "deconv":
        raise FerkitError("--class explains one class with --method gradcam or guided; deconv shows the feature "
                          "maps that respond most to the face, whatever the class")

    before = {f.resolve() for f in Path(a.out).iterdir()} if Path(a.out).is_dir() else set()
    res = explain_image(a.image, a.out, model=model, method=a.method, layer=a.layer, maps=a.maps,
                        detector=a.detector, target=a.target, min_face_size=a.min_face, max_faces=a.max_faces,
                        device=a.device)
    n_maps = res["layer_shape"][0]
    if res["method"] == "deconv" and isinstance(a.maps, int) and a.maps > n_maps:
        print(f"note: layer {res['layer']} has {n_maps} maps: --maps {a.maps} shows all {n_maps}", file=sys.stderr)
    n = len(res["faces"])
    print(f"{a.image}: {n} face{'s' if n != 1 else ''}, {res['method']} at layer {res['layer']} "
          f"({'x'.join(map(str, res['layer_shape']))})")
    for f in res["faces"]:
        line = f"  face {f['face']}: {f['label']} {f['probabilities'][f['label']]:.2f}"
        if res["method"] == "deconv":
            line += ("; strongest maps: " if a.map_ids is None else "; maps: ") + ", ".join(
                f"{r['map']} ({r['activation']:.2f}{', ' + r['nearest_au'] if r['nearest_au'] else ''})"
                for r in f["maps"][:SHOWN_MAPS])
            if len(f["maps"]) > SHOWN_MAPS:  # (it listed 5 of --maps 8 without a word)
                line += f", and {len(f['maps']) - SHOWN_MAPS} more (the picture and the JSON have all)"
        else:
            if f["cam_peak_xy"] is None:
                what = "Grad-CAM (and so guided Grad-CAM)" if res["method"] == "guided" else "Grad-CAM"
                line += (f"; the {what} of '{f['explained']}' is empty (zero everywhere: nothing at this layer "
                         f"raises that class's score here)" +
                         ("; the guided-backprop panel still shows the pixels the net looks at" if
                          res["method"] == "guided" else ""))
            else:
                from .image import PEAK_MARGIN

                line += (f"; the Grad-CAM of '{f['explained']}' (largest cell {f['cam_max']:.3g}) peaks at "
                         f"{tuple(f['cam_peak_xy'])}" + (f" (near {f['cam_peak_au']})" if f["cam_peak_au"] else "")
                         + (f", the next cell within {f['cam_peak_margin']:.0%}: no single peak"
                            if f["cam_peak_margin"] < PEAK_MARGIN else ""))
        print(line)
    for p in res["files"]:
        print(f"wrote {p}" + (" (replacing the earlier file)" if Path(p).resolve() in before else ""))
    # an earlier run's pictures of faces this run did not find (more faces then, or --max-faces): kept,
    # and said, so that the folder is not read as this run's
    mine = {Path(p).resolve() for p in res["files"]}
    stem = Path(str(a.image)).stem
    tail = f"_{res['method']}.png"
    old = sorted(f for f in before if f not in mine and f.name.startswith(f"{stem}_face") and f.name.endswith(tail)
                 and f.name[len(stem) + 5:-len(tail)].isdigit())
    if old:
        print(f"ferkit: note: {len(old)} picture(s) in {a.out} of faces this run did not find are an earlier run's "
              f"({', '.join(f.name for f in old[:3])}{', ...' if len(old) > 3 else ''}): not written over, not "
              f"this run's (its JSON lists {n} face{'s' if n != 1 else ''})", file=sys.stderr)
    return 0




def map_list(text: str) -> list[int]:
    """``--map 15`` or ``--map 15,3,91``: feature map numbers."""
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"feature map numbers separated by commas (15 or 15,3,91), got {text!r}") \
            from None
    if any(v < 0 for v in out):
        raise argparse.ArgumentTypeError(f"feature map numbers are 0 or more, got {text!r}")
    if len(set(out)) < len(out):  # (projected twice, listed twice)
        raise argparse.ArgumentTypeError(f"feature map numbers named more than once: {text!r}")
    return out


def au_analysis_cli(a: argparse.Namespace) -> int:
    from ..data import open_dataset
    from .analysis import analyse, small_sample_note, write_report
    from .image import torch_model

    from ..io import check_out_folder

    check_out_folder("--out", a.out)
    if a.limit is not None and a.limit < 1:
        raise FerkitError(f"--limit must be at least 1, got {a.limit}")
    if not 0 < a.min_consistency <= 1:
        raise FerkitError(f"--min-consistency must be in (0, 1], got {a.min_consistency}")
    if not 0 < a.radius < float("inf"):  # (checked by analyse too, but only once the split is decoded)
        raise FerkitError(f"--radius must be a positive number of inter-ocular distances, got {a.radius}")
    from ..cli import _dataset_options
    from ..data.readers import READERS, dataset_key

    cls = READERS.get(dataset_key(a.dataset))
    if cls is not None and cls.full_photos:
        print(f"ferkit: warning: {cls.name} holds full photos, not face crops aligned like the template: the "
              f"maps' peaks are measured against AU locations where the faces are not (use aligned crops: "
              f"FER2013, FER+, CK+48)", file=sys.stderr)
    model = torch_model(a.model, a.device)
    if a.layer:  # a wrong name is refused before the split is decoded (minutes), not after
        from .image import resolve_layer

        resolve_layer(model, a.layer, "au")
    reader = open_dataset(a.dataset, a.data, **_dataset_options(a))
    split = a.split or reader.val_split or reader.test_split
    if split is None:
        raise FerkitError(f"{reader.name} has no standard split to analyse: pass --split")
    c, h, w = model.input_size
    ds = reader.load(split, size=(h, w), mode="L" if c == 1 else "RGB", progress=not a.no_progress)
    from ..engine.evaluate import align_labels

    keep, _, dropped = align_labels(ds, model.classes)
    if dropped and len(keep):  # (none kept: analyse says so) --limit draws from the images it can use
        print(f"left out {sum(dropped.values())} image(s) of class(es) {model.name} does not know: "
              + ", ".join(f"{k} {v}" for k, v in dropped.items()))
        ds = ds.subset(keep)
    n_total = len(ds)
    if a.limit is not None and a.limit < n_total:
        import numpy as np

        idx = np.sort(np.random.default_rng(a.seed).permutation(n_total)[:a.limit])
        ds = ds.subset(idx)
    res = analyse(model, ds, a.layer, locate=a.locate, batch_size=a.batch_size, progress=not a.no_progress,
                  radius=a.radius, min_consistency=a.min_consistency, maps_per_au=a.maps_per_au,
                  top_images=a.top_images, n_total=n_total)
    before = {f.resolve() for f in Path(a.out).iterdir()} if Path(a.out).is_dir() else set()
    files = write_report(res, a.out, command=_command(a), dropped=dropped, skipped=list(ds.skipped))
    asg = res.assignment
    print(f"{res.model} on {res.dataset} {res.split}: {res.n} images, layer {res.layer.name} "
          f"({'x'.join(map(str, res.layer.shape))}), {int(asg.detector.sum())} of {len(asg.au)} maps are AU "
          f"detectors")
    verdicts: dict[str, int] = {}
    for r in res.facs:
        if r["au"]:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    print("FACS check: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    few = small_sample_note(res.n)
    if few:
        print(f"note: {few} (said in the report too)")
    replaced = [p for p in files if Path(p).resolve() in before]
    for p in files:
        print(f"wrote {p}" + (" (replacing the earlier file)" if Path(p).resolve() in before else ""))
    if replaced:
        print(f"ferkit: note: {a.out} held an earlier report: {len(replaced)} of its files were replaced (another "
              f"--out keeps both)", file=sys.stderr)
    return 0


EXPLAIN_EXAMPLES = """examples:
  ferkit explain --list-layers --model default                      # layer names and shapes
  ferkit explain examples/astronaut.jpg --method deconv --layer stages.8 --maps 8 --out out/explain
  ferkit explain examples/astronaut.jpg --method gradcam --out out/explain
  ferkit explain examples/astronaut.jpg --method guided --class surprise --out out/explain
  ferkit explain face_crop.png --detector none --method deconv --layer stages.5 --out out/explain
  ferkit explain examples/astronaut.jpg --model mini_xception-fer2013 --layer modules_.2 --out out/explain"""

AU_ANALYSIS_EXAMPLES = """examples:
  ferkit au-analysis --model default --dataset fer2013 --data ../shared/data/fer2013 --split PublicTest \\
      --out out/au-default
  ferkit au-analysis --model mini_xception-fer2013 --dataset fer2013 --data ../shared/data/fer2013 --limit 300 \\
      --layer modules_.1 --out out/au-mod1
  ferkit au-analysis ... --locate deconv --limit 200 --out out/au-deconv   # slower, sharper peak locations"""


#: the maps a face's line names on the terminal (the picture and the JSON hold every one asked for)
SHOWN_MAPS = 10


def add_explain_parser(sub, fmt) -> None:
    s = sub.add_parser("explain", epilog=EXPLAIN_EXAMPLES, formatter_class=fmt,
                       help="show what the network sees in a face: deconvolution, Grad-CAM, guided backprop",
                       description="Explain the expression network on every face of a photo (found and aligned "
                                   "by the face pipeline, as `ferkit predict` does; --detector none for face "
                                   "crops). deconv: the --maps feature maps of --layer that respond most to the "
                                   "face, each strongest activation projected back to pixels with Zeiler & "
                                   "Fergus' deconvnet (PNG grid beside the face + JSON of maps, activations, "
                                   "projection peaks and the nearest facial action unit). gradcam: Grad-CAM of "
                                   "the predicted class (or --class) at --layer (default: the last feature "
                                   "layer). guided: guided backpropagation and guided Grad-CAM. Saliency methods "
                                   "also draw the map back onto the photo. Layer names: --list-layers.")
    s.add_argument("image", nargs="?", metavar="IMAGE", help="a photo (or, with --detector none, a face crop)")
    s.add_argument("--model", default="default", help="shipped name, .safetensors file or run folder")
    s.add_argument("--method", choices=["deconv", "gradcam", "guided"], default="deconv")
    s.add_argument("--layer", metavar="NAME", help="module name (see --list-layers); default: for deconv the "
                   "layer the AU analysis uses (the default model's stages.8, mini_xception's modules_.2), for "
                   "gradcam/guided the last feature layer (the one before it when that is a pooling: vgg_fer "
                   "stages.10, zhu_cnn features.9); the run prints the one it used")
    s.add_argument("--maps", type=positive_int, default=None, metavar="K",
                   help="deconv: how many feature maps (the strongest) (default: 8)")
    s.add_argument("--map", dest="map_ids", type=map_list, default=None, metavar="N[,M...]",
                   help="deconv: these feature maps instead of the strongest (e.g. the detector maps an au-analysis "
                        "report names for this --layer), in this order")
    s.add_argument("--class", dest="target", metavar="NAME", help="gradcam/guided: explain this class instead of "
                   "the predicted one")
    s.add_argument("--out", metavar="DIR", help="folder for the PNGs and JSON (needed unless --list-layers)")
    s.add_argument("--list-layers", action="store_true", help="list the model's layers with their output shapes")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when there is one) (default: cpu)")
    g = s.add_argument_group("faces")
    g.add_argument("--detector", "--detect", choices=["mtcnn", "haar", "none"], default="mtcnn",
                   help="mtcnn: 5 landmarks, aligned crops; haar: OpenCV's cascade; none: IMAGE is a face crop")
    g.add_argument("--min-face", type=int, default=None, metavar="PX",
                   help="smallest face searched for, in pixels (default: the detector's, 20 as ferkit predict's)")
    g.add_argument("--max-faces", type=int, metavar="N", help="explain the N most confident faces only")


def add_au_analysis_parser(sub, fmt, add_dataset_args) -> None:
    s = sub.add_parser("au-analysis", epilog=AU_ANALYSIS_EXAMPLES, formatter_class=fmt,
                       help="map a layer's feature maps to facial action units over a dataset split (report)",
                       description="Zhu et al. 2019's analysis: over the face crops of a dataset split, find where "
                                   "each feature map of --layer peaks, measure its distance to every facial action "
                                   "unit's location in the aligned face (from the 5-landmark template), assign "
                                   "each map to the AU it most consistently sits on, and compare per-expression AU "
                                   "usage with FACS (happy AU6+12, surprise AU1+2+5+26, ...). Writes report.md, "
                                   "report.json and PNGs (map x AU heat map, averaged deconvolution projections of "
                                   "each AU's best detector maps, per-expression usage) into --out. Crops are used "
                                   "as they are: they should be aligned like the template (FER2013, FER+ are).")
    s.add_argument("--model", default="default", help="shipped name, .safetensors file or run folder")
    add_dataset_args(s)
    s.add_argument("--split", help="default: the dataset's validation split (FER2013 PublicTest)")
    s.add_argument("--out", required=True, metavar="DIR", help="report folder")
    s.add_argument("--layer", metavar="NAME", help="module name (see `ferkit explain --list-layers`); default: the "
                   "coarsest block output at least 1/8 of the input side (the default model, vgg_fer: stages.8, "
                   "6x6; mini_xception: modules_.2, 6x6)")
    s.add_argument("--limit", type=int, metavar="N", help="analyse a fixed random subset of N images (quick runs)")
    s.add_argument("--seed", type=seed_int, default=0, help="seed of the --limit subset")
    s.add_argument("--locate", choices=["rf", "deconv"], default="rf",
                   help="where a map's maximum is: rf = receptive-field centre of its peak cell (fast); deconv = "
                        "peak of its deconvolution projection (one backward pass per image and map: slow)")
    s.add_argument("--radius", type=float, default=0.5, metavar="D",
                   help="a peak sits on an AU when that AU is the nearest and at most D inter-ocular distances away")
    s.add_argument("--min-consistency", type=float, default=1 / 3, metavar="F",
                   help="a map is an AU's detector when its peak sits on that AU in at least this fraction of "
                        "the images where it fires (default 1/3)")
    s.add_argument("--maps-per-au", type=positive_int, default=3, metavar="K", help="detector maps per AU in the picture of "
                   "averaged deconvolution projections")
    s.add_argument("--top-images", type=positive_int, default=24, metavar="N",
                   help="images averaged per map in that picture (the map's strongest activations)")
    s.add_argument("--batch-size", type=positive_int, default=128)
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when there is one) (default: cpu)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--command-line", default=None, help=argparse.SUPPRESS)

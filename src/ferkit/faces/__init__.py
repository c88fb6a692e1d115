"""Faces: detection (MTCNN, Haar, none), alignment to a template, and named face regions."""

from .align import (REGION_NAMES, TEMPLATE, align, crop_box, is_whole_image, regions, similarity, template,
                    transform_points)
from .detect import DETECTORS, Detection, Detector, HaarDetector, MTCNNDetector, WholeImage, create_detector

__all__ = ["Detection", "Detector", "MTCNNDetector", "HaarDetector", "WholeImage", "DETECTORS", "create_detector",
           "align", "crop_box", "is_whole_image", "regions", "similarity", "template", "transform_points", "TEMPLATE",
           "REGION_NAMES"]

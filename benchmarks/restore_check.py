"""How reliable is `--clean-from`? Reproduces the numbers in docs/data-notes.md.

    python benchmarks/restore_check.py --data ../shared/data [--out docs/restore_check.json]

1. sharpness of each FER2013 split (per-image histogram);
2. the blur sigma that explains Training as blurred FER+ Train faces;
3. positives: Training faces and the RMSE of their best twin;
4. negatives: PublicTest faces blurred the same way and matched against FER+ Train (their real
   twins live in FER+ Valid): how many find a "twin", and how many of those are exact duplicates
   (sharp-to-sharp RMSE < 10) rather than false matches.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ferkit.data import open_dataset
from ferkit.data.base import list_images
from ferkit.data.restore import estimate_sigma, gaussian_blur, match_degraded, sharpness
from ferkit.io import read_image


def jpeg(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    out = []
    for a in x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy():
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf)))
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", help="write the numbers as JSON")
    a = ap.parse_args()
    root = Path(a.data)
    fer = open_dataset("fer2013", root / "fer2013")
    splits = {s: fer.load(s).images for s in ("Training", "PublicTest", "PrivateTest")}
    res: dict = {"sharpness_hist_bins": [0, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 5]}
    for s, x in splits.items():
        sh = sharpness(x).numpy()
        res[f"{s}_sharpness_median"] = float(np.median(sh))
        res[f"{s}_below_0.15"] = int((sh < 0.15).sum())
        res[f"{s}_n"] = len(sh)
    clean_files = [p for p in list_images(root / "ferplus" / "FER2013Train") if p.suffix == ".png"]
    clean = torch.from_numpy(np.stack([read_image(p) for p in clean_files])).unsqueeze(1)
    sigma = estimate_sigma(splits["Training"], clean)
    res["sigma"] = sigma
    pos = match_degraded(splits["Training"], clean, sigma=sigma, max_rmse=1e9)
    neg_in = jpeg(gaussian_blur(splits["PublicTest"].float(), sigma))
    neg = match_degraded(neg_in, clean, sigma=sigma, max_rmse=1e9)
    sharp_rmse = (clean[neg.index].float() - splits["PublicTest"].float()).pow(2).mean(dim=(1, 2, 3)).sqrt().numpy()
    res["positive_rmse_median"] = float(np.median(pos.rmse))
    for th in (6, 8, 10, 12, 15):
        acc = neg.rmse <= th
        res[f"threshold_{th}"] = {
            "training_faces_matched": int((pos.rmse <= th).sum()),
            "publictest_faces_matched": int(acc.sum()),
            "of_which_exact_duplicates": int((acc & (sharp_rmse < 10)).sum()),
            "of_which_false": int((acc & (sharp_rmse >= 10)).sum()),
        }
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

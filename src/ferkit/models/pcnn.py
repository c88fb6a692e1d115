"""PCNN, the perception CNN of Tian et al. (2025, IEEE TIP 34, "A Perception CNN for Facial
Expression Recognition").

The abstract: (1) **five parallel networks** learn local features of the **eyes, cheeks and
mouth** ("sense organs"), to catch the subtle changes of expressions; (2) a **multi-domain
interaction mechanism registers and fuses** these local sense-organ features with the **global
facial structural features**; (3) a **two-phase loss** "restricts the accuracy of the obtained
sense information and of the reconstructed face images". The authors' code
(github.com/hellloxiaotian/PCNN, ``network/models.py`` and ``train.py``) settles what the
abstract leaves open: seven ImageNet-size ResNet-18 trunks (224x224 RGB, MS-Celeb pretrained),
one on the whole face and one on each of five crops (top-left / top-right quarters = the eyes,
two thin bands below them = the cheeks, the bottom third = the mouth); the five local feature
maps are stitched back into a face-shaped mosaic, a spatial transformer (STN) warps the mosaic
onto the global features (the *registration*) and the two are added (the *fusion*); each local
branch has its own linear classifier, and the loss is ``12 * CE(fused output) + 8 * CE(sum of
the five local classifiers' logits)``: the "sense information" term and the "reconstructed face"
term (the face re-assembled from its parts) are both classification losses.

ferkit's version keeps that structure at 48x48 gray on a 2-core CPU budget:

* **five parallel local networks** = the five named boxes of the aligned face,
  :func:`ferkit.faces.align.regions` (``left_eye``, ``right_eye``, ``left_cheek``,
  ``right_cheek``, ``mouth``; at 48x48: 14x11, 14x11, 12x13, 12x13 and 26x13 px), each cropped
  from the input at its native size (no resizing) and fed to its own small network: 3x3 conv
  (``8 * width``) - 3x3 conv (``16 * width``) - a ResNet basic block of stride 2
  (``32 * width``). ferkit's faces are aligned to a fixed template, so the boxes sit on the
  organs, where the authors' fixed fractions of the frame only roughly do. Plus the **global**
  network on the whole face: 3x3 conv (``16 * width``, 48x48) - stride-2 3x3 conv (24x24) - a
  stride-2 basic block (``32 * width``, 12x12) up to the fusion, then a stride-2 basic block
  (``64 * width``, 6x6), global average pooling, dropout, the classifier. Basic blocks because
  the authors' trunks are ResNets; trained from scratch (no face-pretrained trunk here);
* **multi-domain interaction** (register, then fuse): each local feature map is resized to its
  box's extent on the global 12x12 grid and pasted there (cells covered by two boxes average
  them): a mosaic registered by the known geometry of the aligned face, where the authors
  stitch quarters and bands. A spatial transformer then refines the registration: a small
  localisation network (3x3 stride-2 conv, 32 maps, on the global features and the mosaic
  side by side - FC 32 - FC 6) predicts an affine warp of the mosaic, initialised to the
  identity, so residual misalignment (faces cropped by another tool, e.g. CK+48) can be learnt.
  The warped mosaic is **added** to the global features (as the authors do) before the last
  stage. ``stn=False`` keeps the geometric registration only;
* **two-phase loss**: each local branch has a linear classifier on its pooled features; their
  logits are summed and their cross-entropy is the auxiliary "sense information" term, weight
  ``local_weight`` relative to the main (fused) cross-entropy: default 8/12, the authors' ratio.
  The model returns plain logits in eval mode (evaluation, ONNX export); in training mode it
  returns ``{"logits", "local_logits"[, "recon"]}`` and :meth:`PCNN.aux_loss` gives the
  auxiliary terms, which ``ferkit train`` adds to the loss (``--aux-weight`` scales them,
  ``--aux-epochs N`` drops them after N epochs for a classification-only second phase);
* **image reconstruction** (``recon_weight``, default 0.5; ``0`` drops the decoder): the abstract's
  "reconstructed face images" read literally, as ferkit's issue asks: a light decoder (conv, 2x
  bilinear upsampling, conv, 2x, conv) rebuilds the normalised input face from the fused 12x12
  features, and ``recon_weight * MSE`` joins the auxiliary terms, so the fused features must keep
  the face's layout. (The authors' code has no pixel decoder; ``recon_weight=0`` is their loss.)
  The decoder is used in training only: it adds nothing to inference or to the exported model.

``width=2`` (default): about 0.55 M parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..faces.align import REGION_NAMES, regions
from .layers import BasicBlock, ConvBNReLU, affine_warp, global_avg_pool, identity_grid, init_weights
from .registry import register

FUSION_STRIDE = 4  #: the global features are fused at 1/4 of the input size (12x12 at 48x48)


class PCNN(nn.Module):
    class_layers = ("head", "local_heads")  #: modules whose outputs are class scores (see ``ferkit train --init``)

    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 2, dropout: float = 0.2,
                 local_weight: float = 8 / 12, recon_weight: float = 0.5, stn: bool = True,
                 input_hw: tuple[int, int] = (48, 48)) -> None:
        super().__init__()
        c1, c2, c3 = 16 * width, 32 * width, 64 * width
        self.local_weight, self.recon_weight = float(local_weight), float(recon_weight)
        h, w = input_hw
        gh, gw = h // FUSION_STRIDE, w // FUSION_STRIDE
        self.grid_hw = (gh, gw)
        self.boxes = regions((h, w))  #: region name -> [x, y, w, h] in input pixels

        self.global_net = nn.Sequential(ConvBNReLU(in_chans, c1, 3), ConvBNReLU(c1, c1, 3, stride=2),
                                        BasicBlock(c1, c2, stride=2))
        self.local_nets = nn.ModuleDict({
            r: nn.Sequential(ConvBNReLU(in_chans, c1 // 2, 3), ConvBNReLU(c1 // 2, c1, 3), BasicBlock(c1, c2, stride=2))
            for r in REGION_NAMES})
        self.local_heads = nn.ModuleDict({r: nn.Linear(c2, num_classes) for r in REGION_NAMES})

        # where each region lands on the global grid: (y0, y1, x0, x1), and how many regions cover each cell
        self.cells: dict[str, tuple[int, int, int, int]] = {}
        cover = torch.zeros(1, 1, gh, gw)
        for r in REGION_NAMES:
            x, y, bw, bh = self.boxes[r]
            y0, x0 = y // FUSION_STRIDE, x // FUSION_STRIDE
            y1 = min(gh, max(y0 + 1, math.ceil((y + bh) / FUSION_STRIDE)))
            x1 = min(gw, max(x0 + 1, math.ceil((x + bw) / FUSION_STRIDE)))
            self.cells[r] = (y0, y1, x0, x1)
            cover[..., y0:y1, x0:x1] += 1
        self.register_buffer("inv_cover", 1.0 / cover.clamp(min=1), persistent=False)
        self.register_buffer("base_grid", identity_grid(gh, gw), persistent=False)

        self.stn = bool(stn)
        if self.stn:
            self.loc = nn.Sequential(ConvBNReLU(2 * c2, 32, 3, stride=2), nn.Flatten(),
                                     nn.Linear(32 * ((gh + 1) // 2) * ((gw + 1) // 2), 32), nn.ReLU(inplace=True),
                                     nn.Linear(32, 6))
        self.decoder = None
        if self.recon_weight > 0:
            self.decoder = nn.Sequential(
                ConvBNReLU(c2, c1, 3), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                ConvBNReLU(c1, c1 // 2, 3), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c1 // 2, in_chans, 3, padding=1))
        self.final = BasicBlock(c2, c3, stride=2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c3, num_classes)  # registered last: the classifier
        init_weights(self, head=self.head)
        for hd in self.local_heads.values():
            nn.init.normal_(hd.weight, std=0.01)
        if self.decoder is not None:  # the reconstruction starts near the mean face (0), not at noise
            nn.init.normal_(self.decoder[-1].weight, std=0.01)
        if self.stn:  # the transformer starts as the identity warp
            nn.init.zeros_(self.loc[-1].weight)
            with torch.no_grad():
                self.loc[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def crop(self, x: torch.Tensor, region: str) -> torch.Tensor:
        """The input's pixels inside ``region``'s box."""
        bx, by, bw, bh = self.boxes[region]
        return x[:, :, by:by + bh, bx:bx + bw]

    def forward(self, x: torch.Tensor):
        g = self.global_net(x)
        gh, gw = self.grid_hw
        mosaic = 0
        pooled = {}
        for r in REGION_NAMES:
            f = self.local_nets[r](self.crop(x, r))
            pooled[r] = global_avg_pool(f)
            y0, y1, x0, x1 = self.cells[r]
            f = F.interpolate(f, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
            mosaic = mosaic + F.pad(f, (x0, gw - x1, y0, gh - y1))
        mosaic = mosaic * self.inv_cover
        if self.stn:
            theta = self.loc(torch.cat([g, mosaic], dim=1)).view(-1, 2, 3)
            mosaic = affine_warp(mosaic, theta, self.base_grid)
        fused = g + mosaic
        logits = self.head(self.dropout(global_avg_pool(self.final(fused))))
        if not self.training:
            return logits
        out = {"logits": logits, "local_logits": sum(self.local_heads[r](pooled[r]) for r in REGION_NAMES)}
        if self.decoder is not None:
            out["recon"] = self.decoder(fused)
        return out

    def aux_loss(self, out: dict, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The auxiliary loss terms of a training-mode output (already weighted): ``local_ce``
        (cross-entropy of the summed local classifiers, x ``local_weight``) and, with a decoder,
        ``recon_mse`` (x ``recon_weight``). ``target``: class indices or class probabilities."""
        terms = {}
        if self.local_weight > 0:
            terms["local_ce"] = self.local_weight * F.cross_entropy(out["local_logits"].float(), target)
        if "recon" in out:
            terms["recon_mse"] = self.recon_weight * F.mse_loss(out["recon"].float(), x.float())
        return terms


@register("pcnn", paper="Tian et al. 2025, IEEE TIP (code: github.com/hellloxiaotian/PCNN)",
          summary="5 local nets (eyes, cheeks, mouth) + global net, STN-registered fusion, two-phase loss")
def pcnn(num_classes: int = 7, in_chans: int = 1, width: int = 2, dropout: float = 0.2, local_weight: float = 8 / 12,
         recon_weight: float = 0.5, stn: bool = True) -> nn.Module:
    """PCNN: five sense-organ networks and a global one, registered and fused; two-phase loss."""
    return PCNN(num_classes, in_chans, width, dropout, local_weight, recon_weight, stn)

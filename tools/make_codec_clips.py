"""Make the small synthetic clips of tests/data/codecs: the codecs OpenCV's pip wheels cannot
write (H.264, HEVC, AV1; with B-frames where the encoder has them), for the tests of the
damaged-frame check on intact streams and on streams damaged on purpose (tests/test_io.py).

    python -m venv /tmp/avenv && /tmp/avenv/bin/pip install av numpy
    /tmp/avenv/bin/python tools/make_codec_clips.py tests/data/codecs

Needs PyAV (its wheels bring FFmpeg with libx264, libx265 and SVT-AV1); ferkit does not: the
clips are committed. Each is 30 frames of 160x120 at 12 frames/s: a disc moving over a striped
grey background (made here, no dataset image), about 7-9 KB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FRAMES, W, H, FPS = 30, 160, 120, 12
CLIPS = {  # file -> (encoder, options): a keyframe every 12 frames, B-frames forced (H.264, HEVC)
    "h264.mp4": ("libx264", {"x264-params": "bframes=2:b-adapt=0:keyint=12:min-keyint=12", "crf": "30"}),
    "hevc.mp4": ("libx265", {"x265-params": "bframes=2:b-adapt=0:keyint=12:min-keyint=12:log-level=error", "crf": "32"}),
    "av1.mkv": ("libsvtav1", {"g": "12"}),
}


def frame(i: int) -> np.ndarray:
    img = np.full((H, W, 3), 30, np.uint8)
    img[:: 5 + i % 3] = 90
    yy, xx = np.mgrid[:H, :W]
    img[(yy - 60) ** 2 + (xx - 20 - 4 * i) ** 2 <= 18 ** 2] = (255, 200, 0)
    return img


def main() -> int:
    import av

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/codecs")
    out.mkdir(parents=True, exist_ok=True)
    for name, (codec, opts) in CLIPS.items():
        with av.open(str(out / name), "w") as c:
            s = c.add_stream(codec, rate=FPS, options=opts)
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            for i in range(FRAMES):
                for p in s.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        print(f"{out / name}: {codec}, {(out / name).stat().st_size:,} bytes (PyAV {av.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

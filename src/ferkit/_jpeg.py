"""Does a JPEG file that lacks its end marker (``FF D9``) hold all of its picture?

Some cameras, MJPEG webcams and uploaders write JPEG files without the 2-byte end marker.
libjpeg (OpenCV, browsers, Pillow's lenient mode) decodes them completely, but Pillow's strict
mode, which ferkit uses so that files cut short are errors, refuses them as truncated. Whether
only the marker is missing cannot be seen in the decoded pixels: libjpeg fills what a cut file
lacks with zeros or flat gray, which can equal real data. So :func:`complete_without_end_marker`
walks the file's entropy-coded data itself, the Huffman codes of every 8x8 block, and says
whether every MCU of the picture is there, bit for bit.

Covered: sequential Huffman JPEGs (baseline ``SOF0`` and extended ``SOF1``, the kind cameras and
webcams write) with one scan of all their components, with or without restart markers (then
only the last interval is walked). Anything else (progressive, lossless or arithmetic-coded
files, several scans, a height given later by ``DNL``, tables neither defined nor standard,
repeated component ids, markers a header should not hold, data over :data:`MAX_WALK_BYTES`) is
"not known", and the file stays refused. Tables a file does not define in slots 0 and 1 are the
standard ones, as in libjpeg (MJPEG frames carry none).
"""

from __future__ import annotations

import re
import struct

#: the most entropy-coded bytes walked (a pure-Python walk: about 40 ms per 100 KB on one core of our machines); longer
#: data without its end marker stays refused
MAX_WALK_BYTES = 2_000_000

_OTHER_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7])")  # inside entropy-coded data: only FF 00 and RSTn
#: ITU T.81 Annex K.3's example Huffman tables, ``(class, slot): (counts per code length, symbols)``
#: in hex: what libjpeg uses for slots 0 and 1 when a file defines none, as MJPEG frames do
STANDARD_TABLES = {
    (0, 0): ("00010501010101010100000000000000", "000102030405060708090a0b"),
    (0, 1): ("00030101010101010101010000000000", "000102030405060708090a0b"),
    (1, 0): ("0002010303020403050504040000017d",
             "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435"
             "363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a929394959697"
             "98999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2"
             "f3f4f5f6f7f8f9fa"),
    (1, 1): ("00020102040403040705040400010277",
             "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a26272829"
             "2a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a929394"
             "95969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9ea"
             "f2f3f4f5f6f7f8f9fa"),
}

#: markers a header may hold before its scan, as far as this walk goes: SOF0/SOF1, DHT, DQT, DRI,
#: APPn and COM (anything else, ``FF 00`` included, which libjpeg skips as garbage while a
#: length-reading parser would not, makes the file "not known")
_HEADER_MARKERS = frozenset([0xC0, 0xC1, 0xC4, 0xDB, 0xDD, 0xDA, 0xFE, *range(0xE0, 0xF0)])

_NOT_STUFFED = re.compile(rb"\xff(?!\x00)")  # without restart intervals: only FF 00
_RST = re.compile(rb"\xff[\xd0-\xd7]")


def _lookup(counts: bytes, symbols: bytes) -> tuple[list[int], list[int]] | None:
    """A Huffman table (``DHT``: code counts per length 1..16, symbols) as two 65,536-entry lists
    indexed by the next 16 bits: the code's length (0: no code starts so) and its symbol."""
    length, symbol = [0] * 65536, [0] * 65536
    code, k = 0, 0
    for n_bits in range(1, 17):
        for _ in range(counts[n_bits - 1]):
            if k >= len(symbols) or code >= (1 << n_bits):
                return None
            lo = code << (16 - n_bits)
            hi = lo + (1 << (16 - n_bits))
            length[lo:hi] = [n_bits] * (hi - lo)
            symbol[lo:hi] = [symbols[k]] * (hi - lo)
            code += 1
            k += 1
        code <<= 1
    return length, symbol


def _header(data: bytes):
    """``(frame, scan, tables, restart interval, where the entropy-coded data starts)`` of a
    sequential Huffman JPEG with a single scan of all its components; None for anything else."""
    if data[:2] != b"\xff\xd8":
        return None
    i, frame, tables, interval = 2, None, {}, 0
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if m not in _HEADER_MARKERS:  # progressive, lossless, arithmetic, hierarchical, RSTn, FF 00...
            return None
        (n,) = struct.unpack(">H", data[i + 2:i + 4])
        seg = data[i + 4:i + 2 + n]
        if n < 2 or len(seg) != n - 2:
            return None
        if m in (0xC0, 0xC1):
            if frame is not None or len(seg) < 6:
                return None
            height, width, nf = struct.unpack(">HHB", seg[1:6])
            if len(seg) < 6 + 3 * nf or not nf or not height or not width:
                return None
            comps = [(seg[6 + 3 * c], seg[7 + 3 * c] >> 4, seg[7 + 3 * c] & 15) for c in range(nf)]
            # (repeated component ids: libjpeg matches the scan's to the frame's by position, this
            # walk by id; not known)
            if any(h < 1 or v < 1 for _, h, v in comps) or len({c for c, _, _ in comps}) != nf:
                return None
            frame = (width, height, comps)
        elif m == 0xC4:
            j = 0
            while j + 17 <= len(seg):
                tc_th, counts = seg[j], seg[j + 1:j + 17]
                symbols = seg[j + 17:j + 17 + sum(counts)]
                if len(symbols) != sum(counts):
                    return None
                tables[(tc_th >> 4, tc_th & 15)] = (counts, symbols)
                j += 17 + sum(counts)
            if j != len(seg):
                return None
        elif m == 0xDD:
            if len(seg) != 2:
                return None
            (interval,) = struct.unpack(">H", seg)
        elif m == 0xDA:
            if frame is None or not seg or len(seg) != 1 + 2 * seg[0] + 3:
                return None
            ns = seg[0]
            scan = [(seg[1 + 2 * c], seg[2 + 2 * c] >> 4, seg[2 + 2 * c] & 15) for c in range(ns)]
            if len({c for c, _, _ in scan}) != ns or sorted(c for c, _, _ in scan) != sorted(c for c, _, _ in frame[2]):
                return None  # not all components in this scan: more scans follow
            return frame, scan, tables, interval, i + 2 + n
        i += 2 + n
    return None


def complete_without_end_marker(data: bytes) -> bool | None:
    """Whether ``data`` (a JPEG file without its end marker) holds every MCU of its picture: True
    when the walk reaches the last block within the data, False when the data ends before it
    (a file cut short), None when this cannot tell (see the module docstring)."""
    head = _header(data)
    if head is None:
        return None
    (width, height, comps), scan, tables, interval, start = head
    if len(data) - start > MAX_WALK_BYTES:
        return None
    hmax, vmax = max(h for _, h, _ in comps), max(v for _, _, v in comps)
    sampling = {c: (h, v) for c, h, v in comps}
    if len(scan) == 1:  # one component: an MCU is one block, over that component's own size
        h, v = sampling[scan[0][0]]
        cols = -(-(-(-width * h // hmax)) // 8)
        rows = -(-(-(-height * v // vmax)) // 8)
        blocks = [(scan[0][1], scan[0][2])]
    else:
        cols, rows = -(-width // (8 * hmax)), -(-height // (8 * vmax))
        blocks = [(td, ta) for c, td, ta in scan for _ in range(sampling[c][0] * sampling[c][1])]
    total = cols * rows
    luts = {}
    for td, ta in blocks:
        for key in ((0, td), (1, ta)):
            if key not in luts:
                if key in tables:
                    luts[key] = _lookup(*tables[key])
                elif key in STANDARD_TABLES:  # (as libjpeg: a file without DHT, an MJPEG frame)
                    luts[key] = _lookup(*(bytes.fromhex(h) for h in STANDARD_TABLES[key]))
                else:
                    return None
                if luts[key] is None:
                    return None
    entropy = data[start:]
    pieces = _RST.split(entropy) if interval else [entropy]
    # trailing FF bytes start a marker (the end marker's first half, or fill before it): not data.
    # (A stuffed FF 00 cut after its FF loses its 8 bits with them: the walk then finds them missing.)
    last = pieces[-1].rstrip(b"\xff")
    if (_OTHER_MARKER if interval else _NOT_STUFFED).search(last):
        return None
    todo = total - interval * (len(pieces) - 1) if interval else total
    if todo < 1:
        return None
    if interval and todo > interval:  # cut before a restart marker: whole intervals are missing
        return False
    bits = last.replace(b"\xff\x00", b"\xff")
    n_bits = len(bits) * 8
    buf = bits + b"\xff\xff\xff"  # (peeks past the end read ones; a code is taken only if it fits)
    plan = [(luts[(0, td)], luts[(1, ta)]) for td, ta in blocks]
    pos = 0
    for _ in range(todo):
        for (dc_len, dc_sym), (ac_len, ac_sym) in plan:
            if pos >= n_bits:
                return False
            i = pos >> 3
            peek = ((buf[i] << 16 | buf[i + 1] << 8 | buf[i + 2]) >> (8 - (pos & 7))) & 0xFFFF
            n = dc_len[peek]
            if not n:  # no code of this table starts here: the data ran out inside one, or is damaged
                return False if pos + 16 > n_bits else None
            pos += n + dc_sym[peek]
            k = 1
            while k < 64:
                if pos >= n_bits:
                    return False
                i = pos >> 3
                peek = ((buf[i] << 16 | buf[i + 1] << 8 | buf[i + 2]) >> (8 - (pos & 7))) & 0xFFFF
                n = ac_len[peek]
                if not n:
                    return False if pos + 16 > n_bits else None
                rs = ac_sym[peek]
                pos += n + (rs & 15)
                if rs & 15:
                    k += (rs >> 4) + 1
                elif rs == 0xF0:
                    k += 16
                else:
                    break
            if pos > n_bits:
                return False
    return pos <= n_bits

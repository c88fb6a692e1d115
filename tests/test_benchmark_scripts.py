"""The helpers the benchmark scripts share (the benchmarks themselves are run by hand: they time
and measure, tests do not)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import loadtest  # noqa: E402
import server_memory  # noqa: E402


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_mb_reads_resident_and_peak():
    m = server_memory.memory_mb(os.getpid())
    assert set(m) == {"VmRSS", "VmHWM"}
    assert 10 < m["VmRSS"] <= m["VmHWM"] < 1e6  # MB: a Python process with pytest holds more than 10 MB


def test_write_section_replaces_only_its_own_markers(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\n<!-- loadtest:start -->\nold load\n<!-- loadtest:end -->\n\n"
                   "<!-- memory:start -->\nold memory\n<!-- memory:end -->\n\ntail\n")
    loadtest.write_section(doc, "<!-- memory:start -->\nnew memory\n<!-- memory:end -->",
                           server_memory.START, server_memory.END)
    text = doc.read_text()
    assert "new memory" in text and "old memory" not in text
    assert "old load" in text and text.endswith("\ntail\n")
    loadtest.write_section(doc, "<!-- loadtest:start -->\nnew load\n<!-- loadtest:end -->")
    assert "new load" in doc.read_text() and "new memory" in doc.read_text()
    # a file without the section gets it at its end, the rest kept
    other = tmp_path / "c.md"
    other.write_text("# C\n")
    loadtest.write_section(other, "<!-- memory:start -->\nm\n<!-- memory:end -->", server_memory.START,
                           server_memory.END)
    assert other.read_text() == "# C\n\n<!-- memory:start -->\nm\n<!-- memory:end -->\n"

"""The helpers the benchmark scripts share (the benchmarks themselves are run by hand: they time
and measure, tests do not)."""

import json
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


def test_pipeline_section_regenerates_from_its_json(tmp_path):
    """docs/benchmarks.md's pipeline section is exactly what benchmarks/pipeline.py renders from the
    committed JSON (so a layout change is applied by --from-json, not by hand), and the 30 fps column
    judges only the 1-face rows the target is about."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "b.md"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "pipeline.py"), "--from-json",
                        str(root / "docs" / "benchmarks_pipeline.json"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    section = out.read_text().split("<!-- pipeline:start -->", 1)[1].split("<!-- pipeline:end -->", 1)[0]
    doc = (root / "docs" / "benchmarks.md").read_text()
    assert section in doc
    rows = [ln for ln in section.splitlines() if ln.startswith("| 4 faces") or ln.startswith("| 1 face")]
    assert rows and all(ln.endswith("| n/a (1-face target) |") for ln in rows if ln.startswith("| 4 faces"))
    assert all(ln.endswith(("| met |", "| not met |")) for ln in rows if ln.startswith("| 1 face"))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "pipeline.py"), "--from-json", str(bad),
                        "--out", "-"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a benchmarks/pipeline.py --json file" in r.stderr
    assert "Traceback" not in r.stderr


def test_memory_growth_in_words():
    text = server_memory.growth({1: 900.0, 2: 940.0, 4: 990.0, 8: 1050.0})
    assert text.startswith("+40 MB from photo 1 to 2; +50 MB from photo 2 to 4; +60 MB from photo 4 to 8")
    assert "still growing at the end, 15.0 MB per photo over the last step against 40.0 over the first" in text
    assert "levelled off" in server_memory.growth({1: 900.0, 8: 1000.0, 16: 1004.0})
    assert server_memory.growth({1: 900.0}) == "900 MB after one photo."
    assert server_memory.growth({1: 900.0, 2: 700.0}, verdict=False) == "-200 MB from photo 1 to 2."
    assert server_memory.by_kind({"released": [400.0, 380.0], "kept": [700.0]}) == (
        "Resident memory after each of the 2 photos of 4 MP or more (memory handed back): 380 to 400 MB; "
        "after the one photo under 4 MP: 700 MB.")
    assert server_memory.by_kind({"released": [], "kept": [700.0]}).startswith("Resident memory no photo of 4 MP")


def test_peers_tables_in_the_docs_are_their_json_rendered():
    """docs/benchmarks.md's side-by-side section is exactly benchmarks/peers.py's rendering of the
    raw numbers it cites (docs/benchmarks_peers.json): no figure edited by hand or left stale."""
    import json

    import peers

    root = Path(__file__).resolve().parents[1]
    res = json.loads((root / "docs" / "benchmarks_peers.json").read_text())
    section = peers.markdown(res)
    assert section.startswith(peers.START) and section.rstrip().endswith(peers.END)
    assert section in (root / "docs" / "benchmarks.md").read_text()
    # and the verdicts follow from the numbers: a classifier row is met only at >= 5x both ways and
    # no accuracy loss
    for v in res["classifier_vs"]:
        want = v["speed_b1"] >= 5 and v["speed_b64"] >= 5 and v["accuracy_diff_pt"] >= 0
        assert v["met"] == want, v


def test_peers_plot_draws_the_json_numbers(tmp_path):
    """docs/img/peers.png's points are the side-by-side JSON's numbers: speeds are fer TFLite's ms
    per face over each classifier's (the classifier_vs ratios), frames/s are the end-to-end rows'
    over fer TFLite's in the same scene, and a bar counts as meeting 2x only from 2.0 up."""
    import json

    import plot_peers

    root = Path(__file__).resolve().parents[1]
    res = json.loads((root / "docs" / "benchmarks_peers.json").read_text())
    pts = {p["key"]: p for p in plot_peers.classifier_points(res)}
    assert pts["fer:tflite"]["speed"] == 1.0 and "fer:keras_predict" not in pts
    for v in res["classifier_vs"]:
        if v["fer"] == "fer:tflite":
            assert pts[v["ferkit"]]["speed"] == pytest.approx(v["speed_b1"])
            assert pts[v["ferkit"]]["accuracy"] - pts["fer:tflite"]["accuracy"] == pytest.approx(v["accuracy_diff_pt"])
    assert pts[res["default_model"] + ":onnx"]["label"].endswith("(default), onnx")
    scenes = plot_peers.e2e_rows(res)
    assert set(scenes) == {"1 face", "4 faces"}
    for scene, rows in scenes.items():
        fer = [r["summary"]["fps"] for r in res["end_to_end"]
               if r["side"] == "fer" and r["variant"] == "tflite" and r["scene"] == scene]
        mine = [r for r in res["end_to_end"] if r["side"] == "ferkit" and r["scene"] == scene
                and r["key"].endswith((":onnx", ":onnx-int8"))]
        assert len(fer) == 1 and len(rows) == len(mine) > 0
        assert sorted(r["fps"] for r in rows) == sorted(r["summary"]["fps"] for r in mine)
        assert all(r["ratio"] == pytest.approx(r["fps"] / fer[0]) for r in rows)
    out = tmp_path / "p.png"
    plot_peers.plot(res, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mtcnn_rewrites_times_what_ferkit_runs():
    """benchmarks/mtcnn_rewrites.py's last variant is, network by network, exactly what MTCNN runs
    (so its row times ferkit's detector), and its first is the files as shipped (P-Net's heads
    merged, nothing else)."""
    import onnx

    import ferkit.faces.mtcnn as M
    import mtcnn_rewrites

    d = M.model_dir()
    last = mtcnn_rewrites.variant_models(mtcnn_rewrites.VARIANTS[-1])
    assert all(last[k] == M._fast_model(d / f"{k}.onnx") for k in ("pnet", "rnet", "onet"))
    first = mtcnn_rewrites.variant_models(mtcnn_rewrites.VARIANTS[0])
    assert first["rnet"] == onnx.load(str(d / "rnet.onnx")).SerializeToString()
    assert first["pnet"] == M.pnet_one_head(onnx.load(str(d / "pnet.onnx"))).SerializeToString()


def test_train_speed_doc_is_its_json_rendered_and_its_arithmetic_holds(tmp_path):
    """docs/benchmarks_train.md is benchmarks/train_speed.py's rendering of docs/benchmarks_train.json,
    and each row's speed-up and epoch minutes follow from its ms per step; a short run of the script
    writes both files with one row per architecture asked for."""
    import json

    import train_speed

    root = Path(__file__).resolve().parents[1]
    res = json.loads((root / "docs" / "benchmarks_train.json").read_text())
    assert train_speed.markdown(res) == (root / "docs" / "benchmarks_train.md").read_text()
    steps = train_speed.N_TRAIN // res["batch_size"]
    for r in res["rows"]:
        assert r["speedup"] == pytest.approx(r["fp32_ms"] / r["bf16_ms"], abs=0.01)
        assert r["fp32_epoch_min"] == pytest.approx(r["fp32_ms"] * steps / 60000, abs=0.01)
        assert r["fp32_ms"] == pytest.approx(sorted(r["rounds_fp32"])[len(r["rounds_fp32"]) // 2], abs=0.1)
    out, js = tmp_path / "t.md", tmp_path / "t.json"
    assert train_speed.main(["--models", "lite_plain,lite_cnn", "--steps", "1", "--rounds", "1", "--batch-size", "4",
                             "--threads", "1", "--out", str(out), "--json", str(js)]) == 0
    got = json.loads(js.read_text())
    assert [r["model"] for r in got["rows"]] == ["lite_plain", "lite_cnn"]
    assert all(r["fp32_ms"] > 0 and r["bf16_ms"] > 0 for r in got["rows"])
    assert out.read_text() == train_speed.markdown(got)
    with pytest.raises(SystemExit):
        train_speed.main(["--models", "resnet"])


def test_train_speed_step_trains_in_the_precision_asked():
    """The benchmark's step is a training step: the loss falls over a few steps on its fixed batch,
    and the bfloat16 step's weights end up different from the float32 one's (autocast took effect)."""
    import torch

    import train_speed

    nets = {}
    for bf16 in (False, True):
        model, step = train_speed.make_step("lite_cnn", 8, bf16)
        losses = [step() for _ in range(6)]
        assert all(map(lambda v: v == v, losses)) and min(losses[3:]) < losses[0]
        nets[bf16] = model.state_dict()
    assert not all(torch.equal(nets[False][k], nets[True][k]) for k in nets[False])


def test_face_threshold_figures_in_the_docs_are_its_json():
    """docs/input-handling.md's figures on MTCNN's last threshold are benchmarks/face_threshold.py's JSON."""
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "docs" / "face_threshold.json").read_text())
    text = " ".join((root / "docs" / "input-handling.md").read_text().split())
    real = data["real_faces"]
    assert f"of {real['found_at_0.9']:,} FER2013 Training faces found at 0.9 ({real['images']:,} drawn" in text
    for t, pct in (("0.92", "0.4%"), ("0.95", "2.1%"), ("0.97", "5.1%"), ("0.99", "18%")):
        lost = real["lost_if_raised_to"][t]
        assert f"{lost['faces']} ({pct}) " in text and abs(100 * lost["share"] - float(pct[:-1])) < 0.51, t
    false = data["false_faces_in_example"]
    (ring,) = false["JPEG q90"]
    assert f"{ring['box'][2]}x{ring['box'][3]} pixels" in text and f"scored {ring['score']:g}" in text
    assert ring["score"] < 0.92 and all(not v for k, v in false.items() if k != "JPEG q90")

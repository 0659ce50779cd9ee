import csv
import json

import numpy as np
import pytest

from stereo_depth_ros.bags import write_samples
from stereo_depth_ros.core.synthetic import generate_sequence
from stereo_depth_ros.tools.replay import main


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("bags") / "seq", list(generate_sequence(5, 6, 128, 96, "outdoor")), rate_hz=10)


def test_offline_report_has_every_file_and_sane_values(bag, tmp_path):
    out = tmp_path / "report"
    assert main([str(bag), "--mode", "offline", "--output", str(out), "--adaptation", "mad"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["frames"] == 6 and report["ground_truth"]
    for arm in ("adapted", "frozen", "sgbm"):
        for part in ("all", "first_third", "last_third"):
            values = report["summary"][arm][part]
            assert 0 <= values["bad3"] <= 100 and 0 <= values["density"] <= 100 and values["epe"] >= 0
            assert np.isfinite(values["abs_rel"]) and values["time_ms"] > 0
    assert report["summary"]["adapted"]["all"]["steps"] + report["summary"]["adapted"]["all"]["rollbacks"] >= 1
    assert report["summary"]["adapted"]["first_third"]["frames"] == 2
    # The first frame is predicted before any adaptation: both network arms agree there.
    first = [report["frames_detail"][arm][0]["epe"] for arm in ("adapted", "frozen")]
    assert first[0] == pytest.approx(first[1], rel=1e-3)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 18 and {r["arm"] for r in rows} == {"adapted", "frozen", "sgbm"}
    for name in ("error_over_time.png", "depth_last_frame.png", "reconstruction_error_last_frame.png",
                 "cloud_last_frame.png", "cloud_last_frame.ply"):
        assert (out / name).stat().st_size > 1000, name
    import cv2

    plot = cv2.imread(str(out / "error_over_time.png"))
    assert plot.shape == (420, 900, 3) and len(np.unique(plot.reshape(-1, 3), axis=0)) > 3  # lines were drawn
    text = (out / "report.md").read_text()
    assert "![error_over_time.png](error_over_time.png)" in text
    assert "| adapted | last third |" in text and "| sgbm | all |" in text


def test_bag_without_ground_truth_still_reports_photometric_error(bag, tmp_path):
    out = tmp_path / "nogt"
    assert main([str(bag), "--output", str(out), "--adaptation", "none", "--ground-truth-depth-topic", "/nothing",
                 "--max-frames", "2"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert not report["ground_truth"] and report["frames"] == 2
    frozen = report["summary"]["frozen"]["all"]
    assert "epe" not in frozen and 0 < frozen["density"] <= 100 and frozen["photometric_error"] > 0
    assert "no ground-truth depth" in (out / "report.md").read_text()


def test_missing_topics_give_a_clear_message(bag, tmp_path, capsys):
    assert main([str(bag), "--output", str(tmp_path / "x"), "--left-image-topic", "/cam/left"]) == 2
    assert "lacks topic(s) ['/cam/left']" in capsys.readouterr().err


def test_replay_through_the_live_node_agrees_with_offline(bag, tmp_path):
    import yaml


    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "device": "cpu", "sensor_qos": "reliable", "adaptation": {"enabled": False}}}}))
    replay_out, offline_out = tmp_path / "replay", tmp_path / "offline"
    assert main([str(bag), "--mode", "replay", "--output", str(replay_out), "--params-file", str(params), "--lockstep"]) == 0
    assert main([str(bag), "--mode", "offline", "--output", str(offline_out), "--adaptation", "none"]) == 0
    replay = json.loads((replay_out / "metrics.json").read_text())
    offline = json.loads((offline_out / "metrics.json").read_text())
    assert replay["frames_published"] == 6 and replay["node_returncode"] == 0
    node, frozen = replay["summary"]["node"]["all"], offline["summary"]["frozen"]["all"]
    for key in ("epe", "bad3", "density"):
        assert node[key] == pytest.approx(frozen[key], rel=0.02, abs=0.05), key
    assert np.isfinite(node["time_ms"]) and node["time_ms"] > 0  # stamp-to-output latency
    from stereo_depth_ros.bags import raw_messages

    topics = {t for t, *_ in raw_messages(replay_out / "node_output", ["/stereo/disparity", "/stereo/depth/image"])}
    assert topics == {"/stereo/disparity", "/stereo/depth/image"}


def test_demo_runs_the_node_on_a_replayed_bag(tmp_path, capsys):
    from stereo_depth_ros.tools.demo import main as demo

    assert demo(["--output", str(tmp_path / "demo"), "--frames", "4", "--scale", "0.25",
                 "--images", str(tmp_path / "images")]) == 0
    printed = capsys.readouterr().out
    assert "| with adaptation (node) |" in printed and "| SGBM (stereo_image_proc) |" in printed
    assert "frames published 4/4" in printed
    assert (tmp_path / "demo" / "report" / "report.md").is_file() and (tmp_path / "demo" / "summary.md").is_file()
    import cv2

    mosaic = cv2.imread(str(tmp_path / "images" / "demo.png"))  # the README's picture: 2x2 tiles 360 px wide
    assert mosaic.shape[1] == 720 and mosaic.std() > 10
    assert cv2.imread(str(tmp_path / "images" / "error_over_time.png")).shape[1] == 720


def test_replay_reports_the_nodes_adaptation_per_frame(bag, tmp_path):
    import yaml

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "device": "cpu", "sensor_qos": "reliable", "diagnostics": {"period": 0.1},
        "adaptation": {"enabled": True, "mode": "full"}}}}))
    assert main([str(bag), "--mode", "replay", "--output", str(tmp_path / "r"), "--params-file", str(params), "--lockstep"]) == 0
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    rows = [r for r in report["frames_detail"]["node"] if "adaptation_steps" in r]
    assert rows and all(r["adaptation_mode"] == "full" and "rollbacks" in r for r in rows)
    steps = [r["adaptation_steps"] for r in rows]
    assert steps == sorted(steps)  # the node's counter as of each frame's output
    assert report["node_adaptation"]["mode"] == "full" and int(report["node_adaptation"]["steps"]) >= 1
    assert float(report["node_adaptation"]["learning_rate"]) == pytest.approx(3e-4)
    assert report["node_adaptation"]["proxy"] == "sgbm" and 0 < float(report["node_adaptation"]["proxy_density"]) <= 1



def test_offline_network_arms_run_at_the_params_files_inference_size(bag, tmp_path):
    """The network arms run at the node's input size from its params file, not always the image's."""
    import yaml

    def frozen_epe(name, params):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"stereo_depth": {"ros__parameters": params}}))
        out = tmp_path / name
        assert main([str(bag), "--mode", "offline", "--output", str(out), "--adaptation", "none",
                     "--params-file", str(path), "--max-frames", "1"]) == 0
        return json.loads((out / "metrics.json").read_text())["frames_detail"]["frozen"][0]["epe"]

    full = frozen_epe("full", {})
    half = frozen_epe("half", {"inference_scale": 0.5})
    explicit = frozen_epe("explicit", {"inference_width": 64, "inference_height": 48})  # the same 128x96 -> 64x48
    assert half != pytest.approx(full, rel=1e-3)
    assert half == pytest.approx(explicit, rel=1e-6)

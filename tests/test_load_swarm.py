"""A real swarm against a real server on loopback, and the command's guard rails."""

import json

import pytest
import trio

from load_tests.cli import (
    UsageError,
    check_bounds,
    default_metrics_url,
    loopback_host,
    main,
)
from load_tests.report import build_report, summary_text, write_json, write_markdown
from load_tests.runner import run_swarm
from load_tests.scenario import load_scenario
from load_tests.stats import SENT_HORIZON_S, LatencyTracker
from load_tests.swarm import SwarmConfig
from metaworld.layout import load_layout

LAYOUT = load_layout()


async def test_a_tiny_crowd_connects_moves_and_measures(start_server, data_dir, tmp_path):
    server = await start_server(http_port=0)
    config = SwarmConfig(
        url=f"ws://127.0.0.1:{server.ws_port}/",
        scenario=load_scenario("crowded-room", LAYOUT),
        count=6,
        duration_s=3.0,
        data_dir=data_dir,
    )
    seen: list[dict] = []
    with trio.fail_after(15):
        run = await run_swarm(
            config,
            metrics_url=f"http://127.0.0.1:{server.http_port}/metrics",
            progress=seen.append,
            scrape_every_s=0.25,
        )
    report = build_report(run)

    assert report["connected"] == 6 and report["failed"] == 0, report["failures"]
    assert report["latency_ms"]["count"] > 0
    assert 0 < report["latency_ms"]["p50"] < 1000
    assert report["measured_clients"] == 6
    assert report["down_bytes_per_s"]["median"] > 0 and report["up_msgs_per_s"]["median"] > 5
    assert report["server_tick_ms"]["p50"] is not None
    assert report["skipped_ticks"] is not None and report["server_rss_mb"] > 0
    assert report["corrections"] == 0, report["corrections_by_reason"]
    assert max(s["connected"] for s in seen) == 6
    # Everyone said Leave: the server holds no avatar for a resume.
    with trio.fail_after(5):
        while server.world.avatars:
            await trio.sleep(0.05)

    write_json(report, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["count"] == 6
    plots = write_markdown(report, tmp_path / "out.md")
    assert all(p.stat().st_size > 1000 for p in plots)
    assert "pose-to-peer latency" in summary_text(report)


async def test_a_short_clinic_day_admits_patients(start_server, data_dir, tmp_path):
    server = await start_server()
    (tmp_path / "quick.toml").write_text(
        """
kind = "clinic-day"
name = "quick-clinic"
connect_per_s = 50.0
[[roles]]
role = "clinician"
share = 1
[[roles]]
role = "patient"
share = 3
[clinic]
arrival_s = [0.0, 0.3]
consult_s = [0.3, 0.6]
call_every_s = 0.3
walk_m = 2.0
[motion]
speed_mps = [2.0, 2.5]
pause_s = [0.0, 0.2]
"""
    )
    config = SwarmConfig(
        url=f"ws://127.0.0.1:{server.ws_port}/",
        scenario=load_scenario(tmp_path / "quick.toml", LAYOUT),
        count=4,
        duration_s=6.0,
        data_dir=data_dir,
    )
    with trio.fail_after(20):
        run = await run_swarm(config)
    report = build_report(run)
    assert report["connected"] == 4 and report["failed"] == 0, report["failures"]
    assert report["events"].get("admissions", 0) >= 1, report
    assert report["events"].get("visits", 0) >= 1, report
    assert report["server_tick_ms"] is None  # no metrics URL given


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:8765/",
        "ws://127.9.8.7:8765/",
        "ws://localhost:8765",
        "ws://[::1]:8765/",
    ],
)
def test_loopback_urls_are_accepted(url):
    loopback_host(url, ("ws",))


@pytest.mark.parametrize(
    "url",
    [
        "ws://10.0.0.5:8765/",
        "ws://192.168.1.2/",
        "ws://example.com:8765/",
        "ws://127.0.0.1.example.com/",
        "ws://[2001:db8::1]:8765/",
        "ws://0.0.0.0:8765/",
        "wss://127.0.0.1/",
        "http://127.0.0.1:8765/",
    ],
)
def test_other_hosts_and_schemes_are_refused(url):
    with pytest.raises(UsageError):
        loopback_host(url, ("ws",))


def test_the_metrics_url_follows_the_server_host():
    assert default_metrics_url("ws://127.0.0.2:9000/") == "http://127.0.0.2:8080/metrics"
    assert default_metrics_url("ws://[::1]:9000/") == "http://[::1]:8080/metrics"


@pytest.mark.parametrize(
    ("count", "duration", "rate", "procs"),
    [
        (0, 10, 20, 1),
        (1001, 10, 20, 1),
        (10, 0, 20, 1),
        (10, 901, 20, 1),
        (10, 10, 500, 1),
        (4, 10, 20, 5),
    ],
)
def test_size_and_time_are_bounded(count, duration, rate, procs):
    with pytest.raises(UsageError):
        check_bounds(count, duration, rate, procs)


def test_limits_themselves_are_allowed():
    check_bounds(1000, 900, 60, 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ws://10.1.2.3:8765/"], "only connect to this machine"),
        (["--count", "5000"], "--count must be between 1 and 1000"),
        (["--duration", "3600"], "--duration must be above 0 and at most 900"),
        (["--metrics-url", "http://example.com/metrics"], "only connect to this machine"),
        (["--scenario", "no-such"], "no scenario 'no-such'"),
    ],
)
def test_the_command_refuses_before_connecting(args, message, data_dir, capsys):
    (data_dir / "dev_jwt_ed25519.pem").write_text("unused")
    assert main([*args, "--data-dir", str(data_dir), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_the_command_wants_the_servers_data_dir(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "no dev key in" in capsys.readouterr().err


def test_the_latency_table_counts_first_sends_and_forgets_old_ones():
    tracker = LatencyTracker()
    tracker.measuring = True
    tracker.sent(b"a", 10.0)
    tracker.sent(b"a", 10.5)  # the same record again: its first send counts
    tracker.sent(b"b", 12.0)
    tracker.received(b"a", 10.02)
    assert tracker.histogram.total == 1 and 19.9 < tracker.histogram.max_ms < 20.1
    tracker.prune(10.0 + SENT_HORIZON_S + 0.1)  # past a's horizon, not b's
    assert len(tracker) == 1
    tracker.received(b"a", 16.0)  # forgotten: no sample
    tracker.received(b"b", 12.05)
    assert tracker.histogram.total == 2
    tracker.prune(100.0)
    assert len(tracker) == 0
    tracker.sent(b"a", 101.0)  # a record seen again after it was forgotten is new
    tracker.received(b"a", 101.01)
    assert tracker.histogram.total == 3

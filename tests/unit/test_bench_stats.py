from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from board.bench import (
    CpuSample,
    HandshakeRefused,
    _family,
    _rss_kb,
    cpu_usage,
    error_code,
    exception_kind,
    format_report,
    percentile,
    post_offsets,
    summarize,
    ws_events_url,
)


def test_percentile_linear_interpolation() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 25) == 20
    assert percentile(values, 40) == pytest.approx(29.0)  # pos 1.6: 20 + 0.6 * 15
    assert percentile(values, 90) == pytest.approx(46.0)  # pos 3.6: 40 + 0.6 * 10


def test_percentile_unsorted_input_and_single_value() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([7.5], 99) == 7.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_empty_is_none() -> None:
    assert percentile([], 50) is None


@pytest.mark.parametrize("q", [-1, 100.5, math.nan])
def test_percentile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2, 3], q)


def test_summarize_known_values() -> None:
    stats = summarize([3, 1, 2, 4])
    assert stats == {
        "count": 4,
        "min": 1,
        "mean": 2.5,
        "p50": 2.5,
        "p95": pytest.approx(3.85),
        "p99": pytest.approx(3.97),
        "max": 4,
    }


def test_summarize_scales_seconds_to_milliseconds_and_rounds() -> None:
    stats = summarize([0.001, 0.002, 0.0030004], scale=1000)
    assert stats["count"] == 3
    assert stats["min"] == 1.0
    assert stats["p50"] == 2.0
    assert stats["max"] == 3.0  # rounded to 3 decimals
    assert stats["mean"] == 2.0


def test_summarize_accepts_a_generator() -> None:
    assert summarize(x / 10 for x in range(11))["p50"] == 0.5


def test_summarize_empty_gives_none_values() -> None:
    assert summarize([]) == {
        "count": 0,
        "min": None,
        "mean": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }


def test_post_offsets_open_loop_schedule() -> None:
    assert post_offsets(4, 1) == [0, 0.25, 0.5, 0.75]
    offsets = post_offsets(10, 10)
    assert len(offsets) == 100
    assert offsets[-1] == pytest.approx(9.9)
    assert post_offsets(0.5, 1) == [0.0]  # at least one post
    assert post_offsets(10, 0) == []


def test_error_code_from_server_error_body() -> None:
    body = {"error": {"code": "rate_limited", "message": "slow down"}}
    assert error_code(429, body) == "rate_limited"
    assert error_code(500, None) == "http_500"
    assert error_code(502, "<html>bad gateway</html>") == "http_502"
    assert error_code(400, {"error": "plain string"}) == "http_400"
    assert error_code(400, {"error": {"code": ""}}) == "http_400"


def test_exception_kind() -> None:
    assert exception_kind(TimeoutError()) == "timeout"
    assert exception_kind(httpx.ReadTimeout("slow")) == "timeout"
    assert exception_kind(OSError(errno.EMFILE, "Too many open files")) == "EMFILE"
    assert exception_kind(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == "ECONNREFUSED"
    wrapped = httpx.ConnectError("connect failed")
    wrapped.__cause__ = OSError(errno.ECONNRESET, "reset")
    assert exception_kind(wrapped) == "ECONNRESET"
    assert exception_kind(httpx.RemoteProtocolError("closed")) == "RemoteProtocolError"
    assert exception_kind(RuntimeError("boom")) == "RuntimeError"


def test_exception_kind_from_rejected_websocket_handshake() -> None:
    body = b'{"error": {"code": "forbidden_origin", "message": "no"}}'
    assert exception_kind(HandshakeRefused(403, body)) == "forbidden_origin"
    assert exception_kind(HandshakeRefused(503, b"busy")) == "http_503"


def test_ws_events_url() -> None:
    assert (
        ws_events_url("http://127.0.0.1:8000/", "ABC123", 7)
        == "ws://127.0.0.1:8000/api/v1/boards/ABC123/events?since=7"
    )
    assert (
        ws_events_url("https://board.example", "X", None)
        == "wss://board.example/api/v1/boards/X/events"
    )
    with pytest.raises(ValueError, match="http:// or https://"):
        ws_events_url("ftp://host", "X", 0)


def _result(**overrides: object) -> dict[str, object]:
    empty = summarize([])
    result: dict[str, object] = {
        "config": {
            "subscribers": 2,
            "posters": 1,
            "rate": 10.0,
            "duration": 1.0,
            "event_loop": "uvloop",
            "nofile_limit": 20000,
        },
        "server": {"url": "http://127.0.0.1:8123", "started": True, "stop": "exited with code 0"},
        "subscribers": {
            "requested": 2,
            "connected": 2,
            "join_s": 0.1,
            "connect_s": 0.25,
            "connect_ms": summarize([0.010, 0.020], 1000),
            "dropped": 0,
        },
        "posts": {
            "attempted": 10,
            "acknowledged": 9,
            "errors": 1,
            "ack_per_s": 9.5,
            "phase_s": 1.0,
            "send_lag_ms": summarize([0.0, 0.001], 1000),
        },
        "post_ack_ms": summarize([0.004, 0.005, 0.006], 1000),
        "post_last_subscriber_ms": empty,
        "delivery": {
            "expected": 18,
            "deliveries": 17,
            "span_s": 1.2,
            "deliveries_per_s": 14.2,
            "undelivered_posts": 1,
            "undelivered_sample": ["card 4: 1/2"],
            "duplicates": 0,
            "foreign_frames": 0,
            "drain_timeout_s": 10.0,
        },
        "cpu": {"bench_pct": 12.0, "server_pct": 30.4, "machine_busy_pct": 55.0, "cores": 2},
        "errors": {"post:rate_limited": 1},
    }
    result.update(overrides)
    return result


def test_format_report_shows_the_figures() -> None:
    text = format_report(_result())
    assert "http://127.0.0.1:8123 (started by bench)" in text
    assert "2/2 connected in 0.25 s" in text
    assert "10 attempted, 9 acknowledged, 1 errors; 9.5 acknowledged posts/s" in text
    assert "post -> ack             p50 5.0 ms   p95 5.9 ms   p99 6.0 ms" in text
    assert "post -> last subscriber n/a (no samples)" in text
    assert "17 card.posted frames over 1.20 s = 14.2 deliveries/s" in text
    assert "undelivered posts: 1 ['card 4: 1/2']" in text
    assert "bench 12%, server 30% of one core; whole machine 55% busy (2 cores)" in text
    assert "post:rate_limited x1" in text


def test_format_report_without_errors_or_rates() -> None:
    result = _result(errors={}, cpu={})
    result["posts"]["ack_per_s"] = None  # type: ignore[index]
    text = format_report(result)
    assert "errors        none" in text
    assert "n/a acknowledged posts/s" in text
    assert "cpu" not in text


def test_cpu_usage() -> None:
    before = CpuSample(bench=1.0, server=2.0, machine_busy=100, machine_total=1000)
    after = CpuSample(bench=1.5, server=4.0, machine_busy=400, machine_total=1400)
    usage = cpu_usage(before, after, seconds=2.0)
    assert usage["bench_pct"] == 25.0
    assert usage["server_pct"] == 100.0
    assert usage["machine_busy_pct"] == 75.0


def test_cpu_usage_without_server_or_proc() -> None:
    before = CpuSample(bench=1.0, server=None, machine_busy=None, machine_total=None)
    after = CpuSample(bench=2.0, server=None, machine_busy=None, machine_total=None)
    usage = cpu_usage(before, after, seconds=4.0)
    assert usage["bench_pct"] == 25.0
    assert usage["server_pct"] is None
    assert usage["machine_busy_pct"] is None
    assert cpu_usage(before, after, seconds=0) == {}


def test_server_memory_and_cpu_cover_its_workers() -> None:
    """`board serve --workers N` is a parent and its workers: the bench reads all of them."""
    child = 0
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while child not in _family(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _family(parent.pid) == [parent.pid, child]
        alone = _rss_kb(child)
        both = _rss_kb(parent.pid)
        assert alone is not None and both is not None and both > alone > 0
    finally:
        for pid in (child, parent.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=5)
        if parent.stdout is not None:
            parent.stdout.close()

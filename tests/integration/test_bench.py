"""`board bench` end to end with tiny numbers: every option runs and the JSON holds its figures.

No timing is asserted (the machine is shared); only counts and that each figure is there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "board", "bench", "--posters", "2", "--rate", "5",
         "--duration", "1", *args, "--json"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["errors"] == {}, result["errors"]
    assert result["delivery"]["undelivered_posts"] == 0
    assert result["delivery"]["duplicates"] == 0
    assert result["delivery"]["deliveries"] == result["delivery"]["expected"] > 0
    return result


def check_memory(result: dict[str, Any], connections: int) -> None:
    memory = result["server_memory"]
    assert memory["connections"] == connections
    assert memory["rss_before_kb"] > 0
    assert memory["rss_connected_kb"] > 0
    assert memory["rss_end_kb"] > 0
    assert isinstance(memory["per_connection_kb"], int | float)


def test_bench_several_boards_with_stalled_readers(tmp_path: Path) -> None:
    result = bench(tmp_path, "--subscribers", "8", "--boards", "2", "--stalled", "0.25")
    assert result["config"]["boards"] == 2
    assert result["config"]["stalled"] == 0.25
    assert result["subscribers"]["requested"] == 16
    assert result["subscribers"]["stalled"] == 4  # 2 of each board's 8 stop reading
    assert result["subscribers"]["connected"] == 12  # the ones that must see every post
    assert result["posts"]["acknowledged"] == 10  # 5 posts per board
    assert result["delivery"]["expected"] == 10 * 6
    assert [b["subscribers"] for b in result["boards"]] == [6, 6]
    assert result["ramp"] is None
    check_memory(result, 16)


def test_bench_ramp_and_batched_frames(tmp_path: Path) -> None:
    result = bench(tmp_path, "--subscribers", "10", "--ramp", "--batch", "--concurrency", "5")
    assert result["config"]["ramp"] is True
    assert result["config"]["batch"] is True
    ramp = result["ramp"]
    assert ramp["participants"] == ramp["requested"] == 10
    assert ramp["concurrency"] == 5
    assert ramp["s"] > 0
    assert ramp["per_participant_ms"]["count"] == 10
    assert result["subscribers"]["connected"] == 10
    check_memory(result, 10)

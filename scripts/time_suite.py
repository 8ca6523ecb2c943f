"""The README's test command, timed per module: pytest with a JUnit XML report, then each
module's wall time (its tests' setup, call and teardown, module fixtures included) and the
whole run's, slowest first.

    python scripts/time_suite.py [pytest arguments...]     # default: the whole suite
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def module_times(junit: Path) -> dict[str, float]:
    """Seconds per test module, from the report's testcase times (pytest's default
    junit_duration_report is setup + call + teardown)."""
    times: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "?")
        # classname is "tests.e2e.test_x" or "tests.e2e.test_x.TestClass".
        parts = module.split(".")
        name = ".".join(parts[: next((i + 1 for i, p in enumerate(parts)
                                      if p.startswith("test_")), len(parts))])
        times[name] += float(case.get("time") or 0)
    return dict(times)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "junit.xml"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", *argv,
                               f"--junitxml={junit}"], check=False)
        wall = time.monotonic() - started
        times = module_times(junit) if junit.exists() else {}
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"{seconds:8.1f} s  {name}")
    print(f"{sum(times.values()):8.1f} s  in tests, {wall:.1f} s wall (pytest exit "
          f"{done.returncode})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

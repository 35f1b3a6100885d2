"""Drive Debian's headless Chromium for the HTML report tests.

Chromium is a test requirement (.ci/run installs it): when it is missing the tests FAIL with the
command that installs it, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Offline and quiet: no sandbox (CI runs as root), no GPU, no network chatter, a throw-away profile.
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


def chromium_binary() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "headless Chromium is required for the HTML report tests but none of "
        f"{', '.join(CANDIDATES)} is on PATH; install it with: apt-get update && apt-get install -y chromium")


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    command = [chromium_binary(), *BASE_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}"
    return result


def dump_dom(html_path: Path, profile: Path, timeout: float = 90) -> str:
    """The DOM after Chromium has parsed and laid out the page."""
    return _run(["--dump-dom", Path(html_path).resolve().as_uri()], profile, timeout).stdout


def screenshot(html_path: Path, png_path: Path, profile: Path, *, width: int = 1280, height: int = 1600,
               timeout: float = 90) -> Path:
    """A PNG screenshot of the page at ``width`` x ``height``."""
    _run([f"--screenshot={Path(png_path).resolve()}", f"--window-size={width},{height}",
          Path(html_path).resolve().as_uri()], profile, timeout)
    assert Path(png_path).is_file(), f"chromium wrote no screenshot at {png_path}"
    return Path(png_path)

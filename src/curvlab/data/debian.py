"""Data from Debian packages, unpacked without installing them (no root, no R):
``apt-get download`` + ``dpkg -x`` into ``$CURVLAB_DATA/debian`` (default ``~/.cache/curvlab``), done by
``make install`` / ``python -m curvlab.data.debian`` at install time — never at run time. A package
already installed system-wide (``apt-get install``) is found too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from curvlab.data.base import MissingSource

PACKAGES = ("dataset-fashion-mnist", "bible-kjv", "bible-kjv-text", "r-cran-mlbench", "r-cran-janeaustenr")


def data_root() -> Path:
    return Path(os.environ.get("CURVLAB_DATA", Path.home() / ".cache" / "curvlab")) / "debian"


def find(relative: str, package: str) -> Path:
    """The path of a packaged file, unpacked under ``data_root()`` or installed under ``/``."""
    for root in (data_root(), Path("/")):
        path = root / relative
        if path.exists():
            return path
    raise MissingSource(
        f"this data source needs the Debian package {package}: run `python -m curvlab.data.debian` (or make install)"
    )


def fetch(packages: tuple[str, ...] = PACKAGES) -> Path:
    """Download and unpack the packages (install time only)."""
    root = data_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def fetch_if_possible() -> int:
    """The install step: fetch the packages, or say in one line why not. Without apt-get or dpkg (not Debian or
    Ubuntu) the step is skipped (exit 0): these sources are optional and the quickstart needs none of them."""
    missing = [tool for tool in ("apt-get", "dpkg") if shutil.which(tool) is None]
    if missing:
        print(
            f"curvlab: no {' or '.join(missing)} here: skipping the optional Debian data ({', '.join(PACKAGES)}); "
            "the sources fashion_mnist, kjv, austen and uci stay unavailable, everything else works",
            file=sys.stderr,
        )
        return 0
    try:
        print(f"unpacked {', '.join(PACKAGES)} into {fetch()}")
    except (OSError, subprocess.CalledProcessError) as err:
        print(
            f"curvlab: could not fetch the Debian data packages ({err}); those sources stay unavailable",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - an install step
    sys.exit(fetch_if_possible())

"""The HTML report, opened as a person would: headless Chromium renders it and every figure loads."""

import re
import shutil
import subprocess

import pytest

from curvlab.experiments import start_run
from curvlab.experiments.report import write_report

CONFIG = {
    "name": "browser",
    "seed": 0,
    "data": {"name": "digits", "subset": 200},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optimizer": {"name": "sgd", "lr": 0.5},
    "train": {"batch_size": 50, "steps": 12},
    "monitor": {"metrics": ["assumptions", "sharpness", "density"], "schedules": {"sharpness": 3, "density": [12]}},
}
PROBE = """<script>window.addEventListener('load', () => {
  const images = Array.from(document.images).map(i => i.alt + ':' + i.naturalWidth);
  document.body.setAttribute('data-images', images.join(','));
});</script>"""


def test_report_renders_every_figure_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None and shutil.which("apt-get") is None:
        pytest.skip("no chromium and no apt-get here to install it: the report is not rendered in a browser")
    assert chromium, "this test needs Debian's chromium (apt-get install chromium; `make test` installs it as root)"
    result = start_run(CONFIG, tmp_path / "run", quiet=True)
    report = write_report([result.run_dir])
    figures = sorted(p.stem for p in (tmp_path / "run" / "figures").glob("*.png"))
    assert {"loss", "sharpness", "convexity_gap", "density"} <= set(figures)
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    match = re.search(r'data-images="([^"]*)"', out.stdout)
    assert match, f"the page did not finish loading: {out.stderr[-500:]}"
    rendered = dict(item.rsplit(":", 1) for item in match.group(1).split(","))
    assert sorted(rendered) == figures
    assert all(int(width) > 0 for width in rendered.values()), rendered
    assert "Key numbers" in out.stdout and "final λ1" in out.stdout

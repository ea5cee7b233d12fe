"""Reports over synthetic runs: every run present, HTML escaped, self-contained; a real browser renders it."""

import json
import re
import shutil
import subprocess

import pytest

from cifarlab import api
from cifarlab.analysis.report import build

from tests.conftest import write_folder

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    # a folder name cannot hold '/', so the class is '<b onmouseover=x>' on disk and the exact script tag is
    # planted in the run directories afterwards (reports read run directories only)
    data = write_folder(base / "ds", classes=("<b onmouseover=x>", "cat", "dog"), per_class=12, size=16)
    out = base / "runs"
    common = {"dataset": f"folder:{data}", "model": "cnn_small", "epochs": 2, "batch_size": 8, "lr": 0.05,
              "out": str(out), "embed_samples": 30, "progress": "off"}
    for seed in (0, 1):
        api.train(api.make_config("scratch", overrides={**common, "seed": seed}))
    api.train(api.make_config("rotation", overrides={**common, "name": "rot"}))
    from cifarlab.errors import DataError

    with pytest.raises(DataError):
        api.train(api.make_config("scratch", overrides={**common, "dataset": f"folder:{base / 'nope'}",
                                                        "name": "broken"}))
    for summary in out.glob("*/summary.json"):
        s = json.loads(summary.read_text())
        if s.get("classes"):
            s["classes"][0] = EVIL
            summary.write_text(json.dumps(s))
    return out


def test_html_report_has_every_run_and_escapes_class_names(runs_dir, tmp_path):
    path = build(runs_dir, "html", tmp_path / "r.html")
    text = path.read_text()
    for name in ("scratch-cnn_small-ds-s0", "scratch-cnn_small-ds-s1", "rot", "broken"):
        assert f'id="run-{name}"' in text
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b onmouseover" not in text
    assert not re.search(r"""(src|href)=["']?https?://""", text)  # self-contained: no network requests
    assert text.count("data:image/png;base64,") >= 6
    assert "± " in text  # two seeds of the same configuration are averaged


def test_markdown_report_writes_figures_beside_it(runs_dir, tmp_path):
    path = build(runs_dir, "md", tmp_path / "r.md", embedding="none")
    text = path.read_text()
    assert "| scratch-cnn_small-ds-s0 |" in text and EVIL not in text
    pngs = list((tmp_path / "r_files").glob("*.png"))
    assert len(pngs) >= 4 and all(f"r_files/{p.name}" in text for p in pngs)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not _chromium(), reason="Debian chromium not installed")
def test_real_browser_renders_the_report(runs_dir, tmp_path):
    """Headless Chromium opens the file from disk; the DOM it produced has the title, the table rows and loaded
    images, and it logged no errors."""
    path = build(runs_dir, "html", tmp_path / "r.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert "<title>cifarlab report" in dom.stdout
    assert len(re.findall(r"<tr", dom.stdout)) >= 8
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 6, dom.stdout[:300]
    shot = tmp_path / "shot.png"
    res = subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2000", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, res.stderr[-2000:]
    console_errors = [line for line in (dom.stderr + res.stderr).splitlines()
                      if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors
    # images decoded: the embedded PNGs are valid (Pillow reads each one)
    import base64
    import io

    from PIL import Image

    for blob in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", path.read_text()):
        Image.open(io.BytesIO(base64.b64decode(blob))).verify()


def test_cli_report(runs_dir, tmp_path):
    from cifarlab.cli import main

    assert main(["report", str(runs_dir), "-o", str(tmp_path / "x.html"), "--embedding", "none"]) == 0
    assert (tmp_path / "x.html").is_file()
    summary = json.loads((runs_dir / "broken" / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_report_over_diverged_runs_completes_and_shows_them_as_diverged(tmp_path):
    """Two runs blown up by an absurd learning rate, and a complete run whose saved embeddings are infinite (what
    a diverged run looked like before divergence was caught): the report is written, says what it could not show,
    and reports no accuracy for the diverged runs."""
    import numpy as np

    from cifarlab.errors import TrainingDiverged

    out = tmp_path / "runs"
    common = {"dataset": "synthetic:4:20:10", "model": "cnn_small", "image_size": 16, "epochs": 2, "batch_size": 16,
              "out": str(out), "embed_samples": 20, "progress": "off"}
    for seed in (0, 1):
        with pytest.raises(TrainingDiverged):
            api.train(api.make_config("scratch", overrides={**common, "lr": 50.0, "seed": seed, "name": f"boom{seed}"}))
    api.train(api.make_config("scratch", overrides={**common, "name": "inf"}))
    pred_file = out / "inf" / "predictions.npz"
    pred = dict(np.load(pred_file))
    pred["embeddings"][:3] = np.inf
    np.savez(pred_file, **pred)
    path = build(out, "html", tmp_path / "r.html")
    text = path.read_text()
    for name in ("boom0", "boom1"):
        section = text[text.index(f'id="run-{name}"'):]
        section = section[:section.index("</section>")]
        assert "diverged" in section and "no test accuracy is reported" in section and "training curves" in section
    inf = text[text.index('id="run-inf"'):]
    assert "3 of 20 embeddings are not finite" in inf[:inf.index("</section>")]
    rows = re.findall(r"<tr class=failed>.*?</tr>", text)
    assert len(rows) == 2 and all("diverged" in r for r in rows)
    assert build(out, "md", tmp_path / "r.md").is_file()

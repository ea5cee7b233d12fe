"""The PDF report, read back: `cifarlab report RUNS --format pdf` writes an A4 PDF whose text holds every sentence
of the HTML report and whose first page renders; a long table splits between rows with its header repeated; a
missing renderer is one line that says how to install it."""

import html
import re
import shutil
import subprocess

import numpy as np
import pytest

from cifarlab.analysis import pdf
from cifarlab.analysis.report import build
from cifarlab.cli import main
from cifarlab.errors import CifarlabError

from tests.analysis.fabricated import fabricate_study

try:
    pdf.check()
    RENDERER = ""
except CifarlabError as exc:
    RENDERER = str(exc)
needs_renderer = pytest.mark.skipif(bool(RENDERER), reason=RENDERER)
pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDF back: pip install 'cifarlab[test]'")


def _text(path) -> list[str]:
    """Each page's text, whitespace collapsed (the PDF wraps lines where the HTML does not)."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(path).pages]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("pdf")
    root = fabricate_study(base / "runs", seeds=3, arms=("scratch", "linear", "finetune", "supcon"))
    out = base / "r.pdf"
    if not RENDERER:
        assert main(["report", str(root), "--format", "pdf", "-o", str(out), "--embedding", "none",
                     "--progress", "off"]) == 0
    return build(root, "html", base / "r.html", embedding="none").read_text(), out


@needs_renderer
def test_pdf_text_holds_every_sentence_of_the_html_report(reports):
    page_html, out = reports
    assert out.read_bytes()[:5] == b"%PDF-" and out.with_name("r.findings.json").is_file()
    text = " ".join(_text(out))
    paragraphs = re.findall(r'<p class="(?:finding|caption|ask)"[^>]*>(.*?)</p>', page_html, re.S)
    sentences = [" ".join(html.unescape(re.sub(r"<[^>]+>", "", p)).split()) for p in paragraphs]
    assert len(sentences) >= 8 and any("Reference: cnn_small scratch" in s for s in sentences)
    missing = [s for s in sentences if s not in text]
    assert not missing, missing[:3]
    for heading in ("Accuracy against training time", "Per-class accuracy", "Regimes side by side", "All runs",
                    "Per-run pages", "scratch-s2", "supcon-s1"):
        assert heading in text
    box = pypdf.PdfReader(out).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points


@needs_renderer
@pytest.mark.skipif(not shutil.which("pdftoppm"), reason="pdftoppm and pdfimages (poppler-utils) not installed")
def test_pdf_embeds_every_figure_once_and_its_first_page_renders(reports, tmp_path):
    from PIL import Image

    page_html, out = reports
    listing = subprocess.run(["pdfimages", "-list", str(out)], capture_output=True, text=True, check=True).stdout
    drawn = [line.split() for line in listing.splitlines()[2:]]
    assert len([d for d in drawn if d[2] == "image"]) == page_html.count("data:image/png;base64,")  # each once
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", "-singlefile", str(out),
                    str(tmp_path / "p1")], check=True, timeout=120)
    img = Image.open(tmp_path / "p1.png").convert("L")
    assert abs(img.width / img.height - 595 / 842) < 0.01
    dark = int((np.asarray(img) < 128).sum())
    assert dark > 0.005 * img.width * img.height  # text and a figure, not a blank page


@needs_renderer
def test_a_long_table_splits_between_rows_with_its_header_repeated(tmp_path):
    root = fabricate_study(tmp_path / "runs", seeds=5, files=False)  # 50 runs: the all-runs table spans pages
    out = build(root, "pdf", tmp_path / "r.pdf", embedding="none")
    pages = _text(out)
    names = [f"{a}-s{s}" for a in ("scratch", "linear", "supcon_ce") for s in range(5)]
    table = [k for k, t in enumerate(pages) if "All runs" in t or any(f" {n} " in t for n in names)]
    summary = [k for k in table if pypdf.PdfReader(out).pages[k].mediabox.width > 800]  # its landscape pages
    assert len(summary) >= 2
    for k in summary:
        assert "recipe model" in pages[k] and "test acc" in pages[k]  # the header row on each page
    rows = [n for k in summary for n in names if f" {n} " in pages[k]]
    assert sorted(rows) == sorted(names)  # each row once: no row split across two pages


def test_missing_renderer_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_weasyprint(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    with pytest.raises(CifarlabError, match=re.escape("pip install 'cifarlab[pdf]'")):
        build(tmp_path / "absent", "pdf", tmp_path / "r.pdf")  # before any run is read
    assert main(["report", str(tmp_path / "absent"), "--format", "pdf", "--progress", "off"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WeasyPrint" in err[0] and "apt-get install libpango" in err[0]

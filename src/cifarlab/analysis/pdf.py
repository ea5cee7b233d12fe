"""The report as a PDF: the HTML report, printed.

Renderer: WeasyPrint, not headless Chromium's ``--print-to-pdf``: it is a pip package (the ``pdf`` extra) needing
only Pango, it implements CSS paged media (A4 ``@page``, page counters, headers repeated on split tables,
``break-inside``) the same way on every machine, and its URL fetcher can refuse the network outright; Chromium is a
several-hundred-megabyte browser started as a subprocess with a profile directory."""

from __future__ import annotations

from pathlib import Path

from cifarlab.errors import CifarlabError

INSTALL = ("pip install 'cifarlab[pdf]' (WeasyPrint; it also needs the Pango library: on Debian or Ubuntu, "
           "apt-get install libpango-1.0-0 libpangoft2-1.0-0)")

# Print rules, part of the HTML report's stylesheet (so a browser's print of the HTML paginates the same way): A4,
# no figure, table row or sentence cut across pages, table headers repeated where a long table splits, the wide
# all-runs table (the one table long enough to split) on landscape pages, the per-run pages as an appendix from a
# new page.
PRINT_CSS = """@media print{@page{size:A4;margin:13mm 11mm 15mm;
@bottom-right{content:counter(page) " / " counter(pages);font:8pt sans-serif;color:#666}}
@page wide{size:A4 landscape}
body{max-width:none;margin:0;padding:0;font-size:9pt}h1{font-size:16pt}h2{font-size:13pt}h3{font-size:10.5pt}
img{display:block;max-width:100%;max-height:255mm;height:auto;border:0;break-inside:avoid}
table{font-size:7pt;break-inside:avoid}#summary{break-inside:auto}tr,p{break-inside:avoid}
thead{display:table-header-group}
td,th{overflow-wrap:break-word}.published{white-space:nowrap}h2,h3,.ask{break-after:avoid}section{margin-top:1.2em}
a{color:inherit;text-decoration:none}#all-runs{page:wide}#per-run{break-before:page}}"""


def check() -> None:
    """Refuse before any work when WeasyPrint or its Pango library is missing."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: installed, but Pango is not
        raise CifarlabError(f"--format pdf needs WeasyPrint, which cannot be loaded ({type(exc).__name__}): "
                            f"{INSTALL}") from None


def write(html_text: str, out: Path) -> None:
    """Print the HTML report to ``out`` as an A4 PDF."""
    import weasyprint

    # the figures are data: URLs; any other URL would be a fetch, which a report never makes
    fetcher = weasyprint.URLFetcher(allowed_protocols=("data",))
    weasyprint.HTML(string=html_text, url_fetcher=fetcher).write_pdf(out)

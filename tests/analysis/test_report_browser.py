"""report.html in a real browser (headless Chromium): every figure loads; a broken one is
counted. Skipped where Chromium is absent, except in CI (.ci/run installs it)."""

import os
import re
import shutil
import subprocess
from html import escape

import pytest
from synthstudy import plotted

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def loaded(path):
    """(images, broken images) as the page's own check counts them after loading."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium")
    dom = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", "--virtual-time-budget=10000", f"file://{path}"],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r'<body data-images="(\d+)" data-broken-images="(\d+)"', dom)
    assert body, dom[:500]
    return int(body.group(1)), int(body.group(2))


def test_every_figure_loads_in_a_browser(tmp_path):
    out, summary, _ = plotted()
    assert loaded(out / "report.html") == (len(summary["figures"]), 0)
    html = (out / "report.html").read_text()
    start = html.index("src='data:image/png;base64,") + len("src='data:image/png;base64,")
    broken = tmp_path / "report.html"
    broken.write_text(html[:start] + "AAAA" + html[start + 40:])
    assert loaded(broken) == (len(summary["figures"]), 1)


def test_the_report_opens_with_the_answer_and_renders_its_text():
    out, _, tables = plotted()
    html = (out / "report.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", html)
    assert heads[:2] == ["The answer", "Figures"]
    for claim in tables["answer"].claim.unique():
        assert f"<td>{escape(claim)}</td>" in html
    assert re.search(r"<td>(holds|reversed|no effect|inconclusive|not evaluated)</td>", html)
    text = re.sub(r"<script>.*?</script>|src='data:[^']*'", "", html, flags=re.S)
    assert "`" not in text and "<code>" in text  # markdown code spans rendered
    assert "<details><summary>Analysis settings</summary>" in html

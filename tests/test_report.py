"""The report page (studies.report.write_report): one self-contained HTML file for a results
folder, checked as text and rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from studies import cli, io
from studies.report import write_report

# tiny settings: every study runs in a few seconds
TINY: dict[str, list[str]] = {
    "race": ["eta=0.1", "t_max=2", "n_times=21", "init_scales=0.08"],
    "one_hidden_1d": ["targets=abs", "widths=8", "n_seeds=1", "steps=100"],
    "weff_mnist": ["n_train=200", "n_test=100", "epochs=1", "widths=16", "n_snapshots=2"],
    "weff_theory": [
        "n_train=100",
        "n_test=60",
        "steps=20",
        "widths=16,16",
        "n_snapshots=3",
        "n_k=2",
        "check_step=false",
    ],
    "alignment": ["n_values=8", "seeds=1", "mu_values=0.5", "snapshots=10", "workers=1"],
    "alignment_mnist": ["iterations=100", "snapshots=5", "per_class=30"],
    "contexts": ["steps_1=200", "n_times=11", "n_settle=0", "workers=1"],
}
# the sweeps keep finished cells in a cache folder: a fresh one, so nothing is reused
SWEEPS = ("alignment", "contexts")
CHROMIUM_TIMEOUT = 120  # seconds


def run_tiny(study: str, out: Path, cache: Path) -> None:
    overrides = TINY[study] + ([f"cache_dir={cache}"] if study in SWEEPS else [])
    argv = ["run", study, "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0, f"relu-gdln {' '.join(argv)} failed"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one tiny result of each of the seven studies."""
    out = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.mktemp("cache")
    for study in TINY:
        run_tiny(study, out, cache)
    return out


@pytest.fixture(scope="module")
def page(results: Path) -> str:
    return write_report(results).read_text(encoding="utf-8")


class Elements(HTMLParser):
    """The study sections, result articles, images and links of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.results: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        classes = found.get("class", "").split()
        if tag == "section" and "study" in classes:
            self.sections.append(found.get("id", ""))
        elif tag == "article" and "result" in classes:
            self.results.append(found.get("id", ""))
        elif tag == "img":
            self.images.append(found.get("src", ""))
        elif tag == "a":
            self.links.append(found.get("href", ""))


def png_files(results: Path) -> list[Path]:
    return sorted(results.glob("*/*.png"))


def test_one_section_per_study_with_links_and_figures(results: Path, page: str) -> None:
    assert (results / "report.html").is_file()
    found = Elements(page)
    assert sorted(found.sections) == sorted(f"study-{s}" for s in TINY)
    assert len(found.results) == len(TINY)
    for nc in results.glob("*/*.nc"):
        assert f"{nc.parent.name}/{nc.name}" in found.links
    for study in TINY:
        assert f"#study-{study}" in found.links  # the header lists every study
    prefix = "data:image/png;base64,"
    assert page.count(f'<img src="{prefix}') == len(png_files(results)) > len(TINY)
    embedded = sorted(base64.b64decode(src[len(prefix) :]) for src in found.images)
    assert embedded == sorted(p.read_bytes() for p in png_files(results))
    for png in png_files(results):
        assert f"<figcaption>{png.stem.split('_', 1)[1]}</figcaption>" in page


def test_page_is_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page and "url(" not in page
    # nothing is loaded from the network: every src is a data URI
    assert not re.search(r"""\bsrc\s*=\s*["']?\s*(?:https?:)?//""", page, flags=re.I)
    assert all(src.startswith("data:image/png;base64,") for src in Elements(page).images)


def test_provenance_headlines_and_tables(results: Path, page: str) -> None:
    for nc in results.glob("*/*.nc"):
        with io.open_result(nc) as ds:
            attrs = dict(ds.attrs)
        for key in ("git_commit", "created", "command"):
            assert html.escape(str(attrs[key])) in page
        pretty = json.dumps(json.loads(attrs["config"]), indent=2, sort_keys=True)
        assert f"<pre>{html.escape(pretty)}</pre>" in page
        assert html.escape(json.loads(attrs["versions"])["python"]) in page
    assert page.count('<table class="comparison">') == len(TINY)
    header = "<th>quantity</th><th>theory</th><th>experiment</th><th>error</th><th>published</th>"
    assert page.count(header) == len(TINY)
    # units come from the variable a headline is named after (alignment's fit_constant_<init>)
    assert re.search(
        r"<td>fit_constant_random</td><td[^>]*>[^<]*</td><td>time \(summed loss\)", page
    )
    # the published figures of the tiny runs' settings: contexts C = 3 depth 1, digits 0 vs 1
    assert "<td>0.040</td>" in page
    assert "near iteration 2,000" in page
    assert "1.06 (our calibration, paper preset)" in page


def test_all_results_newest_first_and_unreadable_files(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    shutil.copytree(results / "race", out / "race")
    run_tiny("race", out, tmp_path / "cache")
    stamps = sorted((p.stem for p in (out / "race").glob("*.nc")), reverse=True)
    assert len(stamps) == 2
    found = Elements(write_report(out, all_results=True).read_text(encoding="utf-8"))
    assert found.sections == ["study-race"]
    assert found.results == [f"result-race-{s}" for s in stamps]  # newest first
    assert Elements(write_report(out).read_text(encoding="utf-8")).results == [
        f"result-race-{stamps[0]}"
    ]
    # a file that is not a result gets an article saying so; the others are still shown
    (out / "race" / "99990101T000000000000Z.nc").write_text("not netCDF")
    text = write_report(out, all_results=True).read_text(encoding="utf-8")
    assert len(Elements(text).results) == 3
    assert '<article class="result unreadable" id="result-race-99990101T000000000000Z">' in text
    assert "cannot be read as a result" in text


def test_missing_numbers_show_na_and_text_is_escaped(results: Path, tmp_path: Path) -> None:
    (source,) = (results / "race").glob("*.nc")
    ds = io.load_dataset(source).drop_vars("loss_gd")
    ds.attrs["command"] = "relu-gdln run race --set <b>x</b> & more"
    io.save_dataset(ds, tmp_path / "race" / source.name)
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "relu-gdln run race --set &lt;b&gt;x&lt;/b&gt; &amp; more" in text
    assert "<b>x</b>" not in text
    rows = re.findall(r"<tr><td>final loss, [^<]*</td>(.*?)</tr>", text)
    assert rows and all('<td class="num">n/a</td>' in row for row in rows)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nothing")


# --- rendered in headless Chromium ---------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).is_file():
        pytest.skip(
            "no Chromium binary (chromium on PATH or /usr/bin/chromium): apt install chromium"
        )
    return found


def headless(binary: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium in headless mode on ``url`` with a fresh profile and no network of its own;
    console messages of the page go to stderr."""
    profile.mkdir()
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def console_errors(stderr: str) -> list[str]:
    """Lines of a page's console (uncaught errors, console.error, blocked loads): the page has
    no scripts, so any console line is a fault."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_check_sees_errors(tmp_path: Path) -> None:
    """The console check is not vacuous: a page with a script error and a blocked network
    image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv='
        "\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'\">"
        '</head><body><img src="https://example.invalid/x.png">'
        '<script>throw new Error("boom")</script></body></html>'
    )
    done = headless(chromium(), bad.as_uri(), tmp_path / "profile", "--dump-dom")
    errors = "\n".join(console_errors(done.stderr))
    assert "Uncaught Error: boom" in errors
    assert "example.invalid" in errors


def test_page_renders_in_chromium(results: Path, page: str, tmp_path: Path) -> None:
    binary = chromium()
    url = (results / "report.html").as_uri()
    dom = headless(binary, url, tmp_path / "profile_dom", "--dump-dom")
    assert console_errors(dom.stderr) == []
    rendered = Elements(dom.stdout)
    assert sorted(rendered.sections) == sorted(f"study-{s}" for s in TINY)
    assert len(rendered.images) == len(png_files(results))
    assert rendered.images == Elements(page).images

    shot = tmp_path / "page.png"
    done = headless(
        binary, url, tmp_path / "profile_shot", f"--screenshot={shot}", "--window-size=1280,4000"
    )
    assert console_errors(done.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (4000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1
    assert (pixels.min(axis=2) < 250).mean() > 0.01  # text, tables and figures, not blank

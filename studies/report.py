"""One self-contained HTML page for every result in a folder: ``<results>/report.html``.

The page has a header listing the studies found as ``<results>/<study>/*.nc`` (links to their
sections) and the time it was written, then one section per study (``id="study-<name>"``,
class ``study``) with its paper and, for its newest result (or every result, newest first),
an article (class ``result``) holding:

- a link to the ``.nc`` file, relative to the page, so the page and the folder move together;
- the headline numbers of the study's ``summary(ds)`` with their units (the ``units`` attr of
  the Dataset variable a headline is named after, else ``1``);
- a theory-against-experiment table (quantity, theory, experiment, error, published), built
  here per study from the Dataset: missing or non-finite numbers show "n/a", the published
  column is empty where the paper gives no figure;
- every figure ``<stamp>_<name>.png`` beside the file, embedded as a base64 PNG with its name
  as caption;
- the provenance attrs: commit, created, command, config (pretty JSON), versions.

A file that cannot be read as a result gets an article saying why. The page needs nothing
but itself: inline CSS, images as data URIs, no JavaScript, and a Content-Security-Policy that
forbids loading anything from elsewhere.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import xarray as xr

from studies import io, registry

#: published figures for the "published" column, by study and row key; the docs page each
#: study's figures come from is named above it and is the reference for them
PUBLISHED: dict[str, dict[str, str]] = {
    # docs/theory/reln-measured.md, "Published numbers": relative L2 error of the theory's loss
    # curve against the ReLU net's (Jarvis et al. 2025); two hidden layers: C = 3, over 3 seeds
    "contexts": {
        "C3 depth 1": "0.040",
        "C4 depth 1": "0.015",
        "C5 depth 1": "0.085",
        "C3 depth 2": "0.064-0.077",
    },
    # docs/theory/early-alignment.md, "Published numbers" (Min, Mallada & Vidal 2024)
    "alignment_mnist": {"digits 0 vs 1": "near iteration 2,000"},
    # docs/theory/effective-weights.md: Ye 2025 gives no number, only that classes separate;
    # these are our own calibration at the paper preset (784-256-256-10, 10 epochs)
    "weff_mnist": {
        "ratio init": "1.06 (our calibration, paper preset)",
        "ratio end": "about 1.4 (our calibration, paper preset)",
    },
}

#: a table cell: a number (None or non-finite: "n/a") or a text ("" for no entry)
Cell = float | str | None


@dataclass(frozen=True)
class Row:
    """One row of a study's theory-against-experiment table."""

    quantity: str
    theory: Cell
    experiment: Cell
    error: Cell
    error_kind: str = ""
    published: str = ""


def _num(get: Callable[[], Any]) -> float | None:
    """``float(get())``, or None when the Dataset lacks what ``get`` reads (a variable, a
    label, a position) or the value is not finite."""
    try:
        with warnings.catch_warnings():  # means and medians of all-NaN slices
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(get())
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return None
    return value if math.isfinite(value) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _contexts_row(cell: xr.Dataset, C: int, D: int) -> Row:
    """One (C, depth) cell: final mean loss of the ReLN (``loss_theory``) and of the ReLU net
    (``loss_relu``), error ``rel_l2_loss`` over the whole curve; means over seeds."""
    return Row(
        f"loss curve, C = {C}, depth {D} (final mean loss; mean over seeds)",
        _num(lambda: cell.loss_theory.isel(time=-1).mean()),
        _num(lambda: cell.loss_relu.isel(time=-1).mean()),
        _num(lambda: cell.rel_l2_loss.mean()),
        "rel. L2 over the curve",
        PUBLISHED["contexts"].get(f"C{C} depth {D}", ""),
    )


def _contexts_rows(ds: xr.Dataset) -> list[Row]:
    """A row per (C, depth) cell (:func:`_contexts_row`)."""
    return [
        _contexts_row(ds.sel(context_count=C, depth=D), int(C), int(D))
        for C in ds.context_count.values
        for D in ds.depth.values
    ]


def _alignment_mnist_rows(ds: xr.Dataset) -> list[Row]:
    """Alignment iteration: the bound ``t1_bound`` converted to iterations against the
    measured ``iteration_align`` (neurons in the regions S+/S-), and the directional
    alignment ``iteration_cos_align``. The published figure goes with the study's measure of
    alignment: the regions when mu > 0, the directional one otherwise (S+/S- empty or
    unreachable)."""
    config = io.config_from_attrs(ds)
    pair = " vs ".join(str(d) for d in config.get("digits", ()))
    published = PUBLISHED["alignment_mnist"].get(f"digits {pair}", "")
    separable = (_num(lambda: ds.mu) or 0.0) > 0
    iterations_per_time = _ratio(_num(lambda: ds.iteration[-1]), _num(lambda: ds.time[-1]))
    bound = _num(lambda: ds.t1_bound * iterations_per_time)
    measured = _num(lambda: ds.iteration_align)
    return [
        Row(
            f"alignment iteration, digits {pair}: neurons in S+/S- "
            "(theory: the bound t1, n/a where mu <= 0)",
            bound,
            measured,
            _ratio(measured, bound),
            "t_align / t1",
            published if separable else "",
        ),
        Row(
            f"directional alignment iteration, digits {pair}: every live neuron within "
            f"cos >= {config.get('cos_threshold', '?')} of its class mean",
            "",
            _num(lambda: ds.iteration_cos_align),
            "",
            published="" if separable else published,
        ),
    ]


def _alignment_row(cell: xr.Dataset, init: str) -> Row:
    """One init: median bound ``t1_bound`` and median ``t_align`` over the runs where the
    assumptions hold, error the largest ``ratio`` t_align / t1 (the bound holds if <= 1)."""
    hold = cell.assumptions_hold == 1
    return Row(
        f"alignment time, {init} init (median over {int(hold.sum())} runs where the "
        "assumptions hold; theory: the bound t1)",
        _num(lambda: cell.t1_bound.where(hold).median()),
        _num(lambda: cell.t_align.where(hold).median()),
        _num(lambda: cell.ratio.where(hold).max()),
        "max t_align / t1",
    )


def _alignment_rows(ds: xr.Dataset) -> list[Row]:
    """A row per init (:func:`_alignment_row`)."""
    return [_alignment_row(ds.sel(init=init), str(init)) for init in ds.init.values]


def _race_row(ds: xr.Dataset, init: str, b: float) -> Row:
    """One init and scale: final loss of the reduced theory (``loss_theory``) and of gradient
    descent (``loss_gd``), error ``rel_l2_error`` over the whole curve."""
    return Row(
        f"final loss, {init} init, scale b = {b:g}",
        _num(lambda: ds.loss_theory.sel(init_scale=b).isel(time=-1)),
        _num(lambda: ds.loss_gd.sel(init=init, init_scale=b).isel(time=-1)),
        _num(lambda: ds.rel_l2_error.sel(init=init, init_scale=b)),
        "rel. L2 over the curve",
    )


def _race_rows(ds: xr.Dataset) -> list[Row]:
    """A row per scale and init (:func:`_race_row`)."""
    return [
        _race_row(ds, str(init), float(b)) for b in ds.init_scale.values for init in ds.init.values
    ]


def _weff_error_row(ds: xr.Dataset, k: int) -> Row:
    """The twin's W_eff error at the end (``weff_rel_error``), gates from the snapshot at
    step k."""
    return Row(
        f"W_eff(x) at the end, gates from the snapshot at step k = {k}",
        "frozen-gate GDLN",
        "ReLU net",
        _num(lambda: ds.weff_rel_error.sel(k=k).isel(time=-1)),
        "mean rel. Frobenius error",
    )


def _weff_theory_rows(ds: xr.Dataset) -> list[Row]:
    """At the end: the twin's W_eff error with gates from the first and the last snapshot
    (:func:`_weff_error_row`); inter/intra ratio (``ratio_inter_intra_predicted`` against
    ``ratio_inter_intra_measured``) and held-out accuracy (``accuracy_predicted`` against
    ``accuracy_measured``) with gates from the first k."""
    ks = [int(k) for k in ds.k.values] if "k" in ds.coords else []
    if not ks:
        return []
    first = ks[0]
    ratio_theory = _num(lambda: ds.ratio_inter_intra_predicted.sel(k=first).isel(time=-1))
    ratio_measured = _num(lambda: ds.ratio_inter_intra_measured.isel(time=-1))
    accuracy_theory = _num(lambda: ds.accuracy_predicted.sel(k=first).isel(time=-1))
    accuracy_measured = _num(lambda: ds.accuracy_measured.isel(time=-1))
    gap = _diff(ratio_theory, ratio_measured)
    return [_weff_error_row(ds, k) for k in dict.fromkeys((first, ks[-1]))] + [
        Row(
            f"inter/intra-class ratio of W_eff at the end, gates from step k = {first}",
            ratio_theory,
            ratio_measured,
            _ratio(None if gap is None else abs(gap), ratio_measured),
            "|theory - experiment| / experiment",
        ),
        Row(
            f"held-out accuracy at the end, gates from step k = {first}",
            accuracy_theory,
            accuracy_measured,
            _diff(accuracy_theory, accuracy_measured),
            "theory - experiment",
        ),
    ]


def _one_hidden_1d_row(cell: xr.Dataset, target: str) -> Row:
    """One target at the largest width, medians over seeds: sup error of the constructed
    adaptive interpolant with as many units (``sup_error_constructed``) against the trained
    net's (``sup_error_trained``)."""
    formula = str(cell.target_formula.values) if "target_formula" in cell.coords else target
    constructed = _num(lambda: cell.sup_error_constructed.sel(rule="adaptive").median())
    trained = _num(lambda: cell.sup_error_trained.median())
    return Row(
        f"sup |f - g|, target {formula}, width {int(cell.width)} "
        "(theory: the constructed adaptive interpolant)",
        constructed,
        trained,
        _diff(trained, constructed),
        "trained - constructed",
    )


def _one_hidden_1d_rows(ds: xr.Dataset) -> list[Row]:
    """A row per target at the largest width (:func:`_one_hidden_1d_row`)."""
    big = ds.isel(width=-1)
    return [_one_hidden_1d_row(big.sel(target=t), str(t)) for t in ds.target.values]


def _weff_mnist_rows(ds: xr.Dataset) -> list[Row]:
    """The inter/intra-class distance ratio of W_eff (``ratio_inter_intra``) at init and at
    the end: Ye 2025 says it rises as classes separate."""
    published = PUBLISHED["weff_mnist"]
    return [
        Row(
            "inter/intra-class distance ratio of W_eff, init",
            "",
            _num(lambda: ds.ratio_inter_intra.isel(time=0)),
            "",
            published=published["ratio init"],
        ),
        Row(
            "inter/intra-class distance ratio of W_eff, end",
            "rises (classes separate)",
            _num(lambda: ds.ratio_inter_intra.isel(time=-1)),
            "",
            published=published["ratio end"],
        ),
    ]


#: the table of each study, built from its Dataset
TABLES: dict[str, Callable[[xr.Dataset], list[Row]]] = {
    "weff_mnist": _weff_mnist_rows,
    "weff_theory": _weff_theory_rows,
    "contexts": _contexts_rows,
    "race": _race_rows,
    "one_hidden_1d": _one_hidden_1d_rows,
    "alignment": _alignment_rows,
    "alignment_mnist": _alignment_mnist_rows,
}

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; background: #fff; }
header { border-bottom: 2px solid #345; margin-bottom: 1em; }
h1 { margin: 0.2em 0; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h2 .paper { font-weight: normal; font-size: 0.8em; color: #555; }
.result { border-left: 4px solid #7a9cc6; padding-left: 1em; margin: 1em 0 2em; }
.result.unreadable { border-left-color: #c33; }
.error { color: #a00; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; }
.kind { color: #666; font-size: 0.85em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
dt { font-weight: bold; } dd { margin: 0 0 0.4em 1em; word-break: break-all; }
"""

# nothing may be loaded from elsewhere: images only as data URIs, styles only inline
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _format(value: Cell) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:.4g}" if math.isfinite(value) else "n/a"


def _units(ds: xr.Dataset, key: str) -> str:
    """The units of the variable (or coordinate) a headline is named after: the variable of
    that exact name, else the longest one whose name and "_" begin the headline; else "1"."""
    names = [str(n) for n in (*ds.data_vars, *ds.coords)]
    matches = [n for n in names if key == n or key.startswith(n + "_")]
    if not matches:
        return "1"
    return str(ds[max(matches, key=len)].attrs.get("units", "1"))


def _headlines_html(ds: xr.Dataset, summary: dict[str, float | str]) -> str:
    rows = "".join(
        f'<tr><td>{_e(key)}</td><td class="num">'
        f"{_e(_format(value if isinstance(value, str) else float(value)))}</td>"
        f"<td>{_e(_units(ds, key))}</td></tr>"
        for key, value in summary.items()
    )
    return (
        '<h4>Headline numbers</h4><table class="headlines">'
        f"<tr><th>headline</th><th>value</th><th>units</th></tr>{rows}</table>"
    )


def _table_html(rows: list[Row]) -> str:
    def cell(value: Cell) -> str:
        kind = "text" if isinstance(value, str) else "num"
        return f'<td class="{kind}">{_e(_format(value))}</td>'

    body = "".join(
        f"<tr><td>{_e(r.quantity)}</td>{cell(r.theory)}{cell(r.experiment)}"
        f'<td class="num">{_e(_format(r.error))}'
        + (f' <span class="kind">({_e(r.error_kind)})</span>' if r.error_kind else "")
        + f"</td><td>{_e(r.published)}</td></tr>"
        for r in rows
    )
    return (
        "<h4>Theory against experiment</h4>"
        '<table class="comparison"><caption class="kind">theory and experiment: the value '
        "(at the end of training where it is a curve); error: as labelled</caption>"
        "<tr><th>quantity</th><th>theory</th><th>experiment</th><th>error</th>"
        f"<th>published</th></tr>{body}</table>"
    )


def _figures_html(path: Path) -> str:
    figures = []
    for png in sorted(path.parent.glob(f"{path.stem}_*.png")):
        name = png.stem[len(path.stem) + 1 :]
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(name)}">'
            f"<figcaption>{_e(name)}</figcaption></figure>"
        )
    if not figures:
        return "<h4>Figures</h4><p>No figures beside this file.</p>"
    return "<h4>Figures</h4>" + "".join(figures)


def _pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def _provenance_html(attrs: dict[str, Any]) -> str:
    try:
        found = json.loads(str(attrs.get("versions", "")))
        versions = ", ".join(f"{k} {v}" for k, v in found.items())
    except (ValueError, AttributeError):
        versions = str(attrs.get("versions", ""))
    return (
        '<h4>Provenance</h4><dl class="provenance">'
        f"<dt>commit</dt><dd>{_e(attrs.get('git_commit', ''))}</dd>"
        f"<dt>created</dt><dd>{_e(attrs.get('created', ''))}</dd>"
        f"<dt>command</dt><dd><code>{_e(attrs.get('command', ''))}</code></dd>"
        f"<dt>config</dt><dd><pre>{_e(_pretty_json(str(attrs.get('config', ''))))}</pre></dd>"
        f"<dt>versions</dt><dd>{_e(versions)}</dd></dl>"
    )


def _numbers_html(ds: xr.Dataset, study: str) -> str:
    """Headlines and table of one result; a Dataset these cannot be read from (a file of an
    older layout, values that fail to load) gets a line saying so instead."""
    if study not in registry.available():
        return f"<p>{_e(study)} is not a study of this checkout: no numbers are shown.</p>"
    parts = []
    try:
        module = registry.load(study)
        if hasattr(module, "summary"):
            parts.append(_headlines_html(ds, module.summary(ds)))
        if study in TABLES:
            parts.append(_table_html(TABLES[study](ds)))
    except Exception as err:  # one odd file must not take the page down; its reason is shown
        parts.append(
            f'<p class="error">The numbers of this result cannot be read: '
            f"{_e(type(err).__name__)}: {_e(err)}</p>"
        )
    return "".join(parts)


def _result_html(path: Path, results_dir: Path, study: str) -> str:
    href = quote(path.relative_to(results_dir).as_posix())
    title = f'<h3><a href="{_e(href)}">{_e(path.name)}</a></h3>'
    anchor = f"result-{study}-{path.stem}"
    try:
        ds = io.open_result(path)
    except io.ResultFileError as err:
        return (
            f'<article class="result unreadable" id="{_e(anchor)}">{title}'
            f'<p class="error">This file cannot be read as a result: {_e(err)}</p></article>'
        )
    with ds:
        numbers = _numbers_html(ds, str(ds.attrs.get("study", study)))
        provenance = _provenance_html(dict(ds.attrs))
    return (
        f'<article class="result" id="{_e(anchor)}">{title}{numbers}'
        f"{_figures_html(path)}{provenance}</article>"
    )


def _study_names(results_dir: Path) -> list[str]:
    """The folders of ``results_dir`` holding ``*.nc`` files: known studies in the registry's
    order, then any others by name."""
    found = {p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.nc"))}
    known = [name for name in registry.STUDIES if name in found]
    return known + sorted(found - set(known))


def write_report(results_dir: Path, all_results: bool = False) -> Path:
    """Write ``results_dir/report.html`` (atomically) and return its path.

    One section per study folder ``results_dir/<study>/`` with ``.nc`` files, holding its
    newest result, or with ``all_results`` every result newest first (newest by the UTC stamp
    of the file name). Raises FileNotFoundError / NotADirectoryError for a missing folder.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise FileNotFoundError(f"no results folder at {results_dir}")
    if not results_dir.is_dir():
        raise NotADirectoryError(f"{results_dir} is a file, not a results folder")
    written = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    sections, nav = [], []
    for study in _study_names(results_dir):
        paths = sorted((results_dir / study).glob("*.nc"), reverse=True)
        paths = paths if all_results else paths[:1]
        paper = registry.PAPERS.get(study, ("", ""))[0]
        shown = f' <span class="paper">{_e(paper)}</span>' if paper else ""
        nav.append(f'<li><a href="#study-{_e(study)}">{_e(study)}</a>{shown}</li>')
        results = "".join(_result_html(p, results_dir, study) for p in paths)
        sections.append(
            f'<section class="study" id="study-{_e(study)}"><h2>{_e(study)}{shown}</h2>'
            f"{results}</section>"
        )
    which = "every result, newest first" if all_results else "the newest result of each study"
    listing = f"<ul>{''.join(nav)}</ul>" if nav else "<p>No results found in this folder.</p>"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>relu-gdln results: {_e(results_dir.resolve().name)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>relu-gdln results</h1><p>Folder <code>{_e(results_dir.resolve().name)}"
        f"</code>: {_e(which)}. Page written {_e(written)}.</p>"
        f"<nav>{listing}</nav></header>{''.join(sections)}</body></html>\n"
    )
    target = results_dir / "report.html"
    partial = io.partial_path(target)
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target

"""The one command-line entry point, ``relu-gdln``::

    relu-gdln list
    relu-gdln run STUDY|all [--preset quick|paper] [--set FIELD=VALUE ...] [--out DIR]
                  [--seed N] [--device cpu|cuda] [--mnist-dir DIR]
    relu-gdln report [RESULTS_DIR] [--all]
    relu-gdln show FILE
    relu-gdln plot FILE [--out DIR]

Errors the toolkit expects (:func:`expected_errors`) end the command with one line on stderr
and exit code 2; ``run all`` ends by writing the report page (``studies.report``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from studies import io, registry
from studies.config import ConfigError, apply_overrides

SHORTCUTS = {"seed": "seed", "device": "device", "mnist_dir": "mnist_dir", "scheduler": "scheduler"}
# flags that studies without the field ignore (they only matter where data or sweeps are used)
OPTIONAL_SHORTCUTS = {"mnist_dir", "scheduler"}
# Dataset attrs that flag cells of a sweep that failed or whose result means nothing
WARNING_ATTRS = ("failed_cells", "cells_not_learned")


def _fields(config: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


def build_config(module: Any, args: argparse.Namespace, strict: bool = True) -> Any:
    """The preset's Config with ``--set`` and the shortcut flags applied.

    With ``strict=False`` (``run all``), overrides of fields a study does not have are skipped.
    """
    if args.preset not in module.PRESETS:
        raise ConfigError(
            f"study {module.NAME} has no preset {args.preset!r}; presets: {list(module.PRESETS)}"
        )
    config = module.PRESETS[args.preset]
    overrides = list(args.set or [])
    for flag, field in SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if field in _fields(config):
            overrides.append(f"{field}={value}")
        elif strict and flag not in OPTIONAL_SHORTCUTS:
            raise ConfigError(f"study {module.NAME} has no field {field!r} (--{flag})")
    if not strict:
        names = _fields(config)
        overrides = [o for o in overrides if o.split("=", 1)[0].strip() in names]
    return apply_overrides(config, overrides)


def run_study(module: Any, config: Any, out: Path) -> tuple[Path, list[Path]]:
    """Run one study, write its Dataset and figures under ``out/<study>/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = module.run(config)
    for attr in WARNING_ATTRS:  # cells that failed or mean nothing: said, not only stored
        if ds.attrs.get(attr):
            print(f"relu-gdln: warning: [{module.NAME}] {attr}: {ds.attrs[attr]}", file=sys.stderr)
    ds.attrs["command"] = "relu-gdln " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    io.check_dataset(ds)
    folder = out / module.NAME
    stamp = io.utc_timestamp()
    streamed = [name for name, var in ds.data_vars.items() if var.chunks]
    try:
        path = io.save_dataset(ds, folder / f"{stamp}.nc")
    finally:
        ds = ds.drop_vars(streamed)  # the figures never need the streamed per-sample arrays
        io.cleanup_scratch()
    figures = []
    for name, fig in module.plot(ds).items():
        figures.append(io.save_figure(fig, folder / f"{stamp}_{name}.png"))
        plt.close(fig)
    return path, figures


def cmd_list(_: argparse.Namespace) -> int:
    for name in registry.available():
        module = registry.load(name)
        paper, headline = registry.PAPERS.get(name, ("", ""))
        print(f"{name:16s} {paper}")
        print(f"{'':16s}   measures: {headline}; presets: {', '.join(module.PRESETS)}")
    return 0


def writable_folder(path: Path, flag: str) -> Path:
    """``path`` as a folder that exists and can be written into, or ConfigError naming the
    flag: checked before a run starts, so a result is never lost after the work is done."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check_"):
            pass
    except OSError as err:
        raise ConfigError(f"{flag} {path} is not a writable folder ({err.strerror})") from None
    return path


def cmd_run(args: argparse.Namespace) -> int:
    names = registry.available() if args.study == "all" else [args.study]
    modules = [registry.load(n) for n in names]
    configs = [build_config(m, args, strict=args.study != "all") for m in modules]
    out = writable_folder(Path(args.out), "--out")
    if args.study == "all" and args.set:
        for item in args.set:
            field = item.split("=", 1)[0].strip()
            if not any(field in _fields(c) for c in configs):
                raise ConfigError(f"--set {field}: no study has a field {field!r}")
    for module, config in zip(modules, configs, strict=True):
        print(f"[{module.NAME}] preset {args.preset}", flush=True)
        start = time.perf_counter()
        path, figures = run_study(module, config, out)
        print(f"[{module.NAME}] wrote {path}")
        for fig in figures:
            print(f"[{module.NAME}] wrote {fig}")
        print(f"[{module.NAME}] done in {time.perf_counter() - start:.1f} s", flush=True)
    if args.study == "all":
        from studies.report import write_report

        print(f"wrote {write_report(out)}")
    return 0


def coord_range(coord: Any) -> str:
    """Length and range of a coordinate: "n=5, 0 .. 40" for numbers, the first and last labels
    for text ("n=3, 'aligned' .. 'orthogonal'")."""
    values = np.asarray(coord.values).ravel()
    if values.size == 0:
        return "n=0"
    if np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.bool_):
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return f"n={values.size}, all NaN"
        return f"n={values.size}, {finite.min():.4g} .. {finite.max():.4g}"
    first, last = str(values[0]), str(values[-1])
    return f"n={values.size}, {first!r}" + (f" .. {last!r}" if values.size > 1 else "")


def describe(ds: Any) -> str:
    """A text summary of a result Dataset: dims, variables with units, headlines, provenance."""
    lines = [f"study: {ds.attrs.get('study', '?')}"]
    lines.append("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    lines.append("coordinates:")
    for name, coord in ds.coords.items():
        lines.append(
            f"  {name} {coord.dims} [{coord.attrs.get('units', '?')}] {coord_range(coord)}"
        )
    lines.append("variables:")
    for name, var in ds.data_vars.items():
        lines.append(
            f"  {name} {var.dims} [{var.attrs.get('units', '?')}] {var.attrs.get('long_name', '')}"
        )
    study = ds.attrs.get("study")
    if study in registry.available():
        module = registry.load(study)
        if hasattr(module, "summary"):
            lines.append("headline numbers:")
            for key, value in module.summary(ds).items():
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                lines.append(f"  {key}: {shown}")
    lines.append("provenance:")
    for key in io.REQUIRED_ATTRS:
        value = str(ds.attrs.get(key, ""))
        lines.append(f"  {key}: {value if len(value) < 300 else value[:300] + '...'}")
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from studies.report import write_report

    print(f"wrote {write_report(Path(args.dir), all_results=args.all)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with io.open_result(args.file) as ds:
        print(describe(ds))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(args.file)
    with io.open_result(path) as ds:
        study = ds.attrs.get("study")
        if study not in registry.available():
            raise ConfigError(f"{path} does not name a known study (attr study={study!r})")
        folder = writable_folder(Path(args.out) if args.out else path.parent, "--out")
        for name, fig in registry.load(study).plot(ds).items():
            print(f"wrote {io.save_figure(fig, folder / f'{path.stem}_{name}.png')}")
            plt.close(fig)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relu-gdln", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="studies and their presets").set_defaults(func=cmd_list)
    r = sub.add_parser("run", help="run a study (or all) and write its Dataset and figures")
    r.add_argument("study", help="study name, or 'all'")
    r.add_argument("--preset", default="quick", help="quick (default) or paper")
    r.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a Config field")
    r.add_argument("--out", default="results", help="output folder (default: results)")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--device", choices=["cpu", "cuda"], default=None)
    r.add_argument("--mnist-dir", default=None, help="folder of full-MNIST IDX files (gz or not)")
    r.add_argument(
        "--scheduler",
        default=None,
        help="address of a dask scheduler for sweeps (default: a local cluster)",
    )
    r.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="one HTML page of the results in a folder")
    rp.add_argument("dir", nargs="?", default="results", help="results folder (default: results)")
    rp.add_argument("--all", action="store_true", help="every result, not only the newest")
    rp.set_defaults(func=cmd_report)
    s = sub.add_parser("show", help="summary of a result file")
    s.add_argument("file")
    s.set_defaults(func=cmd_show)
    pl = sub.add_parser("plot", help="redraw the figures of a result file")
    pl.add_argument("file")
    pl.add_argument("--out", default=None, help="folder for the PNGs (default: beside the file)")
    pl.set_defaults(func=cmd_plot)
    return p


def expected_errors() -> tuple[type[BaseException], ...]:
    """The errors the toolkit expects, each a problem with the user's input or run (bad
    settings, files, folders, data, models, a run that diverged): shown as one line, exit code
    2. Anything else is a bug and keeps its traceback."""
    from gdln.network import GateError, GraphError, ShapeError
    from gdln.reduction import NotAlignedError, NotDiagonalisableError
    from relu_lens.data import DataError
    from relu_lens.effective import InputError, UnsupportedModuleError
    from relu_lens.train import TrainingDiverged

    return (
        ConfigError,
        registry.UnknownStudyError,
        io.ResultFileError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        DataError,  # MNISTFolderError too
        InputError,
        UnsupportedModuleError,
        TrainingDiverged,
        FloatingPointError,  # gdln's DivergenceError and the two-layer nets' divergence
        GraphError,
        GateError,
        ShapeError,
        NotAlignedError,
        NotDiagonalisableError,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "study", None) not in (None, "all") and args.study not in registry.available():
        print(
            f"relu-gdln: unknown study {args.study!r}; known: {', '.join(registry.available())}",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except expected_errors() as err:
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"relu-gdln: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

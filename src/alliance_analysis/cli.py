"""The ``alliance`` command.

::

    alliance run PARAMS [--out DIR] [--processed DIR]   run the pipeline, write reports/<name>/
    alliance validate PARAMS                             check a parameters file, run nothing
    alliance verify RUN_DIR [--data FILE]                rerun a run, compare every output
    alliance reproduce [--out DIR]                       reproduce published reference results
    alliance power PARAMS [--out DIR]                    Monte Carlo power of study designs
    alliance simulate --out DIR [--seed N] [--therapists T ...]
                                                         write a simulated dataset + truth.json

Errors a user can cause (bad parameters, bad data) are printed as one message without a
traceback and exit with status 2; a failed notebook exits with status 1; Ctrl-C prints one line
and exits with status 130. A failed or interrupted ``run`` leaves the previous run as it was.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, AllianceRunError

_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _start_kernels_early(argv: Sequence[str]) -> None:
    """Start the kernels' fork server now: it imports the stack (and the first stage's
    modules) while this process builds its parser, imports the pipeline and sets up the run;
    the run's kernel pool takes it (:func:`~alliance_analysis.kernels.forking.start_early`).
    It loads numpy with the BLAS thread counts of the run's kernels (``--jobs``), so that no
    kernel forked from it has to change them."""
    from alliance_analysis.kernels.forking import start_early
    from alliance_analysis.kernels.pool import blas_environment, notebook_modules
    from alliance_analysis.stages import NOTEBOOKS, notebooks_dir, side_by_side

    try:
        folder = notebooks_dir()
    except AllianceRunError:  # the run says so
        return
    start_early(folder, notebook_modules(folder / f"{NOTEBOOKS[0]}.ipynb"),
                blas_environment(side_by_side(NOTEBOOKS, _jobs_given(argv))))


def _jobs_given(argv: Sequence[str]) -> int | None:
    """The ``--jobs`` of a command line before the command's parser is built (which imports
    the pipeline); None when absent or not a whole number (that parser then says so)."""
    early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    early.add_argument("--jobs", type=int, default=None)
    try:
        return early.parse_known_args(argv)[0].jobs
    except argparse.ArgumentError:
        return None


#: Set by :func:`console` when it turned garbage collection off for ``alliance run``'s imports;
#: :func:`_run` turns it on again once the pipeline is imported.
_collect_after_imports = False


def _run(args: argparse.Namespace) -> int:
    from alliance_analysis import pipeline

    global _collect_after_imports
    if _collect_after_imports:  # console() turned collection off for the imports
        _collect_after_imports = False
        gc.freeze()
        gc.enable()

    def progress(name: str, index: int, total: int, seconds: float | None) -> None:
        if seconds is None:
            _console.print(escape(f"[{index}/{total}] {name} ..."))
        else:
            _console.print(escape(f"[{index}/{total}] {name} done in {seconds:.1f} s"))

    run_dir = pipeline.run(args.params, out=args.out, processed=args.processed,
                           on_progress=progress, jobs=args.jobs)
    _console.print(escape(f"Run complete: {run_dir / 'index.html'}"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Rerun, then print the differing items (every item with ``--all``) and a summary.

    Progress goes to stderr, the report to stdout, so ``alliance verify RUN > report.txt``
    keeps the report. No line is cut: a terminal gets a table that wraps long cells, and a
    file or pipe gets plain aligned columns of any width.
    """
    from alliance_analysis import pipeline
    from alliance_analysis.verify import NOT_RECORDED

    _console.print(escape(f"Rerunning {args.run_dir} from its manifest ..."))
    table = pipeline.verify(args.run_dir, data=args.data, rtol=args.rtol, atol=args.atol)
    status = table["status"].astype(str)
    differing = table[status.str.startswith("DIFFERS")]
    listed = table if args.all else differing
    out = Console(highlight=False, soft_wrap=True)
    if len(listed):
        title = (f"verify {args.run_dir} (rtol {args.rtol:g}, atol {args.atol:g}): "
                 + ("every item" if args.all else "differing items (--all lists every item)"))
        _print_rows(out, title, list(table.columns),
                    [[str(value) for value in row] for row in listed.itertuples(index=False)])
    skipped = status[status.str.startswith("skipped")].str.removeprefix("skipped (")
    out.print(escape(f"{table['where'].nunique()} files compared: "
                     f"{int(status.eq('match').sum())} items matched, {len(differing)} "
                     f"differing, {len(skipped)} skipped"))
    if len(skipped):
        out.print(escape("Skipped: " + "; ".join(
            f"{n} x {reason.removesuffix(')')}"
            for reason, n in skipped.value_counts().sort_index().items()) + "."))
    out.print(escape(f"Not compared: {' and '.join(NOT_RECORDED)}, which hold dates and are "
                     "not outputs the manifest records."))
    return 1 if len(differing) else 0


def _print_rows(out: Console, title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a table whole: wrapped cells on a terminal, plain aligned lines elsewhere."""
    if out.is_terminal:
        from rich.table import Table

        shown = Table(title=escape(title))
        for column in header:
            shown.add_column(column, overflow="fold")
        for row in rows:
            shown.add_row(*(escape(value) for value in row))
        out.print(shown)
        return
    lines = [[value.replace("\r", "\\r").replace("\n", "\\n") for value in row]
             for row in [header, *rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [title, *("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip()
                     for line in lines)]
    sys.stdout.write("\n".join(text) + "\n")


def _reproduce(args: argparse.Namespace) -> int:
    from alliance_analysis import pipeline

    def progress(name: str, index: int, total: int, seconds: float | None) -> None:
        if seconds is not None:
            _console.print(escape(f"[{index}/{total}] {name} done in {seconds:.1f} s"))

    overview = pipeline.reproduce(args.out, on_progress=progress)
    _console.print(escape(overview.to_string(index=False)))
    _console.print(escape(f"Every published value reproduced: {args.out}/index.html"))
    return 0


def _power(args: argparse.Namespace) -> int:
    return main_power(args.params, out=args.out, progress=not args.no_progress)


def main_power(params_file: str | Path, out: str | Path | None = None,
               progress: bool = True) -> int:
    """``alliance power PARAMS [--out DIR]``: run or resume a power study, write its report.

    Prints the summary and the smallest adequate designs. Ctrl-C stops the run, keeping every
    chunk already stored: rerun the same command to resume.

    Parameters
    ----------
    params_file
        The power parameters (YAML), e.g. ``params/power.yaml``.
    out
        Output folder, instead of the file's ``out`` (relative to the current folder).
    progress
        Show a progress bar on standard error.

    Returns
    -------
    int
        0 when the study is complete, 130 when interrupted.

    Raises
    ------
    AllianceParamsError
        For a bad parameters file (the command exits with status 2).
    AllianceRunError
        When the Dask scheduler cannot be reached (status 1).
    """
    # Imported here: Dask and the simulator are needed only by this command.
    from alliance_analysis.power.params import load_power_params
    from alliance_analysis.power.study import headline_table, run_power
    from alliance_analysis.report.power import write_report

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    params = load_power_params(params_file, out)
    try:
        result = run_power(params, progress=progress)
    except KeyboardInterrupt:
        console.print(escape(f"Interrupted. Finished chunks are stored under "
                             f"{params.output_dir() / 'replicates'}; run the same command "
                             "again to resume."))
        return 130
    folder = write_report(result)
    console.print(escape(headline_table(result).round(3).to_string(index=False)))
    console.print(escape(result.smallest.round(3).to_string(index=False)))
    console.print(escape(f"{result.computed} replicates computed, {result.reused} reused; "
                         f"report in {folder.path}"))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from alliance_analysis.params import load_params

    params = load_params(args.params)
    _console.print(escape(f"{args.params}: valid parameters for run '{params.name}' "
                          f"(data: {params.data.path})"))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from alliance_analysis.data import simulate

    overrides = {name: getattr(args, name) for name in simulate.SimulationDesign.model_fields
                 if getattr(args, name, None) is not None}
    try:
        design = simulate.SimulationDesign(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            (f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise AllianceParamsError(f"invalid simulation design: {problems}") from None
    written = simulate.write(simulate.simulate(design, seed=args.seed), args.out)
    for path in written.values():
        _console.print(escape(f"wrote {path}"))
    return 0


def _add_design_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per numeric field of the simulation design."""
    from alliance_analysis.data.simulate import SimulationDesign

    for name, info in SimulationDesign.model_fields.items():
        kind = info.annotation if info.annotation in (int, float) else None
        if kind is None:
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                            help=f"{info.description or name} (default {info.default})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``alliance`` command."""
    from alliance_analysis.params import DEFAULT_SEED
    from alliance_analysis.pipeline import ATOL, RTOL

    parser = argparse.ArgumentParser(
        prog="alliance", description="Therapeutic-alliance research workbench")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the analysis notebooks on a parameters file")
    run.add_argument("params", help="YAML parameters file, e.g. params/demo.yaml")
    run.add_argument("--out", default=None, help="run folder (default reports/<name>)")
    run.add_argument("--processed", default=None,
                     help="folder for the processed table (default data/processed/<name>)")
    run.add_argument("--jobs", type=int, default=None,
                     help="notebooks run at the same time after 01_clean (default: one per "
                          "CPU core; 1 = one after another); the outputs are the same")
    run.set_defaults(handler=_run)

    verify = commands.add_parser(
        "verify", help="rerun a run folder from its manifest and compare every output file")
    verify.add_argument("run_dir", help="a run folder, e.g. reports/demo")
    verify.add_argument("--data", default=None,
                        help="the data file, if not at the path in the manifest")
    verify.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance")
    verify.add_argument("--atol", type=float, default=ATOL, help="absolute tolerance")
    verify.add_argument("--all", action="store_true", help="list matched items too")
    verify.set_defaults(handler=_verify)

    reproduce = commands.add_parser(
        "reproduce", help="reproduce published reference results (notebooks/validation)")
    reproduce.add_argument("--out", default="reports/reproduce", help="output folder")
    reproduce.set_defaults(handler=_reproduce)

    power = commands.add_parser("power", help="Monte Carlo power of study designs (Dask)")
    power.add_argument("params", help="YAML power parameters, e.g. params/power.yaml")
    power.add_argument("--out", default=None, help="output folder (default: out in the file)")
    power.add_argument("--no-progress", action="store_true", help="no progress bar")
    power.set_defaults(handler=_power)

    validate = commands.add_parser("validate", help="check a parameters file")
    validate.add_argument("params", help="YAML parameters file")
    validate.set_defaults(handler=_validate)

    sim = commands.add_parser("simulate", help="write a simulated dataset with known truth")
    sim.add_argument("--out", required=True, help="folder for sessions.csv and truth.json")
    sim.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    _add_design_options(sim)
    sim.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alliance`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # ``alliance run``: the kernels' fork server starts before the parser is built (which
    # imports the parameters' models, about a second); a server no run took is stopped
    early = argv[:1] == ["run"] and not {"-h", "--help"} & set(argv)
    if early:
        _start_kernels_early(argv)
    try:
        return _main(build_parser().parse_args(argv))
    finally:
        if early:
            from alliance_analysis.kernels.forking import close_early

            close_early()


def console() -> None:
    """The ``alliance`` command (``[project.scripts]``): :func:`main`, then exit.

    After ``alliance run`` the process exits without finalising the interpreter: the run has
    written, closed and renamed every file and shut down its kernels, threads and pools, and
    an orderly exit only tears down the libraries it imported (pandas, nbconvert, jupyter),
    about half a second the user waits for the prompt. Everything else exits as usual.
    """
    global _collect_after_imports
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and gc.isenabled():
        # No collection runs while the run imports its modules (about a third of a second,
        # on the way to the first stage); _run turns it on again with those modules' objects
        # frozen, so that later collections do not scan them.
        gc.disable()
        _collect_after_imports = True
    status = main(argv)
    if argv[:1] == ["run"]:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _main(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except (AllianceParamsError, AllianceDataError) as exc:
        _console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    except AllianceRunError as exc:
        _console.print(f"[bold red]run failed:[/] {escape(str(exc))}")
        return 1
    except KeyboardInterrupt as exc:  # pipeline.RunInterrupted says where the partial run is
        _console.print(f"[bold red]interrupted:[/] {escape(str(exc) or 'stopped by Ctrl-C.')}")
        return 130


if __name__ == "__main__":
    sys.exit(main())

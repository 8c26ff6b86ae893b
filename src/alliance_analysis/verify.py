"""``alliance verify``: compare a run folder, file by file, with a rerun of it.

:func:`alliance_analysis.pipeline.verify` reads the run's manifest (:func:`read_manifest`),
checks the data file and writes the recorded parameters for the rerun
(:func:`rerun_parameters`), reruns the pipeline, and compares the two folders
(:func:`compare_runs`). Every output file the run recorded in ``manifest.json`` (its
``outputs``: tables in every format, figures, ``results.json``, ``outputs.json``,
``methods.md``, ``params.yaml``) is compared, each by what it holds:

- ``results.json``: each key's value, numbers within a tolerance;
- ``*.csv`` tables: each column, numbers within a tolerance, other cells exactly;
- figures (``.png``, ``.svg``): their SHA-256;
- ``params.yaml``: as YAML, except ``data.path`` and ``privacy.key_file``, which verify itself
  sets for the rerun (the data file may be elsewhere; the original key is reused);
- every other file (``.md``, ``.html``, ``.tex`` tables, ``outputs.json``, ``methods.md``):
  byte for byte, reporting the first differing line.

A file recorded but missing from the run folder, a file in the folder the manifest does not
record, and a file the rerun writes but the run did not (or the reverse) are differences.
Executed notebooks (``notebooks/*.ipynb`` and their ``.html``) hold run times and are not
compared (one ``skipped`` row each); ``manifest.json`` and ``index.html`` hold dates and are
not outputs the manifest records.

This module imports no pipeline: it compares folders, and :mod:`alliance_analysis.pipeline`
runs the rerun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alliance_analysis.data.io import file_sha256
from alliance_analysis.errors import AllianceDataError, AllianceRunError
from alliance_analysis.params import parse_params

if TYPE_CHECKING:
    import pandas as pd

#: Default tolerance: a number matches when |rerun - reported| <= ATOL + RTOL * |reported|.
RTOL, ATOL = 1e-6, 1e-9

#: Table columns that hold pseudonyms: they depend on the secret key, not on the analysis.
PSEUDONYM_COLUMNS = ("client_id", "therapist_id")

#: The columns of :func:`compare_runs`'s table.
COLUMNS = ["where", "item", "reported", "rerun", "status"]

#: Files of a run folder that the manifest does not record (they hold dates and times).
NOT_RECORDED = ("manifest.json", "index.html")

#: Folders of a run that are not outputs: the MathJax copy the notebooks' HTML reads (a copy
#: of the installed jupyter-server-mathjax, whose version the manifest records).
NOT_RECORDED_FOLDERS = ("notebooks/mathjax/",)

#: Compared by SHA-256 (figures); a PNG whose bytes differ matches when its pixels, size and
#: resolution are the same (:func:`_same_image`).
HASHED_SUFFIXES = (".png", ".svg")

#: Recorded outputs that are not compared: executed notebooks hold run times.
NOT_COMPARED = "notebooks/"
SKIPPED_NOTEBOOK = "skipped (executed notebook, holds run times)"
SKIPPED_PSEUDONYMS = "skipped (pseudonyms need the original key)"

#: Parameters that verify sets for the rerun, so ``params.yaml`` differs there by design.
RERUN_PARAMETERS = (("data", "path"), ("privacy", "key_file"))

#: Characters of a differing line shown before its first differing character.
_EXCERPT_BEFORE, _EXCERPT_LENGTH = 20, 60


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a complete run folder, checked before anything is rerun.

    Parameters
    ----------
    run_dir
        A run folder written by :func:`alliance_analysis.pipeline.run`.

    Returns
    -------
    dict
        The parsed ``manifest.json``.

    Raises
    ------
    AllianceDataError
        ``manifest.json`` is not readable JSON (truncated or edited).
    AllianceRunError
        The folder holds no manifest, the run is not complete, or its manifest records no
        output files (a run by an older version).
    """
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise AllianceRunError(f"{run_dir}: no manifest.json, so this is not a run folder")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AllianceDataError(
            f"{manifest_path}: not a readable manifest ({exc}); it may be truncated or "
            "edited. Verify a complete run folder, or rerun the run") from None
    if manifest.get("status") != "complete":
        raise AllianceRunError(f"{run_dir}: the run is marked {manifest.get('status')!r}, "
                               "not complete; there is nothing finished to verify")
    if not isinstance(manifest.get("outputs"), dict):
        raise AllianceRunError(f"{manifest_path}: records no output files (\"outputs\"); it "
                               "was written by an older version. Rerun the run")
    return manifest


def rerun_parameters(manifest: dict[str, Any], data: str | Path | None,
                     folder: Path) -> tuple[Path, bool]:
    """Check the data file and write the run's recorded parameters for a rerun in ``folder``.

    Parameters
    ----------
    manifest
        The run's manifest (:func:`read_manifest`).
    data
        The data file, if not at the path recorded in the manifest.
    folder
        Where the rerun happens: ``params.yaml`` is written here, and a new pseudonym key
        goes to ``folder/processed`` when the original key is not at its recorded place.

    Returns
    -------
    tuple of (Path, bool)
        The parameters file, and whether the original pseudonym key is reused.

    Raises
    ------
    AllianceDataError
        The data file is missing or its SHA-256 differs from the manifest's.
    AllianceParamsError
        The recorded parameters are no longer valid.
    """
    (recorded_path, recorded_hash), = manifest["inputs"].items()
    data_path = Path(data or recorded_path).resolve()
    if not data_path.is_file():
        raise AllianceDataError(f"{data_path}: data file not found. Give it with --data")
    actual = file_sha256(data_path)
    if actual != recorded_hash:
        raise AllianceDataError(
            f"{data_path}: SHA-256 {actual} differs from the manifest's {recorded_hash}: this "
            "is not the file the run used, so its numbers cannot be verified against it")
    raw = dict(manifest["parameters"])
    raw["data"] = {**raw["data"], "path": str(data_path)}
    raw["output"] = None
    privacy = dict(raw.get("privacy") or {})
    key = Path(privacy.get("key_file") or Path(
        (manifest.get("processed") or {}).get("folder", "")) / "pseudonym.key")
    same_key = key.is_file()
    privacy["key_file"] = str(key) if same_key else None  # else a new key in `processed`
    raw["privacy"] = privacy
    parse_params(raw, base_dir=folder)  # the recorded parameters must still be valid
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=True), encoding="utf-8")
    return params_file, same_key


def compare_runs(run_dir: Path, rerun: Path, manifest: dict[str, Any], rtol: float = RTOL,
                 atol: float = ATOL, same_key: bool = True) -> pd.DataFrame:
    """Compare every output file a run recorded with the same file of its rerun.

    Parameters
    ----------
    run_dir
        The run folder being verified.
    rerun
        The folder of its rerun (with its own ``manifest.json``).
    manifest
        ``run_dir``'s manifest (:func:`read_manifest`): its ``outputs`` name the files.
    rtol, atol
        Tolerance: a number matches when ``|rerun - reported| <= atol + rtol * |reported|``.
    same_key
        Whether the rerun used the original pseudonym key; if not, pseudonym columns of the
        CSV tables are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per compared item, in file-name order: ``where`` (the file, relative to the
        run folder), ``item`` (a ``results.json`` key, a CSV column, ``(file)`` for a file
        missing on one side, ``(SHA-256)`` for a figure, ``(bytes)`` for another file,
        ``(YAML ...)`` for ``params.yaml``), ``reported`` and ``rerun`` (the first
        differing value, line or hash; empty when they match) and ``status`` (``match``,
        ``DIFFERS ...`` or ``skipped (...)``).

    Notes
    -----
    A differing text line is shown as an excerpt of at most 60 characters around its first
    differing character; the status gives the line number.
    """
    import pandas as pd

    recorded = manifest["outputs"]
    written = json.loads((rerun / "manifest.json").read_text(encoding="utf-8"))["outputs"]
    present = {path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*")
               if path.is_file() and path.name not in NOT_RECORDED
               and not path.name.startswith(".")  # hidden files, e.g. .DS_Store
               and not path.relative_to(run_dir).as_posix().startswith(NOT_RECORDED_FOLDERS)}
    rows: list[dict] = []
    for name in sorted(set(recorded) | set(written) | present):
        if name.startswith(NOT_COMPARED):
            rows.append(_row(name, "(file)", "", "", SKIPPED_NOTEBOOK))
            continue
        missing = _missing(name in recorded, name in present, name in written)
        if missing:
            rows.append(_row(name, "(file)", *missing))
        else:
            rows += _compare_file(name, run_dir / name, rerun / name, rtol, atol, same_key)
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(where: str, item: str, reported: Any, rerun: Any, status: str) -> dict[str, Any]:
    return dict(zip(COLUMNS, (where, item, reported, rerun, status)))


def _missing(recorded: bool, present: bool, written: bool) -> tuple[str, str, str] | None:
    """``(reported, rerun, status)`` of a file absent on one side, None when on both."""
    if recorded and present and written:
        return None
    problems = []
    if recorded and not present:
        problems.append("recorded in the manifest but missing from the run folder")
    if present and not recorded:
        problems.append("in the run folder but not recorded in its manifest")
    if not recorded and not present:
        problems.append("new in the rerun: the run did not write it")
    if not written:
        problems.append("not written by the rerun")
    reported = ("present" if present else "missing") + ("" if recorded else ", not recorded")
    return reported, "written" if written else "not written", f"DIFFERS: {'; '.join(problems)}"


def _compare_file(name: str, original: Path, rerun: Path, rtol: float, atol: float,
                  same_key: bool) -> list[dict]:
    """The rows of one file present in both folders, compared by its kind."""
    if name == "results.json":
        return _compare_results(original, rerun, rtol, atol)
    if original.suffix == ".csv":
        return _compare_table(name, original, rerun, rtol, atol, same_key)
    if name == "params.yaml":
        return [_compare_parameters(original, rerun)]
    if original.suffix in HASHED_SUFFIXES:
        a, b = file_sha256(original), file_sha256(rerun)
        if a != b and original.suffix == ".png" and _same_image(original, rerun):
            # zlib builds differ between machines (the PNG encoder uses Python's own): the
            # same pixels, size and resolution are the same figure
            return [_row(name, "(pixels: the same, encoded differently)", "", "", "match")]
        return [_row(name, "(SHA-256)", "" if a == b else a, "" if a == b else b,
                     "match" if a == b else "DIFFERS (SHA-256)")]
    return [_compare_bytes(name, original.read_bytes(), rerun.read_bytes())]


def _same_image(original: Path, rerun: Path) -> bool:
    """Whether two PNG files hold the same pixels, mode, size and resolution (False when
    either cannot be read as an image)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(original) as a, Image.open(rerun) as b:
            return bool((a.mode, a.size, a.info.get("dpi")) == (b.mode, b.size, b.info.get("dpi"))
                        and np.array_equal(np.asarray(a), np.asarray(b)))
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def _close(reported: Any, rerun: Any, rtol: float, atol: float) -> bool:
    if isinstance(reported, bool) or isinstance(rerun, bool):
        return reported == rerun
    if isinstance(reported, (int, float)) and isinstance(rerun, (int, float)):
        return abs(rerun - reported) <= atol + rtol * abs(reported)
    return reported == rerun


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _compare_results(original: Path, rerun: Path, rtol: float, atol: float) -> list[dict]:
    a, b = _read_json(original), _read_json(rerun)
    if a is None or b is None:
        return [_row("results.json", "(file)", "readable" if a is not None else "unreadable",
                     "readable" if b is not None else "unreadable",
                     "DIFFERS: not a readable JSON object")]
    rows = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, "(absent)"), b.get(key, "(absent)")
        rows.append(_row("results.json", key, x, y,
                         "match" if _close(x, y, rtol, atol) else "DIFFERS"))
    return rows


def _compare_table(name: str, original: Path, rerun: Path, rtol: float, atol: float,
                   same_key: bool) -> list[dict]:
    import numpy as np
    import pandas as pd

    try:
        a, b = pd.read_csv(original), pd.read_csv(rerun)
    except ValueError as exc:  # empty, malformed or not UTF-8
        return [_row(name, "(file)", "", "", f"DIFFERS: not a readable CSV table ({exc})")]
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        return [_row(name, "(shape)", f"{a.shape} {list(a.columns)}",
                     f"{b.shape} {list(b.columns)}", "DIFFERS")]
    rows = []
    for column in a.columns:
        if column in PSEUDONYM_COLUMNS and not same_key:
            rows.append(_row(name, column, "", "", SKIPPED_PSEUDONYMS))
            continue
        x, y = a[column], b[column]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            bad = ~np.isclose(y.to_numpy(float), x.to_numpy(float), rtol=rtol, atol=atol,
                              equal_nan=True)
        else:
            bad = ~((x.astype(str) == y.astype(str)) | (x.isna() & y.isna())).to_numpy()
        bad_rows = np.flatnonzero(bad)
        rows.append(_row(name, column, "" if not len(bad_rows) else x.iloc[bad_rows[0]],
                         "" if not len(bad_rows) else y.iloc[bad_rows[0]],
                         "match" if not len(bad_rows) else
                         f"DIFFERS in {len(bad_rows)} row(s), first row {bad_rows[0] + 1}"))
    return rows


def _compare_parameters(original: Path, rerun: Path) -> dict[str, Any]:
    """``params.yaml`` as YAML, leaving aside the entries verify sets for the rerun."""
    item = "(YAML, except " + ", ".join(".".join(key) for key in RERUN_PARAMETERS) + ")"
    try:
        a, b = (yaml.safe_load(path.read_text(encoding="utf-8")) for path in (original, rerun))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return _row("params.yaml", item, "", "", f"DIFFERS: not readable YAML ({exc})")
    if not isinstance(a, dict) or not isinstance(b, dict):
        return _row("params.yaml", item, "", "", "DIFFERS: not a YAML mapping")
    for section, key in RERUN_PARAMETERS:
        for side in (a, b):
            if isinstance(side.get(section), dict):
                side[section] = {**side[section], key: None}
    keys = sorted({*a, *b}, key=str)
    differing = [key for key in keys if a.get(key) != b.get(key)]
    if not differing:
        return _row("params.yaml", item, "", "", "match")
    first = differing[0]
    return _row("params.yaml", item, f"{first}: {a.get(first)!r}", f"{first}: {b.get(first)!r}",
                f"DIFFERS in {len(differing)} entry(ies): {', '.join(map(str, differing))}")


def _compare_bytes(name: str, original: bytes, rerun: bytes) -> dict[str, Any]:
    """One file byte for byte; a difference names its first differing line."""
    if original == rerun:
        return _row(name, "(bytes)", "", "", "match")
    a = original.decode("utf-8", errors="replace").splitlines(keepends=True)
    b = rerun.decode("utf-8", errors="replace").splitlines(keepends=True)
    if a == b:
        return _row(name, "(bytes)", "", "", "DIFFERS in bytes that are not UTF-8 text")
    line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    x, y = (lines[line] if line < len(lines) else "" for lines in (a, b))
    column = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    status = f"DIFFERS at line {line + 1}"
    if line >= min(len(a), len(b)):
        status += f": {'the rerun' if len(b) < len(a) else 'the run'}'s file ends before it"
    if len(a) != len(b):
        status += f" ({len(a)} lines, rerun {len(b)})"
    return _row(name, "(bytes)", _excerpt(x, column), _excerpt(y, column), status)


def _excerpt(line: str, column: int) -> str:
    """Up to 60 characters of ``line`` around ``column``, control characters escaped (so a
    line ending shows as ``\\n``)."""
    start = max(0, column - _EXCERPT_BEFORE)
    text = "".join(c if c.isprintable() else repr(c)[1:-1]
                   for c in line[start:start + _EXCERPT_LENGTH])
    return ("…" if start else "") + text + ("…" if start + _EXCERPT_LENGTH < len(line) else "")

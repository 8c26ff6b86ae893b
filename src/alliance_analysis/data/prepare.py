"""The clean stage as one call: read, gate, map, clean, pseudonymise, score, write.

This is the data flow of DESIGN.md up to the processed table; ``notebooks/01_clean`` calls
:func:`prepare` and shows its parts, and every later notebook reads the ``sessions.parquet``
it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from alliance_analysis.data import io, mapping
from alliance_analysis.data.cleaning import CleanResult, clean
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.params import RunParams
from alliance_analysis.data.privacy import (GateResult, dates_to_days, gate, load_or_create_key,
                                       pseudonymise)
from alliance_analysis.data.schema import codebook, session_schema
from alliance_analysis.data.scoring import (PRORATED_RULE, ROUNDED_RULE, SCORING_RULES,
                                            TOO_FEW_ITEMS_RULE, score)



@dataclass(frozen=True)
class Prepared:
    """Everything the clean stage produced, as written to the processed folder.

    Attributes
    ----------
    sessions
        The canonical, scored session table (``sessions.parquet``).
    ledger_rows, ledger_cells
        The ledgers (``ledger_rows.csv``, ``ledger_cells.csv``). Besides the cleaning rules'
        cell changes, ``ledger_cells`` holds the scoring entries
        (:data:`alliance_analysis.data.scoring.SCORING_RULES`): scores prorated (rule
        ``prorated``), left missing because too few items were answered (``too_few_items``)
        and changed by rounding (``rounded``); see
        :class:`~alliance_analysis.data.scoring.ScoreResult`.
    codebook
        Every column of ``sessions``, and every input column not used (``codebook.csv``).
    instruments
        The run's instruments, resolved from the parameters.
    clean
        The cleaning result before scoring (for its :meth:`CleanResult.summary`).
    gate
        What the anonymisation gate dropped and allowed.
    input_sha256
        SHA-256 of the input file.
    files
        ``{name: path}`` of the files written.
    encoding
        The text encoding the input was decoded with
        (:attr:`alliance_analysis.data.io.RawData.encoding`; None for Excel and Parquet).
    """

    sessions: pd.DataFrame
    ledger_rows: pd.DataFrame
    ledger_cells: pd.DataFrame
    codebook: pd.DataFrame
    instruments: tuple[Instrument, ...]
    clean: CleanResult
    gate: GateResult
    input_sha256: str
    files: dict[str, Path]
    encoding: str | None = None

    def summary(self) -> pd.DataFrame:
        """Counts by rule: rows excluded, rows flagged, cells changed and scores logged.

        Returns
        -------
        pandas.DataFrame
            One row per rule that excluded or flagged a row or has a ledger entry, sorted by
            rule, with ``rows_excluded``, ``rows_flagged``, ``cells_changed`` (the cleaning
            rules' changes to input cells) and ``scores`` (the scoring rules' entries:
            scores ``prorated``, left missing for ``too_few_items``, or ``rounded``). The
            column totals are the ``clean.rows_excluded``, ``clean.cells_changed`` and
            ``clean.scores_*`` counts of :meth:`headline`; ``rows_flagged`` counts flags, so a
            row with two flags counts twice (``clean.rows_flagged`` counts rows).
        """
        table = CleanResult(self.sessions, self.ledger_rows, self.ledger_cells).summary()
        scoring = table["rule"].isin(SCORING_RULES)
        table["scores"] = table["cells_changed"].where(scoring, 0)
        table["cells_changed"] = table["cells_changed"].where(~scoring, 0)
        return table

    def score_counts(self) -> pd.DataFrame:
        """The scoring ledger entries of each instrument, counted by rule.

        Returns
        -------
        pandas.DataFrame
            One row per instrument, in the run's order: ``instrument``, ``scores_prorated``,
            ``scores_missing`` (scores left missing because too few items were answered) and
            ``scores_rounded``. A score is the total or one subscale, so one session can add
            several entries; each column sums to the ``clean.scores_*`` count of
            :meth:`headline`.
        """
        cells = self.ledger_cells
        rows = []
        for instrument in self.instruments:
            scales = [instrument.score_column(),
                      *(instrument.score_column(name) for name in instrument.subscales)]
            rule = cells.loc[cells["column"].isin(scales), "rule"]
            rows.append({"instrument": instrument.key,
                         "scores_prorated": int((rule == PRORATED_RULE).sum()),
                         "scores_missing": int((rule == TOO_FEW_ITEMS_RULE).sum()),
                         "scores_rounded": int((rule == ROUNDED_RULE).sum())})
        return pd.DataFrame(rows, columns=["instrument", "scores_prorated", "scores_missing",
                                           "scores_rounded"])

    def excluded(self) -> pd.DataFrame:
        """The excluded rows of the ledger."""
        return self.ledger_rows[self.ledger_rows["status"] == "excluded"].reset_index(drop=True)

    def headline(self) -> dict[str, int]:
        """Headline counts of the clean stage, keyed ``clean.*`` for ``results.json``.

        ``clean.cells_changed`` counts the cleaning rules' entries of ``ledger_cells`` only;
        the scoring entries are counted apart: ``clean.scores_prorated`` (scores computed
        from incomplete items), ``clean.scores_missing`` (scores left missing because too few
        items were answered, in rows where the questionnaire was given) and
        ``clean.scores_rounded`` (complete scores changed by the instrument's rounding). Each
        equals the sum of its column (or rule) in :meth:`summary`. ``clean.scores_missing.<key>``
        counts each instrument's scores left missing (:meth:`score_counts`).
        """
        rows = self.ledger_rows
        rule = self.ledger_cells["rule"]
        return {
            "clean.rows_input": len(rows),
            "clean.rows_kept": int((rows["status"] == "kept").sum()),
            "clean.rows_excluded": int((rows["status"] == "excluded").sum()),
            "clean.rows_flagged": int((rows["flags"] != "").sum()),
            "clean.cells_changed": int((~rule.isin(SCORING_RULES)).sum()),
            "clean.scores_prorated": int((rule == PRORATED_RULE).sum()),
            "clean.scores_missing": int((rule == TOO_FEW_ITEMS_RULE).sum()),
            "clean.scores_rounded": int((rule == ROUNDED_RULE).sum()),
            **{f"clean.scores_missing.{row.instrument}": row.scores_missing
               for row in self.score_counts().itertuples(index=False)},
            "clean.clients": int(self.sessions["client_id"].nunique()),
            "clean.therapists": int(self.sessions["therapist_id"].nunique()),
        }


def _pseudonymise_ids(result: CleanResult, key: bytes) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  pd.DataFrame]:
    """Replace client and therapist IDs by keyed-hash codes in the table and both ledgers."""
    prefixes = {"client_id": "C-", "therapist_id": "T-"}
    sessions = result.sessions.copy()
    for column, prefix in prefixes.items():
        sessions[column] = pseudonymise(sessions[column], key, prefix)
    rows = result.ledger_rows.copy()
    rows["client_id"] = pseudonymise(rows["client_id"], key, "C-")
    cells = result.ledger_cells.copy()
    for column, prefix in prefixes.items():
        mask = cells["column"] == column
        for value in ("old_value", "new_value"):
            cells.loc[mask, value] = pseudonymise(cells.loc[mask, value], key, prefix)
    return sessions, rows, cells


def _write_atomically(frames: Mapping[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    """Write every file to a temporary name first, then move all into place."""
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, tuple[Path, Path]] = {}
    try:
        for name, frame in frames.items():
            final = folder / name
            temporary = folder / f".{name}.partial"
            if name.endswith(".parquet"):
                frame.to_parquet(temporary, index=False)
            else:
                frame.to_csv(temporary, index=False, lineterminator="\n")
            staged[name] = (temporary, final)
    except BaseException:
        for temporary, _ in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged.values():
        temporary.replace(final)
    return {name: final for name, (_, final) in staged.items()}


def prepare(params: RunParams, processed_dir: str | Path) -> Prepared:
    """Run the clean stage: read, gate, map, clean, pseudonymise, score, and write.

    The data flow of DESIGN.md: :func:`alliance_analysis.data.io.read_source` ->
    :func:`alliance_analysis.data.privacy.gate` -> :func:`alliance_analysis.data.mapping.map_columns` ->
    :func:`clean` -> :func:`alliance_analysis.data.privacy.pseudonymise` ->
    :func:`alliance_analysis.data.scoring.score`, checked against
    :func:`alliance_analysis.data.schema.session_schema`, then written to ``processed_dir``:
    ``sessions.parquet``, ``ledger_rows.csv``, ``ledger_cells.csv`` and ``codebook.csv``.

    Parameters
    ----------
    params
        The run parameters.
    processed_dir
        The processed folder of the run (also holds ``pseudonym.key`` unless
        ``privacy.key_file`` is set).

    Raises
    ------
    AllianceDataError
        For any problem with the data; nothing is written in that case.
    """
    processed_dir = Path(processed_dir)
    instruments = params.instrument_definitions()
    raw = io.read_source(params.data)
    columns = params.columns
    skip = [columns.client_id, columns.therapist_id, *([columns.date] if columns.date else [])]
    gated = gate(raw.frame, params.privacy, skip=skip, source=str(raw.path))
    gated_raw = replace(raw, frame=gated.frame)
    mapped = mapping.map_columns(gated_raw, params, instruments)
    frame = mapped.frame
    derived = {"source_row": "(position of the row in the input file)"}
    if "date" in frame.columns:
        # Under the file's own column name, so that a bad date's message names it.
        name = mapped.source_columns["date"]
        name = "date" if name in frame.columns else name
        named = frame.rename(columns={"date": name})
        frame = frame.assign(day=dates_to_days(named, "client_id", name, str(raw.path)))
        frame = frame.drop(columns="date")
        derived["day"] = f"{mapped.source_columns['date']} (calendar date -> days since the " \
                         "client's first session; the date itself is dropped)"
    result = clean(frame, instruments, params.cleaning, covariates=columns.covariates,
                   source=str(raw.path), decimal=params.data.decimal,
                   source_columns=mapped.source_columns)
    key = load_or_create_key(params.privacy.key_file or processed_dir / "pseudonym.key")
    sessions, ledger_rows, ledger_cells = _pseudonymise_ids(result, key)
    scored = score(sessions, instruments)
    ledger_cells = pd.concat([ledger_cells, scored.ledger], ignore_index=True)
    ledger_cells = ledger_cells.sort_values(["source_row", "column"], kind="stable")
    ledger_cells = ledger_cells.reset_index(drop=True)
    sessions = session_schema(instruments).validate(scored.sessions)
    book = codebook(sessions, instruments, mapped.source_columns, mapped.unused,
                    raw.value_labels, derived, raw.column_labels)
    files = _write_atomically({"sessions.parquet": sessions, "ledger_rows.csv": ledger_rows,
                               "ledger_cells.csv": ledger_cells, "codebook.csv": book},
                              processed_dir)
    return Prepared(sessions=sessions, ledger_rows=ledger_rows, ledger_cells=ledger_cells,
                    codebook=book, instruments=tuple(instruments), clean=result,
                    gate=gated, input_sha256=raw.sha256, files=files, encoding=raw.encoding)


def load_processed(processed_dir: str | Path) -> pd.DataFrame:
    """Read the processed session table written by :func:`prepare`.

    Raises
    ------
    AllianceDataError
        When the clean stage has not been run for this folder.
    """
    path = Path(processed_dir) / "sessions.parquet"
    if not path.is_file():
        raise AllianceDataError(
            f"{path}: no processed session table. Run notebooks/01_clean (or `alliance run`) "
            "first"
        )
    return pd.read_parquet(path)

"""``vidcolour report``: what a batch did, from its ledger, as Markdown or HTML.

A summary table, the files that need a human look (failed, skipped, damaged input, nearly grey
output, the most flickery), then every file with its figures. Checks without ground truth are
defined in vidcolour/video/checks.py and docs/METRICS.md.
"""

from __future__ import annotations

import html
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from vidcolour.batch.ledger import Ledger, Row
from vidcolour.batch.plan import readable
from vidcolour.progress import falls_short, plural

REPORT_NAME = "vidcolour-report"
GREY_COLOURFULNESS = 5.0  # below this an output is nearly grey: the model found little colour
FLICKER_FACTOR = 2.0  # a CDC this many times the batch's median is worth a look


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Row], str]
    numeric: bool = True


def _num(value: float | int | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _size(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.1f} MiB"


FILE_COLUMNS = (
    Column("file", lambda r: readable(r.rel), numeric=False),
    Column("status", lambda r: r.status, numeric=False),
    Column("duration s", lambda r: _num(r.duration, ".1f")),
    Column(
        "frames", lambda r: _num(r.frames, "d") + (f" of {r.expected_frames}" if short(r) else "")
    ),
    Column("segments", lambda r: _num(r.segments, "d")),
    Column("time s", lambda r: _num(r.colourise_seconds, ".1f")),
    Column("fps", lambda r: _num(r.fps, ".1f")),
    Column("output", lambda r: _size(r.output_size)),
    Column("colourfulness", lambda r: _num(r.colourfulness, ".1f")),
    Column("CDC", lambda r: _num(r.cdc, ".4f")),
    Column("decode errors", lambda r: _num(r.decode_error_share, ".1%")),
    Column("error / notices", lambda r: r.error or r.notices or "", numeric=False),
)


def short(row: Row) -> bool:
    """Fewer frames out than the input's container announces (progress.falls_short)."""
    return falls_short(row.frames, row.expected_frames)


def needs_a_look(rows: list[Row]) -> list[tuple[Row, str]]:
    """Files an archivist should check, each with why."""
    cdcs = [r.cdc for r in rows if r.status == "done" and r.cdc is not None]
    median_cdc = statistics.median(cdcs) if len(cdcs) >= 3 else None
    flagged = []
    for row in rows:
        if row.status in ("failed", "skipped", "pending", "running"):
            kept = ""
            if row.segments and row.status != "skipped":
                kept = f" ({plural(row.segments, 'segment')} finished, kept for the next run)"
            flagged.append((row, f"{row.status}: {row.error or 'not finished'}{kept}"))
            continue
        reasons = []
        if row.decode_error_share:
            reasons.append(f"damaged input: {row.decode_error_share:.1%} of frames")
        if short(row):
            reasons.append(
                f"short: {row.frames} of the {row.expected_frames} frames its container announces"
            )
        if row.colourfulness is not None and row.colourfulness < GREY_COLOURFULNESS:
            reasons.append(f"nearly grey output (colourfulness {row.colourfulness:.1f})")
        if median_cdc and row.cdc is not None and row.cdc > FLICKER_FACTOR * median_cdc:
            reasons.append(f"flicker: CDC {row.cdc:.4f}, batch median {median_cdc:.4f}")
        if reasons:
            flagged.append((row, "; ".join(reasons)))
    return flagged


Split = tuple[list[Row], set[str]]  # every row, and the names of those whose input is gone


def rows_and_gone(ledger: Ledger) -> Split:
    """The ledger's rows, and the names of those whose input has been deleted or renamed in
    the batch's source folder since: their rows and outputs stay (the ledger keeps what was
    done), but they are no longer the batch's files to count or to look at. Where none is
    found (a mount away or an empty mount point, a folder not readable, the report read on
    another machine) every row counts."""
    rows = ledger.rows()
    source = ledger.meta().get("source")
    names = _names_in(Path(source), rows) if source else {}
    gone = {r.rel for r in rows if r.rel.rpartition("/")[2] not in names.get(_folder(r), ())}
    return rows, (gone if len(gone) < len(rows) else set())


def _folder(row: Row) -> str:
    return row.rel.rpartition("/")[0]


def _names_in(source: Path, rows: list[Row]) -> dict[str, set[str]]:
    """The names in each folder of ``source`` that holds a row's input, one listing a folder
    (not a stat a row: a ledger of 100,000 files on a network filesystem); a folder that cannot
    be listed holds none."""
    names: dict[str, set[str]] = {}
    for folder in {_folder(r) for r in rows}:
        try:
            names[folder] = set(os.listdir(source / folder))
        except OSError:
            names[folder] = set()
    return names


def summary(rows: list[Row], gone: int = 0) -> list[tuple[str, str]]:
    counts = Counter(r.status for r in rows)
    done = [r for r in rows if r.status == "done"]
    frames = sum(r.frames or 0 for r in done)
    seconds = sum(r.colourise_seconds or 0 for r in done)
    # A film that went on from an earlier run's segments counts all its frames but only the
    # last run's time; its fps (frames colourised in that run / its time) gives the frames
    # that time was spent on. A still's fps is not recorded: its one frame.
    timed = sum(
        r.fps * (r.colourise_seconds or 0) if r.fps is not None else (r.frames or 0) for r in done
    )
    media = sum(r.duration or 0 for r in done)
    cf = [r.colourfulness for r in done if r.colourfulness is not None]
    cdc = [r.cdc for r in done if r.cdc is not None]
    return [
        ("files", str(len(rows))),
        *((status, str(counts[status])) for status in ("done", "failed", "skipped")),
        *((s, str(counts[s])) for s in ("pending", "running") if counts[s]),
        *([("inputs gone from the source (rows kept, not counted)", str(gone))] if gone else []),
        ("media duration done", _clock(media)),
        ("frames done", str(frames)),
        ("colourising time", _clock(seconds)),
        ("mean fps", f"{timed / seconds:.1f}" if seconds else ""),
        ("output size", _size(sum(r.output_size or 0 for r in done))),
        ("mean colourfulness", _num(statistics.fmean(cf) if cf else None, ".1f")),
        ("mean CDC", _num(statistics.fmean(cdc) if cdc else None, ".4f")),
    ]


def _present(split: Split) -> list[Row]:
    rows, gone = split
    return [r for r in rows if r.rel not in gone]


def _listed(split: Split) -> list[Row]:
    """Every row for the files table, a gone input's status saying so."""
    rows, gone = split
    return [replace(r, status=f"{r.status}, input gone") if r.rel in gone else r for r in rows]


def markdown(ledger: Ledger, split: Split | None = None) -> str:
    split = split or rows_and_gone(ledger)
    rows = _present(split)
    lines = [f"# vidcolour batch report: {readable(str(ledger.path.parent))}", "", "## Summary", ""]
    lines += _md_table(("measure", "value"), summary(rows, len(split[1])), (False, True))
    lines += ["", "## Needs a look", ""]
    flagged = needs_a_look(rows)
    lines += [f"- `{readable(row.rel)}`: {why}" for row, why in flagged] or ["Nothing."]
    lines += ["", "## Files", ""]
    table = [tuple(_md_cell(c.value(r)) for c in FILE_COLUMNS) for r in _listed(split)]
    lines += _md_table(
        tuple(c.header for c in FILE_COLUMNS), table, tuple(c.numeric for c in FILE_COLUMNS)
    )
    lines += ["", _FOOTNOTE]
    return "\n".join(lines) + "\n"


def html_page(ledger: Ledger, split: Split | None = None) -> str:
    split = split or rows_and_gone(ledger)
    rows = _present(split)
    figures = summary(rows, len(split[1]))
    e = html.escape
    title = f"vidcolour batch report: {readable(str(ledger.path.parent))}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1><h2>Summary</h2><table>",
        *(f"<tr><th>{e(k)}</th><td class='n'>{e(v)}</td></tr>" for k, v in figures),
        "</table><h2>Needs a look</h2>",
    ]
    flagged = needs_a_look(rows)
    if flagged:
        items = (f"<li><code>{e(readable(r.rel))}</code>: {e(why)}</li>" for r, why in flagged)
        parts += ["<ul>", *items, "</ul>"]
    else:
        parts.append("<p>Nothing.</p>")
    parts += ["<h2>Files</h2><table><tr>"]
    parts += [f"<th>{e(c.header)}</th>" for c in FILE_COLUMNS]
    parts.append("</tr>")
    for row in _listed(split):
        cells = (
            f"<td class='{'n' if c.numeric else ''}'>{e(c.value(row))}</td>" for c in FILE_COLUMNS
        )
        parts.append(f"<tr class='{e(row.status.split(',')[0])}'>{''.join(cells)}</tr>")
    parts += [f"</table><p>{e(_FOOTNOTE)}</p></body></html>"]
    return "\n".join(parts) + "\n"


def render(ledger: Ledger, path: Path, split: Split | None = None) -> str:
    """The report in the format ``path``'s extension names (.md or .html); ``split``: the
    rows as ``rows_and_gone`` gives them, where the caller has them already."""
    html_like = path.suffix.lower() in (".html", ".htm")
    return html_page(ledger, split) if html_like else markdown(ledger, split)


_FOOTNOTE = (
    "Colourfulness: Hasler and Suesstrunk M3 of the output, mean over frames (about 0 = grey). "
    "CDC: colour distribution consistency, mean Jensen-Shannon divergence of per-channel colour "
    "histograms between frames 1, 2 and 4 apart (0 = steady; flicker raises it). Decode "
    "errors: share of frames that were damaged or undecodable in the input. docs/BATCH.md."
)
_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}td.n{text-align:right}"
    "tr.failed{background:#fdd}tr.skipped,tr.pending,tr.running{background:#ffd}"
)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], numeric: tuple[bool, ...]
) -> list[str]:
    align = ["---:" if n else "---" for n in numeric]
    return [
        f"| {' | '.join(header)} |",
        f"| {' | '.join(align)} |",
        *(f"| {' | '.join(row)} |" for row in rows),
    ]

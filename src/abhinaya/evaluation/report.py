"""The system report: one self-contained HTML page with its figures beside it.

A system is a set of members (single models) and ensemble methods over them, each
with a ``PredictionTable`` per split. ``write_system_report`` scores every table
with ``classification_report`` on the labelled ids of its split and writes, into
one folder:

- ``report.html``: the chosen method and why at the top, then per split (test
  first, then dev, then any other) the score table and chart, per-class F1,
  row-normalised confusion matrices, member agreement and error correlation, and
  the stage times; every figure is inlined as a ``data:`` URI, the CSS is inline,
  and there is no script and no external resource;
- the same figures as PNGs (``report_scores_<split>.png``,
  ``report_per_class_<split>.png``, ``report_confusion_<name>_<split>.png``,
  ``report_agreement_<split>.png``, ``report_error_correlation_<split>.png``);
- ``metrics.json``: split -> system name -> classification report.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from abhinaya.evaluation.metrics import classification_report
from abhinaya.evaluation.plots import (
    plot_confusion_matrix,
    plot_pairwise_matrix,
    plot_per_class_f1,
    plot_system_scores,
)
from abhinaya.labels import LabelSet
from abhinaya.predictions import PredictionTable

__all__ = ["ReportResult", "error_correlation", "pairwise_agreement", "write_system_report"]

MEMBER = "member"
ENSEMBLE = "ensemble method"
_DPI = 100
_CONFUSION_DPI = 90  # one figure per system and split: the bulk of the page


@dataclass
class ReportResult:
    """What ``write_system_report`` wrote: the HTML page, the PNGs beside it (in the order they appear in the page)
    and the metrics (split -> system name -> ``classification_report`` dict, as in ``metrics.json``)."""

    html: Path
    pngs: list[Path] = field(default_factory=list)
    metrics: dict[str, dict[str, dict]] = field(default_factory=dict)


def pairwise_agreement(predicted: Mapping[str, Sequence[str]]) -> np.ndarray:
    """``(M, M)`` share of utterances on which systems ``i`` and ``j`` predict the same label.

    ``predicted``: system name -> predicted labels, all over the same utterances in the same order. The diagonal is 1.
    """
    rows = [list(labels) for labels in predicted.values()]
    _check_lengths(predicted, rows)
    count = len(rows)
    out = np.ones((count, count), dtype=np.float64)
    if not rows or not rows[0]:
        return np.full((count, count), np.nan) if rows else out
    arrays = [np.asarray(r, dtype=object) for r in rows]
    for i in range(count):
        for j in range(i + 1, count):
            out[i, j] = out[j, i] = float(np.mean(arrays[i] == arrays[j]))
    return out


def error_correlation(predicted: Mapping[str, Sequence[str]], references: Sequence[str]) -> np.ndarray:
    """``(M, M)`` Pearson correlation of the systems' 0/1 error indicators (1 where the prediction differs from the
    reference) over the same utterances.

    A system whose indicator is constant (no error at all, or wrong everywhere) has no defined correlation: its row
    and column are NaN, its diagonal included; elsewhere the diagonal is 1.
    """
    rows = [list(labels) for labels in predicted.values()]
    _check_lengths(predicted, rows, len(references))
    truth = np.asarray(list(references), dtype=object)
    errors = np.asarray([np.asarray(r, dtype=object) != truth for r in rows], dtype=np.float64).reshape(
        len(rows), len(truth)
    )
    centred = errors - errors.mean(axis=1, keepdims=True) if errors.size else errors
    spread = np.sqrt((centred ** 2).sum(axis=1))
    # Constant indicators (and empty inputs) have zero spread: undefined, NaN.
    defined = spread > 1e-12
    out = np.full((len(rows), len(rows)), np.nan)
    if defined.any():
        sub = centred[defined]
        corr = (sub @ sub.T) / np.outer(spread[defined], spread[defined])
        np.fill_diagonal(corr, 1.0)
        out[np.ix_(defined, defined)] = np.clip(corr, -1.0, 1.0)
    return out


def _check_lengths(predicted: Mapping[str, Sequence[str]], rows: list[list[str]], expected: int | None = None) -> None:
    lengths = {name: len(r) for name, r in zip(predicted, rows)}
    if expected is None and rows:
        expected = len(rows[0])
    wrong = {name: n for name, n in lengths.items() if n != expected}
    if wrong:
        raise ValueError(f"every system must predict the same {expected} utterances; got {wrong}")


def write_system_report(
    out_dir: str | Path,
    *,
    title: str,
    references: Mapping[str, str],
    splits: Mapping[str, Sequence[str]],
    members: Mapping[str, Mapping[str, PredictionTable]],
    ensembles: Mapping[str, Mapping[str, PredictionTable]],
    chosen: str,
    reason: str,
    notes: Sequence[str] = (),
    stage_times: Mapping[str, float] | None = None,
) -> ReportResult:
    """Write the system report into ``out_dir`` (see the module docstring for the files) and return what was written.

    ``references``: utterance id -> canonical reference label (ids without one, or mapped to ``None``, are unlabelled).
    ``splits``: split name -> its ids. ``members`` / ``ensembles``: system name -> split -> table (a system without a
    table for a split is left out of that split, and the page says so). ``chosen`` names a member or ensemble method
    and ``reason`` says why in one sentence. ``notes`` are extra lines shown under it, ``stage_times`` (stage ->
    seconds) a table at the end.

    Scores are computed on the ids of each split that have a reference label, over one label set shared by the whole
    report (every table's classes, then any other reference or predicted label). A table lacking an id of its split is
    a ``ValueError`` naming the system, the split and the id; so are a name used both as a member and as an ensemble
    method, a ``chosen`` name that is neither, and a report with no split that can be scored (a split without
    reference labels, or without any table, is left out and the page says so). Old ``report_*.png`` files in
    ``out_dir`` that this report did not write are removed, so the folder matches the page.
    """
    out_dir = Path(out_dir)
    systems = _systems(members, ensembles)
    if chosen not in systems:
        raise ValueError(f"the chosen method {chosen!r} is neither a member nor an ensemble method "
                         f"(members: {', '.join(members) or 'none'}; ensembles: {', '.join(ensembles) or 'none'})")
    labels = _label_order(systems, references)
    file_names = _file_names(systems)

    evaluated: list[_SplitResult] = []
    skipped: list[tuple[str, str]] = []  # split, why it is not scored
    for split in _split_order(splits):
        result = _score_split(split, splits[split], references, systems, labels)
        if isinstance(result, str):
            skipped.append((split, result))
        else:
            evaluated.append(result)
    if not evaluated:
        reasons = "; ".join(f"{split}: {why}" for split, why in skipped) or "no split given"
        raise ValueError(f"nothing to report, no split can be scored ({reasons})")

    out_dir.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    split_names = _file_names({r.split: None for r in evaluated})
    for result in evaluated:
        result.stem = split_names[result.split]
        result.figures = _draw_split(out_dir, result, systems, chosen, labels, file_names, result.stem)
        pngs.extend(path for _, path in result.figures["scores"] + result.figures["per_class"])
        pngs.extend(path for _, path in result.figures["confusion"])
        pngs.extend(path for _, path in result.figures["pairwise"])
    for path in pngs:
        _compact_png(path)

    metrics = {r.split: r.reports for r in evaluated}
    _write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    page = _render_html(
        title=title, chosen=chosen, reason=reason, notes=notes, stage_times=stage_times, systems=systems,
        evaluated=evaluated, skipped=skipped, labels=labels,
    )
    html_path = _write_text(out_dir / "report.html", page)
    written = {p.name for p in pngs}
    for stale in out_dir.glob("report_*.png"):
        if stale.name not in written:
            stale.unlink()
    return ReportResult(html=html_path, pngs=pngs, metrics=metrics)


# --- scoring -------------------------------------------------------------------------------------------------------


@dataclass
class _SplitResult:
    split: str
    num_ids: int
    labelled: list[str]
    reports: dict[str, dict]  # system -> classification report (members first, then ensembles; input order)
    predictions: dict[str, list[str]]  # system -> labels over all ids of the split
    rows: list[int]  # positions of ``labelled`` among the split's ids
    truth: list[str]  # reference labels of ``labelled``
    missing: list[str]  # systems without a table for this split
    figures: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    agreement: tuple[list[str], np.ndarray, np.ndarray] | None = None  # members, agreement, error correlation
    stem: str = ""  # file-name-safe split name


def _systems(
    members: Mapping[str, Mapping[str, PredictionTable]], ensembles: Mapping[str, Mapping[str, PredictionTable]]
) -> dict[str, tuple[str, Mapping[str, PredictionTable]]]:
    both = sorted(set(members) & set(ensembles))
    if both:
        raise ValueError(f"name(s) used both as a member and as an ensemble method: {', '.join(both)}")
    systems = {str(name): (MEMBER, tables) for name, tables in members.items()}
    systems.update({str(name): (ENSEMBLE, tables) for name, tables in ensembles.items()})
    if not systems:
        raise ValueError("no member and no ensemble method to report")
    return systems


def _label_order(systems, references: Mapping[str, str]) -> list[str]:
    order: list[str] = []
    seen: list[str | None] = [label for label in references.values()]
    for _, tables in systems.values():
        for table in tables.values():
            if table.label_set is not None:
                order.extend(label for label in table.label_set if label not in order)
            seen.extend(table.labels)
    return list(LabelSet.from_labels(seen, order=order or None))


def _split_order(splits: Mapping[str, Sequence[str]]) -> list[str]:
    first = [name for name in ("test", "dev") if name in splits]
    return first + [name for name in splits if name not in first]


def _shown(ids: Sequence[str]) -> str:
    ids = list(ids)
    return ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _score_split(split, ids, references, systems, labels) -> _SplitResult | str:
    """The split's reports, or why it cannot be scored."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = sorted({i for i in ids if i in seen or seen.add(i)})
        raise ValueError(f"split {split!r} lists id(s) more than once: {_shown(repeated)}")
    labelled = [i for i in ids if references.get(i) not in (None, "")]
    if not labelled:
        return "no reference labels"
    truth = [str(references[i]) for i in labelled]
    position = {utt_id: k for k, utt_id in enumerate(ids)}
    rows = [position[i] for i in labelled]
    reports: dict[str, dict] = {}
    predictions: dict[str, list[str]] = {}
    missing: list[str] = []
    for name, (kind, tables) in systems.items():
        table = tables.get(split)
        if table is None:
            missing.append(name)
            continue
        index = table.by_id()
        lacking = [i for i in ids if i not in index]
        if lacking:
            source = f" ({table.source})" if table.source else ""
            raise ValueError(
                f"{kind} {name!r}, split {split!r}: the table{source} has no prediction for id(s) {_shown(lacking)}"
            )
        predicted = [table.labels[index[i]] for i in ids]
        predictions[name] = predicted
        reports[name] = classification_report(truth, [predicted[r] for r in rows], labels)
    if not reports:
        return "no member or ensemble method has a table for it"
    return _SplitResult(split, len(ids), labelled, reports, predictions, rows, truth, missing)


def _ranked(result: _SplitResult, systems) -> list[str]:
    """Members best first, then ensemble methods best first (by macro-F1; ties keep the input order)."""
    out = []
    for kind in (MEMBER, ENSEMBLE):
        names = [n for n in result.reports if systems[n][0] == kind]
        out.extend(sorted(names, key=lambda n: -result.reports[n]["macro_f1"]))
    return out


# --- figures -------------------------------------------------------------------------------------------------------


def _file_names(names) -> dict[str, str]:
    """A file-name-safe, unique (case-insensitively) stem per name."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "system"
        candidate, k = stem, 2
        while candidate.lower() in used:
            candidate, k = f"{stem}-{k}", k + 1
        used.add(candidate.lower())
        out[name] = candidate
    return out


def _draw_split(out_dir, result: _SplitResult, systems, chosen, labels, file_names, split_stem):
    split = result.split
    ranked = _ranked(result, systems)
    ensemble_names = [n for n in ranked if systems[n][0] == ENSEMBLE]
    chosen_here = chosen if chosen in result.reports else None
    figures: dict[str, list[tuple[str, Path]]] = {"scores": [], "per_class": [], "confusion": [], "pairwise": []}

    path = plot_system_scores(
        {n: result.reports[n] for n in ranked}, out_dir / f"report_scores_{split_stem}.png",
        ensembles=ensemble_names, chosen=chosen_here, title=f"{split}: overall scores", dpi=_DPI,
    )
    figures["scores"].append((f"{split}: macro-F1, UA and WA of every member and ensemble method", path))

    support = {label: result.reports[ranked[0]]["per_class"][label]["support"] for label in labels}
    path = plot_per_class_f1(
        {n: {label: result.reports[n]["per_class"][label]["f1"] for label in labels} for n in ranked},
        labels, out_dir / f"report_per_class_{split_stem}.png", ensembles=ensemble_names, chosen=chosen_here,
        support=support, title=f"{split}: per-class F1", dpi=_DPI,
    )
    figures["per_class"].append((f"{split}: per-class F1", path))

    for name in ranked:
        marker = " (chosen)" if name == chosen else ""
        path = plot_confusion_matrix(
            result.reports[name]["confusion_matrix"], labels,
            out_dir / f"report_confusion_{file_names[name]}_{split_stem}.png",
            normalize=True, title=f"{name}{marker} - {split}", dpi=_CONFUSION_DPI,
        )
        figures["confusion"].append((f"{name} ({systems[name][0]}{marker}), {split}", path))

    member_names = [n for n in result.predictions if systems[n][0] == MEMBER]
    if len(member_names) >= 2:
        agreement = pairwise_agreement({n: result.predictions[n] for n in member_names})
        path = plot_pairwise_matrix(
            agreement, member_names, out_dir / f"report_agreement_{split_stem}.png",
            title=f"{split}: agreement ({result.num_ids} utterances)", vmin=0.0, vmax=1.0, cmap="Greens",
            colour_label="share of same predicted label", dpi=_DPI,
        )
        figures["pairwise"].append((f"{split}: pairwise agreement of the members", path))
        correlation = error_correlation(
            {n: [result.predictions[n][r] for r in result.rows] for n in member_names}, result.truth
        )
        path = plot_pairwise_matrix(
            correlation, member_names, out_dir / f"report_error_correlation_{split_stem}.png",
            title=f"{split}: error correlation ({len(result.labelled)} labelled)", vmin=-1.0, vmax=1.0,
            cmap="RdBu_r", colour_label="Pearson r of 0/1 errors", dpi=_DPI,
        )
        figures["pairwise"].append((f"{split}: pairwise error correlation of the members", path))
        result.agreement = (member_names, agreement, correlation)
    return figures


# --- HTML ----------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
.summary { background: #f4f8fb; border: 1px solid #cfe0ec; border-radius: 6px; padding: 0.8em 1.2em; }
.summary .chosen-line { font-size: 1.2em; }
.badge { display: inline-block; background: #1f77b4; color: #fff; border-radius: 3px; padding: 0 0.4em;
         font-size: 0.8em; margin-left: 0.4em; vertical-align: middle; }
.kind-ensemble { color: #8a4b00; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, td.kind { text-align: left; }
thead th { background: #f0f0f0; }
tr.group-ensemble td { background: #fbf6ef; }
tr.chosen td { font-weight: bold; background: #e3f0fa; }
td.best { text-decoration: underline; }
figure { margin: 0.6em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 0.8em; }
.pair { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 0.8em; }
.muted { color: #777; font-size: 0.9em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {rest:02d} s" if hours else f"{minutes} min {rest:02d} s"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}" title="{_e(path.name)}">'
            f"<figcaption>{_e(caption)} <span class=\"muted\">({_e(path.name)})</span></figcaption></figure>")


def _badge(name: str, chosen: str) -> str:
    return '<span class="badge">chosen</span>' if name == chosen else ""


def _score_table(result: _SplitResult, systems, chosen: str) -> str:
    ranked = _ranked(result, systems)
    keys = ("macro_f1", "ua", "wa", "weighted_f1")
    best = {key: max(result.reports[n][key] for n in ranked) for key in keys}
    out = ['<table class="scores"><thead><tr><th>system</th><th>kind</th><th>macro-F1</th><th>UA</th><th>WA</th>'
           "<th>weighted-F1</th><th>N</th></tr></thead><tbody>"]
    for name in ranked:
        kind = systems[name][0]
        report = result.reports[name]
        classes = ["group-ensemble" if kind == ENSEMBLE else "group-member"] + (["chosen"] if name == chosen else [])
        cells = "".join(
            f'<td class="best">{_num(report[k])}</td>' if report[k] == best[k] else f"<td>{_num(report[k])}</td>"
            for k in keys
        )
        out.append(f'<tr class="{" ".join(classes)}"><td>{_e(name)}{_badge(name, chosen)}</td>'
                   f'<td class="kind">{_e(kind)}</td>{cells}<td>{report["num_utterances"]}</td></tr>')
    out.append("</tbody></table>")
    out.append('<p class="muted">Scores are fractions in [0, 1]; members first, then ensemble methods, each best '
               "first by macro-F1; underlined: best in the column.</p>")
    return "\n".join(out)


def _per_class_table(result: _SplitResult, systems, chosen: str, labels: Sequence[str]) -> str:
    ranked = _ranked(result, systems)
    support = result.reports[ranked[0]]["per_class"]
    head = "".join(f"<th>{_e(label)}<br><span class=\"muted\">n={support[label]['support']}</span></th>"
                   for label in labels)
    out = [f'<table class="per-class"><thead><tr><th>system</th>{head}</tr></thead><tbody>']
    for name in ranked:
        classes = ["group-ensemble" if systems[name][0] == ENSEMBLE else "group-member"]
        classes += ["chosen"] if name == chosen else []
        cells = "".join(f"<td>{_num(result.reports[name]['per_class'][label]['f1'])}</td>" for label in labels)
        out.append(f'<tr class="{" ".join(classes)}"><td>{_e(name)}{_badge(name, chosen)}</td>{cells}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _render_html(*, title, chosen, reason, notes, stage_times, systems, evaluated, skipped, labels) -> str:
    kind = systems[chosen][0]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<section class="summary">',
        f'<p class="chosen-line">Chosen: <strong class="chosen-name">{_e(chosen)}</strong>'
        f'<span class="badge">chosen</span> <span class="muted">({_e(kind)})</span></p>',
        f'<p class="reason">{_e(reason)}</p>',
    ]
    rows = []
    for result in evaluated:
        report = result.reports.get(chosen)
        if report is not None:
            rows.append(f"<tr><td>{_e(result.split)}</td><td>{_num(report['macro_f1'])}</td><td>{_num(report['ua'])}"
                        f"</td><td>{_num(report['wa'])}</td><td>{report['num_utterances']}</td></tr>")
    if rows:
        parts.append("<table><thead><tr><th>split</th><th>macro-F1</th><th>UA</th><th>WA</th><th>N</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    members = [n for n, (k, _) in systems.items() if k == MEMBER]
    methods = [n for n, (k, _) in systems.items() if k == ENSEMBLE]
    parts.append(f'<p class="muted">Members: {_e(", ".join(members) or "none")}. Ensemble methods: '
                 f'{_e(", ".join(methods) or "none")}. Classes: {_e(", ".join(labels))}.</p>')
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>")
    for split, why in skipped:
        parts.append(f'<p class="muted">Split {_e(split)} is not scored: {_e(why)}.</p>')
    links = " · ".join(f'<a href="#split-{_e(r.stem)}">{_e(r.split)}</a>' for r in evaluated)
    if stage_times:
        links += ' · <a href="#stage-times">stage times</a>'
    parts.append(f"<p>Sections: {links}</p></section>")

    for result in evaluated:
        split = _e(result.split)
        parts.append(f'<section class="split" id="split-{_e(result.stem)}">')
        parts.append(f"<h2>{split}</h2>")
        parts.append(f'<p class="muted">{len(result.labelled)} labelled of {result.num_ids} utterances scored.')
        if result.missing:
            parts.append(f" No {split} table for: {_e(', '.join(result.missing))}.")
        parts.append("</p>")
        parts.append("<h3>Overall scores</h3>")
        parts.append(_score_table(result, systems, chosen))
        parts.extend(_image(path, caption) for caption, path in result.figures["scores"])
        parts.append("<h3>Per-class F1</h3>")
        parts.append(_per_class_table(result, systems, chosen, labels))
        parts.extend(_image(path, caption) for caption, path in result.figures["per_class"])
        parts.append("<h3>Confusion matrices</h3>")
        parts.append('<p class="muted">Rows are true classes, columns predicted classes; each cell shows the count '
                     "and its share of the row.</p>")
        parts.append('<div class="grid">' + "".join(_image(p, c) for c, p in result.figures["confusion"]) + "</div>")
        parts.append("<h3>Member agreement and error correlation</h3>")
        if result.figures["pairwise"]:
            parts.append(
                f'<p class="muted">Agreement: share of the {result.num_ids} utterances on which two members predict '
                f"the same label. Error correlation: Pearson correlation of the 0/1 error indicators on the "
                f"{len(result.labelled)} labelled utterances (low or negative: complementary errors, which is what "
                "an ensemble needs); n/a where a member makes no error (or errs everywhere).</p>"
            )
            parts.append('<div class="pair">' + "".join(_image(p, c) for c, p in result.figures["pairwise"])
                         + "</div>")
        else:
            parts.append('<p class="muted">Fewer than two members have predictions for this split.</p>')
        parts.append("</section>")

    if stage_times:
        total = sum(float(v) for v in stage_times.values())
        rows = "".join(f"<tr><td>{_e(stage)}</td><td>{_duration(seconds)}</td><td>{float(seconds):.1f}</td></tr>"
                       for stage, seconds in stage_times.items())
        parts.append('<section id="stage-times"><h2>Stage times</h2><table class="stage-times"><thead><tr>'
                     f"<th>stage</th><th>time</th><th>seconds</th></tr></thead><tbody>{rows}"
                     f"<tr><td><strong>total</strong></td><td><strong>{_duration(total)}</strong></td>"
                     f"<td><strong>{total:.1f}</strong></td></tr></tbody></table></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _compact_png(path: Path) -> None:
    """Re-encode a figure with a 256-colour palette (about a third of the bytes, no visible change), atomically."""
    from PIL import Image

    with Image.open(path) as image:
        compact = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            compact.save(stream, format="PNG")
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path

"""The leaderboard as one static page (``index.html``): plain HTML with inline CSS and JS, no server, no network.

Tables sort by any column (click its header) and the page filters by dataset. Every cell of our rows opens to the
seeds, record files and commits it was computed from. Everything that comes from a record, a recipe or the
published data is HTML-escaped.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from ssl_bench.leaderboard.markdown import ACTIVE_PROTOCOL, COMPARE, DA_PROTOCOL, PROTOCOL, PUBLISHED
from ssl_bench.leaderboard.report import Report, Section
from ssl_bench.leaderboard.tables import ROW_KEYS, mean_std_cell

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
tr.published td{background:#fbf7e9;font-style:italic}
details summary{cursor:pointer} details div{font-size:12px;color:#444;max-width:28em}
p.protocol{color:#444;max-width:60em} img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
.muted{color:#777}
"""

JS = """
function sortTable(th){
  const table=th.closest('table'), body=table.tBodies[0], col=[...th.parentNode.children].indexOf(th);
  const dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
  table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort',dir);
  const key=tr=>{const c=tr.children[col];const v=c?(c.dataset.sort??c.textContent.trim()):'';
                 const n=parseFloat(v);return isNaN(n)||!/^[-+]?[0-9.]/.test(v)?[1,v.toLowerCase()]:[0,n];};
  const rows=[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);
    const c=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return dir==='ascending'?c:-c;});
  rows.forEach(r=>body.appendChild(r));
}
function filterDataset(value){
  document.querySelectorAll('section[data-dataset]').forEach(s=>{
    s.hidden=value!=='' && s.dataset.dataset!==value;});
}
document.addEventListener('DOMContentLoaded',()=>{
  document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
  const f=document.getElementById('dataset-filter'); f.addEventListener('change',()=>filterDataset(f.value));
});
"""


def esc(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return html.escape(str(value), quote=True)


def prose(markdown: str) -> str:
    """A protocol paragraph of the README as page text: markdown's code and emphasis marks dropped, then escaped."""
    return esc(markdown.replace("`", "").replace("*", ""))


def sort_key(value: object) -> str:
    """What a cell sorts by: the leading number of ``94.2 ± 1.1 (n=5)``, or the text itself."""
    s = str(value).strip()
    return s.split(" ")[0] if s[:1].isdigit() or s[:1] in "+-" else s


def frame_html(frame: pd.DataFrame, row_class: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = "".join(f'<td data-sort="{esc(sort_key(v))}">{esc(v)}</td>' for v in row)
        body.append(f'<tr class="{row_class}">{cells}</tr>' if row_class else f"<tr>{cells}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def provenance(runs: pd.DataFrame) -> str:
    seeds = ", ".join(str(s) for s in sorted(runs["seed"]))
    files = "<br>".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in sorted(runs["file"]) if f)
    commits = ", ".join(esc(c) for c in sorted(set(runs["commit"])))
    return f"<div>seeds: {esc(seeds)}<br>commits: {commits}<br>records:<br>{files}</div>"


def ours_html(section: Section) -> str:
    """Our rows with a provenance drop-down per cell, then the published rows of the dataset."""
    f = section.frame
    assert f is not None  # set together with section.ours, which the caller tested (report.py)
    budgets = sorted({int(n) for n in f["n_labels"]})
    head = "".join(f"<th>{esc(c)}</th>" for c in [*ROW_KEYS, *[f"{b} labels" for b in budgets], "min/run", "source"])
    body = []
    for keys, g in f.groupby(ROW_KEYS, sort=True):
        cells = [f'<td data-sort="{esc(k)}">{esc(k)}</td>' for k in keys]
        for b in budgets:
            at = g[g["n_labels"] == b]
            if at.empty:
                cells.append('<td data-sort="">—</td>')
                continue
            cell = mean_std_cell(at["acc"])
            cells.append(
                f'<td data-sort="{at["acc"].mean():.4f}"><details><summary>{esc(cell)}</summary>'
                f"{provenance(at)}</details></td>"
            )
        cells.append(f'<td data-sort="{g["minutes"].mean():.4f}">{g["minutes"].mean():.1f}</td>')
        cells.append('<td data-sort="ours">ours</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def recipes_html(section: Section) -> str:
    items = "".join(f"<li><code>{esc(r)}</code>{': ' + esc(d) if d else ''}</li>" for r, d in section.recipes())
    return f'<ul class="recipes">{items}</ul>' if items else ""


def section_html(s: Section) -> str:
    parts = [f'<section data-dataset="{esc(s.dataset)}"><h2>{esc(s.dataset)}</h2>', recipes_html(s)]
    if s.ours is not None:
        parts.append(ours_html(s))
    if s.published is not None:
        parts += [f"<h3>{esc(s.dataset)}: published</h3>", frame_html(s.published, row_class="published")]
    if s.differences:
        parts.append(f'<p class="protocol">{esc(s.differences)}</p>')
    parts += [f'<img src="{esc(name)}" alt="{esc(alt)}">' for name, alt in s.plots]
    if not s.comparisons.empty:
        parts += [f"<h3>{esc(s.dataset)}: A vs B</h3>", f'<p class="protocol">{prose(COMPARE)}</p>']
        parts.append(frame_html(s.comparisons))
    return "".join(parts) + "</section>"


def render_page(report: Report) -> str:
    datasets = sorted({s.dataset for s in report.sections + report.published_only} | set(report.active))
    datasets += ["domain adaptation"] if report.da is not None else []
    datasets += ["published domain adaptation"] if report.published_da is not None else []
    options = "".join(f'<option value="{esc(d)}">{esc(d)}</option>' for d in datasets)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ssl_bench leaderboard</title><style>{CSS}</style><script>{JS}</script></head><body>",
        "<h1>ssl_bench leaderboard</h1>",
        f'<p class="protocol">{prose(PROTOCOL)}</p><p class="protocol">{prose(PUBLISHED)}</p>',
        f'<label>Dataset: <select id="dataset-filter"><option value="">all</option>{options}</select></label>',
        f'<p class="muted">{len(report.records)} record(s). Click a column header to sort; click a cell to see its '
        "seeds, records and commits.</p>",
    ]
    parts += [section_html(s) for s in report.sections]
    if report.da is not None:
        parts += [
            '<section data-dataset="domain adaptation"><h2>Domain adaptation</h2>',
            f'<p class="protocol">{prose(DA_PROTOCOL)}</p>{frame_html(report.da)}</section>',
        ]
    for dataset, table in report.active.items():
        parts += [
            f'<section data-dataset="{esc(dataset)}"><h2>{esc(dataset)}: active learning</h2>',
            f'<p class="protocol">{prose(ACTIVE_PROTOCOL)}</p>{frame_html(table)}',
            f'<img src="{esc(report.active_plots[dataset])}" alt="active learning"></section>',
        ]
    if report.rate_plot:
        parts += [
            "<section><h2>What a label is worth</h2>",
            f'{frame_html(report.rates)}<img src="{esc(report.rate_plot)}" alt="exchange rate"></section>',
        ]
    if report.published_only:
        parts.append("<h2>Published numbers of datasets with no runs here yet</h2>")
        parts += [section_html(s) for s in report.published_only]
    if report.published_da is not None:
        parts += [
            '<section data-dataset="published domain adaptation"><h2>Published domain-adaptation numbers</h2>',
            frame_html(report.published_da, row_class="published"),
            "</section>",
        ]
    if report.unreadable:
        items = "".join(f"<li><code>{esc(n)}</code>: {esc(why)}</li>" for n, why in report.unreadable)
        parts.append(f"<h2>Unreadable files left out ({len(report.unreadable)})</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

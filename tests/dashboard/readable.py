"""Whether a drawn chart can be read, from what the browser drew (Streamlit renders Vega charts as SVG):

- its box is big enough to read (`MIN_WIDTH` x `MIN_HEIGHT` pixels);
- several series (lines or areas split by a field, or data marks in several colours) have a legend or direct
  labels, and a legend names at most `MAX_ENTRIES` of them;
- no two visible texts (titles, axis and legend labels, numbers in the cells) overlap;
- a number drawn in a cell (a heatmap's) fits in it, with a line's room: the cell at least twice its height.

`problems(page)` reads every chart on a Playwright page and says what is wrong with each, as sentences.
"""

from __future__ import annotations

from typing import Any

MIN_WIDTH, MIN_HEIGHT = 200, 120
MAX_ENTRIES = 12
CHART = '[data-testid="stVegaLiteChart"]'

# One chart element -> what the test needs of it. Hidden things (opacity 0, as Vega hides the axis labels it
# drops for overlap, or display none) are not read; grey and black marks (error bars, rules) are no series.
READ = """(el) => {
  const svg = el.querySelector('svg.marks');
  const rect = (e) => { const b = e.getBoundingClientRect(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
  if (!svg) return {svg: false, canvas: !!el.querySelector('canvas'), box: rect(el), title: ''};
  const shown = (e) => {
    for (let n = e; n && n !== svg; n = n.parentElement) {
      if (n.getAttribute('display') === 'none' || n.getAttribute('visibility') === 'hidden') return false;
      const o = n.getAttribute('opacity');
      if (o !== null && Number(o) === 0) return false;
    }
    return true;
  };
  const probe = document.createElement('span');
  document.body.appendChild(probe);
  const rgb = (c) => { probe.style.color = ''; probe.style.color = c;
                       return (getComputedStyle(probe).color.match(/[\\d.]+/g) || []).map(Number); };
  const texts = [...svg.querySelectorAll('text')].filter((t) => t.textContent.trim() && shown(t))
    .map((t) => ({text: t.textContent.trim(), ...rect(t), role: t.parentElement.getAttribute('class') || ''}));
  const colours = new Set();
  for (const shape of svg.querySelectorAll('g.role-mark:not(.mark-text) > *')) {
    if (!shown(shape)) continue;
    const fill = shape.getAttribute('fill'), fo = shape.getAttribute('fill-opacity');
    const paint = fill && fill !== 'none' && fill !== 'transparent' && !(fo !== null && Number(fo) === 0)
      ? fill : shape.getAttribute('stroke');
    if (!paint || paint === 'none' || paint === 'transparent') continue;
    const [r, g, b, a] = rgb(paint);
    if (a === 0 || Math.max(r, g, b) - Math.min(r, g, b) < 30) continue;  // grey, black, white
    colours.add(`${r},${g},${b}`);
  }
  probe.remove();
  const paths = [...svg.querySelectorAll('g.role-scope')].filter((g) => /pathgroup/.test(g.getAttribute('class')))
    .map((g) => g.querySelectorAll(':scope > g > g.role-mark').length);
  const cells = [...svg.querySelectorAll('g.mark-rect.role-mark > path')].filter(shown).map(rect);
  const numbers = [...svg.querySelectorAll('g.mark-text.role-mark > text')]
    .filter((t) => t.textContent.trim() && shown(t)).map((t) => ({text: t.textContent.trim(), ...rect(t)}));
  return {
    svg: true, box: rect(svg), texts, colours: colours.size, paths: Math.max(0, ...paths), cells, numbers,
    title: [...svg.querySelectorAll('g.role-title-text text')].map((t) => t.textContent).join(' '),
    legends: svg.querySelectorAll('g.role-legend').length,
    entries: [...svg.querySelectorAll('g.role-legend-symbol')]
      .reduce((n, g) => n + g.querySelectorAll('path').length, 0),
  };
}"""


def _meet(a: dict[str, float], b: dict[str, float], slack: float = 1.0) -> bool:
    """Whether two boxes share more than `slack` pixels both ways."""
    return (min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > slack
            and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > slack)


def _inside(inner: dict[str, float], outer: dict[str, float], slack: float = 0.5) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["w"] <= outer["x"] + outer["w"] + slack
            and inner["y"] + inner["h"] <= outer["y"] + outer["h"] + slack)


def judge(chart: dict[str, Any]) -> list[str]:
    """What keeps one read chart (READ's answer) from being read, as sentences (none: it reads)."""
    name = f"chart {chart['title']!r}"
    if not chart["svg"]:
        return [f"{name} is drawn on a canvas, whose text cannot be read back" if chart["canvas"]
                else f"{name} drew nothing"]
    out = []
    box = chart["box"]
    if box["w"] < MIN_WIDTH or box["h"] < MIN_HEIGHT:
        out.append(f"{name} is {box['w']:.0f}x{box['h']:.0f} px, under {MIN_WIDTH}x{MIN_HEIGHT}")
    series = max(chart["paths"], chart["colours"])
    labelled = chart["legends"] > 0 or chart["numbers"]
    if series > 1 and not labelled:
        out.append(f"{name} draws {series} series with neither a legend nor direct labels")
    named = max(chart["paths"], chart["entries"])
    if named > MAX_ENTRIES:
        out.append(f"{name} draws {named} series, more than {MAX_ENTRIES} to tell apart")
    texts = chart["texts"]
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if _meet(a, b):
                out.append(f"{name}: text {a['text']!r} overlaps {b['text']!r}")
    for number in chart["numbers"]:
        centre = {"x": number["x"] + number["w"] / 2, "y": number["y"] + number["h"] / 2, "w": 0, "h": 0}
        cell = next((c for c in chart["cells"] if _inside(centre, c)), None)
        if cell is None:
            continue  # a label beside the marks, not in a cell
        if not _inside(number, cell) or cell["h"] < 2 * number["h"]:
            out.append(f"{name}: {number['text']!r} ({number['w']:.0f}x{number['h']:.0f} px) is cramped in its "
                       f"{cell['w']:.0f}x{cell['h']:.0f} px cell")
    return out


def problems(page: Any) -> list[str]:
    """What keeps each chart on the page from being read (an empty list: every chart reads)."""
    return [p for chart in page.locator(CHART).evaluate_all(f"(els) => els.map({READ})") for p in judge(chart)]

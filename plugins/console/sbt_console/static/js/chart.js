// A stacked bar chart drawn as SVG: one bar per window, one coloured segment per series.
// Each segment carries data-series, data-window and data-value, so what is drawn can be read back.
import { fmtNumber, h } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#3e63dd", "#12a594", "#e5484d", "#f76b15", "#8e4ec6", "#46a758", "#d6409f", "#0090ff",
  "#ad7f58", "#978365", "#5b5bd6", "#29a383"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A "nice" axis step for a maximum over about `ticks` ticks (1, 2, 5 times a power of ten). */
function niceStep(max, ticks = 5) {
  if (max <= 0) return 1;
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const n = raw / power;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * power;
}

/**
 * @param windows [{start, end, label, title}] in order
 * @param series [name] in stacking order (first at the bottom)
 * @param value (series, windowStart) -> number
 * @param colour (series) -> css colour
 */
export function stackedBars({ windows, series, value, colour, width = 960, height = 300 }) {
  const margin = { top: 12, right: 12, bottom: 28, left: 56 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const totals = windows.map((w) => series.reduce((sum, name) => sum + Math.max(0, value(name, w.start)), 0));
  const step = niceStep(Math.max(0, ...totals));
  const top = Math.max(step, Math.ceil(Math.max(0, ...totals) / step) * step);
  const y = (v) => margin.top + plotH - (v / top) * plotH;
  const band = plotW / Math.max(1, windows.length);
  const barW = Math.max(1, Math.min(48, band * 0.72));

  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Usage over time, stacked" });
  const grid = s("g", { class: "grid" });
  const axis = s("g", { class: "axis" });
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.append(s("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    axis.append(s("text", { x: margin.left - 8, y: y(v) + 4, "text-anchor": "end" }, fmtNumber(v)));
  }
  const every = Math.max(1, Math.ceil(windows.length / Math.max(1, Math.floor(plotW / 90))));
  windows.forEach((w, i) => {
    if (i % every) return;
    axis.append(s("text", { x: margin.left + band * i + band / 2, y: height - 8, "text-anchor": "middle" }, w.label));
  });
  svg.append(grid, axis);

  const wrap = h("div.chart-wrap.chart", { "data-testid": "usage-chart" });
  const tooltip = h("div.tooltip", { hidden: true });
  const bars = s("g");
  windows.forEach((w, i) => {
    let base = 0;
    const x = margin.left + band * i + (band - barW) / 2;
    const column = s("g", { "data-window": w.start, tabindex: "0", "aria-label": `${w.title}: ${fmtNumber(totals[i])}` });
    for (const name of series) {
      const v = value(name, w.start);
      if (!v) continue;
      const h0 = y(base) - y(base + Math.max(0, v));
      column.append(s("rect", { class: "bar", x, y: y(base + Math.max(0, v)), width: barW, height: Math.max(h0, 0.5),
                                fill: colour(name), "data-series": name, "data-window": w.start, "data-value": v }));
      base += Math.max(0, v);
    }
    // A transparent hit area over the whole band, so thin bars are easy to hover.
    column.prepend(s("rect", { x: margin.left + band * i, y: margin.top, width: band, height: plotH, fill: "transparent" }));
    const show = () => {
      const rows = series.map((name) => [name, value(name, w.start)]).filter(([, v]) => v);
      tooltip.replaceChildren(h("strong", {}, w.title), h("table", {},
        rows.reverse().map(([name, v]) => h("tr", {}, h("td", {}, h("span.swatch", { style: `background:${colour(name)};display:inline-block;width:8px;height:8px;border-radius:2px` })),
          h("td", {}, name), h("td.num", {}, fmtNumber(v)))),
        h("tr", {}, h("td"), h("td", {}, h("strong", {}, "Total")), h("td.num", {}, h("strong", {}, fmtNumber(totals[i]))))));
      tooltip.hidden = false;
      const left = ((margin.left + band * i + band) / width) * wrap.clientWidth;
      tooltip.style.left = `${Math.min(left + 8, wrap.clientWidth - 200)}px`;
      tooltip.style.top = "16px";
    };
    column.addEventListener("mouseenter", show);
    column.addEventListener("focus", show);
    column.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    column.addEventListener("blur", () => { tooltip.hidden = true; });
    bars.append(column);
  });
  svg.append(bars, s("line", { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0), stroke: "currentColor", "stroke-opacity": ".3" }));
  wrap.append(svg, tooltip);
  return wrap;
}

export function legend(series, colour, total) {
  return h("div.legend", { "data-testid": "usage-legend" }, series.map((name) => h("span", { "data-series": name },
    h("span.swatch", { style: `background:${colour(name)}` }), name, " ", h("span.muted", {}, fmtNumber(total(name))))));
}

/** Loss and accuracy curves (train and validation) with a cursor at the selected epoch. */
import { el, svg } from "./dom.js";
import { number } from "./draw.js";

const WIDTH = 340, HEIGHT = 150, PAD = { left: 58, right: 10, top: 22, bottom: 22 };
const SERIES = [["", "train", "#e8710a"], ["val_", "validation", "#1976d2"]];

/** One chart of metric `name` (and `val_<name>`); clicking picks the nearest epoch. */
function chart(name, training, epoch, onPick) {
  const { epochs, logs } = training;
  const values = SERIES.flatMap(([prefix]) => logs[prefix + name] || []).filter((v) => v !== null && Number.isFinite(v));
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", "data-metric": name });
  if (!values.length || !epochs.length) return root;
  const low = Math.min(...values), high = Math.max(...values), span = high > low ? high - low : 1;
  const first = epochs[0], last = epochs[epochs.length - 1], range = last > first ? last - first : 1;
  const x = (e) => PAD.left + ((e - first) / range) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - low) / span) * (HEIGHT - PAD.top - PAD.bottom);
  root.appendChild(svg("text", { x: PAD.left, y: 12, class: "title" }, name));
  root.appendChild(svg("text", { x: PAD.left - 4, y: y(high) + 4, class: "tick", "text-anchor": "end" }, number(high)));
  root.appendChild(svg("text", { x: PAD.left - 4, y: y(low), class: "tick", "text-anchor": "end" }, number(low)));
  root.appendChild(svg("text", { x: x(first), y: HEIGHT - 6, class: "tick" }, String(first)));
  root.appendChild(svg("text", { x: x(last), y: HEIGHT - 6, class: "tick", "text-anchor": "end" }, String(last)));
  root.appendChild(svg("rect", { x: PAD.left, y: PAD.top, width: WIDTH - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom, class: "frame" }));
  SERIES.forEach(([prefix, label, stroke], s) => {
    const series = logs[prefix + name];
    if (!series) return;
    const points = epochs.map((e, i) => [e, series[i]]).filter(([, v]) => v !== null && Number.isFinite(v));
    root.appendChild(svg("polyline", { points: points.map(([e, v]) => `${x(e)},${y(v)}`).join(" "), fill: "none", stroke, "stroke-width": 1.5 }));
    for (const [e, v] of points) root.appendChild(svg("circle", { cx: x(e), cy: y(v), r: 2.5, fill: stroke, class: "point" }, svg("title", {}, `${label} ${name}, epoch ${e}: ${number(v)}`)));
    const right = WIDTH - PAD.right - 78 * (SERIES.length - 1 - s); // legend entries side by side above the frame
    root.appendChild(svg("line", { x1: right - 72, x2: right - 60, y1: 9, y2: 9, stroke, "stroke-width": 2, class: "legend-line" }));
    root.appendChild(svg("text", { x: right - 56, y: 13, class: "legend", fill: stroke, "data-series": prefix || "train" }, label));
  });
  const cursor = root.appendChild(svg("line", { y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "cursor" }));
  root.moveCursor = (at) => { // an epoch change moves only this line
    cursor.setAttribute("visibility", at === null ? "hidden" : "visible");
    if (at !== null) for (const end of ["x1", "x2"]) cursor.setAttribute(end, String(x(at)));
  };
  root.moveCursor(epoch);
  root.addEventListener("click", (event) => {
    const box = root.getBoundingClientRect();
    const at = first + (((event.clientX - box.left) * (WIDTH / box.width) - PAD.left) / (WIDTH - PAD.left - PAD.right)) * range;
    onPick(epochs.reduce((best, e) => (Math.abs(e - at) < Math.abs(best - at) ? e : best), epochs[0]));
  });
  return root;
}

/** Charts for loss and accuracy (and any other metric logged with a val_ twin, when present). */
export function trainingCharts(training, epoch, onPick) {
  const names = Object.keys(training.logs).filter((n) => !n.startsWith("val_"));
  const ordered = ["loss", "accuracy"].filter((n) => names.includes(n));
  const box = el("div", { className: "charts" });
  if (!ordered.length) box.appendChild(el("p", { className: "muted" }, "No loss or accuracy logged for this run yet."));
  for (const name of ordered) box.appendChild(chart(name, training, epoch, onPick));
  return box;
}

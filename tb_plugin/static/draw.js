/** Heatmaps, colour bars, bar charts and highlighted tokens, drawn from raw attributions.

Conventions of tf_explain_kit/render.py: a diverging map centred on 0 for signed values,
a sequential map for magnitudes; the original image stays visible underneath in grey,
each pixel blending towards the colour by opacity x strength; LIME's top superpixels
outlined in yellow. */
import { COLORMAPS, lut } from "./colormaps.js";
import { el } from "./dom.js";

const tables = new Map();
const OUTLINE = [255, 217, 0];
export const PERCENTILE = 0.995;
const FLOOR = 0.45; // the darkest grey of an image under a heatmap

function table(name) {
  if (!tables.has(name)) tables.set(name, lut(name));
  return tables.get(name);
}

/** Whether any value is negative. */
export function isSigned(values) {
  for (let i = 0; i < values.length; i++) if (values[i] < 0) return true;
  return false;
}

/** A colour-scale limit: a high percentile of |values| (1 when all are 0). */
export function scaleOf(values) {
  if (!values.length) return 1;
  const sorted = Float32Array.from(values, Math.abs).sort();
  const limit = sorted[Math.min(sorted.length - 1, Math.floor(PERCENTILE * (sorted.length - 1)))];
  return limit > 0 ? limit : 1;
}

/** The colour map to use: `choice` unless "auto" (RdBu_r for signed values, inferno otherwise). */
export function mapName(choice, signed) {
  return choice === "auto" ? (signed ? "RdBu_r" : "inferno") : choice;
}

/** `[r, g, b, strength]` of `value` under map `name` and limit `scale`. */
export function colour(value, scale, name) {
  const lutTable = table(name);
  let unit, strength;
  if (COLORMAPS[name].signed) {
    unit = Math.max(-1, Math.min(1, value / scale));
    strength = Math.abs(unit);
    unit = (unit + 1) / 2;
  } else {
    unit = Math.min(1, Math.abs(value) / scale);
    strength = unit;
  }
  const i = 3 * Math.round(unit * 255);
  return [lutTable[i], lutTable[i + 1], lutTable[i + 2], strength];
}

/** Per-pixel grey in [0, 1] of sample `index` of `(N, H, W[, C])` inputs. */
export function grey(inputs, shape, index) {
  const [, h, w] = shape;
  const channels = shape.length > 3 ? shape[3] : 1;
  const size = h * w;
  const out = new Float32Array(size);
  const base = index * size * channels;
  for (let p = 0; p < size; p++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += inputs[base + p * channels + c];
    out[p] = sum / channels;
  }
  let low = Infinity, high = -Infinity;
  for (const v of out) { low = Math.min(low, v); high = Math.max(high, v); }
  const range = high > low ? high - low : 1;
  for (let p = 0; p < size; p++) out[p] = (out[p] - low) / range;
  return out;
}

/** Boundaries (1) of the `top` superpixels with the largest positive mean attribution. */
export function limeOutlines(segments, maps, h, w, top = 3) {
  const sums = new Map(), counts = new Map();
  for (let p = 0; p < segments.length; p++) {
    sums.set(segments[p], (sums.get(segments[p]) || 0) + maps[p]);
    counts.set(segments[p], (counts.get(segments[p]) || 0) + 1);
  }
  const best = new Set([...sums.keys()].map((s) => [s, sums.get(s) / counts.get(s)]).filter(([, m]) => m > 0).sort((a, b) => b[1] - a[1]).slice(0, top).map(([s]) => s));
  const out = new Uint8Array(segments.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x, s = segments[p];
      if (!best.has(s)) continue;
      const differs = (y > 0 && segments[p - w] !== s) || (y < h - 1 && segments[p + w] !== s) || (x > 0 && segments[p - 1] !== s) || (x < w - 1 && segments[p + 1] !== s);
      out[p] = differs ? 1 : 0;
    }
  }
  return out;
}

/** `values` laid out as `rows` × `cols`, as `cols` × `rows`. */
export function transposed(values, rows, cols) {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** Draw one heatmap over its greyed image into `canvas` (H x W pixels, enlarged by CSS).
The image underneath is lightened to [FLOOR, 1] so colours over dark pixels stay vivid;
`canvas.values` keeps the values for hover read-outs (`canvas.where(y, x)` names a position). */
export function heatmap(canvas, { values, background, h, w, scale, map, opacity, outline }) {
  canvas.width = w;
  canvas.height = h;
  canvas.values = values;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    const [r, g, b, strength] = colour(values[p], scale, map);
    const alpha = opacity * strength;
    const base = background ? (FLOOR + (1 - FLOOR) * background[p]) * 255 : 255;
    const rgb = outline && outline[p] ? OUTLINE : [(1 - alpha) * base + alpha * r, (1 - alpha) * base + alpha * g, (1 - alpha) * base + alpha * b];
    image.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * p);
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

/** The original image (greyscale or RGB in any range) of sample `index`. */
export function original(canvas, inputs, shape, index) {
  const [, h, w] = shape;
  const channels = shape.length > 3 ? shape[3] : 1;
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  const base = index * h * w * channels;
  let low = Infinity, high = -Infinity;
  for (let i = 0; i < h * w * channels; i++) { low = Math.min(low, inputs[base + i]); high = Math.max(high, inputs[base + i]); }
  const range = high > low ? high - low : 1;
  for (let p = 0; p < h * w; p++) {
    for (let c = 0; c < 3; c++) image.data[4 * p + c] = (255 * (inputs[base + p * channels + (channels === 3 ? c : 0)] - low)) / range;
    image.data[4 * p + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

/** A horizontal colour bar with its limits written underneath (`small`: for column headers and strips). */
export function colourBar(map, scale, small = false) {
  const canvas = el("canvas", { className: "colourbar", width: 256, height: 1 });
  const context = canvas.getContext("2d");
  const image = context.createImageData(256, 1);
  const signed = COLORMAPS[map].signed;
  for (let i = 0; i < 256; i++) {
    const value = signed ? ((i / 255) * 2 - 1) * scale : (i / 255) * scale;
    const [r, g, b] = colour(value, scale, map);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
  const low = signed ? -scale : 0;
  return el("div", { className: small ? "colourbar-box small" : "colourbar-box" }, canvas, el("div", { className: "colourbar-labels" }, el("span", {}, number(low)), el("span", {}, map), el("span", {}, number(scale))));
}

/** Indices of the `k` largest |values|. */
export function topIndices(values, k) {
  return [...values.keys()].sort((a, b) => Math.abs(values[b]) - Math.abs(values[a])).slice(0, k);
}

/** Horizontal bars of features `order` (tabular data) around a zero line, each with the
sample's input value beside its name and its attribution after the bar. */
export function bars(names, values, scale, map, order, inputs = null) {
  const box = el("div", { className: "bars" });
  for (const j of order) {
    const [r, g, b] = colour(values[j], scale, map);
    const width = Math.min(50, (50 * Math.abs(values[j])) / scale);
    const bar = el("span", { className: "bar", style: { width: `${width}%`, background: `rgb(${r},${g},${b})`, [values[j] < 0 ? "right" : "left"]: "50%" } });
    const name = inputs ? `${names[j]} = ${number(inputs[j])}` : names[j];
    box.appendChild(el(
      "div", { className: "bar-row", title: `${name}\nattribution: ${number(values[j])}`, dataset: { feature: names[j] } },
      el("span", { className: "bar-name" }, name), el("span", { className: "bar-track" }, bar), el("span", { className: "bar-value" }, number(values[j])),
    ));
  }
  return box;
}

/** A number in at most 3 significant digits (exponent when tiny or huge). */
export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "NaN";
  const size = Math.abs(value);
  if (!Number.isFinite(value) || Number.isInteger(value)) return String(value);
  return size < 1e-3 || size >= 1e5 ? value.toExponential(2) : String(Number(value.toPrecision(3)));
}

/** Relative luminance of an sRGB colour (0 black .. 1 white). */
export function luminance(r, g, b) {
  const linear = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
}

/** Tokens with backgrounds coloured by their attribution, blended over the page's background
`page` ([r, g, b]); text black or white, whichever reads better on that colour. */
export function tokens(words, values, scale, map, page = [255, 255, 255]) {
  const box = el("div", { className: "tokens" });
  words.forEach((word, t) => {
    const value = values[t] ?? 0;
    const [r, g, b, strength] = colour(value, scale, map);
    const alpha = 0.15 + 0.85 * strength;
    const mixed = [r, g, b].map((c, k) => Math.round(alpha * c + (1 - alpha) * page[k]));
    const text = luminance(...mixed) > 0.179 ? "#000" : "#fff";
    box.appendChild(el("span", { className: "token", title: `${word}: ${number(value)}`, dataset: { value: String(value) }, style: { background: `rgb(${mixed.join(",")})`, color: text } }, word));
    box.appendChild(document.createTextNode(" "));
  });
  return box;
}

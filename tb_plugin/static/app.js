/** The "Explanations" tab: run selector, training curves, epoch slider, grid, detail view. */
import { Api } from "./api.js";
import { trainingCharts } from "./chart.js";
import { COLORMAPS } from "./colormaps.js";
import { bars, colourBar, grey, heatmap, isSigned, limeOutlines, mapName, number, original, scaleOf, tokens, topIndices, transposed } from "./draw.js";
import { append, el, labelled, select } from "./dom.js";
import { followDarkMode, onTensorBoardReload, readHashState, writeHashState } from "./host.js";

const POLL_MS = 10000; // besides TensorBoard's own reload notices
const PLAY_MS = 500; // pause between frames while playing, after each frame is drawn
const STRIP = 16; // epochs at most in a detail view's evolution strip
const GRID_FEATURES = 6, DETAIL_FEATURES = 15; // tabular bars
const SCALES = [["shared", "shared per method"], ["fixed", "fixed across epochs"], ["sample", "one per sample"], ["cell", "per cell"]];
const FILTERS = [["all", "all samples"], ["correct", "correct"], ["wrong", "misclassified"]];
const URL_KEYS = ["run", "epoch", "sample", "method", "filter", "klass", "scale", "map", "pin"];
const PAGE = { light: [255, 255, 255], dark: [48, 48, 48] };

/** Predicted class and confidence from one row of model outputs. */
function predicted(row) {
  if (row.length === 1) return row[0] >= 0.5 ? [1, row[0]] : [0, 1 - row[0]];
  let best = 0;
  row.forEach((v, i) => { if (v > row[best]) best = i; });
  const probabilities = row.every((v) => v >= 0 && v <= 1) && Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-3;
  if (probabilities) return [best, row[best]];
  const exps = row.map((v) => Math.exp(v - row[best]));
  return [best, 1 / exps.reduce((a, b) => a + b, 0)];
}

/** A readable rendering of an extra's value: numbers rounded, short lists inline. */
function describe(value) {
  if (typeof value === "number") return number(value);
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === "string")) return value.join(" ");
    const shown = value.slice(0, 12).map(describe).join(", ");
    return value.length > 12 ? `[${shown}, …] (${value.length} values)` : `[${shown}]`;
  }
  return Object.entries(value).map(([k, v]) => `${k}: ${describe(v)}`).join("; ");
}

/** The line that says what went wrong in a logged error (markdown with a traceback). */
function errorLine(text) {
  const lines = text.replace(/```/g, "").split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : text;
}

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class App {
  constructor(root) {
    this.root = root;
    this.api = new Api();
    this.state = { run: null, epoch: null, opacity: 0.75, map: "auto", scale: "shared", outlines: true, filter: "all", klass: "", sample: null, method: "", pin: null };
    this.index = null;
    this.training = null;
    this.playing = false;
    this.drawn = 0; // grid generation, so a slow fetch never overwrites a newer epoch
    this.scales = new WeakMap(); // epoch entry -> {signed, shared, cells[]}
    this.fixed = new Map(); // run|method|epochs -> scale over all epochs
    this.strips = new Map(); // strip key -> drawn strip element
    this.restore = readHashState(); // the view of a shared link or a reload, applied once the data is in
  }

  async start() {
    this.status = el("div", { className: "status", id: "status", role: "status" });
    this.controls = el("div", { className: "controls" });
    this.chartBox = el("div", { className: "chart-box", id: "charts" });
    this.grid = el("div", { className: "grid", id: "grid" });
    this.panel = el("div", { className: "detail", id: "detail", hidden: true, tabIndex: -1 });
    this.tip = el("div", { className: "tip", id: "tip", hidden: true });
    this.root.append(el("h2", {}, "Explanations"), this.controls, this.status, this.chartBox, this.grid, this.panel, this.tip);
    followDarkMode();
    new MutationObserver(() => this.state.run && this.run?.kind === "text" && this.drawGrid()).observe(document.documentElement, { attributes: true, attributeFilter: ["class"] });
    document.addEventListener("keydown", (event) => this.key(event));
    this.root.addEventListener("mousemove", (event) => this.hover(event));
    this.root.addEventListener("mouseleave", () => { this.tip.hidden = true; });
    const refresh = () => this.refresh().catch((error) => this.say(`Could not refresh: ${error.message}`));
    onTensorBoardReload(() => {
      this.root.dataset.reloads = String(Number(this.root.dataset.reloads || 0) + 1); // TensorBoard's notices seen
      refresh();
    });
    await this.refresh();
    setInterval(refresh, POLL_MS);
  }

  say(message) {
    this.status.textContent = message;
  }

  get run() {
    return this.index.runs[this.state.run];
  }

  get methods() {
    return Object.keys(this.run.methods);
  }

  /** Epochs at which any method of the run was explained (or failed). */
  get epochs() {
    const failed = Object.values(this.run.failures || {}).flatMap((byEpoch) => Object.keys(byEpoch).map(Number));
    return [...new Set([...Object.values(this.run.methods).flat(), ...failed])].sort((a, b) => a - b);
  }

  /** The sample position of the detail view, or null. */
  get detail() {
    if (this.state.sample === null || !this.run) return null;
    const i = this.run.ids.indexOf(this.state.sample);
    return i < 0 ? null : i;
  }

  saveUrl() {
    const s = this.state;
    writeHashState(Object.fromEntries(URL_KEYS.map((k) => [k, k === "scale" && s[k] === "shared" ? null : k === "map" && s[k] === "auto" ? null : k === "filter" && s[k] === "all" ? null : s[k]])));
  }

  /** Reload the index and redraw what changed: new runs and epochs appear while training writes. */
  async refresh() {
    if (this.refreshing) return this.refreshing;
    this.refreshing = this.reload().finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  async reload() {
    const index = await this.api.index();
    const namesBefore = this.index ? Object.keys(this.index.runs).join("\n") : null;
    const before = this.index && this.state.run && this.index.runs[this.state.run] ? JSON.stringify(this.index.runs[this.state.run]) : null;
    const wasLast = before !== null && this.state.epoch === this.epochs[this.epochs.length - 1];
    this.index = index;
    const names = Object.keys(index.runs);
    const problems = index.errors.map((e) => `${e.run}: ${e.message}`).join("; ");
    if (!names.length) {
      this.controls.replaceChildren();
      this.say(`No tf-explain-kit explanations found yet. Log some with tf_explain_kit.ExplainCallback. ${problems}`);
      return;
    }
    if (!names.includes(this.state.run)) {
      const wanted = this.restore?.run;
      await this.selectRun(names.includes(wanted) ? wanted : names[0], this.restore);
      this.restore = null;
    } else if (JSON.stringify(this.run) !== before) {
      if (wasLast) this.state.epoch = this.epochs[this.epochs.length - 1];
      this.training = await this.api.training(this.state.run);
      this.drawControls();
      this.drawCharts();
      await this.drawGrid();
      if (this.detail !== null) await this.drawDetail();
    } else if (names.join("\n") !== namesBefore) {
      this.drawControls();
    }
    if (problems) this.say(`Some runs cannot be shown: ${problems}`);
  }

  /** Show run `name`; `restored` (URL state) picks the epoch, filters, sample and scale. */
  async selectRun(name, restored = null) {
    this.state.run = name;
    const epochs = this.epochs;
    const epoch = restored && epochs.includes(Number(restored.epoch)) ? Number(restored.epoch) : epochs[epochs.length - 1] ?? null;
    this.state.epoch = epoch;
    this.state.klass = "";
    this.state.sample = null;
    this.state.pin = null;
    if (restored) {
      const allowed = { filter: FILTERS.map(([v]) => v), scale: SCALES.map(([v]) => v), map: ["auto", ...Object.keys(COLORMAPS)], method: this.methods };
      for (const [key, values] of Object.entries(allowed)) if (values.includes(restored[key])) this.state[key] = restored[key];
      if (restored.klass !== undefined) this.state.klass = restored.klass;
      if (epochs.includes(Number(restored.pin))) this.state.pin = Number(restored.pin);
      if (restored.sample !== undefined && this.run.ids.includes(Number(restored.sample))) this.state.sample = Number(restored.sample);
    }
    this.training = await this.api.training(name);
    this.inputs = this.run.inputs && this.run.kind !== "text" ? await this.api.array(this.run.inputs) : null;
    this.drawControls();
    this.drawCharts();
    await this.drawGrid();
    if (this.detail !== null) await this.drawDetail();
    else this.closeDetail();
  }

  async setEpoch(epoch) {
    if (epoch === undefined || epoch === null) return;
    this.state.epoch = epoch;
    const slider = this.root.querySelector("#epoch");
    if (slider) slider.value = String(this.epochs.indexOf(epoch));
    this.root.querySelector("#epoch-label").textContent = `epoch ${epoch}`;
    for (const chart of this.chartBox.querySelectorAll("svg.chart")) chart.moveCursor?.(epoch);
    await this.drawGrid();
    if (this.detail !== null) await this.drawDetail();
  }

  /** Step the epoch by `delta` explained epochs (wrapping when `wrap`). */
  stepEpoch(delta, wrap = false) {
    const epochs = this.epochs;
    let k = epochs.indexOf(this.state.epoch) + delta;
    if (wrap) k = (k + epochs.length) % epochs.length;
    return this.setEpoch(epochs[Math.max(0, Math.min(epochs.length - 1, k))]);
  }

  set(key, value) {
    this.state[key] = value;
    this.drawGrid();
    if (this.detail !== null) this.drawDetail();
  }

  /** Opacity changes only the heatmaps' pixels: redraw those canvases, nothing else. */
  setOpacity(value) {
    this.state.opacity = value;
    for (const canvas of this.root.querySelectorAll("canvas.heat")) canvas.redraw?.();
  }

  drawControls() {
    const focused = this.root.ownerDocument.activeElement?.id;
    const run = this.run, epochs = this.epochs;
    const slider = el("input", { type: "range", id: "epoch", min: 0, max: Math.max(0, epochs.length - 1), step: 1, value: Math.max(0, epochs.indexOf(this.state.epoch)), ariaLabel: "epoch" });
    slider.addEventListener("input", () => this.setEpoch(epochs[Number(slider.value)]));
    const play = el("button", { id: "play", type: "button", onclick: () => this.togglePlay() }, this.playing ? "Pause" : "Play");
    const pin = el("button", { id: "pin", type: "button", onclick: () => this.togglePin() }, this.state.pin === null ? "Pin epoch" : `Unpin epoch ${this.state.pin}`);
    const opacity = el("input", { type: "range", id: "opacity", min: 0, max: 1, step: 0.05, value: this.state.opacity });
    opacity.addEventListener("input", () => this.setOpacity(Number(opacity.value)));
    const outlines = el("input", { type: "checkbox", id: "outlines", checked: this.state.outlines, onchange: () => this.set("outlines", outlines.checked) });
    const labels = [...new Set(run.labels || [])].sort((a, b) => a - b).map((l) => [String(l), run.class_names?.[l] ?? String(l)]);
    this.controls.replaceChildren();
    append(this.controls, [
      labelled("Run", select("run", Object.keys(this.index.runs).map((r) => [r, r]), this.state.run, (r) => this.selectRun(r).then(() => this.saveUrl()))),
      labelled("Epoch", slider),
      el("span", { id: "epoch-label", className: "epoch-label" }, `epoch ${this.state.epoch}`),
      play,
      pin,
      run.kind === "image" ? labelled("Opacity", opacity) : null,
      labelled("Colours", select("colours", [["auto", "auto"], ...Object.keys(COLORMAPS).map((m) => [m, m])], this.state.map, (v) => this.set("map", v))),
      labelled("Scale", select("scale", SCALES, this.state.scale, (v) => this.set("scale", v))),
      run.kind === "image" ? labelled("LIME outlines", outlines) : null,
      labelled("Show", select("filter", FILTERS, this.state.filter, (v) => this.set("filter", v))),
      labels.length ? labelled("Class", select("klass", [["", "all classes"], ...labels], this.state.klass, (v) => this.set("klass", v))) : null,
    ]);
    if (focused) this.root.querySelector(`#${focused}`)?.focus();
  }

  /** Play: the next epoch only once the previous one is drawn. */
  async togglePlay() {
    this.playing = !this.playing;
    this.root.querySelector("#play").textContent = this.playing ? "Pause" : "Play";
    while (this.playing) {
      await this.stepEpoch(1, true);
      await nextFrame();
      await sleep(PLAY_MS);
    }
    this.saveUrl();
  }

  togglePin() {
    this.state.pin = this.state.pin === null ? this.state.epoch : null;
    this.drawControls();
    this.saveUrl();
    if (this.detail !== null) this.drawDetail();
  }

  drawCharts() {
    this.chartBox.replaceChildren(trainingCharts(this.training, this.state.epoch, (epoch) => {
      const epochs = this.epochs;
      const nearest = epochs.reduce((best, e) => (Math.abs(e - epoch) < Math.abs(best - epoch) ? e : best), epochs[0]);
      this.setEpoch(nearest);
    }));
  }

  /** Every method's data at `epoch` (null where the method did not run then). */
  async epochData(epoch) {
    const methods = this.methods;
    const data = await Promise.all(methods.map((m) => (this.run.methods[m].includes(epoch) ? this.api.epoch(this.state.run, m, epoch) : null)));
    return Object.fromEntries(methods.map((m, i) => [m, data[i]]));
  }

  className(label) {
    return this.run.class_names?.[label] ?? String(label);
  }

  /** Label, prediction, confidence and whether misclassified, for each sample. */
  rows(data) {
    const any = Object.values(data).find(Boolean);
    return this.run.ids.map((id, i) => {
      const label = this.run.labels ? this.run.labels[i] : null;
      const [prediction, confidence] = any ? predicted(any.predictions[i]) : [null, null];
      const wrong = label !== null && prediction !== null && label !== prediction;
      return { i, id, label, prediction, confidence, wrong, target: any ? any.targets[i] : null };
    });
  }

  visible(rows) {
    const { filter, klass } = this.state;
    return rows.filter((r) => (filter === "all" || (filter === "wrong") === r.wrong) && (klass === "" || String(r.label) === klass));
  }

  /** Cached facts about one method's values at one epoch: signedness, shared and per-cell scales. */
  facts(entry) {
    if (!this.scales.has(entry)) {
      const n = this.run.ids.length, size = entry.maps.length / n;
      const cells = new Array(n);
      const cell = (i) => (cells[i] ??= scaleOf(entry.maps.subarray(i * size, (i + 1) * size)));
      this.scales.set(entry, { signed: isSigned(entry.maps), shared: scaleOf(entry.maps), size, cell });
    }
    return this.scales.get(entry);
  }

  /** Per method, the largest shared scale over all its epochs (fetched once per epoch list). */
  async fixedScale(method) {
    const epochs = this.run.methods[method];
    const key = `${this.state.run}\u0000${method}\u0000${epochs.join(",")}`;
    if (!this.fixed.has(key)) {
      this.fixed.set(key, Promise.all(epochs.map((e) => this.api.epoch(this.state.run, method, e))).then((entries) => Math.max(...entries.map((entry) => this.facts(entry).shared))));
    }
    return this.fixed.get(key);
  }

  /** `(i) => {map, scale}`: how to colour sample i of `method` at this epoch under the chosen scale. */
  async styler(data, method) {
    const entry = data[method];
    const facts = this.facts(entry);
    const map = mapName(this.state.map, facts.signed);
    const scale = this.state.scale;
    if (scale === "fixed") {
      const fixed = await this.fixedScale(method);
      return { map, single: fixed, at: () => ({ map, scale: fixed }) };
    }
    if (scale === "cell") return { map, single: null, at: (i) => ({ map, scale: facts.cell(i) }) };
    if (scale === "sample") {
      const at = (i) => ({ map, scale: Math.max(...Object.values(data).filter(Boolean).map((e) => this.facts(e).cell(i))) });
      return { map, single: null, at };
    }
    return { map, single: facts.shared, at: () => ({ map, scale: facts.shared }) };
  }

  /** Per sample of a tabular run, one feature order shared by all methods: by the mean of
  each method's |attribution| relative to that method's scale. */
  featureOrder(data, i, k) {
    const entries = Object.values(data).filter(Boolean);
    if (!entries.length) return [];
    const size = this.facts(entries[0]).size;
    const weight = new Float32Array(size);
    for (const entry of entries) {
      const facts = this.facts(entry), scale = facts.cell(i);
      for (let j = 0; j < size; j++) weight[j] += Math.abs(entry.maps[i * size + j]) / scale;
    }
    return topIndices(weight, k);
  }

  /** One cell: the method's explanation of sample `i`, in the form that suits the data. */
  cell(entry, i, { map, scale }, { big = false, order = null, values = null } = {}) {
    const shape = entry.arrays.attributions.shape;
    const size = shape.slice(1).reduce((a, b) => a * b, 1);
    values ??= entry.maps.subarray(i * size, (i + 1) * size);
    const kind = this.run.kind;
    if (kind === "tabular") {
      const names = this.run.feature_names || [...values.keys()].map((j) => `feature ${j}`);
      const inputs = this.inputs ? this.inputs.subarray(i * size, (i + 1) * size) : null;
      return bars(names, values, scale, map, order ?? topIndices(values, big ? DETAIL_FEATURES : GRID_FEATURES), inputs);
    }
    if (kind === "text") return tokens(this.words(entry, i, values), values, scale, map, document.documentElement.classList.contains("tek-dark") ? PAGE.dark : PAGE.light);
    let [h, w] = shape.length === 2 ? [1, shape[1]] : shape.slice(1, 3); // (N, T) maps over time steps: one row
    let background = this.inputs && this.run.inputs.shape[1] === h && this.run.inputs.shape[2] === w ? this.grey(i) : null;
    if (kind === "sequence" && shape.length === 3) { // (N, T, F) series: time across, one row per feature
      values = transposed(values, h, w);
      background = background && transposed(background, h, w);
      [h, w] = [w, h];
    }
    const outline = this.state.outlines && entry.segments ? limeOutlines(entry.segments.subarray(i * h * w, (i + 1) * h * w), values, h, w) : null;
    const canvas = el("canvas", { className: `heat${big ? " big" : ""}${h === 1 ? " steps" : ""}` });
    canvas.where = kind === "sequence" ? (y, x) => this.position(x, h === 1 ? null : y) : (y, x) => `(${y}, ${x})`;
    canvas.redraw = () => heatmap(canvas, { values, background, h, w, scale, map, opacity: this.state.opacity, outline });
    return canvas.redraw();
  }

  /** "step t" of a series, with its feature's name when there are several. */
  position(step, feature) {
    return feature === null ? `step ${step}` : `step ${step}, ${this.run.feature_names?.[feature] ?? `feature ${feature}`}`;
  }

  /** The words a text method's weights belong to: its own tokens when it logged them
  (`extras.tokens`, one list per sample), else the run's. */
  words(entry, i, values) {
    const own = entry.extras?.tokens;
    return (Array.isArray(own) && Array.isArray(own[i]) ? own[i] : null) || this.run.tokens?.[i] || [...values.keys()].map(String);
  }

  /** Sample i's image in grey, computed once per run. */
  grey(i) {
    if (this.greys?.inputs !== this.inputs) this.greys = { inputs: this.inputs, samples: new Map() };
    if (!this.greys.samples.has(i)) this.greys.samples.set(i, grey(this.inputs, this.run.inputs.shape, i));
    return this.greys.samples.get(i);
  }

  /** What a method shows at `epoch` where it has no explanation: its logged error, or nothing. */
  failure(method, epoch) {
    const failures = this.run.failures?.[method];
    if (!failures) return null;
    if (failures[epoch] !== undefined) return failures[epoch];
    const logged = Object.keys(failures).map(Number).sort((a, b) => a - b);
    return this.run.methods[method].length ? null : failures[logged[logged.length - 1]];
  }

  /** Sample i's input as a picture; a series (N, T, F) with time across, one row per feature. */
  picture(className, i) {
    const shape = this.run.inputs.shape;
    if (this.run.kind !== "sequence" || shape.length !== 3) return original(el("canvas", { className }), this.inputs, shape, i);
    const [, steps, features] = shape;
    return original(el("canvas", { className }), transposed(this.inputs.subarray(i * steps * features, (i + 1) * steps * features), steps, features), [1, features, steps], 0);
  }

  emptyCell(method, epoch) {
    const failure = this.failure(method, epoch);
    if (failure === null) return el("div", { className: "placeholder muted" }, "not run at this epoch");
    return el("div", { className: "placeholder error-cell", title: failure }, el("b", {}, "failed: "), errorLine(failure));
  }

  inputCell(row, big = false) {
    const kind = this.run.kind;
    if (kind !== "tabular" && kind !== "text" && this.inputs && this.run.inputs.shape.length >= 3) {
      if (big) return this.picture("input big", row.i);
      if (this.thumbnails?.inputs !== this.inputs) this.thumbnails = { inputs: this.inputs, canvases: new Map() }; // drawn once, moved into each new grid
      if (!this.thumbnails.canvases.has(row.i)) this.thumbnails.canvases.set(row.i, this.picture("input", row.i));
      return this.thumbnails.canvases.get(row.i);
    }
    if (kind === "text" && this.run.tokens) return el("div", { className: "text-input" }, this.run.tokens[row.i].join(" "));
    return el("span", { className: "muted" }, `sample ${row.id}`);
  }

  labelCell(row) {
    return el(
      "div", { className: "label-cell" },
      el("div", {}, `#${row.id}`),
      row.label !== null ? el("div", {}, "true: ", el("b", { className: "true-label" }, this.className(row.label))) : null,
      row.prediction !== null ? el("div", {}, "predicted: ", el("b", { className: "predicted-label" }, this.className(row.prediction)), ` (${(100 * row.confidence).toFixed(1)}%)`) : null,
      row.wrong ? el("div", { className: "wrong-badge" }, "✗ misclassified") : null,
    );
  }

  /** The column header: the method's name and, when one scale colours the column, its colour bar. */
  header(method, style) {
    const failed = this.run.failures?.[method] && !this.run.methods[method].length;
    return el("th", { dataset: { method }, className: failed ? "failed" : "" }, el("div", { className: "name" }, method), style?.single ? colourBar(style.map, style.single, true) : null);
  }

  async drawGrid() {
    if (this.state.epoch === null) return;
    const generation = ++this.drawn;
    let data, styles;
    try {
      data = await this.epochData(this.state.epoch);
      const present = this.methods.filter((m) => data[m]);
      styles = Object.fromEntries(await Promise.all(present.map(async (m) => [m, await this.styler(data, m)])));
    } catch (error) {
      this.say(`Could not load epoch ${this.state.epoch}: ${error.message}`);
      return;
    }
    if (generation !== this.drawn) return;
    const methods = this.methods;
    const n = this.run.ids.length;
    const rows = this.visible(this.rows(data));
    const table = el("table", { className: `grid-table kind-${this.run.kind}`, dataset: { epoch: String(this.state.epoch), run: this.state.run, scale: this.state.scale } });
    table.appendChild(el("tr", {}, el("th", {}, "input"), el("th", {}, "label"), methods.map((m) => this.header(m, styles[m]))));
    for (const row of rows) {
      const selected = row.id === this.state.sample;
      const tr = el("tr", { className: `row${row.wrong ? " wrong" : ""}${selected ? " selected" : ""}`, tabIndex: 0, ariaSelected: String(selected), dataset: { sample: String(row.id) }, onclick: () => this.openDetail(row.id) });
      tr.append(el("td", {}, this.inputCell(row)), el("td", {}, this.labelCell(row)));
      const order = this.run.kind === "tabular" ? this.featureOrder(data, row.i, GRID_FEATURES) : null;
      for (const m of methods) tr.appendChild(el("td", { className: "method-cell", dataset: { method: m } }, data[m] ? this.cell(data[m], row.i, styles[m].at(row.i), { order }) : this.emptyCell(m, this.state.epoch)));
      table.appendChild(tr);
    }
    if (!rows.length) {
      const shown = [FILTERS.find(([v]) => v === this.state.filter)[1], this.state.klass !== "" ? `class ${this.className(Number(this.state.klass))}` : null].filter(Boolean).join(", ");
      const reset = el("button", { type: "button", id: "show-all", onclick: () => { this.state.filter = "all"; this.state.klass = ""; this.drawControls(); this.drawGrid(); } }, "Show all samples");
      table.appendChild(el("tr", { className: "empty" }, el("td", { colSpan: methods.length + 2 }, `No sample matches the filters (${shown}) at epoch ${this.state.epoch}. `, reset)));
    }
    const focusedSample = this.grid.contains(document.activeElement) ? document.activeElement.dataset?.sample : undefined;
    this.grid.replaceChildren(table);
    if (focusedSample !== undefined) this.grid.querySelector(`tr.row[data-sample="${focusedSample}"]`)?.focus();
    const failed = methods.filter((m) => !data[m] && this.failure(m, this.state.epoch) !== null);
    this.say(`${rows.length} of ${n} samples · epoch ${this.state.epoch} (${this.epochs.length} explained epochs)${failed.length ? ` · failed: ${failed.join(", ")}` : ""} · click a row or use ↑↓ for details, ←→ for epochs`);
    this.saveUrl();
  }

  async openDetail(id) {
    this.state.sample = id;
    for (const tr of this.grid.querySelectorAll("tr.row")) {
      const selected = tr.dataset.sample === String(id);
      tr.classList.toggle("selected", selected);
      tr.ariaSelected = String(selected);
    }
    this.saveUrl();
    await this.drawDetail();
  }

  closeDetail() {
    const id = this.state.sample;
    this.state.sample = null;
    this.panel.hidden = true;
    this.panel.replaceChildren();
    for (const tr of this.grid.querySelectorAll("tr.row.selected")) { tr.classList.remove("selected"); tr.ariaSelected = "false"; }
    this.saveUrl();
    if (id !== null) this.grid.querySelector(`tr.row[data-sample="${id}"]`)?.focus();
  }

  /** One sample: original, each method full size with colour bar, top features, extras, the
  pinned epoch and the difference, evolution. */
  async drawDetail() {
    const i = this.detail;
    const epoch = this.state.epoch, pin = this.state.pin;
    const [data, pinned] = await Promise.all([this.epochData(epoch), pin !== null && pin !== epoch ? this.epochData(pin) : null]);
    if (i !== this.detail || epoch !== this.state.epoch) return; // a newer request is drawing
    const row = this.rows(data)[i];
    const n = this.run.ids.length;
    const order = this.run.kind === "tabular" ? this.featureOrder(data, i, DETAIL_FEATURES) : null;
    const close = el("button", { id: "close-detail", type: "button", onclick: () => this.closeDetail(), title: "Close (Escape)" }, "Close");
    const sections = [];
    for (const method of this.methods) {
      const entry = data[method];
      if (!entry) {
        const failure = this.failure(method, epoch);
        if (failure !== null) sections.push(el("section", { className: "method-detail", dataset: { method } }, el("h4", {}, method, " failed"), el("pre", { className: "error-text" }, failure.replace(/```|\*\*/g, "").trim())));
        continue;
      }
      const style = (await this.styler(data, method)).at(i);
      const size = entry.maps.length / n;
      const values = entry.maps.subarray(i * size, (i + 1) * size);
      const extras = Object.entries(entry.extras).filter(([k, v]) => k !== "tokens" && (!Array.isArray(v) || v.length === n)).map(([k, v]) => el("li", {}, el("span", { className: "key" }, k), ": ", describe(Array.isArray(v) ? v[i] : v)));
      const views = [el("figure", {}, this.cell(entry, i, style, { big: true, order }), el("figcaption", {}, `epoch ${epoch}`))];
      if (pinned?.[method]) {
        const [before, difference] = this.comparison(pinned[method], entry, i, style, order);
        views.unshift(before);
        views.push(difference);
      }
      sections.push(el(
        "section", { className: `method-detail${method === this.state.method ? " focused" : ""}`, dataset: { method } },
        el("h4", { onclick: () => { this.state.method = method; this.saveUrl(); } }, method, ` (explained class: ${this.className(entry.targets[i])}${typeof entry.seconds === "number" ? `, ${number(entry.seconds)} s` : ""})`),
        el("div", { className: "views" }, views),
        colourBar(style.map, style.scale),
        el("div", { className: "facts" }, el("b", {}, "top features"), el("ol", {}, this.topFeatures(entry, values, i).map((t) => el("li", {}, t)))),
        extras.length ? el("div", { className: "facts" }, el("b", {}, "extras"), el("ul", {}, extras)) : null,
        this.strip(method, i),
      ));
    }
    const wasOpen = !this.panel.hidden;
    this.panel.replaceChildren(el("div", { className: "detail-head" }, close, el("h3", {}, `Sample #${row.id}`)), this.labelCell(row), this.inputCell(row, true), ...sections);
    this.panel.hidden = false;
    if (!wasOpen) this.panel.focus({ preventScroll: true });
    if (this.state.method) this.panel.querySelector(`section[data-method="${CSS.escape(this.state.method)}"]`)?.scrollIntoView({ block: "nearest" });
  }

  /** The pinned epoch's cell on the current cell's scale, and the difference (current − pinned). */
  comparison(before, after, i, style, order) {
    const n = this.run.ids.length, size = after.maps.length / n;
    const a = before.maps.subarray(i * size, (i + 1) * size), b = after.maps.subarray(i * size, (i + 1) * size);
    const difference = b.map((v, j) => v - a[j]);
    const differenceStyle = { map: COLORMAPS[this.state.map]?.signed ? this.state.map : "RdBu_r", scale: scaleOf(difference) };
    return [
      el("figure", { className: "pinned" }, this.cell(before, i, style, { big: true, order }), el("figcaption", {}, `pinned epoch ${before.epoch}`)),
      el("figure", { className: "difference" }, this.cell(after, i, differenceStyle, { big: true, order, values: difference }), el("figcaption", {}, `difference (epoch ${after.epoch} − ${before.epoch}), ±${number(differenceStyle.scale)}`)),
    ];
  }

  topFeatures(entry, values, i) {
    const kind = this.run.kind, shape = entry.arrays.attributions.shape;
    const words = kind === "text" ? this.words(entry, i, values) : null;
    const count = words ? Math.min(values.length, words.length) : values.length;
    return topIndices(values.subarray(0, count), 5).map((j) => {
      const where = kind === "tabular" ? this.run.feature_names?.[j] ?? `feature ${j}`
        : words ? `“${words[j]}” (token ${j})`
        : kind === "sequence" ? this.position(shape.length === 2 ? j : Math.floor(j / shape[2]), shape.length === 2 ? null : j % shape[2])
        : shape.length === 2 ? `step ${j}` : `(${Math.floor(j / shape[2])}, ${j % shape[2]})`;
      return `${where}: ${number(values[j])}`;
    });
  }

  /** The sample under one method across (up to STRIP evenly spaced) epochs, on one scale
  fixed across those epochs (shown by its colour bar); drawn once, then only the current
  epoch's mark moves. */
  strip(method, i) {
    const all = this.run.methods[method];
    const step = Math.max(1, Math.ceil(all.length / STRIP));
    const chosen = all.filter((_, k) => k % step === 0 || k === all.length - 1);
    if (!chosen.includes(this.state.epoch) && all.includes(this.state.epoch)) chosen.push(this.state.epoch);
    chosen.sort((a, b) => a - b);
    const key = [this.state.run, method, i, chosen.join(","), this.state.map, this.state.opacity, this.state.outlines].join("\u0000");
    let box = this.strips.get(key);
    if (!box) {
      box = el("div", { className: "strip", dataset: { method } }, "loading evolution…");
      this.strips.clear(); // one detail view at a time: keep only its strips
      this.drawStrip(box, method, i, chosen);
    }
    this.strips.set(key, box);
    for (const figure of box.querySelectorAll("figure")) figure.classList.toggle("current", Number(figure.dataset.epoch) === this.state.epoch);
    return box;
  }

  async drawStrip(box, method, i, chosen) {
    const n = this.run.ids.length;
    const entries = await Promise.all(chosen.map((epoch) => this.api.epoch(this.state.run, method, epoch)));
    const map = mapName(this.state.map, entries.some((e) => this.facts(e).signed));
    const scale = Math.max(...entries.map((e) => this.facts(e).cell(i)));
    const items = entries.map((entry, k) => el(
      "figure", { className: chosen[k] === this.state.epoch ? "current" : "", dataset: { epoch: String(chosen[k]) }, onclick: () => this.setEpoch(chosen[k]) },
      this.cell(entry, i, { map, scale }), el("figcaption", {}, `epoch ${chosen[k]}`),
    ));
    box.replaceChildren(el("b", {}, `evolution (one scale for all epochs, ±${number(scale)})`), el("div", { className: "strip-items" }, items), colourBar(map, scale, true));
    box.dataset.samples = String(n);
  }

  /** Keyboard: ↑/↓ previous/next sample, ←/→ previous/next epoch, Enter opens, Escape closes. */
  key(event) {
    if (!this.index || !this.state.run || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const editing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
    if (event.key === "Escape" && this.detail !== null) {
      event.preventDefault();
      this.closeDetail();
      return;
    }
    if (editing) return;
    const rows = [...this.grid.querySelectorAll("tr.row")];
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!rows.length) return;
      event.preventDefault();
      const current = rows.findIndex((tr) => tr === document.activeElement || tr.dataset.sample === String(this.state.sample));
      const next = rows[Math.max(0, Math.min(rows.length - 1, current + (event.key === "ArrowDown" ? 1 : -1)))];
      if (current < 0 && event.key === "ArrowUp") return;
      next.focus();
      if (this.detail !== null) this.openDetail(Number(next.dataset.sample));
      else this.markSelected(next);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      this.stepEpoch(event.key === "ArrowRight" ? 1 : -1);
    } else if ((event.key === "Enter" || event.key === " ") && target instanceof HTMLTableRowElement && target.dataset.sample !== undefined) {
      event.preventDefault();
      this.openDetail(Number(target.dataset.sample));
    }
  }

  markSelected(tr) {
    for (const other of this.grid.querySelectorAll("tr.row")) { other.classList.toggle("selected", other === tr); other.ariaSelected = String(other === tr); }
  }

  /** Hover read-out of the value under the pointer on a heatmap. */
  hover(event) {
    const canvas = event.target;
    if (!(canvas instanceof HTMLCanvasElement) || !canvas.values) {
      this.tip.hidden = true;
      return;
    }
    const box = canvas.getBoundingClientRect();
    const x = Math.min(canvas.width - 1, Math.floor(((event.clientX - box.left) / box.width) * canvas.width));
    const y = Math.min(canvas.height - 1, Math.floor(((event.clientY - box.top) / box.height) * canvas.height));
    this.tip.textContent = `${canvas.where ? canvas.where(y, x) : `(${y}, ${x})`}: ${number(canvas.values[y * canvas.width + x])}`;
    this.tip.style.left = `${event.clientX + 12}px`;
    this.tip.style.top = `${event.clientY + 12}px`;
    this.tip.hidden = false;
  }
}

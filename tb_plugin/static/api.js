/** The plugin's routes (relative to data/plugin/tf_explain_kit/), with per-epoch caching. */

async function get(route, params, as) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${route}?${query}` : route);
  if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
  return as === "bytes" ? response.arrayBuffer() : response.json();
}

let halves = null; // float16 bit pattern -> its value

function halfTable() {
  if (halves) return halves;
  halves = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
    if (exponent === 0) halves[bits] = sign * fraction * 2 ** -24;
    else if (exponent === 31) halves[bits] = fraction ? NaN : sign * Infinity;
    else halves[bits] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return halves;
}

/** The numbers of an array reference's bytes: float32, uint16 and int32 as they are;
 * float16 decoded and multiplied by each sample's `scale` (little-endian, as every browser). */
export function decode(reference, buffer) {
  if (reference.dtype === "uint16") return new Uint16Array(buffer);
  if (reference.dtype === "int32") return new Int32Array(buffer);
  if (reference.dtype !== "float16") return new Float32Array(buffer);
  const bits = new Uint16Array(buffer), table = halfTable(), out = new Float32Array(bits.length);
  const size = bits.length / Math.max(reference.scale.length, 1);
  for (let i = 0; i < reference.scale.length; i++) {
    const scale = reference.scale[i];
    for (let j = i * size, end = j + size; j < end; j++) out[j] = table[bits[j]] * scale;
  }
  return out;
}

export class Api {
  constructor() {
    this.arrays = new Map(); // opaque key -> Promise<typed array>
    this.epochs = new Map(); // run|method|epoch -> Promise<epoch data>
  }

  index() {
    return get("index", {});
  }

  training(run) {
    return get("training", { run });
  }

  /** The numbers behind an array reference `{key, shape, dtype[, scale]}`. */
  array(reference) {
    if (!this.arrays.has(reference.key)) this.arrays.set(reference.key, get("array", { key: reference.key }, "bytes").then((buffer) => decode(reference, buffer)));
    return this.arrays.get(reference.key);
  }

  /** One method at one epoch: the route's JSON plus `maps` (Float32Array) and `segments` (integers). */
  epoch(run, method, epoch) {
    const id = `${run}\u0000${method}\u0000${epoch}`;
    if (!this.epochs.has(id)) {
      const promise = get("epoch", { run, method, epoch }).then(async (data) => {
        data.maps = await this.array(data.arrays.attributions);
        data.segments = data.arrays.segments ? await this.array(data.arrays.segments) : null;
        return data;
      });
      promise.catch(() => this.epochs.delete(id)); // retry on the next request
      this.epochs.set(id, promise);
    }
    return this.epochs.get(id);
  }
}

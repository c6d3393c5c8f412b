// The farmer page's in-browser predictor, for identification without a connection.
// It is the offline twin of the server's path and must agree with it (tests/serving/test_offline_parity.py):
// - preprocessing: pestid/preprocess.py, with Pillow's bilinear resampling ported to the integer;
// - test-time views, averaged logits and temperature: pestid/predictor.py;
// - fusing photos and the decision rules: pestid/decision.py, with its message templates
//   (sent in GET /v1/offline/manifest, never written twice).
"use strict";
const Offline = (() => {
  const PRECISION_BITS = 22; // Pillow's fixed point for 8-bit resampling (libImaging/Resample.c)

  // Python's round(): halves go to the even neighbour.
  function pyRound(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter.
  // in0 and in1 are C floats there, and so is their difference: (double)(in1 - in0) / outSize.
  function coefficients(inSize, in0, in1, outSize) {
    const scale = Math.fround(in1 - in0) / outSize;
    const filterscale = Math.max(scale, 1.0);
    const support = 1.0 * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Int32Array(outSize * ksize);
    const weights = new Float64Array(ksize);
    const ss = 1.0 / filterscale;
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      let ww = 0.0;
      for (let x = 0; x < xmax; x++) {
        const t = Math.abs((x + xmin - center + 0.5) * ss);
        const w = t < 1.0 ? 1.0 - t : 0.0;
        weights[x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        const v = ww !== 0.0 ? weights[x] / ww : weights[x];
        kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, bounds, kk };
  }

  function clip8(v) {
    const s = v >> PRECISION_BITS;
    return s < 0 ? 0 : s > 255 ? 255 : s;
  }

  // Pillow's Image.resize(size, BILINEAR, box) on RGBA pixels: the source region box = [x0, y0, x1, y1] resampled
  // to outW × outH, horizontal pass first, then vertical (ImagingResampleInner, with its conditions for each pass).
  function resize(pixels, width, height, outW, outH, box) {
    const horizontal = coefficients(width, box[0], box[2], outW);
    const vertical = coefficients(height, box[1], box[3], outH);
    let src = pixels, srcW = width;
    if (outW !== width || box[0] !== 0 || box[2] !== outW) {
      const first = vertical.bounds[0];
      const last = vertical.bounds[outH * 2 - 2] + vertical.bounds[outH * 2 - 1];
      for (let i = 0; i < outH; i++) vertical.bounds[i * 2] -= first;
      const rows = last - first;
      const tmp = new Uint8Array(outW * rows * 4);
      const { ksize, bounds, kk } = horizontal;
      for (let yy = 0; yy < rows; yy++) {
        const row = (yy + first) * width * 4;
        for (let xx = 0; xx < outW; xx++) {
          const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
          let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
          for (let x = 0; x < xmax; x++) {
            const p = row + (x + xmin) * 4, w = kk[k + x];
            s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
          }
          const o = (yy * outW + xx) * 4;
          tmp[o] = clip8(s0); tmp[o + 1] = clip8(s1); tmp[o + 2] = clip8(s2); tmp[o + 3] = 255;
        }
      }
      src = tmp;
      srcW = outW;
    }
    if (!(outH !== height || box[1] !== 0 || box[3] !== outH)) return src;
    const out = new Uint8Array(outW * outH * 4);
    const { ksize, bounds, kk } = vertical;
    for (let yy = 0; yy < outH; yy++) {
      const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k = yy * ksize;
      for (let xx = 0; xx < outW; xx++) {
        let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
        for (let y = 0; y < ymax; y++) {
          const p = ((y + ymin) * srcW + xx) * 4, w = kk[k + y];
          s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
        }
        const o = (yy * outW + xx) * 4;
        out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2); out[o + 3] = 255;
      }
    }
    return out;
  }

  // pestid.preprocess.preprocess: shorter side to round(size / crop_pct) and the centre crop, resampled as one
  // boxed resize (resize_and_crop); then scale, normalise, CHW.
  // Returns the (3, size, size) input and, when the contract asks, its mirrored view.
  function preprocess(pixels, width, height, spec, hflip) {
    const size = spec.size;
    const short = Math.max(size, pyRound(size / spec.crop_pct));
    const scale = short / Math.min(width, height);
    const outW = Math.max(short, pyRound(width * scale)), outH = Math.max(short, pyRound(height * scale));
    const left = Math.floor((outW - size) / 2), top = Math.floor((outH - size) / 2);
    const sx = width / outW, sy = height / outH;
    // Pillow takes the box as C floats (_imaging.c's "(ffff)"): the same rounding here, or some shapes of photo
    // (240×320, for one) come out with pixels off by one.
    const box = [left * sx, top * sy, (left + size) * sx, (top + size) * sy].map(Math.fround);
    const resized = resize(pixels, width, height, size, size, box);
    const plane = size * size;
    const input = new Float32Array(3 * plane);
    const mirrored = hflip ? new Float32Array(3 * plane) : null;
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      const mean = f(spec.mean[c]), std = f(spec.std[c]);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const v = f(f(f(resized[(y * size + x) * 4 + c] / 255) - mean) / std);
          input[c * plane + y * size + x] = v;
          if (mirrored) mirrored[c * plane + y * size + (size - 1 - x)] = v;
        }
      }
    }
    return mirrored ? [input, mirrored] : [input];
  }

  function softmax(logits, temperature) {
    const z = Array.from(logits, (v) => v / temperature);
    const top = Math.max(...z);
    const e = z.map((v) => Math.exp(v - top));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  }

  // "Rầy nâu" → "rầy nâu" mid-sentence (pestid.decision.in_sentence).
  function inSentence(name) {
    const second = name.charAt(1);
    return second && second !== second.toUpperCase() ? name.charAt(0).toLowerCase() + name.slice(1) : name;
  }

  function message(manifest, kind, id) {
    const out = {};
    for (const lang of ["vi", "en"]) {
      const template = manifest.messages[kind][lang];
      out[lang] = id ? template.replace("{name}", inSentence(manifest.catalogue[id][`name_${lang}`])) : template;
    }
    return out;
  }

  // Catalogue.ancestors: the groups above an id, nearest first.
  function ancestors(catalogue, id) {
    const out = [];
    for (let parent = catalogue[id].parent; parent; parent = catalogue[parent].parent) out.push(parent);
    return out;
  }

  // pestid.decision.group_masses: each group above the labels (Catalogue.groups_of), its summed probability, its
  // count of labels and its depth, summed in label order (the same floats as Python's).
  function groupMasses(catalogue, labels, probs) {
    const masses = new Map();
    labels.forEach((label, i) => {
      for (const id of [...(catalogue[label].kind === "group" ? [label] : []), ...ancestors(catalogue, label)]) {
        const entry = masses.get(id) || { mass: 0, size: 0, depth: ancestors(catalogue, id).length };
        masses.set(id, { ...entry, mass: entry.mass + probs[i], size: entry.size + 1 });
      }
    });
    return masses;
  }

  // pestid.decision.sure_group: the smallest group at or above its threshold: fewest labels, then the deepest,
  // then the likelier, then the first by id.
  function sureGroup(manifest, probs) {
    const { labels, threshold, group_thresholds: groupThresholds = {} } = manifest.contract;
    let best = null;
    const key = (g) => [g.size, -g.depth, -g.probability];
    for (const [id, { mass, size, depth }] of groupMasses(manifest.catalogue, labels, probs)) {
      if (mass < (id in groupThresholds ? groupThresholds[id] : threshold)) continue;
      const candidate = { id, probability: mass, size, depth };
      if (best === null) { best = candidate; continue; }
      const [a, b] = [key(candidate), key(best)];
      const order = a[0] - b[0] || a[1] - b[1] || a[2] - b[2] || (id < best.id ? -1 : 1);
      if (order < 0) best = candidate;
    }
    return best && { id: best.id, probability: best.probability };
  }

  // pestid.decision.decide on fused probabilities (and fused novelty, for a model with that output).
  function decide(manifest, probs, novelty = null) {
    const { labels, threshold, class_thresholds: classThresholds, novelty_threshold: noveltyThreshold } = manifest.contract;
    const catalogue = manifest.catalogue;
    const order = labels.map((_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
    const rank = (i) => ({ id: labels[i], probability: probs[i] });
    const best = rank(order[0]);
    const ranked = [best, ...order.slice(1).filter((i) => catalogue[labels[i]].in_scope).map(rank)].slice(0, 3);
    const org = catalogue[best.id];
    const answer = (decision, fields) => ({ decision, ranked, nearest_group: null, needs_review: decision !== "identified",
                                            do_not_spray: false, level: null, unfamiliar: false, ...fields });
    if (!org.in_scope) return answer("not_recognised", { messages: message(manifest, "out_of_scope") });
    if (novelty !== null && noveltyThreshold !== null && noveltyThreshold !== undefined && novelty > noveltyThreshold) {
      return answer("not_recognised", { unfamiliar: true, messages: message(manifest, "unfamiliar") });
    }
    const enemy = org.category === "natural_enemy";
    const limit = best.id in classThresholds ? classThresholds[best.id] : threshold;
    if (best.probability >= limit) {
      return answer("identified", { do_not_spray: enemy, level: "species", messages: message(manifest, "identified", best.id) });
    }
    const group = sureGroup(manifest, probs);
    if (group) {
      return answer("identified", { nearest_group: group, level: "group", do_not_spray: catalogue[group.id].natural_enemy,
                                    messages: message(manifest, "identified_group", group.id) });
    }
    if (best.probability >= manifest.uncertain_floor) {
      return answer("uncertain", { do_not_spray: enemy, messages: message(manifest, "uncertain") });
    }
    return answer("not_recognised", { messages: message(manifest, "not_recognised") });
  }

  // Decoded RGBA pixels of a photo as the server would decode it: EXIF orientation applied, no colour management.
  async function pixelsOf(blob) {
    const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none",
                                                  premultiplyAlpha: "none" });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const out = { pixels: data, width: bitmap.width, height: bitmap.height };
    bitmap.close();
    return out;
  }

  let session = null;
  let loadedFor = null;

  async function load(manifest) {
    if (session && loadedFor === manifest.model.sha256) return session;
    if (typeof ort === "undefined") throw new Error("onnxruntime-web is not installed on this server");
    ort.env.wasm.numThreads = 1; // no cross-origin isolation on the page: one thread, no SharedArrayBuffer
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = "/static/vendor/";
    const response = await fetch(manifest.model.url);
    if (!response.ok) throw new Error(`model ${response.status}`);
    session = await ort.InferenceSession.create(new Uint8Array(await response.arrayBuffer()),
                                                { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    loadedFor = manifest.model.sha256;
    return session;
  }

  // Calibrated probabilities of one photo: the contract's views, logits averaged in float32, temperature softmax;
  // and its novelty (the model's second output, averaged over the views), or null for a model without one.
  async function assess(manifest, blob) {
    const model = await load(manifest);
    const { preprocess: spec, tta, temperature, labels } = manifest.contract;
    const { pixels, width, height } = await pixelsOf(blob);
    const views = preprocess(pixels, width, height, spec, tta.includes("hflip"));
    const size = spec.size;
    const batch = new Float32Array(views.length * views[0].length);
    views.forEach((v, i) => batch.set(v, i * v.length));
    const input = new ort.Tensor("float32", batch, [views.length, 3, size, size]);
    const output = await model.run({ [model.inputNames[0]]: input });
    const logits = output[model.outputNames[0]].data;
    const n = labels.length;
    const mean = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let v = 0; v < views.length; v++) sum = Math.fround(sum + logits[v * n + j]);
      mean[j] = Math.fround(sum / views.length);
    }
    let novelty = null;
    if (model.outputNames.length > 1 && manifest.contract.novelty_threshold != null) {
      const scores = output[model.outputNames[1]].data;
      novelty = 0;
      for (let v = 0; v < views.length; v++) novelty += scores[v];
      novelty /= views.length;
    }
    return { probabilities: softmax(mean, temperature), novelty };
  }

  async function probabilities(manifest, blob) {
    return (await assess(manifest, blob)).probabilities;
  }

  // The answer for one observation's photos: probabilities and novelty fused by their means, then the decision rules.
  async function identify(manifest, blobs) {
    const assessed = [];
    for (const blob of blobs) assessed.push(await assess(manifest, blob));
    const rows = assessed.map((a) => a.probabilities);
    const fused = rows[0].map((_, j) => rows.reduce((s, r) => s + r[j], 0) / rows.length);
    const novelty = assessed[0].novelty === null ? null : assessed.reduce((s, a) => s + a.novelty, 0) / assessed.length;
    return { probabilities: fused, novelty, rows, ...decide(manifest, fused, novelty) };
  }

  return { identify, assess, probabilities, decide, preprocess, pixelsOf, load, inSentence };
})();

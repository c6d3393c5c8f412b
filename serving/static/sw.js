// The farmer page's service worker (served at /sw.js so it controls the whole page).
// It keeps what the page needs without a connection: the page, its scripts, onnxruntime-web and the INT8 model.
// - the model's address carries its digest, and the runtime is pinned: cache first, never stale;
// - the page, its scripts and the offline manifest: the network when it answers, the cached copy when not;
// - API calls (identify, receipts) always go to the network: the page's own queue retries them.
"use strict";
const CACHE = "pestid-offline-v1";
const SHELL = ["/", "/static/style.css", "/static/app.js", "/static/offline.js", "/static/districts.json", "/static/favicon.svg",
               "/static/vendor/ort.wasm.min.js", "/static/vendor/ort-wasm-simd-threaded.mjs",
               "/static/vendor/ort-wasm-simd-threaded.wasm", "/v1/offline/manifest"];
const IMMUTABLE = [/^\/static\/vendor\//, /^\/v1\/offline\/model\.onnx\?v=/];
const REFRESHED = [/^\/$/, /^\/static\//, /^\/v1\/offline\/manifest$/];

// Each file on its own: a server without the offline runtime still gets the page cached. Then the model the
// manifest names, so the phone can identify offline after one visit.
async function install() {
  const cache = await caches.open(CACHE);
  await Promise.all(SHELL.map((url) => cache.add(url).catch(() => null)));
  const manifest = await cache.match("/v1/offline/manifest");
  if (manifest) await cacheFirst(new Request((await manifest.json()).model.url)).catch(() => null);
}

self.addEventListener("install", (event) => event.waitUntil(install().then(() => self.skipWaiting())));

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// Every offline model the phone kept (each under its own digest's address).
async function dropModels(cache) {
  for (const old of await cache.keys()) if (new URL(old.url).pathname === "/v1/offline/model.onnx") await cache.delete(old);
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) {
    if (new URL(request.url).pathname === "/v1/offline/model.onnx") await dropModels(cache);  // one model kept
    await cache.put(request, response.clone());
  }
  return response;
}

// The server no longer offers an offline model (the model it serves now has no copy made from it): the phone drops
// the one it kept, so it never answers offline from a model the server has stopped serving.
async function forgetOffline(cache) {
  await cache.delete("/v1/offline/manifest");
  await dropModels(cache);
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    else if (response.status === 404 && new URL(request.url).pathname === "/v1/offline/manifest") await forgetOffline(cache);
    return response;
  } catch (err) {
    const hit = await cache.match(request, { ignoreSearch: true });
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  const path = url.pathname + url.search;
  if (IMMUTABLE.some((re) => re.test(path))) event.respondWith(cacheFirst(event.request));
  else if (REFRESHED.some((re) => re.test(url.pathname))) event.respondWith(networkFirst(event.request));
});

// Background Sync, where the browser has it: wake an open page to send its queue.
self.addEventListener("sync", (event) => {
  if (event.tag !== "pestid-queue") return;
  event.waitUntil(self.clients.matchAll({ type: "window" }).then((clients) => clients.forEach((c) => c.postMessage("flush"))));
});

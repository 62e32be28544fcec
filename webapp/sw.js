// Service worker: precache the whole build (content-hashed names from the build manifest),
// serve it cache-first, and wait for the page's go-ahead before taking over (the page asks the
// user, and only between captures). `hemoedge webapp build` fills VERSION, PRECACHE, ISOLATE.
//
// One version at a time: a new build installs into its own cache, and when it activates every
// other hemoedge cache is deleted, so a page never mixes files of two builds.
//
// Each file crosses the network once. The first install (no earlier version) precaches all but
// the heavy files (LAZY: the WASM and the models); the page waits for this worker to control
// it, then its inference worker fetches them through here, and they are cached as they pass.
// An update precaches everything before it is offered, so it is complete offline.

const VERSION = '__HEMOEDGE_VERSION__';
const CACHE_NAME = `hemoedge-${VERSION}`;
const PRECACHE = /*__HEMOEDGE_PRECACHE__*/[];
const LAZY = /*__HEMOEDGE_LAZY__*/[]; // first install: cached when the app fetches them
// hosts that cannot send headers (`webapp build --coi-serviceworker`): add COOP/COEP to every
// response here so the page becomes cross-origin isolated (after one reload, see app.js)
const ISOLATE = /*__HEMOEDGE_ISOLATE__*/false;
const SCOPE = new URL('./', self.location.href).href; // e.g. https://host/team/hemo/
const INDEX = new URL('./index.html', SCOPE).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE_NAME);
    const first = !self.registration.active; // no version yet: the page is loading the app now
    const list = first ? PRECACHE.filter((p) => !LAZY.includes(p)) : PRECACHE;
    await Promise.all(list.map(async (path) => {
      // unhashed names must bypass the HTTP cache; hashed ones are immutable
      const req = new Request(path, { cache: /\.[0-9a-f]{10}\./.test(path) ? 'default' : 'reload' });
      const res = await fetch(req);
      if (!res.ok) throw new Error(`precache ${path}: HTTP ${res.status}`);
      await cache.put(path, res);
    }));
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((n) => n.startsWith('hemoedge-') && n !== CACHE_NAME)
      .map((n) => caches.delete(n)));
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'SKIP_WAITING') self.skipWaiting();
  if (event.data && event.data.type === 'STATUS' && event.ports[0]) {
    // which files of this build are not in its cache yet (offline works when none is missing)
    event.waitUntil((async () => {
      const cache = await caches.open(CACHE_NAME);
      const have = await Promise.all(PRECACHE.map((p) => cache.match(new URL(p, SCOPE).href)));
      event.ports[0].postMessage({ version: VERSION, missing: PRECACHE.filter((_, i) => !have[i]) });
    })());
  }
});

const LAZY_URLS = new Set(LAZY.map((p) => new URL(p, SCOPE).href));

function isolate(res) {
  if (!ISOLATE || !res || res.status === 0 || res.type === 'opaqueredirect') return res;
  const headers = new Headers(res.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

async function navigate(req, cache) {
  const url = new URL(req.url);
  const page = url.origin + url.pathname;
  if (page === SCOPE || page === INDEX) return (await cache.match(INDEX)) || fetch(req);
  // a deep link under the app's scope (/team/hemo/some/path): the app lives at the scope's
  // root, where its relative URLs resolve; send the browser there (works offline too)
  const hit = await cache.match(req, { ignoreSearch: true });
  if (hit) return hit;
  try {
    const res = await fetch(req);
    if (res.ok) return res;
  } catch { /* offline */ }
  return Response.redirect(SCOPE + url.search, 302);
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || !req.url.startsWith(SCOPE)) return; // other origins, other apps
  event.respondWith((async () => {
    const cache = await caches.open(CACHE_NAME);
    if (req.mode === 'navigate') return isolate(await navigate(req, cache));
    const hit = await cache.match(req, { ignoreSearch: true });
    if (hit) return isolate(hit);
    const res = await fetch(req);
    const key = req.url.split('?')[0];
    if (res.ok && LAZY_URLS.has(key)) event.waitUntil(cache.put(key, res.clone())); // cached as it passes
    return isolate(res);
  })());
});

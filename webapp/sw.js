// Service worker: precache the whole build (content-hashed names from the build manifest),
// serve it cache-first, and wait for the page's go-ahead before taking over (the page asks the
// user, and only between captures). `hemoedge webapp build` fills VERSION, PRECACHE, ISOLATE.
//
// One version at a time: a new build installs into its own cache, and when it activates every
// other hemoedge cache is deleted, so a page never mixes files of two builds. The page waits
// for the first install before loading the models, so each file crosses the network once.

const VERSION = '__HEMOEDGE_VERSION__';
const CACHE_NAME = `hemoedge-${VERSION}`;
const PRECACHE = /*__HEMOEDGE_PRECACHE__*/[];
// hosts that cannot send headers (`webapp build --coi-serviceworker`): add COOP/COEP to every
// response here so the page becomes cross-origin isolated (after one reload, see app.js)
const ISOLATE = /*__HEMOEDGE_ISOLATE__*/false;
const SCOPE = new URL('./', self.location.href).href; // e.g. https://host/team/hemo/
const INDEX = new URL('./index.html', SCOPE).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE_NAME);
    await Promise.all(PRECACHE.map(async (path) => {
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
  if (event.data && event.data.type === 'VERSION' && event.ports[0]) event.ports[0].postMessage(VERSION);
});

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
    return isolate(hit || await fetch(req));
  })());
});

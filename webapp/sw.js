// Service worker: precache the whole build (content-hashed names from the build manifest),
// serve it cache-first, and wait for the page's go-ahead before taking over (the page only
// gives it when no capture is running). `hemoedge webapp build` fills VERSION and PRECACHE.

const VERSION = '__HEMOEDGE_VERSION__';
const CACHE_NAME = `hemoedge-${VERSION}`;
const PRECACHE = /*__HEMOEDGE_PRECACHE__*/[];
const INDEX = 'index.html';

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
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE_NAME);
    const hit = req.mode === 'navigate'
      ? await cache.match(INDEX)
      : await cache.match(req, { ignoreSearch: true });
    return hit || fetch(req);
  })());
});

// The stand-in camera of the benchmarks, for browsers that were not started with a fake camera
// (a remote device under `hemoedge bench web --connect`, the bench page lab.html on any device):
// the server's JPEG frames of bench web's test video are drawn on a canvas at the video's rate
// and the app's getUserMedia gets the canvas's stream, so the app grabs, detects and estimates
// on the same hand as with Chromium's fake camera. Reached only through the bench hook
// (window.__hemoedgeBench.feedCamera, app.js); the app itself never loads this module.

export class TestCamera {
  constructor(bitmaps, fps) {
    this.bitmaps = bitmaps;
    this.fps = fps;
    this.canvas = document.createElement('canvas');
    this.canvas.width = bitmaps[0].width;
    this.canvas.height = bitmaps[0].height;
    this.stream = null;
    this.timer = null;
  }

  // the app asks for the camera only when its Start camera button is pressed
  install(win) {
    const getUserMedia = async () => this.start();
    if (win.navigator.mediaDevices) win.navigator.mediaDevices.getUserMedia = getUserMedia;
    else Object.defineProperty(win.navigator, 'mediaDevices', { value: { getUserMedia }, configurable: true });
  }

  // one live stream at a time: a page gone must not keep a track (and its copies) alive
  start() {
    this.stop();
    const ctx = this.canvas.getContext('2d');
    let i = 0;
    const draw = () => { ctx.drawImage(this.bitmaps[i % this.bitmaps.length], 0, 0); i += 1; };
    draw();
    this.timer = setInterval(draw, 1000 / this.fps);
    this.stream = this.canvas.captureStream(this.fps);
    return this.stream;
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }

  describe() {
    return { frames: this.bitmaps.length, fps: this.fps, width: this.canvas.width, height: this.canvas.height };
  }
}

// video: {frames, fps, url} with url a template holding {i} (relative to this page), e.g.
// './__collect/frame/{i}.jpg' (webapp serve --collect) or './__bench/frame/{i}.jpg' (bench web)
export async function loadTestCamera(video) {
  if (!video || !(video.frames > 0) || !(video.fps > 0) || typeof video.url !== 'string') {
    throw new Error(`test camera: expected {frames, fps, url}, got ${JSON.stringify(video)}`);
  }
  const urls = Array.from({ length: video.frames }, (_, i) => new URL(video.url.replace('{i}', i), location.href));
  const bitmaps = await Promise.all(urls.map(async (u) => {
    const res = await fetch(u);
    if (!res.ok) throw new Error(`test video frame ${u.pathname}: HTTP ${res.status}`);
    return createImageBitmap(await res.blob());
  }));
  return new TestCamera(bitmaps, video.fps);
}

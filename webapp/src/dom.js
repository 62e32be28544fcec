// DOM references and rendering. All text goes through textContent (never innerHTML).

const $ = (id) => document.getElementById(id);

export const refs = {
  status: $('status'),
  threadNote: $('thread-note'),
  update: $('update'),
  updateBtn: $('update-btn'),
  tuneNote: $('tune-note'),
  retuneBtn: $('retune-btn'),
  loadHelp: $('load-help'),
  retryBtn: $('retry-btn'),
  tabCamera: $('tab-camera'),
  tabUpload: $('tab-upload'),
  panelCamera: $('panel-camera'),
  panelUpload: $('panel-upload'),
  video: $('video'),
  overlay: $('overlay'),
  cameraBtn: $('camera-btn'),
  captureBtn: $('capture-btn'),
  cancelBtn: $('cancel-btn'),
  progress: $('progress'),
  progressText: $('progress-text'),
  sex: $('sex'),
  sexHelp: $('sex-help'),
  result: $('result'),
  resultHb: $('result-hb'),
  resultCategory: $('result-category'),
  resultDetail: $('result-detail'),
  reasons: $('reasons'),
  file: $('file'),
  photo: $('photo'),
  uploadMsg: $('upload-msg'),
  nails: $('nails'),
};

export function setText(el, text) { el.textContent = text; }

export function setStatus(text, kind = 'info') {
  refs.status.textContent = text;
  refs.status.dataset.kind = kind;
}

export function fillList(ul, items) {
  ul.replaceChildren(...items.map((t) => {
    const li = document.createElement('li');
    li.textContent = t;
    return li;
  }));
}

const COLORS = ['#00e0a0', '#ffb000'];

/** Draw detections (image px) onto canvas scaled from a srcW x srcH source; labels optional. */
export function drawBoxes(canvas, dets, srcW, srcH, { labels = [], clear = true } = {}) {
  const ctx = canvas.getContext('2d');
  const sx = canvas.width / srcW, sy = canvas.height / srcH;
  if (clear) ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.lineWidth = Math.max(2, canvas.width / 240);
  ctx.font = `${Math.max(12, Math.round(canvas.width / 32))}px sans-serif`;
  dets.forEach((d, i) => {
    const [x1, y1, x2, y2] = d.box;
    ctx.strokeStyle = COLORS[d.cls] || COLORS[0];
    ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    if (labels[i]) {
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(labels[i], x1 * sx, Math.max(14, y1 * sy - 4));
    }
  });
}

export const CATEGORY_TEXT = {
  none: 'No anaemia (WHO)',
  mild: 'Mild anaemia (WHO)',
  moderate: 'Moderate anaemia (WHO)',
  severe: 'Severe anaemia (WHO)',
};

export function fmt(v, digits = 1) { return Number(v).toFixed(digits); }

// Runs the app's pure JS modules on inputs written by tests/web/test_parity.py and writes
// the outputs back as raw float32 / JSON. Usage: node parity_harness.mjs WEBAPP_SRC JOB_DIR
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [src, dir] = process.argv.slice(2);
const load = (m) => import(pathToFileURL(join(src, m)).href);
const pre = await load('preprocess.js');
const post = await load('postprocess.js');
const agg = await load('aggregate.js');

const job = JSON.parse(readFileSync(join(dir, 'job.json'), 'utf8'));
const rgba = new Uint8Array(readFileSync(join(dir, 'image.rgba')));
const img = { data: rgba, width: job.width, height: job.height };
const f32 = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const lb = pre.letterbox(img, job.detector);
writeFileSync(join(dir, 'letterbox.f32'), f32(lb.tensor));
const rect = pre.cropRect(job.box, job.width, job.height);
writeFileSync(join(dir, 'crop.f32'), f32(pre.resizeCrop(img, rect, job.estimator)));
const raw = new Float32Array(new Uint8Array(readFileSync(join(dir, 'raw.f32'))).buffer);
const dets = post.decodeDetections(raw, job.anchors, job.classes, job.geo, job.post);
const who = job.hb_grid.map((hb) => job.sexes.map((s) => agg.whoCategory(hb, s, job.who)));
const summary = agg.summarise(job.values, { minValid: 1, who: job.who });
writeFileSync(join(dir, 'out.json'), JSON.stringify({ geo: lb.geo, rect, dets, who, summary,
  round: job.round_cases.map(pre.roundHalfEven) }));

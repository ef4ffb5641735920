// A local stand-in for Replicate's HTTP API, for the browser tests: speaks the
// protocol the app uses (POST /v1/predictions with Prefer: wait, GET
// /v1/predictions/{id}, POST /v1/predictions/{id}/cancel, output files), and
// answers with a real PNG after a short "model" delay.
//
// Test hooks: GET /__predictions lists every prediction with the epoch ms at
// which it finished, so a test can measure what the app adds after that. A
// prompt containing "[slow]" runs like a cold model: `starting` for 1.5 s, then
// `processing` for 8 s with a progress bar in its logs (as diffusers print it);
// "[cold]" boots for 6 s before that (time to cancel before any billed work).
//
// PICTURE_SIZE (512) sets the output's size; GRAIN (0) adds film grain of
// that amplitude, as a model's pictures carry (a 1024 px picture with grain
// 13 is a ~2.4 MB PNG), for scripts/bench-latency.
//
//   PORT=3302 MODEL_DELAY_MS=800 TOKEN=... node replicate-stand-in.mjs
import http from "node:http";
import zlib from "node:zlib";

const port = Number(process.env.PORT ?? 3302);
const delayMs = Number(process.env.MODEL_DELAY_MS ?? 800);
const token = process.env.TOKEN ?? "stand-in-token";

// A real PNG (a dusk gradient with a sun), encoded here with zlib.
function crc32(buffer) {
  let crc = ~0;
  for (const byte of buffer) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}
function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}
function picture(size, grain) {
  let state = 0x9e3779b9;
  const noise = () => {
    // xorshift32: the same grain on every start.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return grain ? (state % (2 * grain + 1)) - grain : 0;
  };
  const clamp = (v) => Math.max(0, Math.min(255, Math.round(v)));
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) {
      const t = y / size;
      const dx = x - size / 2, dy = y - size * 0.62;
      const sun = dx * dx + dy * dy < (size * 0.12) ** 2;
      const hill = y > size * 0.7 + Math.sin(x / 23) * 12;
      const [r, g, b] = hill ? [42, 26, 58] : sun ? [255, 226, 168] : [43 + 200 * t, 30 + 120 * t, 74 + 40 * t];
      row.set([clamp(r + noise()), clamp(g + noise()), clamp(b + noise())], 1 + x * 3);
    }
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
const png = picture(Number(process.env.PICTURE_SIZE ?? 512), Number(process.env.GRAIN ?? 0));

const predictions = new Map();
let counter = 0;

function view(p) {
  const now = Date.now();
  if (p.status === "starting" && now >= p.finishesAt) {
    p.status = "succeeded";
    p.finishedAt = p.finishesAt;
    p.output = [`http://127.0.0.1:${port}/files/${p.id}.png`];
  } else if (p.status === "starting" && now >= p.processingAt) {
    p.status = "processing";
  }
  if (p.status === "processing" && now >= p.finishesAt) {
    p.status = "succeeded";
    p.finishedAt = p.finishesAt;
    p.output = [`http://127.0.0.1:${port}/files/${p.id}.png`];
  }
  let logs = "";
  if (p.status !== "starting" && now >= p.processingAt) {
    const done = Math.max(0, Math.min(1, (Math.min(now, p.finishesAt) - p.processingAt) / (p.finishesAt - p.processingAt)));
    const steps = Math.floor(done * 50);
    logs = `Using seed: 1234\n${String(Math.floor(done * 100)).padStart(3)}%|${"█".repeat(steps / 5)}| ${steps}/50`;
  }
  // What Replicate records of a run: when it started processing (billing),
  // and once it is over, the billed seconds.
  const terminal = p.status !== "starting" && p.status !== "processing";
  const end = p.canceledAt ?? p.finishedAt ?? now;
  const started = Math.min(end, now) >= p.processingAt;
  const iso = (ms) => new Date(ms).toISOString();
  return {
    id: p.id,
    version: p.version,
    input: p.input,
    status: p.status,
    output: p.output ?? null,
    logs,
    error: null,
    source: "api",
    created_at: iso(p.createdAt),
    started_at: started ? iso(p.processingAt) : null,
    completed_at: terminal ? iso(end) : null,
    metrics: terminal && started ? { predict_time: (end - p.processingAt) / 1000 } : {},
    urls: {
      get: `http://127.0.0.1:${port}/v1/predictions/${p.id}`,
      cancel: `http://127.0.0.1:${port}/v1/predictions/${p.id}/cancel`,
    },
  };
}

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "content-type": type });
  res.end(type === "application/json" || type === "application/problem+json" ? JSON.stringify(body) : body);
}

const server = http.createServer((req, res) => {
  let raw = "";
  req.on("data", (c) => (raw += c));
  req.on("end", () => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    if (url.pathname === "/__predictions") {
      return send(res, 200, [...predictions.values()].map((p) => ({ id: p.id, prompt: p.input?.prompt, finishedAt: p.finishedAt ?? null, canceled: p.status === "canceled" })));
    }
    if (url.pathname.startsWith("/files/")) {
      return send(res, 200, png, "image/png");
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      return send(res, 401, { title: "Unauthenticated", detail: "You did not pass a valid authentication token", status: 401 }, "application/problem+json");
    }
    if (req.method === "POST" && url.pathname === "/v1/predictions") {
      const body = JSON.parse(raw || "{}");
      const id = `p${++counter}`;
      const createdAt = Date.now();
      const promptText = String(body.input?.prompt ?? "");
      const boot = promptText.includes("[cold]") ? 6000 : promptText.includes("[slow]") ? 1500 : 0;
      const p = {
        id,
        version: body.version,
        input: body.input,
        status: "starting",
        createdAt,
        processingAt: createdAt + (boot || 100),
        finishesAt: createdAt + (boot ? boot + 8000 : delayMs),
      };
      predictions.set(id, p);
      // Prefer: wait=N holds the request until the prediction is done or N s pass.
      const wait = Number((req.headers.prefer ?? "").match(/wait=(\d+)/)?.[1] ?? 0) * 1000;
      const answer = () => send(res, 201, view(p));
      if (wait > 0) {
        setTimeout(answer, Math.min(wait, Math.max(0, p.finishesAt - Date.now() + 5)));
      } else {
        answer();
      }
      return;
    }
    if (req.method === "GET" && url.pathname === "/v1/predictions") {
      // The account's predictions, newest first (one page here).
      const results = [...predictions.values()].reverse().map(view);
      return send(res, 200, { results, next: null, previous: null });
    }
    const match = url.pathname.match(/^\/v1\/predictions\/([^/]+)(\/cancel)?$/);
    const p = match && predictions.get(match[1]);
    if (!p) return send(res, 404, { title: "Not found", status: 404 }, "application/problem+json");
    if (match[2] && req.method === "POST") {
      view(p); // brings the status up to now first
      if (p.status === "starting" || p.status === "processing") {
        p.status = "canceled";
        p.canceledAt = Date.now();
      }
      return send(res, 200, view(p));
    }
    return send(res, 200, view(p));
  });
});
server.listen(port, "127.0.0.1", () => console.log(`Replicate stand-in on http://127.0.0.1:${port}`));

// One @upstash/ratelimit call, printed as JSON: how the Rust tests ask the real
// library what it decides. Usage:
//   node ratelimit.mjs limit|remaining|reset <fixed|sliding|bucket> <identifier> [rate]
//   node ratelimit.mjs set-dynamic-limit <fixed|sliding|bucket> - <limit|false>
// Connects with UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN.
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis";

const [operation, algorithm, identifier, rate] = process.argv.slice(2);
const redis = new Redis({
  url: process.env.UPSTASH_REDIS_REST_URL,
  token: process.env.UPSTASH_REDIS_REST_TOKEN,
  enableTelemetry: false,
});
const limiters = {
  fixed: Ratelimit.fixedWindow(5, "1440 m"),
  sliding: Ratelimit.slidingWindow(5, "1440 m"),
  bucket: Ratelimit.tokenBucket(1, "1440 m", 5),
};
if (!(algorithm in limiters)) {
  console.error(`unknown algorithm ${algorithm}`);
  process.exit(2);
}
const ratelimit = new Ratelimit({
  redis,
  limiter: limiters[algorithm],
  analytics: false,
  // The owner's live limit, read by every call when on (only for the
  // operation that sets it: the other checks keep 2.0.8's default calls).
  dynamicLimits: operation === "set-dynamic-limit",
});

let result;
if (operation === "limit") {
  const r = await ratelimit.limit(identifier, { rate: Number(rate ?? 1) });
  result = { success: r.success, limit: r.limit, remaining: r.remaining, reset: r.reset };
} else if (operation === "remaining") {
  result = await ratelimit.getRemaining(identifier);
} else if (operation === "set-dynamic-limit") {
  await ratelimit.setDynamicLimit({ limit: rate === "false" ? false : Number(rate) });
  result = await ratelimit.getDynamicLimit();
} else if (operation === "reset") {
  await ratelimit.resetUsedTokens(identifier);
  result = { reset: true };
} else {
  console.error(`unknown operation ${operation}`);
  process.exit(2);
}
console.log(JSON.stringify(result));

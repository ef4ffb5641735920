import { defineConfig } from "@playwright/test";

// App processes from the release build (scripts/test builds it first):
// - "offline": the zero-configuration app (offline generator, memory limiter),
//   trusting X-Forwarded-For from loopback so each test is its own visitor;
// - "replicate": the app with REPLICATE_API_TOKEN set and REPLICATE_BASE_URL
//   pointing at a local Replicate stand-in (replicate-stand-in.mjs);
// - "untrusting" (3303): the built-in defaults, which trust no proxy;
// - "budget" (3304): a shared budget of 2 generations and a 30 s visitor window;
// - "returning" (3305): 768 px offline pictures and 20 generations per visitor,
//   for first-load.spec.ts's returning visitor with 12 recent images;
// - "optional" (3306) and "required" (3307): sign-in on, against a real OpenID
//   provider (3310), for sign-in.spec.ts;
// - "admin" (3308): ADMIN_TOKEN set, for admin.spec.ts;
// - "cog" (3311): model.backend = "cog" against a real Cog model server
//   (3312: cog/coglet from /opt/cog-venv serving tests/cog/predict.py), its
//   progress by webhook, for cog.spec.ts.
const offlinePort = 3300;
const replicatePort = 3301;
const standInPort = 3302;
const untrustingPort = 3303;
const budgetPort = 3304;
const returningPort = 3305;
// Sign-in: the app with auth.mode "optional" and "required", and a real
// OpenID provider (tests/oidc/provider.mjs, oauth2-mock-server).
const optionalPort = 3306;
const requiredPort = 3307;
const providerPort = 3310;
// The owner's page: ADMIN_TOKEN set (admin.spec.ts).
const adminPort = 3308;
// The owner's own model server (Cog) and the app using it.
const cogAppPort = 3311;
const cogPort = 3312;
const cogHookToken = "an end-to-end webhook token for the cog server";
const cogVenv = process.env.COG_VENV ?? "/opt/cog-venv";
const signIn = (port: number, mode: string) =>
  app(port, {
    LOFIANIME_CONFIG: "end2end/lofianime.signin.toml",
    REPLICATE_API_TOKEN: "",
    LOFIANIME_AUTH__MODE: mode,
    LOFIANIME_SITE__PUBLIC_URL: `http://127.0.0.1:${port}`,
    OIDC_ISSUER_URL: `http://127.0.0.1:${providerPort}`,
    OIDC_CLIENT_ID: "lofianime-e2e",
    OIDC_CLIENT_SECRET: "e2e-client-secret",
    SESSION_SECRET: "an end-to-end session secret of sixty-four bytes or more, for tests",
  });
const standInToken = "r8_stand_in_token";

const app = (port: number, extra: Record<string, string>) => ({
  command: "./target/release/lofianime",
  cwd: "..",
  url: `http://127.0.0.1:${port}/`,
  reuseExistingServer: false,
  timeout: 60_000,
  stdout: "pipe" as const,
  stderr: "pipe" as const,
  env: {
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    LEPTOS_SITE_ROOT: "target/site",
    LEPTOS_SITE_PKG_DIR: "pkg",
    LEPTOS_OUTPUT_NAME: "lofianime",
    // cargo-leptos builds hashed file names (hash-files in Cargo.toml).
    LEPTOS_HASH_FILES: "true",
    RUST_LOG: "info",
    ...extra,
  },
});

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  // Each app keeps its counters in memory: tests use distinct visitors, and run
  // one at a time so the logs read in order.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    browserName: "chromium",
    // Debian's Chromium: Playwright's own browser downloads cannot run here.
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    {
      name: "offline",
      testMatch: ["generate.spec.ts", "first-load.spec.ts"],
      use: { baseURL: `http://127.0.0.1:${offlinePort}` },
    },
    {
      name: "replicate",
      testMatch: "replicate.spec.ts",
      use: { baseURL: `http://127.0.0.1:${replicatePort}` },
    },
    {
      name: "sign-in",
      testMatch: "sign-in.spec.ts",
      use: { baseURL: `http://127.0.0.1:${optionalPort}` },
    },
    {
      name: "admin",
      testMatch: "admin.spec.ts",
      use: { baseURL: `http://127.0.0.1:${adminPort}` },
    },
    {
      name: "cog",
      testMatch: "cog.spec.ts",
      use: { baseURL: `http://127.0.0.1:${cogAppPort}` },
    },
  ],
  webServer: [
    {
      command: "node replicate-stand-in.mjs",
      url: `http://127.0.0.1:${standInPort}/__predictions`,
      reuseExistingServer: false,
      timeout: 30_000,
      env: {
        PORT: String(standInPort),
        MODEL_DELAY_MS: "800",
        TOKEN: standInToken,
        // scripts/bench-latency: 1024 px outputs with film grain.
        PICTURE_SIZE: process.env.STAND_IN_PICTURE_SIZE ?? "512",
        GRAIN: process.env.STAND_IN_GRAIN ?? "0",
      },
    },
    {
      command: `node ../tests/oidc/provider.mjs ${providerPort}`,
      url: `http://127.0.0.1:${providerPort}/.well-known/openid-configuration`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    signIn(optionalPort, "optional"),
    signIn(requiredPort, "required"),
    app(offlinePort, {
      LOFIANIME_CONFIG: "end2end/lofianime.e2e.toml",
      REPLICATE_API_TOKEN: "",
    }),
    app(adminPort, {
      LOFIANIME_CONFIG: "end2end/lofianime.e2e.toml",
      REPLICATE_API_TOKEN: "",
      LOFIANIME_OFFLINE__DELAY_MS: "0",
      LOFIANIME_STORAGE__DIR: "target/e2e-admin-images",
      ADMIN_TOKEN: "an end-to-end admin token of thirty-two bytes or more",
      SESSION_SECRET: "an end-to-end session secret of sixty-four bytes or more, for tests",
    }),
    app(untrustingPort, {
      REPLICATE_API_TOKEN: "",
      LOFIANIME_STORAGE__DIR: "target/e2e-images",
    }),
    app(budgetPort, {
      LOFIANIME_CONFIG: "end2end/lofianime.e2e.toml",
      REPLICATE_API_TOKEN: "",
      LOFIANIME_OFFLINE__DELAY_MS: "0",
      LOFIANIME_RATELIMIT__WINDOW: "30 s",
      LOFIANIME_RATELIMIT__GLOBAL_LIMIT: "2",
    }),
    app(returningPort, {
      LOFIANIME_CONFIG: "end2end/lofianime.e2e.toml",
      REPLICATE_API_TOKEN: "",
      LOFIANIME_OFFLINE__DELAY_MS: "0",
      LOFIANIME_RATELIMIT__LIMIT: "20",
      LOFIANIME_IMAGE__WIDTH: "768",
      LOFIANIME_IMAGE__HEIGHT: "768",
      LOFIANIME_STORAGE__DIR: "target/e2e-returning-images",
    }),
    app(replicatePort, {
      LOFIANIME_CONFIG: "end2end/lofianime.replicate.toml",
      REPLICATE_API_TOKEN: standInToken,
      REPLICATE_BASE_URL: `http://127.0.0.1:${standInPort}`,
    }),
    {
      // Without Docker: coglet starts its worker as `python`, so the venv's
      // bin comes first on PATH.
      command: `${cogVenv}/bin/python -m cog.server.http --host 127.0.0.1`,
      cwd: "../tests/cog",
      url: `http://127.0.0.1:${cogPort}/health-check`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        PATH: `${cogVenv}/bin:${process.env.PATH}`,
        PORT: String(cogPort),
        COG_PREDICT_TYPE_STUB: "predict.py:Predictor",
        WEBHOOK_AUTH_TOKEN: cogHookToken,
        COG_TEST_STEPS: "20",
        COG_TEST_STEP_MS: "150",
      },
    },
    app(cogAppPort, {
      LOFIANIME_CONFIG: "end2end/lofianime.e2e.toml",
      REPLICATE_API_TOKEN: "",
      LOFIANIME_MODEL__BACKEND: "cog",
      COG_URLS: `http://127.0.0.1:${cogPort}`,
      COG_WEBHOOK_TOKEN: cogHookToken,
      LOFIANIME_COG__WEBHOOK_BASE_URL: `http://127.0.0.1:${cogAppPort}`,
      LOFIANIME_STORAGE__DIR: "target/e2e-cog-images",
    }),
  ],
});

import { test, expect, type Browser, type Page } from "@playwright/test";

// Every test is a different visitor: the app trusts X-Forwarded-For from loopback
// (end2end/lofianime.e2e.toml), so each one starts with a full quota.
// One address block per run, one address per test: no two tests share a quota.
const runBlock = Math.floor(Math.random() * 256);
let visitorCounter = 0;
function newVisitor(): string {
  visitorCounter += 1;
  return `203.0.${runBlock}.${visitorCounter}`;
}

async function openAsVisitor(browser: Browser, options: { javaScriptEnabled?: boolean } = {}) {
  const context = await browser.newContext({
    extraHTTPHeaders: { "X-Forwarded-For": newVisitor() },
    javaScriptEnabled: options.javaScriptEnabled ?? true,
  });
  const page = await context.newPage();
  return { context, page };
}

/// Waits until the WASM bundle has hydrated the studio island, so clicks are
/// handled by it (the form says so once its island is live).
async function waitForHydration(page: Page) {
  await page.locator('form[data-hydrated="true"]').waitFor();
}

/// The result of the last generation (the recent-images list below it shows the
/// same picture again).
function result(page: Page) {
  return page.locator("figure.result");
}

async function expectLoadedImage(page: Page, prompt: string) {
  const image = result(page).getByRole("img", { name: prompt });
  await expect(image).toBeVisible();
  // The WebP variants, sized for the screen; never the PNG original.
  await expect(image).toHaveAttribute("src", /^\/images\/[0-9a-f]{32}-medium\.webp$/);
  // 512 px pictures: the thumbnail and the medium variant (the display one
  // would be the same width, so it is not offered).
  await expect(image).toHaveAttribute("srcset", /^\S+-thumb\.webp 320w, \S+-medium\.webp 512w$/);
  await expect
    .poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBeGreaterThan(0);
  expect(await image.evaluate((img: HTMLImageElement) => img.currentSrc)).toMatch(/-(medium|thumb)\.webp$/);
  // Its size is reserved before it loads: nothing below it jumps.
  expect(Number(await image.getAttribute("width"))).toBeGreaterThan(0);
  expect(Number(await image.getAttribute("height"))).toBeGreaterThan(0);
}

test("the page offers a labelled prompt form", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await expect(page).toHaveTitle(/lofianime/);
  await expect(page.getByLabel("Enter your prompt")).toBeVisible();
  await expect(page.getByRole("button", { name: "Submit" })).toBeEnabled();
  await expect(page.getByText("Offline generator.")).toBeVisible();
  await context.close();
});

test("typing a prompt shows Generating… and then the image", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const prompt = "a quiet train station at dusk";
  await page.getByLabel("Enter your prompt").fill(prompt);
  const submit = page.getByRole("button", { name: "Submit" });
  await submit.click();

  // The progress line: a phase, elapsed seconds and a Cancel button.
  const progress = page.locator(".generating");
  await expect(progress).toBeVisible();
  await expect(progress).toContainText(/Waiting for the model…|The model is starting…|Generating…/);
  await expect(progress.getByRole("button", { name: "Cancel" })).toBeVisible();
  await expect(submit).toBeDisabled();

  await expectLoadedImage(page, prompt);
  await expect(progress).toBeHidden();
  await expect(submit).toBeEnabled();
  await expect(page.getByText("2 of 3 generations left.")).toBeVisible();
  // The hydrated form called the server function; the page was not reloaded.
  expect(new URL(page.url()).search).toBe("");
  await context.close();
});

test("a blank prompt gets a readable message and spends nothing", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const input = page.getByLabel("Enter your prompt");
  // Spaces pass the browser's `required` check; the server refuses them.
  await input.fill("   ");
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.getByText("Please enter a prompt.")).toBeVisible();

  await input.fill("a cat asleep on a warm rooftop");
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, "a cat asleep on a warm rooftop");
  await expect(page.getByText("2 of 3 generations left.")).toBeVisible();
  await context.close();
});

test("the quota shows before and after generating, and the form closes at 0", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  await expect(page.getByText("3 of 3 generations left.")).toBeVisible();
  await expect(page.getByText(/^Renews in \d+ (h|min|s)/)).toBeVisible();
  const input = page.getByLabel("Enter your prompt");
  const submit = page.getByRole("button", { name: "Submit" });
  for (let i = 1; i <= 3; i++) {
    await input.fill(`rainy street number ${i}`);
    await submit.click();
    await expectLoadedImage(page, `rainy street number ${i}`);
    await expect(page.getByText(`${3 - i} of 3 generations left.`)).toBeVisible();
  }
  await expect(page.getByText(/^The form reopens in \d+ (h|min|s)/)).toBeVisible();
  await expect(submit).toBeDisabled();
  await context.close();
});

test("a page opened before the limit was spent says No generations remaining. and keeps the prompt", async ({
  browser,
}) => {
  const context = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": newVisitor() } });
  const stale = await context.newPage();
  await stale.goto("/");
  await waitForHydration(stale);
  // Another tab of the same visitor spends the whole quota meanwhile.
  const other = await context.newPage();
  await other.goto("/");
  await waitForHydration(other);
  for (let i = 1; i <= 3; i++) {
    await other.getByLabel("Enter your prompt").fill(`harbour ${i}`);
    await other.getByRole("button", { name: "Submit" }).click();
    await expectLoadedImage(other, `harbour ${i}`);
  }
  const input = stale.getByLabel("Enter your prompt");
  await input.fill("one more, please");
  await stale.getByRole("button", { name: "Submit" }).click();
  await expect(stale.getByText("No generations remaining.")).toBeVisible();
  await expect(stale.getByText("0 of 3 generations left.")).toBeVisible();
  await expect(input).toHaveValue("one more, please");
  await context.close();
});

test("the form works with JavaScript disabled", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, { javaScriptEnabled: false });
  await page.goto("/");
  const prompt = "a lighthouse by the sea at night";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  // Success lands on the image's own page.
  await page.waitForURL(/\/i\/[0-9a-f]{32}$/);
  await expectLoadedImage(page, prompt);
  // Nothing to copy without JavaScript: the button stays hidden.
  await expect(page.getByRole("button", { name: "Copy link" })).toBeHidden();
  await page.getByRole("link", { name: "Use this prompt again" }).click();
  await expect(page.getByLabel("Enter your prompt")).toHaveValue(prompt);
  await context.close();
});

test("without JavaScript the quota shows and the form closes at 0", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, { javaScriptEnabled: false });
  await page.goto("/");
  await expect(page.getByText("3 of 3 generations left.")).toBeVisible();
  for (let i = 1; i <= 3; i++) {
    await page.getByLabel("Enter your prompt").fill(`harbour at sunset ${i}`);
    await page.getByRole("button", { name: "Submit" }).click();
    await page.waitForURL(/\/i\/[0-9a-f]{32}$/);
    await page.getByRole("link", { name: "Create new image" }).click();
  }
  await expect(page.getByText("0 of 3 generations left.")).toBeVisible();
  await expect(page.getByText(/^The form reopens in/)).toBeVisible();
  await expect(page.getByRole("button", { name: "Submit" })).toBeDisabled();
  await context.close();
});

test("the original page's fetch call works against /api/ai", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  // The exact request the original Next.js page made: a JSON body, no content type.
  const answer = await page.evaluate(async () => {
    const response = await fetch("/api/ai", {
      method: "POST",
      body: JSON.stringify({ prompt: "a lighthouse in the rain" }),
    });
    return { status: response.status, remaining: response.headers.get("x-ratelimit-remaining"), data: await response.json() };
  });
  expect(answer.status).toBe(200);
  expect(answer.remaining).toBe("2");
  expect(answer.data[0]).toMatch(/^\/images\/[0-9a-f]{32}\.png$/);
  const loaded = await page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    return img.naturalWidth;
  }, answer.data[0]);
  expect(loaded).toBe(512);
  const quota = await page.evaluate(async () => (await fetch("/api/remaining")).json());
  expect(quota).toMatchObject({ remainingGenerations: 2, limit: 3 });
  await context.close();
});

test("a result can be downloaded, reused and replaced", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const prompt = "A quiet train station, at dusk!";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, "A quiet train station, at dusk!");

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download" }).click(),
  ]);
  expect(download.suggestedFilename()).toBe("a-quiet-train-station-at-dusk.png");

  await page.getByRole("link", { name: "Create new image" }).click();
  await expect(page.getByLabel("Enter your prompt")).toHaveValue("");
  await expect(result(page)).toHaveCount(0);

  await waitForHydration(page);
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, prompt);
  await page.getByRole("link", { name: "Use this prompt again" }).click();
  await expect(page.getByLabel("Enter your prompt")).toHaveValue(prompt);
  await expect(result(page)).toHaveCount(0);
  await context.close();
});

test("the Content-Security-Policy lets the app run and blocks nothing of its own", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const response = await page.goto("/");
  expect(response?.headers()["content-security-policy"]).toContain("'wasm-unsafe-eval'");
  await waitForHydration(page);
  await page.getByLabel("Enter your prompt").fill("a paper lantern festival");
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, "a paper lantern festival");
  expect(new URL(page.url()).search, "the hydrated form handled the submit").toBe("");
  expect(violations).toEqual([]);
  await context.close();
});

test("screenshots at 375 px and in dark mode are kept as artefacts", async ({ browser }) => {
  for (const [name, options] of [
    ["mobile-375-light", { viewport: { width: 375, height: 812 }, colorScheme: "light" as const }],
    ["desktop-dark", { viewport: { width: 1280, height: 900 }, colorScheme: "dark" as const }],
  ] as const) {
    const context = await browser.newContext({
      ...options,
      extraHTTPHeaders: { "X-Forwarded-For": newVisitor() },
    });
    const page = await context.newPage();
    await page.goto("/");
    await waitForHydration(page);
    await page.getByLabel("Enter your prompt").fill("a quiet train station at dusk");
    await page.getByRole("button", { name: "Submit" }).click();
    await expectLoadedImage(page, "a quiet train station at dusk");
    // Nothing wider than the viewport: no sideways scrolling on a phone.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.screenshot({ path: `artifacts/${name}.png`, fullPage: true });
    if (name === "desktop-dark") {
      // The dark palette is in use (a dark page background).
      const channels = (await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor))
        .match(/\d+/g)!
        .slice(0, 3)
        .map(Number);
      expect(Math.max(...channels), `html background ${channels}; body ${background}`).toBeLessThan(80);
    }
    await context.close();
  }
});

test("recent images are listed, survive a reload and open again", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const recent = page.getByRole("region", { name: "Your recent images" });
  await expect(recent).toContainText("Nothing yet");
  for (const prompt of ["a first snowy bus stop", "a second neon ramen stall"]) {
    await page.getByLabel("Enter your prompt").fill(prompt);
    await page.getByRole("button", { name: "Submit" }).click();
    await expectLoadedImage(page, prompt);
  }
  // Newest first, each with its prompt and when it was made.
  await expect(recent.getByRole("listitem")).toHaveCount(2);
  await expect(recent.getByRole("listitem").first()).toContainText("a second neon ramen stall");
  await expect(recent.getByRole("listitem").first()).toContainText("just now");

  await page.reload();
  await expect(recent.getByRole("listitem")).toHaveCount(2);
  const first = recent.getByRole("img", { name: "a first snowy bus stop" });
  await expect(first).toHaveAttribute("src", /^\/images\/[0-9a-f]{32}-thumb\.webp$/);
  await expect.poll(() => first.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);

  // Another visitor sees only their own.
  const stranger = await openAsVisitor(browser);
  await stranger.page.goto("/");
  await expect(stranger.page.getByRole("region", { name: "Your recent images" })).toContainText("Nothing yet");
  await stranger.context.close();

  // Each opens the image's own page.
  await first.click();
  await page.waitForURL(/\/i\/[0-9a-f]{32}$/);
  await expectLoadedImage(page, "a first snowy bus stop");
  await expect(page.getByRole("link", { name: "Download" })).toBeVisible();
  await context.close();
});

test("keyboard only: type, press Enter, focus moves to the result", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const input = page.getByLabel("Enter your prompt");
  // Tab reaches the shape (one stop for the three radio buttons), then the prompt.
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Square")).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(input).toBeFocused();
  await page.keyboard.type("a cat on a windowsill, rain outside");
  await page.keyboard.press("Enter");
  await expectLoadedImage(page, "a cat on a windowsill, rain outside");
  await expect(result(page)).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(page.getByRole("link", { name: "Download" })).toBeFocused();

  // An error sends the focus back to the prompt, whose description is the message.
  await input.fill("   ");
  await input.press("Enter");
  await expect(page.getByText("Please enter a prompt.")).toBeVisible();
  await expect(input).toBeFocused();
  await expect(input).toHaveAttribute("aria-describedby", "status");
  await context.close();
});

test("a spoofed X-Forwarded-For does not mint a fresh quota", async ({ browser }) => {
  // This app runs on the built-in defaults: no proxy is trusted, so the header is
  // ignored and every request below is the same visitor (loopback), limit 5.
  const app = "http://127.0.0.1:3303";
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${app}/`);
  await expect(page.getByText("5 of 5 generations left.")).toBeVisible();
  const statuses = await page.evaluate(async () => {
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await fetch("/api/ai", {
        method: "POST",
        headers: { "X-Forwarded-For": `198.51.100.${100 + i}` },
        body: JSON.stringify({ prompt: `spoofed visitor ${i}` }),
      });
      seen.push(response.status);
    }
    return seen;
  });
  expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  await context.close();

  // A new browser claiming yet another address is still the same visitor.
  const claimed = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": "192.0.2.77" } });
  const fresh = await claimed.newPage();
  await fresh.goto(`${app}/`);
  await waitForHydration(fresh);
  await expect(fresh.getByText("0 of 5 generations left.")).toBeVisible();
  await expect(fresh.getByRole("button", { name: "Submit" })).toBeDisabled();
  await claimed.close();
});

test("the countdown ticks and the quota renews at the reset without a reload", async ({ browser }) => {
  test.setTimeout(90_000);
  // This app's visitor window is 30 s, aligned to the clock.
  const app = "http://127.0.0.1:3304";
  const { context, page } = await openAsVisitor(browser);
  await page.goto(`${app}/`);
  await waitForHydration(page);
  const renews = page.getByText(/^Renews in \d+ s\.$/);
  const seconds = async () => Number((await renews.textContent())!.match(/\d+/)![0]);
  // Start with some runway before the next reset.
  if ((await seconds()) < 8) {
    await expect.poll(seconds, { timeout: 15_000 }).toBeGreaterThan(20);
  }
  const before = await seconds();
  await page.waitForTimeout(2_500);
  const after = await seconds();
  expect(before - after, `${before} s, then ${after} s`).toBeGreaterThanOrEqual(2);
  expect(before - after).toBeLessThanOrEqual(4);

  await page.getByLabel("Enter your prompt").fill("a countdown sky");
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, "a countdown sky");
  await expect(page.getByText("2 of 3 generations left.")).toBeVisible();
  // At the reset the page asks the server again and shows the full quota.
  await expect(page.getByText("3 of 3 generations left.")).toBeVisible({ timeout: 35_000 });
  await context.close();
});

test("the budget shared by all visitors refuses once spent; the refused visitor keeps their quota", async ({
  browser,
}) => {
  // This app allows 2 generations for everyone together (global_limit = 2).
  const app = "http://127.0.0.1:3304";
  const spender = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": newVisitor() } });
  const first = await spender.newPage();
  await first.goto(`${app}/`);
  // Spend what is left of the budget (the countdown test above used some).
  const refusal = await first.evaluate(async () => {
    for (let i = 0; i < 3; i++) {
      const response = await fetch("/api/ai", { method: "POST", body: JSON.stringify({ prompt: `budget ${i}` }) });
      if (response.status === 429) return response.json();
    }
    return null;
  });
  expect(refusal).toBe("No generations remaining: the budget shared by all visitors is used up for now.");
  await spender.close();

  const { context, page } = await openAsVisitor(browser);
  await page.goto(`${app}/`);
  await waitForHydration(page);
  await expect(page.getByText("3 of 3 generations left.")).toBeVisible();
  await page.getByLabel("Enter your prompt").fill("a late visitor's harbour");
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(
    page.getByText(
      /^No generations remaining: the budget shared by all visitors is used up for now\. It reopens in \d+ (h|min|s)/,
    ),
  ).toBeVisible();
  await page.reload();
  await expect(page.getByText("3 of 3 generations left."), "the refusal cost this visitor nothing").toBeVisible();
  await context.close();
});

test("an image's own page: picture, prompt, link-preview tags, Copy link", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await page.goto("/");
  await waitForHydration(page);
  const prompt = "paper cranes over a river";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expectLoadedImage(page, prompt);

  // Copy link on the result copies the image page's absolute URL.
  await page.getByRole("button", { name: "Copy link" }).click();
  await expect(page.getByRole("button", { name: "Link copied" })).toBeVisible();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied).toMatch(/^http:\/\/127\.0\.0\.1:3300\/i\/[0-9a-f]{32}$/);

  // A stranger holding the link sees the picture and its prompt, nothing of the visitor.
  const stranger = await openAsVisitor(browser);
  await stranger.context.grantPermissions(["clipboard-read", "clipboard-write"]);
  const response = await stranger.page.goto(copied);
  expect(response?.status()).toBe(200);
  await expectLoadedImage(stranger.page, prompt);
  await expect(stranger.page).toHaveTitle(`${prompt} · lofianime`);
  const og = (property: string) =>
    stranger.page.locator(`meta[property="${property}"]`).getAttribute("content");
  expect(await og("og:title")).toBe(prompt);
  expect(await og("og:image")).toMatch(/^http:\/\/127\.0\.0\.1:3300\/images\/[0-9a-f]{32}\.png$/);
  expect(await og("og:url")).toBe(copied);
  expect(await stranger.page.locator('meta[name="twitter:card"]').getAttribute("content")).toBe(
    "summary_large_image",
  );
  await expect(stranger.page.getByText(/generations left/)).toHaveCount(0);
  await expect(stranger.page.getByText("Your recent images")).toHaveCount(0);
  // The page's own Copy link (an island of its own) copies the page's address.
  await stranger.page.getByRole("button", { name: "Copy link" }).click();
  await expect(stranger.page.getByRole("button", { name: "Link copied" })).toBeVisible();
  expect(await stranger.page.evaluate(() => navigator.clipboard.readText())).toBe(copied);
  // Download still gives the original PNG.
  const [download] = await Promise.all([
    stranger.page.waitForEvent("download"),
    stranger.page.getByRole("link", { name: "Download" }).click(),
  ]);
  expect(download.suggestedFilename()).toBe("paper-cranes-over-a-river.png");
  await stranger.context.close();
  await context.close();
});

test("an unknown image page is a 404 page", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  for (const path of ["/i/0123456789abcdef0123456789abcdef", "/i/not-an-id"]) {
    const response = await page.goto(path);
    expect(response?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  }
  await context.close();
});

test("pages load the WebP variants, never the PNG originals", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  for (const prompt of ["a tram in the fog", "a bakery at dawn"]) {
    await page.getByLabel("Enter your prompt").fill(prompt);
    await page.getByRole("button", { name: "Submit" }).click();
    await expectLoadedImage(page, prompt);
  }
  // A new image joins the list without a reload.
  const recent = page.getByRole("region", { name: "Your recent images" });
  await expect(recent.getByRole("listitem")).toHaveCount(2);

  // A returning visitor: which images does the page fetch, and how many bytes?
  const images: { url: string; bytes: number }[] = [];
  page.on("response", async (response) => {
    if (response.request().resourceType() === "image") {
      images.push({ url: response.url(), bytes: (await response.body()).length });
    }
  });
  await page.reload();
  await recent.getByRole("img").last().scrollIntoViewIfNeeded();
  await expect
    .poll(() => recent.getByRole("img").evaluateAll((all) => all.every((img) => (img as HTMLImageElement).complete && (img as HTMLImageElement).naturalWidth > 0)))
    .toBe(true);
  await page.waitForLoadState("networkidle");
  const pictures = images.filter((image) => image.url.includes("/images/"));
  expect(pictures.length).toBeGreaterThanOrEqual(2);
  for (const image of pictures) expect(image.url).toMatch(/-thumb\.webp$/);
  for (const image of pictures) expect(image.bytes).toBeLessThanOrEqual(25_000);
  await context.close();
});

/// The width and height a PNG's header gives.
async function pngSize(page: Page, url: string): Promise<[number, number]> {
  const body = await (await page.request.get(url)).body();
  return [body.readUInt32BE(16), body.readUInt32BE(20)];
}

test("a portrait picture, then Same again and More like this", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  const prompt = "a lighthouse on a cliff";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await expect(page.getByLabel("Square")).toBeChecked();
  await page.getByLabel("Portrait").check();
  await page.getByRole("button", { name: "Submit" }).click();

  const image = result(page).getByRole("img", { name: prompt });
  await expect(image).toBeVisible();
  await expect
    .poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBeGreaterThan(0);
  // Taller than wide on the page, in the reserved size and in the file.
  const box = (await image.boundingBox())!;
  expect(box.height).toBeGreaterThan(box.width);
  expect(Number(await image.getAttribute("height"))).toBeGreaterThan(
    Number(await image.getAttribute("width")),
  );
  const download = result(page).getByRole("link", { name: "Download" });
  const firstOriginal = (await download.getAttribute("href"))!;
  const [width, height] = await pngSize(page, firstOriginal);
  expect(height).toBeGreaterThan(width);
  const about = result(page).locator(".about");
  await expect(about).toHaveText(/^Portrait · seed \d+$/);
  const seed = (await about.textContent())!.replace(/\D+/g, "");
  // The shape stays chosen for the next generation.
  await expect(page.getByLabel("Portrait")).toBeChecked();
  const firstBytes = await (await page.request.get(firstOriginal)).body();

  // Same again (a form post, with or without JavaScript): the same seed
  // paints the same picture, as a new image on its own page.
  await result(page).getByRole("button", { name: "Same again" }).click();
  await expect(page).toHaveURL(/\/i\/[0-9a-f]{32}$/);
  await expect(about).toHaveText(`Portrait · seed ${seed}`);
  const againOriginal = (await download.getAttribute("href"))!;
  expect(againOriginal).not.toBe(firstOriginal);
  const againBytes = await (await page.request.get(againOriginal)).body();
  expect(againBytes.equals(firstBytes)).toBe(true);

  // More like this: a new seed, the same prompt and shape.
  const againPage = page.url();
  await result(page).getByRole("button", { name: "More like this" }).click();
  await expect(page).not.toHaveURL(againPage);
  await expect(page).toHaveURL(/\/i\/[0-9a-f]{32}$/);
  await expect(about).toHaveText(/^Portrait · seed \d+$/);
  await expect(about).not.toHaveText(`Portrait · seed ${seed}`);
  const [moreWidth, moreHeight] = await pngSize(page, (await download.getAttribute("href"))!);
  expect(moreHeight).toBeGreaterThan(moreWidth);
  // Three generations like any other; the recent images keep their shape.
  await page.goto("/");
  await expect(page.getByText("0 of 3 generations left.")).toBeVisible();
  const thumb = page.locator(".recent-grid img").first();
  expect(Number(await thumb.getAttribute("height"))).toBeGreaterThan(
    Number(await thumb.getAttribute("width")),
  );
  await context.close();
});

test("without JavaScript: a landscape picture, and Same again from its page", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, { javaScriptEnabled: false });
  await page.goto("/");
  const prompt = "a tram by the sea";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByLabel("Landscape").check();
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page).toHaveURL(/\/i\/[0-9a-f]{32}$/);
  const first = page.url();
  const download = page.getByRole("link", { name: "Download" });
  const [width, height] = await pngSize(page, (await download.getAttribute("href"))!);
  expect(width).toBeGreaterThan(height);
  const about = (await page.locator(".about").textContent())!;
  expect(about).toMatch(/^Landscape · seed \d+$/);
  await page.getByRole("button", { name: "Same again" }).click();
  await expect(page).toHaveURL(/\/i\/[0-9a-f]{32}$/);
  expect(page.url()).not.toBe(first);
  await expect(page.locator(".about")).toHaveText(about);
  await context.close();
});

test("the maker deletes an image; another visitor cannot", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser);
  await page.goto("/");
  await waitForHydration(page);
  for (const prompt of ["a kite over dunes", "a cat on a windowsill"]) {
    await page.getByLabel("Enter your prompt").fill(prompt);
    await page.getByRole("button", { name: "Submit" }).click();
    await expect(result(page).getByRole("img", { name: prompt })).toBeVisible();
  }
  const kitePage = (await page
    .locator(".recent-grid a", { hasText: "a kite over dunes" })
    .getAttribute("href"))!;
  const catPage = (await page
    .locator(".recent-grid a", { hasText: "a cat on a windowsill" })
    .getAttribute("href"))!;

  // Another visitor sees the picture without Delete, and a forged request fails.
  const stranger = await openAsVisitor(browser);
  await stranger.page.goto(catPage);
  await expect(stranger.page.getByRole("img", { name: "a cat on a windowsill" })).toBeVisible();
  await expect(stranger.page.getByRole("button", { name: "Delete this image" })).toHaveCount(0);
  const forged = await stranger.page.request.post("/api/delete-image", {
    form: { id: catPage.split("/").pop()! },
    headers: { Accept: "application/json" },
  });
  expect(forged.status()).toBe(403);
  expect((await stranger.page.goto(catPage))?.status()).toBe(200);
  await stranger.context.close();

  // From the recent list (a plain form: the page comes back without it).
  await page.getByRole("button", { name: "Delete a kite over dunes" }).click();
  await expect(page.locator(".recent-grid a", { hasText: "a kite over dunes" })).toHaveCount(0);
  // From the image's own page.
  await page.goto(catPage);
  await page.getByRole("button", { name: "Delete this image" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".recent-grid a", { hasText: "a cat on a windowsill" })).toHaveCount(0);
  for (const path of [kitePage, catPage]) {
    const response = await page.goto(path);
    expect(response?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "This image was deleted." })).toBeVisible();
  }
  await context.close();
});

import { test, expect, type Page } from "@playwright/test";
import { writeFileSync, mkdirSync } from "node:fs";

// The app runs with REPLICATE_API_TOKEN set and REPLICATE_BASE_URL pointing at
// the local stand-in (replicate-stand-in.mjs), which answers with a real PNG
// after 800 ms.
const standIn = "http://127.0.0.1:3302";

async function openAsVisitor(browser: import("@playwright/test").Browser, visitor: string) {
  const context = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": visitor } });
  const page = await context.newPage();
  await page.goto("/");
  // The studio island is live.
  await page.locator('form[data-hydrated="true"]').waitFor();
  return { context, page };
}

type StandInPrediction = { id: string; prompt: string; finishedAt: number | null; canceled: boolean };

async function predictions(): Promise<StandInPrediction[]> {
  return (await fetch(`${standIn}/__predictions`)).json();
}

/// Submits a prompt and resolves with the epoch ms at which the browser finished
/// loading the resulting image.
async function generateAndTimeImage(page: Page, prompt: string): Promise<number> {
  await page.getByLabel("Enter your prompt").fill(prompt);
  const loaded = page.evaluate(
    (alt) =>
      new Promise<number>((resolve) => {
        const check = () => {
          const img = [...document.querySelectorAll("img")].find((i) => i.alt === alt);
          if (img && img.complete && img.naturalWidth > 0) {
            resolve(performance.timeOrigin + performance.now());
            return true;
          }
          if (img) {
            img.addEventListener("load", () => resolve(performance.timeOrigin + performance.now()), { once: true });
            return true;
          }
          return false;
        };
        if (!check()) {
          const observer = new MutationObserver(() => {
            if (check()) observer.disconnect();
          });
          observer.observe(document.body, { childList: true, subtree: true });
        }
      }),
    prompt,
  );
  await page.getByRole("button", { name: "Submit" }).click();
  return loaded;
}

test("an image from the model is shown from the app's own URL", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.31");
  await expect(page.getByText("Offline generator.")).toHaveCount(0);
  const prompt = "a rooftop garden at golden hour";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.locator(".generating")).toBeVisible();
  const image = page.locator("figure.result").getByRole("img", { name: prompt });
  await expect(image).toHaveAttribute("src", /^\/images\/[0-9a-f]{32}-medium\.webp$/);
  // The medium variant of the model's 512 px picture (the page lays it out wider).
  await expect(image).toHaveAttribute("width", "512");
  await expect
    .poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.currentSrc))
    .toMatch(/-medium\.webp$/);

  const sent = (await predictions()).find((p) => p.prompt === `In the style of HISGH. ${prompt}`);
  expect(sent, "the stand-in received the prefixed prompt").toBeTruthy();
  await context.close();
});

test("the latency the app adds after the model finishes (20 runs)", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.32");
  const added: number[] = [];
  for (let run = 1; run <= 20; run++) {
    const prompt = `latency run ${run}, a calm harbour`;
    const visibleAt = await generateAndTimeImage(page, prompt);
    const finished = (await predictions()).find((p) => p.prompt === `In the style of HISGH. ${prompt}`);
    expect(finished?.finishedAt, `run ${run} finished at the stand-in`).toBeTruthy();
    added.push(visibleAt - finished!.finishedAt!);
  }
  added.sort((a, b) => a - b);
  const at = (q: number) => added[Math.min(added.length - 1, Math.round((added.length - 1) * q))];
  const report = { runs: added.length, p50_ms: Math.round(at(0.5)), p95_ms: Math.round(at(0.95)), all_ms: added.map(Math.round) };
  console.log(`latency added by the app after the prediction finished: ${JSON.stringify(report)}`);
  mkdirSync("artifacts", { recursive: true });
  writeFileSync("artifacts/replicate-latency.json", JSON.stringify(report, null, 2));
  expect(added.every((ms) => ms > 0), "the image can only appear after the prediction finished").toBe(true);
  await context.close();
});

test("progress shows the model's phases and elapsed time; Cancel stops the model, which counts once it was drawing", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.33");
  await expect(page.getByText("50 of 50 generations left.")).toBeVisible();
  // "[slow]": the stand-in starts for 1.5 s, then draws for 8 s with a progress bar.
  const prompt = "a slow night train [slow]";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  const progress = page.locator(".generating");
  await expect(progress).toContainText("The model is starting…");
  await expect(progress).toContainText(/Generating… \d+%/);
  await expect(progress.locator(".elapsed")).toHaveText(/^[1-9]\d* s$/);

  await progress.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByText("Cancelled: the model had already started, so this one counted.")).toBeVisible();
  await expect(progress).toBeHidden();
  await expect(page.getByLabel("Enter your prompt")).toBeFocused();

  const sent = (await predictions()).find((p) => p.prompt === `In the style of HISGH. ${prompt}`);
  expect(sent?.canceled, "the stand-in saw the cancel").toBe(true);
  expect(sent?.finishedAt, "the prediction never finished").toBeNull();
  await page.reload();
  await expect(page.getByText("49 of 50 generations left."), "the owner was billed: it counted").toBeVisible();
  await context.close();
});

test("Cancel while the model is still starting stops it and is not counted", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.35");
  await expect(page.getByText("50 of 50 generations left.")).toBeVisible();
  const prompt = "a sleepy harbour [cold]";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  const progress = page.locator(".generating");
  await expect(progress).toContainText("The model is starting…");
  await progress.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByText("Cancelled before the model started: not counted.")).toBeVisible();
  const sent = (await predictions()).find((p) => p.prompt === `In the style of HISGH. ${prompt}`);
  expect(sent?.canceled, "the stand-in saw the cancel").toBe(true);
  await page.reload();
  await expect(page.getByText("50 of 50 generations left."), "the credit came back").toBeVisible();
  await context.close();
});

test("leaving the page mid-generation cancels the prediction; once drawing, it counted", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.34");
  const prompt = "an abandoned lighthouse [slow]";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.locator(".generating")).toContainText(/Generating…/);
  await page.close();
  await expect
    .poll(async () => (await predictions()).find((p) => p.prompt === `In the style of HISGH. ${prompt}`)?.canceled, {
      timeout: 5_000,
    })
    .toBe(true);
  const again = await context.newPage();
  await again.goto("/");
  await expect(again.getByText("49 of 50 generations left.")).toBeVisible();
  await context.close();
});

test("a reload mid-generation comes back to it: progress, then the image", async ({ browser }) => {
  const { context, page } = await openAsVisitor(browser, "198.51.100.36");
  const prompt = "a night market after a reload [slow]";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.locator(".generating")).toContainText(/Generating…/);
  await page.reload();
  // The reloaded page follows the same generation: its prompt, phase, a
  // clock (counting from the reload, as if just sent) and Cancel.
  await page.locator('form[data-hydrated="true"]').waitFor();
  const progress = page.locator(".generating");
  await expect(progress).toContainText(/Generating… \d+%/);
  await expect(progress.locator(".elapsed")).toHaveText(/^\d+ s$/);
  await expect(progress.getByRole("button", { name: "Cancel" })).toBeVisible();
  await expect(page.getByLabel("Enter your prompt")).toHaveValue(prompt);
  // Then the picture, as if the page had never left.
  const shown = page.locator("figure.result img");
  await expect(shown).toBeVisible({ timeout: 20_000 });
  await expect(shown).toHaveAttribute("alt", prompt);
  const sent = (await predictions()).filter((p) => p.prompt === `In the style of HISGH. ${prompt}`);
  expect(sent.length, "one run, not two").toBe(1);
  expect(sent[0].canceled, "the run was not stopped by the reload").toBe(false);
  expect(sent[0].finishedAt, "it ran to its end").not.toBeNull();
  await expect(page.getByText("49 of 50 generations left.")).toBeVisible();
  await context.close();
});

test("without JavaScript the form lands on a waiting page that refreshes until the picture", async ({ browser }) => {
  const context = await browser.newContext({
    javaScriptEnabled: false,
    extraHTTPHeaders: { "X-Forwarded-For": "198.51.100.37" },
  });
  const page = await context.newPage();
  await page.goto("/");
  const prompt = "a paper lantern festival [slow]";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page).toHaveURL(/\/making\/[0-9a-f]{32}$/);
  await expect(page.getByRole("heading", { name: "Making your picture" })).toBeVisible();
  await expect(page.getByText(prompt)).toBeVisible();
  await expect(page.getByRole("button", { name: "Cancel" })).toBeVisible();
  // The page refreshes itself until the picture is made, then shows its page.
  await expect(page).toHaveURL(/\/i\/[0-9a-f]{32}$/, { timeout: 25_000 });
  await expect(page.getByRole("img", { name: prompt })).toBeVisible();
  const sent = (await predictions()).filter((p) => p.prompt === `In the style of HISGH. ${prompt}`);
  expect(sent.length).toBe(1);
  expect(sent[0].canceled).toBe(false);
  await context.close();
});

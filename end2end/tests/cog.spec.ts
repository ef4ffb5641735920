import { test, expect } from "@playwright/test";

// The app with model.backend = "cog" against a real Cog model server (the tiny
// predictor in tests/cog/predict.py: 20 steps of 150 ms, printing a progress
// bar, painting a 64 px picture for a 1024 px request), progress by webhook.

test("a generation through the owner's Cog server shows its progress, then the server's picture", async ({ browser }) => {
  const context = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": "198.51.100.41" } });
  const page = await context.newPage();
  await page.goto("/");
  await page.locator('form[data-hydrated="true"]').waitFor();
  await expect(page.getByText("Offline generator.")).toHaveCount(0);
  const prompt = "a tea house on a gpu of my own";
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  const progress = page.locator(".generating");
  await expect(progress).toContainText(/Generating… \d+%/);
  const shown = page.locator("figure.result img");
  await expect(shown).toBeVisible({ timeout: 20_000 });
  await expect(shown).toHaveAttribute("alt", prompt);
  // The server's own picture (64 × 64), kept and served by the app.
  const href = await page.getByRole("link", { name: "Download" }).getAttribute("href");
  const file = await page.request.get(href!);
  expect(file.status()).toBe(200);
  const bytes = await file.body();
  expect(bytes.subarray(1, 4).toString()).toBe("PNG");
  expect(bytes.readUInt32BE(16)).toBe(64);
  await context.close();
});

import { test, expect, type Browser } from "@playwright/test";

// The owner's page on its own app (playwright.config.ts: "admin", 3308, with
// ADMIN_TOKEN and SESSION_SECRET). Visitors are told apart by X-Forwarded-For
// (the app trusts loopback); the owner comes from an address of their own.
const token = "an end-to-end admin token of thirty-two bytes or more";
const runBlock = Math.floor(Math.random() * 256);

async function as(browser: Browser, address: string) {
  const context = await browser.newContext({ extraHTTPHeaders: { "X-Forwarded-For": address } });
  return { context, page: await context.newPage() };
}

test("the owner signs in, changes the limit, pauses, blocks a visitor and deletes an image", async ({ browser }) => {
  // A visitor makes an image.
  const visitor = await as(browser, `198.18.${runBlock}.1`);
  await visitor.page.goto("/");
  await visitor.page.locator('form[data-hydrated="true"]').waitFor();
  await visitor.page.getByLabel("Enter your prompt").fill("a quiet harbour at dawn");
  await visitor.page.getByRole("button", { name: "Submit" }).click();
  const made = visitor.page.locator("figure.result").getByRole("img", { name: "a quiet harbour at dawn" });
  await expect(made).toBeVisible();
  const src = (await made.getAttribute("src")) ?? "";
  const id = src.match(/[0-9a-f]{32}/)?.[0] ?? "";
  expect(id).toHaveLength(32);

  // The owner signs in with the token: no script on the owner's page.
  const owner = await as(browser, `198.18.${runBlock}.200`);
  const scripts: string[] = [];
  owner.page.on("request", (request) => {
    if (request.resourceType() === "script") scripts.push(request.url());
  });
  await owner.page.goto("/admin");
  await expect(owner.page).toHaveURL(/\/admin\/login$/);
  await owner.page.getByLabel("Admin token").fill(token);
  await owner.page.getByRole("button", { name: "Enter" }).click();
  await expect(owner.page).toHaveURL(/\/admin$/);
  await expect(owner.page.locator("#spent-today")).toHaveText(/^\$\d+\.\d\d$/);
  await expect(owner.page.getByRole("img", { name: /Dollars spent per day/ })).toBeVisible();
  await expect(owner.page.getByRole("img", { name: /Generations per day by outcome/ })).toBeVisible();
  await expect(owner.page.getByText("a quiet harbour at dawn")).toBeVisible();
  expect(scripts).toEqual([]);

  // The limit goes down to 2: a new visitor sees it.
  await owner.page.getByLabel("Per visitor").fill("2");
  await owner.page.getByRole("button", { name: "Change limits" }).click();
  await expect(owner.page.getByRole("status")).toHaveText("The limits were changed on every instance.");
  const newcomer = await as(browser, `198.18.${runBlock}.2`);
  await newcomer.page.goto("/");
  await expect(newcomer.page.getByText("2 of 2 generations left.")).toBeVisible();

  // Paused: the visitor's page says so instead of the form.
  await owner.page.getByRole("button", { name: "Pause generation" }).click();
  await expect(owner.page.locator("#pause-state")).toContainText("paused");
  await newcomer.page.waitForTimeout(1_200);
  await newcomer.page.reload();
  await expect(newcomer.page.getByText("Generation is paused by the site's owner. Please try again later.")).toBeVisible();
  await expect(newcomer.page.getByLabel("Enter your prompt")).toHaveCount(0);
  await owner.page.getByRole("button", { name: "Resume generation" }).click();
  await expect(owner.page.getByRole("status")).toHaveText("Generation is running again.");

  // The first visitor is blocked from the top payers' list.
  await owner.page.getByRole("row", { name: /\$0\.00/ }).first().getByRole("button", { name: "Block" }).click();
  await expect(owner.page.getByRole("status")).toHaveText("The visitor is blocked.");
  await visitor.page.waitForTimeout(1_200);
  await visitor.page.reload();
  await visitor.page.locator('form[data-hydrated="true"]').waitFor();
  await visitor.page.getByLabel("Enter your prompt").fill("another harbour");
  await visitor.page.getByRole("button", { name: "Submit" }).click();
  await expect(visitor.page.getByText("Generating images is blocked for this visitor.")).toBeVisible();
  await owner.page.reload();
  await expect(owner.page.locator("#refused-today")).toHaveText(/^[1-9]\d*$/);
  await expect(owner.page.getByText(/\d+ blocked\)/)).toBeVisible();

  // The image is deleted: its page says so.
  await owner.page.getByRole("row", { name: /a quiet harbour at dawn/ }).getByRole("button", { name: "Delete image" }).click();
  await expect(owner.page.getByRole("status")).toHaveText("The image was removed.");
  await newcomer.page.waitForTimeout(1_200);
  const gone = await newcomer.page.goto(`/i/${id}`);
  expect(gone?.status()).toBe(404);
  await expect(newcomer.page.getByText("This image was removed.")).toBeVisible();

  for (const session of [visitor, owner, newcomer]) await session.context.close();
});

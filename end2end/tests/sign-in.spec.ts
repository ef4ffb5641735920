import { test, expect, type Browser, type BrowserContext, type Page } from "@playwright/test";

// Sign-in against a real OpenID provider (tests/oidc/provider.mjs on 3310,
// oauth2-mock-server): it approves at once, as the person named by a `who`
// cookie on its own origin. The app runs with auth.mode "optional" (3306, the
// project's baseURL) and "required" (3307). Every context is its own visitor
// address through X-Forwarded-For, which the app trusts from loopback.
const provider = "http://127.0.0.1:3310";
const required = "http://127.0.0.1:3307";
const run = Math.floor(Math.random() * 1e9).toString(36);
const runBlock = Math.floor(Math.random() * 256);
let counter = 0;

function newAddress(): string {
  counter += 1;
  return `198.18.${runBlock}.${counter}`;
}

/// A fresh e-mail address for this run (the app keeps counts between runs).
function newEmail(name: string): string {
  counter += 1;
  return `${name}-${run}-${counter}@example.com`;
}

async function visitor(browser: Browser, email?: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({
    extraHTTPHeaders: { "X-Forwarded-For": newAddress() },
  });
  if (email) {
    await context.addCookies([
      { name: "who", value: encodeURIComponent(JSON.stringify({ email })), url: provider },
    ]);
  }
  return { context, page: await context.newPage() };
}

async function hydrated(page: Page) {
  await page.locator('form[data-hydrated="true"]').waitFor();
}

async function signIn(page: Page) {
  await page.getByRole("link", { name: "Sign in with Google" }).first().click();
  await page.waitForURL((url) => url.port !== "3310" && !url.pathname.startsWith("/auth/"));
}

async function generate(page: Page, prompt: string) {
  await hydrated(page);
  await page.getByLabel("Enter your prompt").fill(prompt);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.locator("figure.result").getByRole("img", { name: prompt })).toBeVisible();
}

const quota = (page: Page) => page.locator("p.quota");

test("an account's quota follows it to another browser, and signing out ends it", async ({ browser }) => {
  const email = newEmail("ana");
  const { context: laptop, page } = await visitor(browser, email);
  await page.goto("/");
  await expect(page.getByRole("link", { name: "Sign in with Google" })).toBeVisible();
  await signIn(page);
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".account-who")).toHaveText(email);
  await expect(quota(page)).toContainText(`5 of 5 generations left on ${email}.`);
  await generate(page, `a quiet harbour ${run}`);
  await expect(quota(page)).toContainText(`4 of 5 generations left on ${email}.`);

  // Another browser, another address, the same account.
  const { context: phone, page: second } = await visitor(browser, email);
  await second.goto("/");
  await signIn(second);
  await expect(quota(second)).toContainText(`4 of 5 generations left on ${email}.`);
  await expect(second.locator(".recent").getByRole("img", { name: `a quiet harbour ${run}` })).toBeVisible();

  // Another account has its own quota.
  const other = newEmail("ben");
  const { context: third, page: bens } = await visitor(browser, other);
  await bens.goto("/");
  await signIn(bens);
  await expect(quota(bens)).toContainText(`5 of 5 generations left on ${other}.`);
  await third.close();

  // Signing out: back to the address's own quota.
  await second.getByRole("button", { name: "Sign out" }).click();
  await expect(second.getByRole("link", { name: "Sign in with Google" })).toBeVisible();
  await expect(second.locator(".account-who")).toHaveCount(0);
  await expect(quota(second)).toContainText("1 of 1 generations left.");
  await laptop.close();
  await phone.close();
});

test("signing in from an image's page returns there", async ({ browser }) => {
  const email = newEmail("cai");
  const { context, page } = await visitor(browser, email);
  await page.goto("/");
  await signIn(page);
  await generate(page, `lanterns over a canal ${run}`);
  const imagePath = await page.evaluate(() => {
    const figure = document.querySelector("figure.result img") as HTMLImageElement;
    return figure.src.match(/([0-9a-f]{32})-medium/)?.[1];
  });
  expect(imagePath).toBeTruthy();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.goto(`/i/${imagePath}`);
  await signIn(page);
  await expect(page).toHaveURL(new RegExp(`/i/${imagePath}$`));
  await expect(page.locator(".account-who")).toHaveText(email);
  await context.close();
});

test("optional mode gives a signed-out visitor the anonymous quota", async ({ browser }) => {
  const { context, page } = await visitor(browser);
  await page.goto("/");
  await expect(quota(page)).toContainText("1 of 1 generations left.");
  await expect(page.getByText("Each account gets 5 generations per day; signed out, 1 generation.")).toBeVisible();
  await generate(page, `a lone bicycle ${run}`);
  await expect(quota(page)).toContainText("0 of 1 generations left.");
  await expect(page.getByRole("button", { name: "Submit" })).toBeDisabled();
  await context.close();
});

test("required mode shows the sign-in prompt and the server answers 401", async ({ browser }) => {
  const email = newEmail("dee");
  const { context, page } = await visitor(browser, email);
  await page.goto(`${required}/`);
  await expect(page.getByRole("heading", { name: "Sign in to generate images" })).toBeVisible();
  await expect(page.getByLabel("Enter your prompt")).toHaveCount(0);
  const refused = await context.request.post(`${required}/api/ai`, {
    data: JSON.stringify({ prompt: "no account" }),
  });
  expect(refused.status()).toBe(401);
  expect(await refused.json()).toBe("Sign in to generate images.");
  const remaining = await context.request.get(`${required}/api/remaining`);
  expect(remaining.status()).toBe(401);

  await page.getByRole("link", { name: "Sign in with Google" }).last().click();
  await page.waitForURL(`${required}/`);
  await expect(page.locator(".account-who")).toHaveText(email);
  await generate(page, `snow on a shrine ${run}`);
  await expect(quota(page)).toContainText(`4 of 5 generations left on ${email}.`);
  // The session is the page's and the JSON API's alike.
  const counted = await context.request.get(`${required}/api/remaining`);
  expect(counted.status()).toBe(200);
  expect((await counted.json()).remainingGenerations).toBe(4);
  await context.close();
});

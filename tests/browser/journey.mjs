// The developer portal's journey in a real browser: Debian's Chromium driven by npm's
// playwright-core (no browser download), on a phone-sized viewport.
//
// Run by crates/cli/tests/portal.rs, which starts `gatehouse up` and a backend, imports the
// petstore API into a product that needs approval, and passes:
//   PORTAL_URL     http://127.0.0.1:PORT/portal/
//   CONTROL_URL    http://127.0.0.1:PORT        (management API, for the admin's approval)
//   ADMIN_TOKEN    the admin token
//   GATEWAY_URL    http://127.0.0.1:PORT        (to check keys directly)
//   API_PATH       the API's path on the gateway (e.g. petstore)
//   PRODUCT_ID     the product to subscribe to
//   CHROMIUM       the browser executable (/usr/bin/chromium)
//   ARTIFACTS      where the screenshots go
// Prints one line per step and, at the end, `JOURNEY OK {json}`; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const PORTAL = env('PORTAL_URL');
const CONTROL = env('CONTROL_URL');
const TOKEN = env('ADMIN_TOKEN');
const GATEWAY = env('GATEWAY_URL');
const API_PATH = env('API_PATH');
const PRODUCT = env('PRODUCT_ID');
const ARTIFACTS = env('ARTIFACTS');
const EMAIL = `dev-${Date.now()}@example.com`;
const PASSWORD = 'a long and secret passphrase';
const LIMIT = 100 * 1024;

mkdirSync(ARTIFACTS, { recursive: true });
const summary = { email: EMAIL, steps: [], transferred: {} };
let stepNo = 0;
let stepBytes = 0;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
const watchdog = setTimeout(() => {
  console.error('the journey took longer than 90 s');
  process.exit(3);
}, 90_000);

try {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  // Bytes transferred per step (bodies as sent, compressed; the browser caches the assets).
  page.on('requestfinished', async (request) => {
    try {
      const sizes = await request.sizes();
      stepBytes += sizes.responseBodySize + sizes.responseHeadersSize;
    } catch { /* a request cut short by navigation */ }
  });

  const step = async (name, fn) => {
    stepBytes = 0;
    const started = Date.now();
    await fn();
    await page.waitForLoadState('load');
    if (pageErrors.length) throw new Error(`errors on the page: ${pageErrors.join('; ')}`);
    stepNo += 1;
    const file = `${String(stepNo).padStart(2, '0')}-${name}.png`;
    await page.screenshot({ path: join(ARTIFACTS, file), fullPage: true });
    summary.steps.push(name);
    summary.transferred[name] = stepBytes;
    console.log(`STEP ${name} ok (${Date.now() - started} ms, ${stepBytes} bytes transferred)`);
    if (stepBytes >= LIMIT) throw new Error(`step ${name} transferred ${stepBytes} bytes, over 100 KB`);
  };
  const expectText = async (locator, text) => {
    await locator.filter({ hasText: text }).first().waitFor();
  };
  const admin = async (method, path, body) => {
    const res = await fetch(CONTROL + path, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const gatewayStatus = async (key) => {
    const res = await fetch(`${GATEWAY}/${API_PATH}/pets`, { headers: { 'Ocp-Apim-Subscription-Key': key } });
    await res.arrayBuffer();
    return res.status;
  };
  const eventually = async (what, check) => {
    const deadline = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  // 1. Open the portal.
  await step('home', async () => {
    await page.goto(PORTAL);
    await expectText(page.locator('h2'), 'Products');
    const landmarks = await page.locator('header, nav, main, footer').count();
    if (landmarks < 4) throw new Error('the page lacks its landmarks');
  });

  // 2. Find the API by search: from the home page, then filtering as one types (htmx).
  await step('search', async () => {
    await page.getByLabel('Search APIs').fill('pet');
    await page.getByLabel('Search APIs').press('Enter');
    await page.waitForURL(/\/portal\/apis\?q=pet/);
    await expectText(page.locator('#api-results'), 'Swagger Petstore');
    const search = page.getByLabel('Search APIs');
    await search.fill('');
    await search.pressSequentially('stapi', { delay: 20 });
    // Each answer names its query, so an earlier, slower answer cannot be mistaken for it.
    await expectText(page.locator('#api-results'), 'matching “stapi”');
    await expectText(page.locator('#api-results'), 'STAPI');
    if (await page.locator('#api-results').getByText('Swagger Petstore').count() !== 0) {
      throw new Error('the search did not filter the list');
    }
    await search.fill('');
    await search.pressSequentially('petstore', { delay: 20 });
    await expectText(page.locator('#api-results'), 'matching “petstore”');
    await expectText(page.locator('#api-results'), 'Swagger Petstore');
    if (await page.locator('#api-results').getByText('STAPI').count() !== 0) {
      throw new Error('the search did not filter the list');
    }
  });

  // 3. Read the API's reference and one operation.
  await step('api', async () => {
    await page.locator('#api-results').getByRole('link', { name: 'Swagger Petstore' }).click();
    await expectText(page.locator('h1'), 'Swagger Petstore');
    await page.getByRole('link', { name: 'Download the OpenAPI document (JSON)' }).waitFor();
  });
  await step('operation', async () => {
    await page.getByRole('link', { name: /GET\s+\/pets$/ }).click();
    await expectText(page.locator('h1'), 'List all pets');
    await expectText(page.locator('table.params'), 'limit');
    await expectText(page.locator('.content'), 'Pet');
  });

  // 4. Sign up, then sign in.
  await step('signup', async () => {
    await page.getByRole('link', { name: 'Sign up' }).click();
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('First name').fill('Ada');
    await page.getByLabel('Last name').fill('Lovelace');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(/\/portal\/signin\?registered=1/);
    await expectText(page.locator('.notice'), 'Your account is ready');
  });
  await step('signin', async () => {
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/portal\/profile/);
    await expectText(page.locator('main'), EMAIL);
  });

  // 5. Subscribe to the product; it waits for approval.
  let subscriptionId;
  await step('subscribe', async () => {
    await page.goto(`${PORTAL}products/${PRODUCT}`);
    await page.getByLabel(/Subscription name/).fill('Journey app');
    const terms = page.getByLabel('I accept the terms of use');
    if (await terms.count()) await terms.check();
    await page.getByRole('button', { name: 'Subscribe' }).click();
    await page.waitForURL(/\/portal\/profile/);
    await expectText(page.locator('.subs'), 'submitted');
    await expectText(page.locator('.subs'), 'Waiting for an administrator');
    if (await page.getByRole('button', { name: 'Show keys' }).count() !== 0) {
      throw new Error('keys are offered before approval');
    }
  });

  // 6. The admin approves through the management API.
  await step('approved', async () => {
    const subs = await admin('GET', '/mgmt/subscriptions');
    const users = await admin('GET', '/mgmt/users');
    const me = users.value.find((u) => u.email === EMAIL);
    if (!me) throw new Error('the new user is not in /mgmt/users');
    if (JSON.stringify(me).toLowerCase().includes('password')) throw new Error('the user resource shows a password');
    const mine = subs.value.find((s) => s.ownerId === me.id && s.scope === `/products/${PRODUCT}`);
    if (!mine || mine.state !== 'submitted') throw new Error(`no submitted subscription: ${JSON.stringify(subs)}`);
    subscriptionId = mine.id;
    await admin('PATCH', `/mgmt/subscriptions/${subscriptionId}`, { state: 'active' });
    await page.reload();
    await page.locator('.subs .state', { hasText: /^active$/ }).waitFor();
  });

  // 7. Reveal the key.
  let primary;
  await step('keys', async () => {
    await page.getByRole('button', { name: 'Show keys' }).click();
    const key = page.locator(`#keys-${subscriptionId} code.primary-key`);
    await key.waitFor();
    primary = (await key.textContent()).trim();
    if (!/^[0-9a-f]{64}$/.test(primary)) throw new Error(`unexpected key: ${primary}`);
  });
  await eventually('the approved key opens the gateway', async () => (await gatewayStatus(primary)) === 200);

  // 8. Try it: a real call through the gateway to the backend.
  await step('try-it', async () => {
    await page.goto(`${PORTAL}apis/${API_PATH}`);
    await page.getByRole('link', { name: /GET\s+\/pets$/ }).click();
    await page.getByLabel('Subscription key').selectOption(subscriptionId);
    await page.getByLabel(/^limit/).fill('7');
    await page.getByRole('button', { name: 'Send' }).click();
    const status = page.locator('#try-status');
    await status.waitFor();
    if ((await status.textContent()).trim() !== '200') {
      throw new Error(`Try it answered ${await page.locator('#try-result').textContent()}`);
    }
    await expectText(page.locator('#try-response-body'), '/pets');
    await expectText(page.locator('#try-response-body'), 'limit=7');
    if ((await page.locator('#try-result').textContent()).includes(primary)) {
      throw new Error('Try it shows the whole key');
    }
  });

  // 9. Regenerate the key: the old one stops working.
  let regenerated;
  await step('regenerate', async () => {
    await page.goto(`${PORTAL}profile`);
    await page.getByRole('button', { name: 'Show keys' }).click();
    await page.locator(`#keys-${subscriptionId} code.primary-key`).waitFor();
    await page.getByRole('button', { name: 'Regenerate primary key' }).click();
    await expectText(page.locator(`#keys-${subscriptionId} .notice`), 'primary key was regenerated');
    regenerated = (await page.locator(`#keys-${subscriptionId} code.primary-key`).textContent()).trim();
    if (regenerated === primary || !/^[0-9a-f]{64}$/.test(regenerated)) {
      throw new Error('the primary key did not change');
    }
  });
  await eventually('the old key is refused (401)', async () => (await gatewayStatus(primary)) === 401);
  await eventually('the new key works', async () => (await gatewayStatus(regenerated)) === 200);
  console.log('STEP old-key-refused ok');

  // 10. Sign out.
  await step('signout', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL((url) => url.pathname === '/portal/');
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await page.goto(`${PORTAL}profile`);
    await page.waitForURL(/\/portal\/signin/);
  });

  summary.subscriptionId = subscriptionId;
  summary.oldKey = primary;
  summary.newKey = regenerated;
  console.log(`JOURNEY OK ${JSON.stringify(summary)}`);
} catch (e) {
  console.error(`JOURNEY FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser.close();
}

// The admin console in a real browser: Debian's Chromium driven by npm's playwright-core (no
// browser download), on a laptop-sized viewport.
//
// Run by crates/cli/tests/admin_console.rs, which starts `gatehouse up` and a self-hosted
// gateway instance, uploads hand-built telemetry batches, and passes:
//   ADMIN_URL   http://127.0.0.1:PORT/admin/
//   ADMIN_TOKEN the admin token
//   EXPECT      JSON: { gateway, instance, apis: [{ id, calls, success, blocked, failed,
//               requestBars, errorBars, latencyPoints }] } (busiest API first)
//   CHROMIUM    the browser executable (/usr/bin/chromium)
//   ARTIFACTS   where the screenshots go
// Prints one line per step and, at the end, `ADMIN OK {json}` with what the pages showed;
// exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const ADMIN = env('ADMIN_URL');
const TOKEN = env('ADMIN_TOKEN');
const EXPECT = JSON.parse(env('EXPECT'));
const ARTIFACTS = env('ARTIFACTS');

mkdirSync(ARTIFACTS, { recursive: true });
const summary = { steps: [], apis: {} };
let stepNo = 0;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
const watchdog = setTimeout(() => {
  console.error('the admin console run took longer than 90 s');
  process.exit(3);
}, 90_000);

const fail = (message) => { throw new Error(message); };
const equal = (what, got, want) => {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
};

try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // Content security policy violations and failed loads show up as console errors.
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

  const step = async (name, fn) => {
    const started = Date.now();
    await fn();
    await page.waitForLoadState('load');
    if (pageErrors.length) fail(`errors on the page: ${pageErrors.join('; ')}`);
    stepNo += 1;
    const file = `${String(stepNo).padStart(2, '0')}-${name}.png`;
    await page.screenshot({ path: join(ARTIFACTS, file), fullPage: true });
    summary.steps.push(name);
    console.log(`STEP ${name} ok (${Date.now() - started} ms)`);
  };
  const text = async (locator) => (await locator.textContent()).trim();

  // 1. The console sends a visitor without a session to sign in; a wrong token is refused.
  await step('signin', async () => {
    await page.goto(ADMIN);
    await page.waitForURL(/\/admin\/signin\?next=/);
    await page.getByLabel('Admin token').fill('not-the-admin-token-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.error', { hasText: 'That is not the admin token' }).waitFor();
    // The refusal is a 401 page, which the browser logs as a failed load: expected here.
    equal('errors on the refused sign-in', pageErrors.splice(0).map((e) => e.includes('401')), [true]);
    if ((await context.cookies()).some((c) => c.name === 'gh_admin')) fail('a wrong token got a session');
  });

  // 2. The right token opens the fleet page; the session cookie is not the token.
  await step('fleet', async () => {
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((url) => url.pathname === '/admin/');
    const cookie = (await context.cookies()).find((c) => c.name === 'gh_admin');
    if (!cookie) fail('no session cookie');
    if (!cookie.httpOnly || cookie.sameSite !== 'Strict' || cookie.path !== '/admin') {
      fail(`the session cookie is not HttpOnly, SameSite=Strict, Path=/admin: ${JSON.stringify(cookie)}`);
    }
    if (cookie.value.includes(TOKEN)) fail('the session cookie holds the admin token');
    const gateway = page.locator(`section[data-gateway="${EXPECT.gateway}"]`);
    await gateway.waitFor();
    const row = gateway.locator(`tr[data-instance="${EXPECT.instance}"]`);
    await row.waitFor();
    summary.instanceState = await row.getAttribute('data-state');
    summary.revision = await text(row.locator('td.revision'));
    summary.currentRevision = await text(page.locator('#current-revision'));
    summary.telemetry = await text(gateway.locator('.telemetry'));
    equal('the instance state', summary.instanceState, 'inSync');
    equal('the revision column', summary.revision,
      `${summary.currentRevision} / ${summary.currentRevision}`);
  });

  // 3. Traffic for the default window (the last hour): the table and each API's charts.
  await step('traffic', async () => {
    await page.getByRole('link', { name: 'Traffic' }).click();
    await page.waitForURL(/\/admin\/traffic/);
    const rows = page.locator('#by-api tbody tr');
    equal('API rows', await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.api)),
      EXPECT.apis.map((a) => a.id));
    for (const api of EXPECT.apis) {
      const row = page.locator(`#by-api tbody tr[data-api="${api.id}"]`);
      const cell = async (field) => Number(await text(row.locator(`td[data-field="${field}"]`)));
      const shown = {
        calls: await cell('calls'),
        success: await cell('success'),
        blocked: await cell('blocked'),
        failed: await cell('failed'),
        p95: await cell('p95'),
      };
      const charts = page.locator(`section.api-charts[data-api="${api.id}"]`);
      const count = (sel) => charts.locator(sel).count();
      shown.requestBars = await count('svg[data-chart="requests"] rect.bar');
      shown.requestValues = await charts.locator('svg[data-chart="requests"] rect.bar')
        .evaluateAll((bars) => bars.map((b) => Number(b.dataset.value)));
      shown.errorBars = await count('svg[data-chart="errors"] rect.bar');
      shown.latencyPoints = await count('svg[data-chart="latency"] circle.point');
      shown.latencyLines = await count('svg[data-chart="latency"] polyline.line');
      summary.apis[api.id] = shown;
      for (const field of ['calls', 'success', 'blocked', 'failed', 'requestBars', 'errorBars', 'latencyPoints']) {
        equal(`${api.id} ${field}`, shown[field], api[field]);
      }
      equal(`${api.id} bar values add up to the calls`,
        shown.requestValues.reduce((a, b) => a + b, 0), api.calls);
      // The chart is drawn: bars have a size inside the plot.
      const box = await charts.locator('svg[data-chart="requests"] rect.bar').first().boundingBox();
      if (!box || box.width < 1 || box.height < 1) fail(`${api.id}: the first bar is not visible`);
    }
  });

  // 4. One API over the last 15 minutes, chosen with the form.
  const first = EXPECT.apis[0];
  await step('traffic-one-api', async () => {
    await page.getByLabel('Window').selectOption('15m');
    await page.getByLabel('API').selectOption(first.id);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL(new RegExp(`window=15m&api=${first.id}`));
    equal('API rows with the filter',
      await page.locator('#by-api tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.api)),
      [first.id]);
    equal('chart sections with the filter', await page.locator('section.api-charts').count(), 1);
    summary.recentCalls = Number(await text(page.locator(`#by-api td[data-field="calls"]`)));
    equal('calls in the last 15 minutes', summary.recentCalls, first.recentCalls);
    equal('buckets on the 15-minute axis',
      await page.locator('svg[data-chart="requests"] text.xlabel').count() > 0, true);
  });

  // 5. Sign out: back to the sign-in page, and the console is closed again.
  await step('signed-out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/admin\/signin\?signed_out=1/);
    await page.locator('.notice', { hasText: 'You are signed out.' }).waitFor();
    await page.goto(ADMIN);
    await page.waitForURL(/\/admin\/signin\?next=/);
  });

  console.log(`ADMIN OK ${JSON.stringify(summary)}`);
} catch (e) {
  console.error(`ADMIN FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser.close();
}

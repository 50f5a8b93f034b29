// The management API's Swagger UI under its content security policy, in a real browser:
// Debian's Chromium driven by npm's playwright-core. The page must render the API's
// operations and the browser must report no policy violation.
//
// Run by crates/cli/tests/e2e/security_control.rs, which starts `gatehouse up` and passes:
//   DOCS_URL    http://127.0.0.1:PORT/mgmt/docs
//   CHROMIUM    the browser executable (/usr/bin/chromium)
//   ARTIFACTS   where the screenshot goes
// Prints `DOCS OK {json}` at the end; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const ARTIFACTS = env('ARTIFACTS');
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
const watchdog = setTimeout(() => {
  console.error('the docs check took longer than 60 s');
  process.exit(3);
}, 60_000);

try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const violations = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await page.goto(env('DOCS_URL'));
  await page.waitForSelector('.swagger-ui .info .title');
  await page.waitForSelector('.opblock');
  const title = (await page.textContent('.swagger-ui .info .title')).trim();
  const operations = await page.locator('.opblock').count();
  await page.screenshot({ path: join(ARTIFACTS, 'docs.png') });
  if (violations.length > 0) throw new Error(`policy violations: ${violations.join(' | ')}`);
  console.log(`DOCS OK ${JSON.stringify({ title, operations, violations })}`);
} finally {
  clearTimeout(watchdog);
  await browser.close();
}

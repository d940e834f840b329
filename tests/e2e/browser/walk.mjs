// Walks the demo (demo/run.py) in Debian's headless Chromium, as a user would, and prints what it
// saw as one JSON object on stdout; tests/e2e/test_browser.py starts the demo, runs this, and
// asserts on the result. Input: the JSON in WALK_INPUT ({page_url, cross_page_url, envoy_url,
// hosted_ui, shots, users: {alice, bob}}, users as `cognito-authz dev users --json` lists them).
// Every wait has a timeout, and a watchdog ends the walk whatever happens.

import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const input = JSON.parse(process.env.WALK_INPUT);
const STEP_MS = 15_000;
const WALK_MS = 150_000;
const result = { console: [] };

function emit(extra) {
  process.stdout.write(JSON.stringify({ ...result, ...extra }) + "\n");
}

const watchdog = setTimeout(() => {
  emit({ error: `the walk took longer than ${WALK_MS / 1000} s` });
  process.exit(2);
}, WALK_MS);

// RFC 6238: HMAC-SHA1 over the 30 s step, 6 digits (as tests/e2e/harness.py's totp).
function totp(secret, at = Date.now()) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secret.toUpperCase().replace(/=+$/, "")) {
    bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)));
  const digest = createHmac("sha1", key).update(counter).digest();
  const offset = digest[digest.length - 1] & 0x0f;
  return String((digest.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A code with at least 5 s left in its step, so it is still current when the server reads it.
async function freshTotp(secret) {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < 5_000) await sleep(left + 200);
  return totp(secret);
}

mkdirSync(input.shots, { recursive: true });
let shotNumber = 0;
async function shot(page, name) {
  shotNumber += 1;
  const file = path.join(input.shots, `${String(shotNumber).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_MS });
}

function watch(page, who) {
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  page.on("console", (m) => result.console.push(`${who}: ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.console.push(`${who}: pageerror: ${e.message}`));
}

// Clicks one of the page's buttons and waits until its call has finished (body[data-done] counts).
async function press(page, id) {
  const before = await page.evaluate(() => Number(document.body.dataset.done || 0));
  await page.click(`#${id}`);
  await page.waitForFunction((n) => Number(document.body.dataset.done || 0) > n, before, { timeout: STEP_MS });
}

async function apiView(page) {
  const status = Number(await page.textContent("#api-status"));
  const text = await page.textContent("#api");
  let body = text;
  try { body = JSON.parse(text); } catch { /* a denial's body may be text */ }
  return { status, body };
}

// The demo page → Sign in → the hosted UI's form → back on the page. Returns the token the page
// received (read off the network: the page never shows it).
async function signIn(page, user, name) {
  await page.goto(input.page_url);
  await page.waitForSelector('body[data-ready="true"]');
  await shot(page, `${name}-page`);
  await page.click("#sign-in");
  await page.waitForURL((url) => url.href.startsWith(`${input.hosted_ui}/login`));
  await page.fill('input[name="username"]', user.username);
  await page.fill('input[name="password"]', user.password);
  if (user.totp_secret && user.mfa) await page.fill('input[name="totp"]', await freshTotp(user.totp_secret));
  await shot(page, `${name}-hosted-ui`);
  const exchanged = page.waitForResponse((r) => r.url() === `${input.envoy_url}/auth/sign-in`);
  exchanged.catch(() => {});
  await page.click("#signin");
  try {
    await page.waitForURL((url) => url.href.startsWith(input.page_url));
  } catch (e) {
    const error = await page.locator("#error").textContent({ timeout: 1000 }).catch(() => null);
    throw new Error(`${name} did not come back from the hosted UI (${error ?? e.message})`);
  }
  const response = await exchanged;
  const token = (await response.json()).access_token;
  await page.waitForSelector('body[data-ready="true"]');
  await shot(page, `${name}-signed-in`);
  return { token, exchange_status: response.status(), status: await page.textContent("#status") };
}

// fetch(`${envoy_url}/auth/refresh`, POST, credentials: include) run by a page's own script: its
// status (0 for a network or CORS failure), and whether the browser sent the refresh cookie along.
async function refreshFrom(page) {
  const url = `${input.envoy_url}/auth/refresh`;
  const sent = [];
  const listener = (r) => { if (r.url() === url) sent.push(r); };
  page.on("request", listener);
  const outcome = await page.evaluate(async (target) => {
    try {
      const r = await fetch(target, { method: "POST", credentials: "include" });
      return { status: r.status, body: r.status === 200 ? "(a token)" : await r.text() };
    } catch (e) {
      return { status: 0, error: String(e) };
    }
  }, url);
  page.off("request", listener);
  outcome.sent_refresh_cookie = null;
  if (sent.length === 1) {
    const headers = await Promise.race([sent[0].allHeaders(), sleep(5_000).then(() => null)]);
    if (headers !== null) outcome.sent_refresh_cookie = /(^|;\s*)cognito_refresh=/.test(headers.cookie ?? "");
  }
  return outcome;
}

async function walkAlice(browser) {
  const alice = (result.alice = {});
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, "alice");
  const signedIn = await signIn(page, input.users.alice, "alice");
  alice.sign_in = { exchange_status: signedIn.exchange_status, status: signedIn.status };
  alice.token_1 = signedIn.token;

  alice.cookies = await context.cookies();
  alice.page_document_cookie = await page.evaluate(() => document.cookie);
  // The cookie's path is /auth: ask a page under /auth too, where a non-HttpOnly cookie would show.
  // The browser answers that page itself (no server route has to serve HTML there).
  const authPage = await context.newPage();
  watch(authPage, "alice /auth/ page");
  const probe = `${input.envoy_url}/auth/cookie-probe`;
  await authPage.route(probe, (route) => route.fulfill({ contentType: "text/html", body: "<p>probe</p>" }));
  await authPage.goto(probe);
  alice.auth_path_document_cookie = await authPage.evaluate(() => document.cookie);
  await authPage.close();

  await press(page, "call-api");
  alice.api = await apiView(page);
  await shot(page, "alice-api");

  // Another site (localhost is not 127.0.0.1) tries to use the cookie; then the page itself.
  const cross = await context.newPage();
  watch(cross, "cross-site");
  await cross.goto(input.cross_page_url);
  alice.cross_site = await refreshFrom(cross);
  await shot(cross, "cross-site");
  await cross.close();
  alice.same_site = await refreshFrom(page);

  const refreshed = page.waitForResponse((r) => r.url() === `${input.envoy_url}/auth/refresh`);
  refreshed.catch(() => {});
  await press(page, "refresh");
  const refreshResponse = await refreshed;
  alice.refresh = { status: refreshResponse.status(), page_status: await page.textContent("#status") };
  alice.token_2 = (await refreshResponse.json()).access_token;
  await shot(page, "alice-refreshed");

  await press(page, "sign-out");
  alice.sign_out = { page_status: await page.textContent("#status"), shown: await page.textContent("#auth-result") };
  alice.cookies_after_sign_out = await context.cookies();
  await press(page, "call-api");
  alice.api_after_sign_out = await apiView(page);
  await shot(page, "alice-signed-out");
  await context.close();
}

async function walkBob(browser) {
  const bob = (result.bob = {});
  const user = input.users.bob;
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, "bob");
  const signedIn = await signIn(page, user, "bob");
  bob.sign_in = { exchange_status: signedIn.exchange_status, status: signedIn.status };
  await press(page, "call-api");
  bob.api_before_enrolment = await apiView(page);
  await shot(page, "bob-api-denied");

  const enrol = await context.newPage();
  watch(enrol, "bob enrol");
  await enrol.goto(`${input.hosted_ui}/mfa/enrol`);
  await enrol.fill('input[name="username"]', user.username);
  await enrol.fill('input[name="password"]', user.password);
  await enrol.click("#enrol");
  await enrol.waitForSelector("#secret");
  const secret = (await enrol.textContent("#secret")).trim();
  bob.otpauth = (await enrol.textContent("#otpauth")).trim();
  await shot(enrol, "bob-enrol-secret");
  await enrol.fill('input[name="code"]', await freshTotp(secret));
  await enrol.click("#verify");
  await enrol.waitForSelector("#enrolled");
  bob.enrolled = (await enrol.textContent("#enrolled")).trim();
  await shot(enrol, "bob-enrolled");
  await enrol.close();

  // The MFA gate caches "not enrolled" for a few seconds: ask again until it lets bob through.
  bob.api_after_enrolment_statuses = [];
  const deadline = Date.now() + 20_000;
  do {
    await press(page, "call-api");
    bob.api_after_enrolment = await apiView(page);
    bob.api_after_enrolment_statuses.push(bob.api_after_enrolment.status);
    if (bob.api_after_enrolment.status === 200) break;
    await sleep(1_000);
  } while (Date.now() < deadline);
  await shot(page, "bob-api-allowed");
  await context.close();
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  timeout: 30_000,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let status = 0;
try {
  await walkAlice(browser);
  await walkBob(browser);
  emit({});
} catch (e) {
  for (const context of browser.contexts()) {
    for (const page of context.pages()) await shot(page, "failure").catch(() => {});
  }
  emit({ error: e.stack || String(e) });
  status = 1;
} finally {
  await browser.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(status);

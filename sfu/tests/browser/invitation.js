#!/usr/bin/env node
// The demo page on a server with API keys, in one headless Chromium (no camera, no call):
//
//  1. Opened without a token, the page says at once that the meeting needs an invitation and to
//     ask its organiser for the link; it names no operator command, and Join is disabled.
//  2. Opened with an invitation link (a token minted by `sfu token` for room `standup`, the URL
//     also saying `room=other`), the room field shows `standup` and is read-only; the name is the
//     token's.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=/path/to/sfu E2E_SCRIPT=invitation.js bash run.sh
//
// Environment:
//   SFU_BIN          the server binary (required)
//   INVITE_HTTP_PORT HTTP port (default 18085)
//   CHROMIUM_PATH    browser binary (default /usr/bin/chromium)
//   E2E_VERBOSE=1    stream the server's and the page's logs instead of printing them on failure
'use strict';

const { execFileSync } = require('node:child_process');
const { chromium } = require('playwright-core');
const {
  CHROMIUM_ARGS,
  LogTail,
  httpStatus,
  runScript,
  spawnLogged,
  stopGroup,
  until,
} = require('./harness');

const env = process.env;
const config = {
  sfuBin: env.SFU_BIN,
  httpPort: Number(env.INVITE_HTTP_PORT) || 18085,
  chromiumPath: env.CHROMIUM_PATH || '/usr/bin/chromium',
  verbose: env.E2E_VERBOSE === '1',
};
const KEYS = {
  SFU_API_KEY: 'APIinvite',
  SFU_API_SECRET: 'a-secret-for-the-invitation-test-40-chars',
};

const results = { passed: 0, failed: 0 };
const serverLog = new LogTail('sfu', config.verbose);
const pageLog = new LogTail('page', config.verbose);
let server = null;
let browser = null;

const log = (line) => console.log(`[invitation] ${line}`);

function check(ok, what) {
  if (ok) {
    results.passed++;
    log(`ok: ${what}`);
  } else {
    results.failed++;
    log(`FAIL: ${what}`);
  }
}

async function scenario() {
  if (!config.sfuBin) throw new Error('set SFU_BIN');
  const serverEnv = { ...env, ...KEYS, NO_COLOR: '1' };
  delete serverEnv.SFU_CONFIG;
  server = spawnLogged(
    config.sfuBin,
    ['--http', `127.0.0.1:${config.httpPort}`, '--udp-port', '0', '--workers', '1', '--log', 'warn'],
    serverEnv,
    serverLog,
  );
  const base = `http://127.0.0.1:${config.httpPort}`;
  await until(15_000, async () => {
    const status = await httpStatus(`${base}/healthz`, 1000);
    return { ok: status === 200, why: `healthz ${status}` };
  }, 100);

  browser = await chromium.launch({
    executablePath: config.chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const page = await browser.newPage();
  page.on('console', (m) => pageLog.push(m.text()));
  page.on('pageerror', (e) => pageLog.push(`error: ${e.message}`));

  // 1. No token.
  await page.goto(`${base}/`);
  await page.waitForSelector('#error:not([hidden])', { timeout: 10_000 });
  const banner = await page.textContent('#error .message');
  log(`banner: ${banner}`);
  check(/invitation/i.test(banner) && /organiser/i.test(banner), 'says to ask the organiser for an invitation');
  check(!/sfu token|operator|--room/.test(banner), 'names no operator command');
  check(await page.isDisabled('#join'), 'Join is disabled');

  // 2. An invitation link.
  const token = execFileSync(
    config.sfuBin,
    ['token', '--room', 'standup', '--identity', 'ann', '--name', 'Ann'],
    { env: { ...env, ...KEYS }, encoding: 'utf8' },
  ).trim();
  await page.goto(`${base}/?room=other&token=${encodeURIComponent(token)}`);
  await page.waitForSelector('#room');
  const room = await page.$eval('#room', (el) => ({ value: el.value, readOnly: el.readOnly }));
  check(room.value === 'standup', `the room field shows the token's room (${room.value})`);
  check(room.readOnly, 'the room field is read-only');
  check((await page.inputValue('#name')) === 'Ann', "the name is the token's");
  check(await page.isHidden('#error'), 'no invitation notice with a token');
  check(!(await page.isDisabled('#join')), 'Join is enabled');
}

async function shutdown() {
  if (browser) await browser.close().catch(() => {});
  await stopGroup(server);
}

runScript({
  scenario,
  shutdown,
  finish: (code) => {
    log(`${results.passed} passed, ${results.failed} failed`);
    process.exit(code);
  },
  onFailure: () => {
    serverLog.dump();
    pageLog.dump();
  },
  results,
  log,
  hardTimeoutMs: 60_000,
  server: () => server,
});

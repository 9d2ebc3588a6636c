// Helpers shared by the end-to-end scripts in this folder: bounded waiting, output tails, process
// groups, and the frame of a script with one server and browser pages. Every wait here is bounded
// in time and in rounds.
'use strict';

const http = require('node:http');
const { spawn } = require('node:child_process');
const { chromium } = require('playwright-core');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `probe` until it returns `{ ok: true }` or the deadline passes; bounded in time and in
 * count. Throws with the last probe's `why`, at once if the probe says `{ ok: false, stop: true }`.
 */
async function until(timeoutMs, probe, intervalMs) {
  const deadline = Date.now() + timeoutMs;
  const maxRounds = Math.ceil(timeoutMs / Math.max(intervalMs, 50)) + 1;
  let last = { ok: false, why: 'never probed' };
  for (let round = 0; round < maxRounds && Date.now() < deadline; round++) {
    try {
      last = await probe();
    } catch (err) {
      last = { ok: false, why: err.message };
    }
    if (last.ok) return last;
    if (last.stop) throw new Error(last.why);
    await sleep(intervalMs);
  }
  throw new Error(`not within ${timeoutMs / 1000} s: ${last.why}`);
}

/** Resolves `promise`, or rejects after `ms` with `what` in the message. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms);
    }),
  ]);
}

/** The last lines of a child's or a page's output, printed on failure (or live when verbose). */
class LogTail {
  constructor(label, verbose, max = 200) {
    this.label = label;
    this.verbose = verbose;
    this.max = max;
    this.lines = [];
  }
  push(line) {
    if (this.verbose) console.log(`[${this.label}] ${line}`);
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }
  dump() {
    if (this.verbose || this.lines.length === 0) return;
    console.log(`---- last ${this.lines.length} lines of ${this.label} ----`);
    for (const line of this.lines) console.log(`[${this.label}] ${line}`);
  }
}

/** The HTTP status of `url`, or null if it does not answer within `timeoutMs`. */
function httpStatus(url, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
  });
}

/** Sends `signal` to the process group of `child` (started detached), else to `child` alone. */
function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts `bin` in a process group of its own, its output lines going to `logTail`. The child
 * gets an `exited` promise ({ code, signal }).
 */
function spawnLogged(bin, args, env, logTail) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.once('error', (err) => logTail.push(`spawn failed: ${err.message}`));
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        logTail.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
  }
  return child;
}

/** Stops a child started by `spawnLogged`: SIGTERM to its group, SIGKILL after 3 s. */
async function stopGroup(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  killGroup(child, 'SIGTERM');
  const exited = await Promise.race([child.exited.then(() => true), sleep(3000).then(() => false)]);
  if (!exited) {
    killGroup(child, 'SIGKILL');
    await Promise.race([child.exited, sleep(1000)]);
  }
}

/** GET `url`: { status, body }, or { status: null, body: '' } without an answer in time. */
function httpGet(url, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: null, body: '' }));
  });
}

/** Flags every script starts Chromium with: fake camera and microphone, no background traffic. */
const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
];

/** A failed check that has already been reported: the run stops without a second report. */
class CheckFailed extends Error {}

/**
 * Runs a script's `scenario` under the guards every script needs, then exits through
 * `finish(code)`:
 * - SIGINT/SIGTERM and a hard timeout of `hardTimeoutMs` count as a failure, clean up and exit;
 * - on a failure (a thrown error, or a check that recorded one in `results`) `onFailure(quick)`
 *   prints what helps (logs; page states unless `quick`, which is set on the hard timeout);
 * - `shutdown()` always runs, bounded;
 * - `server()` is the server's child process, killed with its group if the script exits any
 *   other way.
 */
function runScript({ scenario, shutdown, finish, onFailure, results, log, hardTimeoutMs, server }) {
  process.on('exit', () => {
    const child = server();
    if (child && child.exitCode === null && child.signalCode === null) killGroup(child, 'SIGKILL');
  });
  const bail = () => {
    withTimeout(shutdown(), 10_000, 'cleanup')
      .catch(() => {})
      .finally(() => finish(1));
  };
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      log(`got ${signal}, cleaning up`);
      results.failed++;
      bail();
    });
  }
  const hardTimer = setTimeout(() => {
    log(`FAIL: hard timeout of ${hardTimeoutMs / 1000} s reached`);
    results.failed++;
    withTimeout(Promise.resolve().then(() => onFailure(true)), 10_000, 'failure report')
      .catch(() => {})
      .finally(bail);
  }, hardTimeoutMs);
  (async () => {
    let ok = false;
    try {
      await scenario();
      ok = results.failed === 0;
    } catch (err) {
      if (!(err instanceof CheckFailed)) {
        results.failed++;
        log(`FAIL: ${err.message}`);
      }
    }
    if (!ok) {
      await withTimeout(Promise.resolve().then(() => onFailure(false)), 30_000, 'failure report')
        .catch((err) => log(err.message));
    }
    await withTimeout(shutdown(), 10_000, 'cleanup').catch((err) => log(err.message));
    clearTimeout(hardTimer);
    finish(ok ? 0 : 1);
  })();
}

/**
 * `check(name, body, options)` for a script: runs one named check and prints its result and
 * `body`'s detail. A failure is counted in `results` and stops the run (later checks depend on
 * earlier ones) unless `soft`; an `informational` check is printed but counted neither way (it
 * watches a known problem). Returns whether it passed. `onPass(name, detail)` sees each pass.
 */
function checker(results, { onPass = null } = {}) {
  return async function check(name, body, { soft = false, informational = false } = {}) {
    const started = Date.now();
    try {
      const detail = await body();
      if (!informational) results.passed++;
      const tag = informational ? 'info' : 'ok  ';
      console.log(`${tag} - ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ''}`);
      if (onPass) onPass(name, detail);
      return true;
    } catch (err) {
      if (informational) {
        console.log(`info - ${name} (${Date.now() - started} ms): NOT MET: ${err.message}`);
        return false;
      }
      results.failed++;
      console.log(`FAIL - ${name} (${Date.now() - started} ms): ${err.message}`);
      if (!soft) throw new CheckFailed(name);
      return false;
    }
  };
}

/**
 * The frame of a script with one server and headless Chromium pages, named `name` in its output:
 * - `config`: the settings every such script reads from the environment (SFU_BIN, E2E_HTTP_PORT,
 *   E2E_UDP_PORT, CHROMIUM_PATH, E2E_VERBOSE) with `room` and the script's own `extra`;
 * - `log`, `check`, `results`, `until` (polling every `pollMs` unless told), and `tail(label)`
 *   for a log tail that streams when verbose;
 * - `startServer()`, `checkHealth()`, `launchBrowser()` and `launchPage(name)`: the server, the
 *   check that it answers /healthz, and the browsers and pages, all closed by the end of `run`;
 *   `joinPages()` opens the pages and waits until each has joined;
 * - `run({ scenario, pageState, shutdown, logs })`: runs `scenario` under [`runScript`], prints
 *   each page's `pageState(entry)` and the logs (the server's, each page's, `logs`) on a failure,
 *   closes what it started after `shutdown()` and prints the count of checks against
 *   `plannedChecks`.
 */
function browserScript(name, { room, plannedChecks, hardTimeoutMs = 120_000, pollMs = 250, extra = {} }) {
  const config = {
    sfuBin: process.env.SFU_BIN,
    httpPort: Number(process.env.E2E_HTTP_PORT) || 18080,
    udpPort: Number(process.env.E2E_UDP_PORT) || 40000,
    chromiumPath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    verbose: process.env.E2E_VERBOSE === '1',
    room,
    ...extra,
  };
  const results = { passed: 0, failed: 0 };
  const tail = (label) => new LogTail(label, config.verbose);
  const script = {
    config,
    results,
    log: (...args) => console.log(`${name}:`, ...args),
    check: checker(results),
    until: (timeoutMs, probe, intervalMs = pollMs) => until(timeoutMs, probe, intervalMs),
    tail,
    serverLog: tail('sfu'),
    server: null,
    browsers: [],
    /** `{ name, browser, page, log }` per page, in the order launched. */
    pages: [],

    /** Starts the server on the configured ports, with one media worker and `args` more. */
    startServer(args = []) {
      const all = [
        '--http', `127.0.0.1:${config.httpPort}`,
        '--udp-port', String(config.udpPort),
        '--advertise-ip', '127.0.0.1',
        '--workers', '1',
        ...args,
      ];
      script.log(`starting ${config.sfuBin} ${all.join(' ')}`);
      const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
      script.server = spawnLogged(config.sfuBin, all, env, script.serverLog);
      return script.server;
    },

    /** The check that the server answers /healthz; fails at once if the server exits. */
    checkHealth(timeoutMs = 20_000) {
      return script.check('server answers /healthz', async () => {
        let exit = null;
        script.server.exited.then((e) => (exit = e));
        await until(timeoutMs, async () => {
          if (exit) return { ok: false, stop: true, why: `server exited early (code ${exit.code})` };
          const status = await httpStatus(`http://127.0.0.1:${config.httpPort}/healthz`, 1000);
          return status === 200 ? { ok: true } : { ok: false, why: `GET /healthz: ${status ?? 'no connection'}` };
        }, 200);
      });
    },

    /** A headless Chromium, closed at the end of the run. */
    async launchBrowser() {
      const browser = await chromium.launch({ executablePath: config.chromiumPath, headless: true, args: CHROMIUM_ARGS });
      script.browsers.push(browser);
      return browser;
    },

    /**
     * A page `pageName` in a browser of its own (`browser`, if given, instead), its console and
     * errors in its log tail; `fields` are added to its entry.
     */
    async launchPage(pageName, { viewport = { width: 1280, height: 800 }, browser = null, fields = {} } = {}) {
      const b = browser ?? (await script.launchBrowser());
      const page = await (await b.newContext({ viewport })).newPage();
      const entry = { name: pageName, browser: b, page, log: tail(pageName), ...fields };
      page.on('console', (m) => entry.log.push(`console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => entry.log.push(`pageerror: ${e.message}`));
      script.pages.push(entry);
      return entry;
    },

    /**
     * Opens each page at `urlOf(entry)` and waits until `state(entry)` says it joined
     * (`{ state: 'joined', id }`). Returns the participant ids by page name.
     */
    async joinPages(urlOf, state, timeoutMs) {
      for (const entry of script.pages) await entry.page.goto(urlOf(entry), { timeout: timeoutMs });
      const ids = {};
      await until(timeoutMs, async () => {
        const snaps = await Promise.all(script.pages.map(state));
        snaps.forEach((s, i) => (ids[script.pages[i].name] = s.id));
        const waiting = snaps.filter((s) => s.state !== 'joined' || !s.id);
        return waiting.length ? { ok: false, why: snaps.map((s) => s.state).join(', ') } : { ok: true };
      }, pollMs);
      return ids;
    },

    run({ scenario, pageState = null, shutdown = async () => {}, logs = [] }) {
      runScript({
        scenario,
        results,
        log: script.log,
        hardTimeoutMs,
        server: () => script.server,
        shutdown: async () => {
          const closing = script.browsers.map((b) => withTimeout(b.close(), 5000, 'closing a browser').catch(() => {}));
          await Promise.all([...closing, withTimeout(shutdown(), 10_000, 'closing').catch(() => {})]);
          await stopGroup(script.server);
        },
        finish: (code) => {
          const skipped = Math.max(0, plannedChecks - results.passed - results.failed);
          console.log(`${name}: ${results.passed} passed, ${results.failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
          process.exit(code);
        },
        onFailure: async (quick) => {
          if (!quick && pageState) {
            for (const entry of script.pages) {
              const s = await pageState(entry).catch((e) => ({ error: e.message }));
              console.log(`---- ${entry.name} ----\n${JSON.stringify(s, null, 1)}`);
            }
          }
          script.serverLog.dump();
          for (const l of logs) l.dump();
          for (const entry of script.pages) entry.log.dump();
        },
      });
    },
  };
  return script;
}

module.exports = {
  CHROMIUM_ARGS,
  browserScript,
  sleep,
  until,
  withTimeout,
  LogTail,
  httpStatus,
  httpGet,
  killGroup,
  spawnLogged,
  stopGroup,
  CheckFailed,
  checker,
  runScript,
};

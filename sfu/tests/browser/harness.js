// Helpers shared by the end-to-end scripts in this folder: bounded waiting, output tails and
// process groups. Every wait here is bounded in time and in rounds.
'use strict';

const http = require('node:http');
const { spawn } = require('node:child_process');

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
 * `check(name, body)` for a script: runs one named check and prints its result and `body`'s
 * detail; a failure is counted in `results` and stops the run (later checks depend on earlier
 * ones).
 */
function checker(results) {
  return async function check(name, body) {
    const started = Date.now();
    try {
      const detail = await body();
      results.passed++;
      console.log(`ok   - ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ''}`);
    } catch (err) {
      results.failed++;
      console.log(`FAIL - ${name} (${Date.now() - started} ms): ${err.message}`);
      throw new CheckFailed(name);
    }
  };
}

module.exports = {
  CHROMIUM_ARGS,
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

// Helpers for the tests of examples/: each example's own backend (examples/NAME/backend.py, a
// real Python process) on a free port, next to a real hub started with hub.mjs's `startHub`; an
// `exampleScenario` that tears everything down and, when a test fails, adds every log and every
// page's text to the error; and `runExample` / `runExampleToExit`, which run an example's one
// command, `bash examples/NAME/run.sh`, as a user does.
//
// The examples' backends serve their own page, so the page's origin is the backend's: the hub
// must name it in --cors-origin before the backend starts, hence `freePort()` first.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

import { HERALD_BIN, KEY, REPO_ROOT, startHub } from './hub.mjs';

/** Python 3 (`PYTHON` overrides). The backends use its standard library only. */
export const PYTHON = process.env.PYTHON || 'python3';

const LISTENING = /listening on (http:\/\/\S+?)\//;
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;

/** A TCP port of 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/**
 * Starts `examples/NAME/backend.py` on 127.0.0.1:`port`, publishing to `hub` with the hub's key,
 * and resolves once it reports its address. `env` adds to (or overrides) its environment.
 * The result has `origin`, `url(path)`, `postJson(path, body)`, `log()` and `stop()`.
 */
export async function startBackend(name, { hub, port, env = {} }) {
  const script = join(REPO_ROOT, 'examples', name, 'backend.py');
  if (!existsSync(script)) throw new Error(`no backend at ${script}`);
  const child = spawn(PYTHON, [script], {
    env: {
      ...withoutHubSettings(process.env),
      HERALD_JWT_KEY: KEY,
      HUB_URL: hub.url,
      PORT: String(port),
      PYTHONUNBUFFERED: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  const describe = () => `${PYTHON} ${script}\n--- backend log ---\n${log}`;

  const origin = await new Promise((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`the backend did not report its address within ${START_TIMEOUT_MS} ms: ${describe()}`)),
      START_TIMEOUT_MS,
    );
    child.stdout.on('data', (chunk) => {
      log += chunk;
      const match = log.match(LISTENING);
      if (match) {
        clearTimeout(timer);
        done(match[1]);
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      const hint = e.code === 'ENOENT' ? ' (install python3, or set PYTHON)' : '';
      fail(new Error(`cannot start the backend${hint}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`the backend exited (code ${code}, signal ${signal}) before listening: ${describe()}`));
    });
  }).catch(async (error) => {
    await stop(child, exited);
    throw error;
  });

  return {
    origin,
    url: (path = '/') => `${origin}${path}`,
    log: () => log,
    /** POSTs `body` as JSON, as a page or `curl -d '{...}'` would; resolves with the JSON answer. */
    async postJson(path, body) {
      const response = await fetch(`${origin}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${JSON.stringify(answer)}`);
      return answer;
    },
    stop: () => stop(child, exited),
  };
}

/**
 * Runs `bash examples/NAME/run.sh`, the example's one command, in a process group of its own,
 * with the hub on `hubPort` and the backend on `port` (and `env`); resolves once both report their address.
 * The result has `log()` and `interrupt()`, which sends SIGINT to the whole group, as Ctrl-C in
 * a terminal does, and resolves with how run.sh exited (it is SIGKILLed, and the promise
 * rejects, if it has not exited 10 s later).
 */
export async function runExample(name, { hubPort, port, env = {} }) {
  const script = join(REPO_ROOT, 'examples', name, 'run.sh');
  const child = spawn('bash', [script], {
    detached: true,
    env: { ...withoutHubSettings(process.env), HERALD_BIN, HUB_PORT: String(hubPort), PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  const describe = () => `bash ${script}\n--- its output ---\n${log}`;
  const ready = [`listening on http://127.0.0.1:${hubPort}/`, `listening on http://127.0.0.1:${port}/`];
  const group = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is gone already
    }
  };
  await new Promise((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`run.sh did not start the hub and the backend within ${START_TIMEOUT_MS} ms: ${describe()}`)),
      START_TIMEOUT_MS,
    );
    const collect = (chunk) => {
      log += chunk;
      if (ready.every((line) => log.includes(line))) {
        clearTimeout(timer);
        done();
      }
    };
    child.stdout.setEncoding('utf8').on('data', collect);
    child.stderr.setEncoding('utf8').on('data', collect);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`run.sh exited (code ${code}, signal ${signal}) before both were listening: ${describe()}`));
    });
  }).catch((error) => {
    group('SIGKILL');
    throw error;
  });
  return {
    log: () => log,
    async interrupt() {
      group('SIGINT');
      let timer;
      const late = new Promise((_, fail) => {
        timer = setTimeout(() => {
          group('SIGKILL');
          fail(new Error(`run.sh still running 10 s after SIGINT: ${describe()}`));
        }, 10_000);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Runs `bash examples/NAME/run.sh` with `env` until it exits by itself, as it does when it cannot
 * start; resolves with `{code, output}` (stdout and stderr together). Still running after
 * `START_TIMEOUT_MS`, its whole process group is killed and `code` is `null`.
 */
export function runExampleToExit(name, env) {
  const settings = Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
  const child = spawn('bash', [join(REPO_ROOT, 'examples', name, 'run.sh')], {
    detached: true,
    env: { ...withoutHubSettings(process.env), HERALD_BIN, ...settings },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (output += chunk));
  const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), START_TIMEOUT_MS);
  return new Promise((done) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

/** The environment without the caller's hub settings (HERALD_*, MERCURE_*). */
function withoutHubSettings(env) {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !/^(HERALD_|MERCURE_)/.test(name)));
}

/** SIGTERM, then SIGKILL after STOP_GRACE_MS. */
async function stop(child, exited) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs `body` with an example's hub and backend and browser pages, all stopped afterwards. The
 * body gets `start(name, {hubArgs, env})`, which starts a hub (allowing the backend's origin by
 * CORS, plus `hubArgs`) and the example's backend, resolving with `{hub, backend}`; and
 * `page({beforeLoad})`, which opens the backend's page in a fresh browser context (its own
 * cookies), calling `beforeLoad(page)`, if given, before the page loads.
 */
export async function exampleScenario(browser, body) {
  const stoppable = [];
  const contexts = [];
  const openPages = [];
  let backend;
  const helpers = {
    async start(name, { hubArgs = [], env = {} } = {}) {
      const port = await freePort();
      const hub = await startHub([...hubArgs, '--cors-origin', `http://127.0.0.1:${port}`]);
      stoppable.push({ name: `hub ${hub.url}`, stop: () => hub.stop(), log: () => hub.log() });
      backend = await startBackend(name, { hub, port, env });
      stoppable.push({ name: `backend ${backend.origin}`, stop: () => backend.stop(), log: () => backend.log() });
      return { hub, backend };
    },
    async page({ beforeLoad } = {}) {
      const context = await browser.newContext();
      contexts.push(context);
      const page = await context.newPage();
      beforeLoad?.(page);
      const record = { page, console: [] };
      page.on('console', (m) => record.console.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => record.console.push(`pageerror: ${e.message}`));
      openPages.push(record);
      await page.goto(backend.url());
      return page;
    },
  };
  try {
    await body(helpers);
  } catch (error) {
    const notes = [];
    for (const { page, console } of openPages) {
      const text = await page.evaluate(() => document.body.innerText).catch(() => '?');
      notes.push(`--- page ${page.url()} ---\n${text}\n${console.join('\n')}`);
    }
    for (const { name, log } of stoppable) notes.push(`--- ${name} ---\n${log()}`);
    error.message += `\n${notes.join('\n')}`;
    throw error;
  } finally {
    // Browser first, so that the hub has no stream to wait for when it shuts down.
    await Promise.all(contexts.map((c) => c.close().catch(() => {})));
    await Promise.all(stoppable.map((s) => s.stop()));
  }
}

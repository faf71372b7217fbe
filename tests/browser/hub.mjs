// Helpers for the browser tests: the real `herald` binary on a free port, HS256 tokens, a real
// `curl` publisher, a tiny page server (so pages have their own http://127.0.0.1:PORT origin,
// cross-origin to the hub), and headless Debian Chromium driven by playwright-core.
//
// Everything missing (the hub binary, Chromium, curl, node_modules) is a thrown error with the
// fix in its message, so that a test run without them FAILS instead of skipping.

import { spawn, execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The hub binary: `HERALD_BIN`, else the debug build of the repository. */
export const HERALD_BIN = process.env.HERALD_BIN || join(REPO_ROOT, 'target', 'debug', 'herald');

/** Debian's Chromium (no browser can be downloaded here); `CHROMIUM_PATH` overrides. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** The HMAC key the test hubs verify tokens with. */
export const KEY = 'herald-browser-test-key-0123456789abcdef';

const HUB_PATH = '/.well-known/mercure';
const LISTENING = /listening on (https?:\/\/\S+?)\/\.well-known\/mercure/;
const CANNOT_LISTEN = /cannot listen on /;
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 10_000;
const REBIND_TIMEOUT_MS = 5_000;
const REBIND_RETRY_MS = 100;

// --- tokens -------------------------------------------------------------------------------------

const base64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 JWT with `claims` as payload, signed with `key`. */
export function token(claims, key = KEY) {
  const head = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', key).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/** A token that may publish to any topic. */
export const publisherToken = () => token({ mercure: { publish: ['*'] } });

/** A token that may receive private updates matching `selectors`. */
export const subscriberToken = (selectors) => token({ mercure: { subscribe: selectors } });

// --- the hub ------------------------------------------------------------------------------------

/**
 * Starts `herald serve --listen 127.0.0.1:PORT --jwt-key KEY --data-dir DIR ...args` and resolves
 * once it logs its address.
 *
 * `port` defaults to 0 (a free one). `dataDir` defaults to a fresh temporary directory of this
 * hub's own (under the OS temporary directory, removed when the hub is finally stopped), so that
 * no test writes `./herald-data` and no two hubs share history; a `dataDir` given by the caller is
 * the caller's to remove. Pass it here, not as a `--data-dir` argument.
 *
 * The result has `url` (the hub endpoint), `origin`, `dataDir`, `process` (the running child),
 * `log()` (everything every process of this hub wrote so far), `restart()` and `stop()`.
 */
export async function startHub(args = [], { port = 0, dataDir } = {}) {
  if (!existsSync(HERALD_BIN)) {
    throw new Error(
      `hub binary not found at ${HERALD_BIN}: run \`cargo build -p herald\` (scripts/test does), ` +
        'or point HERALD_BIN at it',
    );
  }
  if (args.some((arg) => arg === '--data-dir' || arg.startsWith('--data-dir='))) {
    throw new Error('startHub: give the data directory as the `dataDir` option, not as --data-dir');
  }
  const owned = dataDir === undefined;
  const dir = owned ? await mkdtemp(join(tmpdir(), 'herald-browser-test-')) : dataDir;
  const removeDir = () => (owned ? rm(dir, { recursive: true, force: true }) : Promise.resolve());

  let current;
  try {
    current = await launch(args, port, dir);
  } catch (error) {
    await removeDir();
    throw error;
  }
  const earlierLogs = [];
  const { origin } = current;
  const boundPort = Number(new URL(origin).port);
  let stopping = null;

  const hub = {
    url: `${origin}${HUB_PATH}`,
    origin,
    dataDir: dir,
    get process() {
      return current.child;
    },
    log: () => [...earlierLogs, current.log()].join('--- restarted ---\n'),
    /**
     * Stops the process (SIGTERM, as `stop()` does) and starts it again with the same arguments,
     * on the same port and with the same data directory, so that browsers reconnect to the same
     * URL and find the same history. `whileStopped`, if given, runs after the old process has
     * exited and before the new one starts. Resolves with how the old process exited, once the
     * new one is listening.
     */
    async restart({ whileStopped } = {}) {
      if (stopping) throw new Error('restart: the hub was stopped for good');
      const exit = await terminate(current);
      earlierLogs.push(current.log());
      if (whileStopped) await whileStopped(exit);
      current = await launchRetryingBind(args, boundPort, dir);
      if (current.origin !== origin) {
        throw new Error(`restart: the hub came back on ${current.origin}, not ${origin}`);
      }
      return exit;
    },
    /**
     * SIGTERM, then SIGKILL if it is still running after 10 s; then removes its temporary data
     * directory. Resolves with how it exited.
     */
    stop() {
      stopping ??= (async () => {
        try {
          return await terminate(current);
        } finally {
          await removeDir();
        }
      })();
      return stopping;
    },
  };
  return hub;
}

/**
 * Spawns one hub process and resolves once it logs its address, with `{child, exited, origin,
 * log()}`. If it does not get there, the process is killed and the error says why (with
 * `cannotListen` set when it could not bind the port).
 */
async function launch(args, port, dataDir) {
  // Settings come from the flags alone: no HERALD_* / MERCURE_* / RUST_LOG of the caller.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(HERALD_|MERCURE_|RUST_LOG$)/.test(name)),
  );
  env.NO_COLOR = '1';
  const fullArgs = [
    'serve',
    '--listen',
    `127.0.0.1:${port}`,
    '--jwt-key',
    KEY,
    '--data-dir',
    dataDir,
    '--log',
    'info',
    ...args,
  ];
  const child = spawn(HERALD_BIN, fullArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  child.stdout.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  child.stderr.setEncoding('utf8');
  const describe = () => `${HERALD_BIN} ${fullArgs.join(' ')}\n--- hub log ---\n${log}`;

  try {
    const origin = await new Promise((done, fail) => {
      const timer = setTimeout(() => {
        fail(new Error(`the hub did not report its address within ${START_TIMEOUT_MS} ms: ${describe()}`));
      }, START_TIMEOUT_MS);
      child.stderr.on('data', (chunk) => {
        log += chunk;
        // Strip colour codes in case the log is coloured anyway.
        const match = log.replace(/\x1b\[[0-9;]*m/g, '').match(LISTENING);
        if (match) {
          clearTimeout(timer);
          done(match[1]);
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        fail(new Error(`cannot start the hub: ${e.message}: ${describe()}`));
      });
      // 'close' rather than 'exit': the last of stderr has arrived, so the error shows why.
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const error = new Error(`the hub exited (code ${code}, signal ${signal}) before listening: ${describe()}`);
        error.cannotListen = CANNOT_LISTEN.test(log);
        fail(error);
      });
    });
    return { child, exited, origin, log: () => log };
  } catch (error) {
    await terminate({ child, exited });
    throw error;
  }
}

/**
 * `launch` on a port that a process of the same hub has just released: binding it again right
 * away works (tokio's listener sets SO_REUSEADDR), but should it fail anyway, retry for a while.
 */
async function launchRetryingBind(args, port, dataDir) {
  const deadline = Date.now() + REBIND_TIMEOUT_MS;
  for (;;) {
    try {
      return await launch(args, port, dataDir);
    } catch (error) {
      if (!error.cannotListen || Date.now() >= deadline) throw error;
      await delay(REBIND_RETRY_MS);
    }
  }
}

/** SIGTERM, then SIGKILL after STOP_GRACE_MS. Resolves with how the process exited. */
async function terminate({ child, exited }) {
  if (child.pid === undefined) return { code: null, signal: null }; // it never started
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill('SIGTERM');
  let timer;
  const killed = new Promise((done) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      done();
    }, STOP_GRACE_MS);
  });
  await Promise.race([exited, killed]);
  clearTimeout(timer);
  return exited;
}

// --- publishing with curl -----------------------------------------------------------------------

/**
 * Publishes with a real `curl` process: `fields` are form fields (`topic` may be an array,
 * `private: true` adds `private=on`). Resolves with the update's id, which the hub answers with.
 * `curlArgs` go before the URL (`--cacert FILE` for a hub served over TLS).
 */
export function publish(hub, fields, bearer = publisherToken(), curlArgs = []) {
  const args = ['--silent', '--show-error', '--fail-with-body', '--noproxy', '*', '--max-time', '10'];
  args.push(...curlArgs);
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === false) continue;
    for (const one of Array.isArray(value) ? value : [value]) {
      args.push('--data-urlencode', `${name}=${one === true ? 'on' : one}`);
    }
  }
  args.push('-H', `Authorization: Bearer ${bearer}`, hub.url);
  return new Promise((done, fail) => {
    execFile('curl', args, { timeout: 15_000 }, (error, stdout, stderr) => {
      if (error) {
        const hint = error.code === 'ENOENT' ? ' (curl is not installed: run .ci/run or apt-get install curl)' : '';
        fail(new Error(`curl publish failed${hint}: ${error.message}\n${stdout}${stderr}`));
      } else {
        done(stdout.trim());
      }
    });
  });
}

// --- the page server ----------------------------------------------------------------------------

// The one test page. `subscribe(name, url, init)` opens an EventSource and records what it sees in
// `window.streams[name]`, which the tests read with page.evaluate / page.waitForFunction.
const SUBSCRIBER_PAGE = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald subscriber</title></head>
<body>
<h1>herald subscriber</h1>
<pre id="log"></pre>
<script>
window.streams = {};
window.subscribe = function (name, url, init) {
  const record = { opens: 0, errors: 0, events: [], states: [] };
  const source = new EventSource(url, init || {});
  record.source = source;
  const line = (text) => { document.getElementById('log').textContent += name + ': ' + text + '\\n'; };
  source.onopen = () => { record.opens += 1; line('open #' + record.opens); };
  source.onerror = () => {
    record.errors += 1;
    record.states.push(source.readyState);
    line('error #' + record.errors + ' (readyState ' + source.readyState + ')');
  };
  source.onmessage = (e) => {
    record.events.push({ data: e.data, lastEventId: e.lastEventId, type: e.type, connection: record.opens });
    line('message ' + e.lastEventId + ' ' + e.data);
  };
  window.streams[name] = record;
};
</script>
</body>
</html>
`;

/** Serves the test pages on 127.0.0.1:0. Resolves with `{origin, url(path), close()}`. */
export async function startPageServer() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://page').pathname;
    if (req.method === 'GET' && (path === '/' || path === '/subscriber.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(SUBSCRIBER_PAGE);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  await new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', done);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    url: (path = '/subscriber.html') => `${origin}${path}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

// --- the browser --------------------------------------------------------------------------------

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches headless Debian Chromium, with `extraArgs` after the usual ones. Playwright gives each
 * launch a fresh, empty user-data-dir of its own (a temporary profile it deletes on close).
 */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: run .ci/run, or apt-get install chromium ` +
        '(or set CHROMIUM_PATH)',
    );
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(
      `playwright-core is not installed (${e.code || e.message}): run \`npm ci\` in tests/browser ` +
        '(scripts/test does)',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

// The hub seen from a real browser: headless Debian Chromium (driven by playwright-core) opens a
// cross-origin EventSource from a page on http://127.0.0.1:PAGEPORT to the real `herald` binary
// on another port, and updates are published by a real `curl` process.
//
// Nothing here sleeps: every wait is for something the page recorded (an open, an error, an
// event), so the tests take as long as the hub and the browser do, plus the browser's own
// reconnection delay in the reconnect tests.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, publish, startHub, startPageServer, subscriberToken } from './hub.mjs';

const WAIT_MS = 10_000;
const TEST_TIMEOUT_MS = 20_000;
const BOOKS = 'https://example.com/books/{id}';

let browser;
let pages;

before(async () => {
  pages = await startPageServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
});

/**
 * Runs `body` with fresh hubs and pages that are all torn down afterwards; when it fails, the
 * error carries the hubs' logs and what each page recorded.
 */
async function scenario(body) {
  const hubs = [];
  const contexts = [];
  const openPages = [];
  const env = {
    async hub(args) {
      const hub = await startHub(args);
      hubs.push(hub);
      return hub;
    },
    async page({ cookies = [] } = {}) {
      const context = await browser.newContext();
      contexts.push(context);
      if (cookies.length) await context.addCookies(cookies);
      const page = await context.newPage();
      const record = { page, console: [] };
      page.on('console', (m) => record.console.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => record.console.push(`pageerror: ${e.message}`));
      openPages.push(record);
      await page.goto(pages.url());
      return page;
    },
  };
  try {
    await body(env);
  } catch (error) {
    const notes = [];
    for (const { page, console } of openPages) {
      const log = await page.evaluate(() => document.getElementById('log').textContent).catch(() => '?');
      notes.push(`--- page ${page.url()} ---\n${log}${console.join('\n')}`);
    }
    for (const hub of hubs) notes.push(`--- hub ${hub.url} ---\n${hub.log()}`);
    error.message += `\n${notes.join('\n')}`;
    throw error;
  } finally {
    // Browser first, so that the hub has no stream to wait for when it shuts down.
    await Promise.all(contexts.map((c) => c.close().catch(() => {})));
    await Promise.all(hubs.map((h) => h.stop()));
  }
}

/** The URL subscribing to `topics` (the `{id}` of a URI template is encoded, as it must be). */
function subscribeUrl(hub, topics, extra = {}) {
  const url = new URL(hub.url);
  for (const topic of topics) url.searchParams.append('topic', topic);
  for (const [name, value] of Object.entries(extra)) url.searchParams.append(name, value);
  return url.href;
}

/** Opens an EventSource named `name` in `page`. */
function subscribe(page, name, url, init = {}) {
  return page.evaluate(([name, url, init]) => window.subscribe(name, url, init), [name, url, init]);
}

/** Waits until stream `name` has seen at least this many opens, errors and events. */
async function until(page, name, { opens = 0, errors = 0, events = 0 }) {
  try {
    await page.waitForFunction(
      ([name, opens, errors, events]) => {
        const s = window.streams[name];
        return s && s.opens >= opens && s.errors >= errors && s.events.length >= events;
      },
      [name, opens, errors, events],
      { timeout: WAIT_MS },
    );
  } catch (e) {
    const seen = await recorded(page, name).catch(() => null);
    throw new Error(
      `stream ${name}: waited ${WAIT_MS} ms for ${JSON.stringify({ opens, errors, events })}, ` +
        `saw ${JSON.stringify(seen)}: ${e.message.split('\n')[0]}`,
    );
  }
}

/** What stream `name` recorded so far. */
function recorded(page, name) {
  return page.evaluate((name) => {
    const { opens, errors, events, states } = window.streams[name];
    return { opens, errors, events, states };
  }, name);
}

test('r8_browser_eventsource_receives_update_via_uri_template', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const page = await openPage();
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin]);
    const url = `${hub.url}?topic=${encodeURIComponent(BOOKS)}`;
    await subscribe(page, 'books', url);
    await until(page, 'books', { opens: 1 });

    const data = JSON.stringify({ title: 'Dune', year: 1965 });
    const id = await publish(hub, { topic: 'https://example.com/books/1', data });
    assert.match(id, /\S/, 'the hub answers a publish with the update id');

    await until(page, 'books', { events: 1 });
    const seen = await recorded(page, 'books');
    assert.deepEqual(
      seen.events.map(({ data, lastEventId, type }) => ({ data, lastEventId, type })),
      [{ data, lastEventId: id, type: 'message' }],
    );
    assert.equal(seen.errors, 0, 'the stream stayed open');
  }),
);

test('v1_browser_eventsource_receives_update_via_match_urlpattern', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    // A Mercure 1.0 subscription [V1]: `match_urlpattern` with a WHATWG URL Pattern.
    const page = await openPage();
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin]);
    const url = new URL(hub.url);
    url.searchParams.append('match_urlpattern', 'https://example.com/books/:id');
    await subscribe(page, 'pattern', url.href);
    await until(page, 'pattern', { opens: 1 });

    // `:id` does not cross a `/`: the first update is not delivered, the second is, so the
    // first event the page sees is the second update.
    await publish(hub, { topic: 'https://example.com/books/1/reviews', data: 'not selected' });
    const data = JSON.stringify({ title: 'Dune', year: 1965 });
    const id = await publish(hub, { topic: 'https://example.com/books/1', data });
    await until(page, 'pattern', { events: 1 });
    const seen = await recorded(page, 'pattern');
    assert.deepEqual(
      seen.events.map(({ data, lastEventId, type }) => ({ data, lastEventId, type })),
      [{ data, lastEventId: id, type: 'message' }],
    );
    assert.equal(seen.errors, 0, 'the stream stayed open');
  }),
);

test('r20_private_update_reaches_only_an_authorized_browser', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const page = await openPage();
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin]);
    const topic = 'https://example.com/books/2';
    await subscribe(page, 'anonymous', subscribeUrl(hub, [BOOKS]));
    await subscribe(
      page,
      'authorized',
      subscribeUrl(hub, [BOOKS], { authorization: subscriberToken([BOOKS]) }),
    );
    await until(page, 'anonymous', { opens: 1 });
    await until(page, 'authorized', { opens: 1 });

    const secret = await publish(hub, { topic, data: 'private: for subscribers only', private: true });
    const open = await publish(hub, { topic, data: 'public: for everyone' });

    // The public update comes after the private one on every stream: once the anonymous stream
    // has it, the private one would have arrived before it if it were going to.
    await until(page, 'authorized', { events: 2 });
    await until(page, 'anonymous', { events: 1 });
    const ids = async (name) => (await recorded(page, name)).events.map((e) => [e.lastEventId, e.data]);
    assert.deepEqual(await ids('authorized'), [
      [secret, 'private: for subscribers only'],
      [open, 'public: for everyone'],
    ]);
    assert.deepEqual(await ids('anonymous'), [[open, 'public: for everyone']]);
  }),
);

test('r19_cookie_authorization_in_a_browser', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    // The exact page origin (not `*`): the hub then allows credentials, which the browser needs
    // to send the cookie on a cross-origin EventSource.
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin]);
    // Cookies are not per port: the cookie set for 127.0.0.1 goes to the hub on its own port,
    // the page and the hub being the same site.
    const page = await openPage({
      cookies: [
        { name: 'mercureAuthorization', value: subscriberToken([BOOKS]), domain: '127.0.0.1', path: '/' },
      ],
    });
    const topic = 'https://example.com/books/3';
    const url = subscribeUrl(hub, [BOOKS]);
    await subscribe(page, 'with-cookie', url, { withCredentials: true });
    // The control: the same URL without credentials sends no cookie, so it is anonymous.
    await subscribe(page, 'without-cookie', url);
    await until(page, 'with-cookie', { opens: 1 });
    await until(page, 'without-cookie', { opens: 1 });

    const secret = await publish(hub, { topic, data: 'private by cookie', private: true });
    const open = await publish(hub, { topic, data: 'public' });

    await until(page, 'with-cookie', { events: 2 });
    await until(page, 'without-cookie', { events: 1 });
    const ids = async (name) => (await recorded(page, name)).events.map((e) => [e.lastEventId, e.data]);
    assert.deepEqual(await ids('with-cookie'), [
      [secret, 'private by cookie'],
      [open, 'public'],
    ]);
    assert.deepEqual(await ids('without-cookie'), [[open, 'public']]);
  }),
);

/**
 * The Last-Event-ID headers of the requests `page` makes to `hub` and of the hub's answers, in
 * order, as playwright saw them cross the browser's network stack (`null` when there is none).
 * The browser sends the id of the last update it has; the hub answers with where its replay
 * started: that id if its history holds it, `earliest` if it does not [R27]. Call `sent()` and
 * `answered()` once the requests are made.
 */
function lastEventIdHeaders(page, hub) {
  const requests = [];
  const responses = [];
  const header = (headers) => headers.then((h) => h['last-event-id'] ?? null);
  page.on('request', (request) => {
    if (request.url().startsWith(hub.url)) requests.push(header(request.allHeaders()));
  });
  page.on('response', (response) => {
    if (response.url().startsWith(hub.url)) responses.push(header(response.allHeaders()));
  });
  return { sent: () => Promise.all(requests), answered: () => Promise.all(responses) };
}

/** A publisher to `topic` on `hub` that remembers what it sent as the page should record it. */
function publisher(hub, topic) {
  const sent = [];
  const send = async (data) => sent.push({ data, lastEventId: await publish(hub, { topic, data }) });
  return { sent, send };
}

test('r25_browser_reconnects_after_hub_restart_without_loss', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    // A full process restart: history is on disk (the hub's data directory), so the new process
    // knows the last update the browser had and replays, from after it, what was published after
    // the restart but before the browser came back.
    const page = await openPage();
    // `--drain-spread 0s`: the stream ends without a `retry:` field, so the browser waits
    // Chromium's own reconnection delay (3 s). With the default, the delay is drawn from 0 to
    // 5 s, and a short draw brought the browser back before B and C were published, so that
    // they came live and the history was not tested (seen once in CI: with a window of about
    // 0.1 s in a 5 s spread, about one run in fifty).
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin, '--drain-spread', '0s']);
    const topic = 'https://example.com/books/4';
    const lastEventIds = lastEventIdHeaders(page, hub);
    await subscribe(page, 'books', subscribeUrl(hub, [BOOKS]));
    await until(page, 'books', { opens: 1 });
    const { sent, send } = publisher(hub, topic);

    await send('A live before the restart');
    await until(page, 'books', { events: 1 });

    const exit = await hub.restart({
      whileStopped: async () => {
        // The hub ended the stream as it shut down: the browser saw an error and is CONNECTING,
        // waiting its reconnection delay (3 s in Chromium) before it tries the same URL again.
        await until(page, 'books', { errors: 1 });
        await assert.rejects(
          publish(hub, { topic, data: 'never published' }),
          /curl publish failed/,
          'nothing can be published while the hub is down',
        );
      },
    });
    assert.deepEqual(exit, { code: 0, signal: null }, 'the hub shut down cleanly on SIGTERM');

    // Published as soon as the new process listens, well within the browser's reconnection delay.
    await send('B after the restart, before the browser is back');
    await send('C after the restart, before the browser is back');
    assert.equal(
      (await recorded(page, 'books')).opens,
      1,
      'the browser was still away when B and C were published (so they must come from history)',
    );
    await until(page, 'books', { opens: 2, events: 3 });
    await send('D live after the reconnection');
    await until(page, 'books', { events: 4 });

    const seen = await recorded(page, 'books');
    assert.deepEqual(
      seen.events.map(({ data, lastEventId }) => ({ data, lastEventId })),
      sent,
      'every update exactly once, in order',
    );
    assert.deepEqual(
      seen.events.map((e) => e.connection),
      [1, 2, 2, 2],
      'the updates published while the browser was away came with its reconnection',
    );
    assert.deepEqual(seen.states, [0], 'the one error was a reconnect (CONNECTING), not a close');
    // The browser asked the restarted hub to resume after the last update it had, by itself, and
    // the new process found that update in the history the old one left on disk (a hub that had
    // lost it would have answered `earliest`, and replayed B and C all the same).
    assert.deepEqual(await lastEventIds.sent(), [null, sent[0].lastEventId]);
    assert.deepEqual(await lastEventIds.answered(), [null, sent[0].lastEventId]);
  }),
);

test('r11_browser_reconnects_after_stream_lifetime_without_loss', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    // The same reconnect path without a restart: the stream ends by its maximum lifetime
    // (--write-timeout 2s, jittered down by up to 20%) and the browser reconnects to the same
    // process.
    const page = await openPage();
    const hub = await startHub(['--anonymous', '--cors-origin', pages.origin, '--write-timeout', '2s']);
    const topic = 'https://example.com/books/5';
    const lastEventIds = lastEventIdHeaders(page, hub);
    await subscribe(page, 'books', subscribeUrl(hub, [BOOKS]));
    await until(page, 'books', { opens: 1 });
    const { sent, send } = publisher(hub, topic);

    await send('A live on connection 1');
    await until(page, 'books', { events: 1 });
    // The stream ends by its lifetime; the browser waits its reconnection delay (3 s in
    // Chromium) before it reconnects, and these two are published in between.
    await until(page, 'books', { errors: 1 });
    await send('B while reconnecting');
    await send('C while reconnecting');
    assert.equal(
      (await recorded(page, 'books')).opens,
      1,
      'the browser was still away when B and C were published (so they must come from history)',
    );
    await until(page, 'books', { opens: 2, events: 3 });
    await send('D live on connection 2');
    await until(page, 'books', { events: 4 });

    const seen = await recorded(page, 'books');
    assert.deepEqual(
      seen.events.map(({ data, lastEventId }) => ({ data, lastEventId })),
      sent,
      'every update exactly once, in order',
    );
    assert.deepEqual(
      seen.events.map((e) => e.connection),
      [1, 2, 2, 2],
      'the updates published while the browser was away came with its reconnection',
    );
    assert.deepEqual(seen.states, [0], 'the error was a reconnect (CONNECTING), not a close');
    assert.deepEqual(await lastEventIds.sent(), [null, sent[0].lastEventId]);
    assert.deepEqual(await lastEventIds.answered(), [null, sent[0].lastEventId]);
  }),
);

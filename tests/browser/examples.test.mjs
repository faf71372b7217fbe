// The examples of examples/, as a user runs them: each example's real backend (Python), the
// real `herald` binary with the flags the example's run.sh gives it, and its page in headless
// Debian Chromium, clicked through as a person would.
//
// Nothing sleeps: every wait is for something a page shows.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { exampleScenario, freePort, runExample, runExampleToExit } from './examples-helpers.mjs';
import { launchBrowser, publish, startHub } from './hub.mjs';
import { WAIT_MS, waitForText } from './ui-helpers.mjs';

const TEST_TIMEOUT_MS = 40_000;

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

const scenario = (body) => exampleScenario(browser, body);

/** Waits until `selector` matches at least `count` elements; resolves with their texts. */
async function waitForCount(page, selector, count) {
  await page.waitForFunction(
    ([selector, count]) => document.querySelectorAll(selector).length >= count,
    [selector, count],
    { timeout: WAIT_MS },
  );
  return page.locator(selector).allTextContents();
}

/** Every request `page` makes to `hub`, with its headers, as the browser sent it. */
function hubRequests(page, hub) {
  const requests = [];
  page.on('request', (request) => {
    if (request.url().startsWith(hub.url)) requests.push({ url: request.url(), headers: request.allHeaders() });
  });
  return async () => Promise.all(requests.map(async ({ url, headers }) => ({ url, headers: await headers })));
}

// --- chat -----------------------------------------------------------------------------------

/** Joins the chat on `page` as `user`, subscribed to `topics`, and waits for the stream. */
async function joinChat(page, user, topics) {
  await page.locator('#user').fill(user);
  for (const topic of topics) await page.locator(`input[name=topic][value=${topic}]`).check();
  await page.locator('#join-button').click();
  await waitForText(page, '#status', 'connected as');
}

/** The chat messages `page` shows, as `topic: text`. */
function chatMessages(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('#messages li')].map((li) => `${li.dataset.topic}: ${li.lastChild.textContent}`),
  );
}

test('chat_message_reaches_exactly_the_users_subscribed_to_its_topic', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ start, page: openPage }) => {
    const { backend } = await start('chat', { hubArgs: ['--transport', 'memory'] });
    const ada = await openPage();
    const bob = await openPage();
    await joinChat(ada, 'ada', ['chatgpt']);
    await joinChat(bob, 'bob', ['robot']);

    // The tutorials' publish: a JSON {topic, data} POSTed to the backend.
    await backend.postJson('/publish', { topic: 'robot', data: 'hi robot' });
    await backend.postJson('/publish', { topic: 'chatgpt', data: 'hi chatgpt' });
    // And from a page's own form: ada writes to a topic she has not joined.
    await ada.locator('#send-topic').selectOption('robot');
    await ada.locator('#send-data').fill('bye robot');
    await ada.locator('#send button').click();

    await waitForCount(bob, '#messages li', 2);
    await waitForCount(ada, '#messages li', 1);
    assert.deepEqual(await chatMessages(bob), ['robot: hi robot', 'robot: ada: bye robot']);
    // One stream delivers in publication order: had "hi robot" (published first) been going to
    // reach ada, it would have come before "hi chatgpt".
    assert.deepEqual(await chatMessages(ada), ['chatgpt: hi chatgpt']);
  }),
);

// --- private notifications ------------------------------------------------------------------

/** Logs `user` in on `page` and waits until their notification stream is open. */
async function logIn(page, user) {
  await page.locator('#user').fill(user);
  await page.locator('#login button').click();
  await waitForText(page, '#status', 'connected');
}

const listed = (page, selector) => page.locator(`${selector} li`).allTextContents();

test('private_notifications_by_cookie_never_reach_another_user', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ start, page: openPage }) => {
    const { hub, backend } = await start('private-notifications', { hubArgs: ['--transport', 'memory'] });
    const alice = await openPage();
    const bob = await openPage();
    const aliceRequests = hubRequests(alice, hub);
    await logIn(alice, 'alice');
    await logIn(bob, 'bob');

    // The token is in an HttpOnly cookie for the hub's path only: scripts cannot read it, and
    // it is in no URL [R19].
    const [cookie] = await alice.context().cookies(hub.url);
    assert.equal(cookie?.name, 'mercureAuthorization');
    assert.equal(cookie.path, '/.well-known/mercure');
    assert.equal(cookie.httpOnly, true);
    assert.equal(await alice.evaluate(() => document.cookie), '');
    const [subscription] = await aliceRequests();
    assert.match(subscription.headers.cookie, /mercureAuthorization=/);
    assert.doesNotMatch(subscription.url, /authorization/i);

    // Bob asks the hub for alice's topic, with his own cookie: the subscription is accepted...
    await bob.locator('#spy-user').fill('alice');
    await bob.locator('#spy button').click();
    await waitForText(bob, '#spy-status', 'connected');

    await backend.postJson('/notify', { to: 'alice', message: 'for alice: your order has shipped' });
    await backend.postJson('/notify', { to: 'bob', message: 'for bob: welcome' });
    // ...and gets a public update published to alice's topic after her private one, but never
    // the private one, which would have come first [R8][R20].
    await publish(hub, { topic: 'https://example.com/users/alice/notifications', data: 'public probe' });

    await waitForCount(alice, '#notifications li', 2);
    await waitForCount(bob, '#notifications li', 1);
    await waitForCount(bob, '#spied li', 1);
    assert.deepEqual(await listed(alice, '#notifications'), ['for alice: your order has shipped', 'public probe']);
    assert.deepEqual(await listed(bob, '#notifications'), ['for bob: welcome']);
    assert.deepEqual(await listed(bob, '#spied'), ['public probe']);

    // Without the cookie (no withCredentials), the hub refuses the subscription: it allows no
    // anonymous subscribers [R21], and a refusal closes an EventSource for good.
    const bobTopic = encodeURIComponent('https://example.com/users/bob/notifications');
    assert.equal(await firstState(bob, `${hub.url}?topic=${bobTopic}`, false), 'closed');

    // With --cors-origin '*' the hub may not allow credentials [R23]: the browser refuses the
    // stream that would carry the cookie.
    const anyOrigin = await startHub(['--cors-origin', '*']);
    try {
      assert.equal(await firstState(bob, `${anyOrigin.url}?topic=${bobTopic}`, true), 'closed');
    } finally {
      await anyOrigin.stop();
    }
  }),
);

/** Opens an EventSource in `page`; resolves with `open`, or the state its first error left. */
function firstState(page, url, withCredentials) {
  return page.evaluate(
    ([url, withCredentials]) =>
      new Promise((done) => {
        const source = new EventSource(url, { withCredentials });
        source.onopen = () => done('open');
        source.onerror = () => done(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
      }),
    [url, withCredentials],
  );
}

// --- progress -------------------------------------------------------------------------------

const STEPS = 12;

test('progress_shows_every_step_once_across_a_hub_restart', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ start, page: openPage }) => {
    // History on disk (the hub's default transport), as run.sh runs it.
    const { hub } = await start('progress', {
      hubArgs: ['--anonymous'],
      env: { JOB_STEPS: String(STEPS), JOB_STEP_SECONDS: '0.25' },
    });
    const page = await openPage();
    const requests = hubRequests(page, hub);
    await page.locator('#start').click();
    await waitForCount(page, '#steps li', 3);

    // Mid-job: the backend's next steps wait for the hub, the page reconnects by itself [R25].
    const exit = await hub.restart();
    assert.deepEqual(exit, { code: 0, signal: null }, 'the hub shut down cleanly on SIGTERM');
    // The job waits for the hub while it is down, so most of it is still to come.
    assert.ok(!(await page.locator('#done').isVisible()), 'the job was still running');

    await page.locator('#done').waitFor({ timeout: WAIT_MS });
    const expected = Array.from({ length: STEPS }, (_, i) => `step ${i + 1} of ${STEPS}`);
    assert.deepEqual(await listed(page, '#steps'), expected, 'every step exactly once, in order');

    // The page reconnected, and told the new process where it was with Last-Event-ID.
    const sent = await requests();
    assert.ok(sent.length >= 2, `the page reconnected: ${JSON.stringify(sent)}`);
    assert.equal(sent[0].headers['last-event-id'], undefined);
    assert.match(sent.at(-1).headers['last-event-id'] ?? '', /^urn:uuid:/);
    assert.match(sent[0].url, /lastEventID=earliest/);

    // What the page was sent: named events, each with the reconnection delay [R9].
    const stream = await streamUntil(sent[0].url, 'event: done');
    const firstStep = `event: progress\nretry: 1000\nid: urn:uuid:\\S+\ndata: \\{"step": 1, "of": ${STEPS}\\}\n\n`;
    assert.match(stream, new RegExp(`^${firstStep}`, 'm'));
  }),
);

/** The text of the stream at `url` up to and including `marker`. */
async function streamUntil(url, marker) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), WAIT_MS);
  try {
    const response = await fetch(url, { signal: abort.signal });
    const decoder = new TextDecoder();
    let text = '';
    for await (const chunk of response.body) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes(marker)) return text;
    }
    return text;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

// --- dashboard ------------------------------------------------------------------------------

const FIGURES = ['visitors', 'orders', 'load', 'clock'];

test('dashboard_updates_every_figure_over_one_connection', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ start, page: openPage }) => {
    const { hub } = await start('dashboard', {
      hubArgs: ['--anonymous', '--transport', 'memory'],
      env: { INTERVAL_SECONDS: '0.2' },
    });
    let requests;
    const page = await openPage({ beforeLoad: (page) => (requests = hubRequests(page, hub)) });
    await waitForText(page, '#status', 'live');

    // Every figure changes several times...
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-figure]')].every((card) => Number(card.dataset.updates) >= 3),
      null,
      { timeout: WAIT_MS },
    );
    const values = await page.locator('[data-figure] .value').allTextContents();
    assert.ok(values.every((value) => value !== '-'), `every figure has a value: ${values}`);

    // ...over one connection, one subscription with a topic= per figure.
    const sent = await requests();
    assert.equal(sent.length, 1, `one request to the hub: ${JSON.stringify(sent.map((r) => r.url))}`);
    const topics = new URL(sent[0].url).searchParams.getAll('topic');
    assert.deepEqual(topics, FIGURES.map((name) => `https://example.com/dashboard/${name}`));
  }),
);

// --- the one command of each example --------------------------------------------------------

test('each_example_runs_with_one_command_and_stops_with_ctrl_c', { timeout: 4 * TEST_TIMEOUT_MS }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'herald-example-'));
  try {
    for (const name of ['chat', 'private-notifications', 'progress', 'dashboard']) {
      const [hubPort, port] = [await freePort(), await freePort()];
      const hubUrl = `http://127.0.0.1:${hubPort}/.well-known/mercure`;
      const example = await runExample(name, { hubPort, port, env: { HERALD_DATA_DIR: dataDir } });
      let exit;
      try {
        const page = await fetch(`http://127.0.0.1:${port}/`);
        assert.equal(page.status, 200, name);
        assert.match(await page.text(), /<title>Herald example: /, name);
        const config = await (await fetch(`http://127.0.0.1:${port}/config`)).json();
        assert.deepEqual(config, { hub: hubUrl }, name);
        // The hub is up and is Herald: a subscription without a topic names what is missing.
        const hub = await fetch(hubUrl);
        assert.equal(hub.status, 400, name);
        assert.match(await hub.text(), /topic/, name);
      } catch (error) {
        error.message += `\n${example.log()}`;
        throw error;
      } finally {
        exit = await example.interrupt();
      }
      assert.equal(exit.code, 0, `${name}: run.sh exits cleanly on Ctrl-C:\n${example.log()}`);
      // Ctrl-C stopped both: nothing listens on their ports any more.
      for (const url of [hubUrl, `http://127.0.0.1:${port}/`]) {
        await assert.rejects(fetch(url), /fetch failed/, `${name}: ${url} still answers:\n${example.log()}`);
      }
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('run_sh_names_the_port_to_change_when_one_is_taken', { timeout: TEST_TIMEOUT_MS }, async () => {
  const taken = createServer();
  await new Promise((done) => taken.listen(0, '127.0.0.1', done));
  const takenPort = taken.address().port;
  try {
    // The hub's port: run.sh stops before starting the backend.
    const port = await freePort();
    const hubTaken = await runExampleToExit('chat', { HUB_PORT: takenPort, PORT: port });
    assert.equal(hubTaken.code, 1, hubTaken.output);
    assert.match(hubTaken.output, /port \d+ is taken: choose another with HUB_PORT=/);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`), /fetch failed/, 'no backend was started');

    // The backend's port: the backend says so, and run.sh stops the hub it had started.
    const hubPort = await freePort();
    const pageTaken = await runExampleToExit('chat', { HUB_PORT: hubPort, PORT: takenPort });
    assert.equal(pageTaken.code, 1, pageTaken.output);
    assert.match(pageTaken.output, /cannot listen on 127\.0\.0\.1:\d+ .*: choose another port with PORT=/);
    await assert.rejects(fetch(`http://127.0.0.1:${hubPort}/.well-known/mercure`), /fetch failed/, 'the hub was stopped');
  } finally {
    taken.close();
  }
});

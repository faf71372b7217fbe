// The built-in web UI (`herald serve --ui`, on in `--dev`), driven in headless Debian Chromium:
// the debugger subscribes, publishes from its form and shows the event; a private update shows
// only with the right token; the playground routes topics and private updates between its two
// users; the controls are reachable with Tab; the pages fit a phone. Screenshots of both pages
// are written to docs/images/.
//
// The pages are served by the hub itself, so they are same-origin with it, as in real use.
// Nothing sleeps: every wait is for something the page shows.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launchBrowser, publish, token } from './hub.mjs';
import { IMAGES, PHONE, itemIds, tabStops, uiScenario, waitForItem, waitForText } from './ui-helpers.mjs';

const TEST_TIMEOUT_MS = 40_000;
const BOOK = 'https://example.com/books/1';

let browser;

before(async () => {
  browser = await launchBrowser();
  await mkdir(IMAGES, { recursive: true });
});

after(async () => {
  await browser?.close();
});

const scenario = (body) => uiScenario(browser, body);

/** The playground's lists and its preset buttons. */
function playground(page) {
  return {
    /** Ids of the updates `user` ('a' or 'b') received, newest first. */
    received: (user) => itemIds(page, `#${user}-messages`, 'li:not(.message-missed)'),
    /** Ids of the updates `user` was shown as not having received. */
    missed: (user) => itemIds(page, `#${user}-messages`, 'li.message-missed'),
    /** Clicks a "Try:" button; resolves with the id of the update it published. */
    async sendPreset(name) {
      await page.locator('#send-result').evaluate((node) => node.replaceChildren());
      await page.getByRole('button', { name, exact: true }).click();
      await waitForText(page, '#send-result', 'Sent');
      return page.locator('#send-result .published-id').textContent();
    },
  };
}

/** Connects the debugger's subscription and waits until the hub accepted it. */
async function connect(page) {
  await page.getByRole('button', { name: /^(Connect|Reconnect)$/ }).click();
  await waitForText(page, '#state', 'Connected');
}

/** Publishes from the debugger's form; resolves with the id the hub answered. */
async function publishFromForm(page, { data, isPrivate = false, topics = BOOK }) {
  await page.getByLabel('Topics', { exact: true }).fill(topics);
  await page.getByLabel('Data', { exact: true }).fill(data);
  await page.getByRole('checkbox', { name: /^Private/ }).setChecked(isPrivate);
  await page.locator('#publish-result').evaluate((node) => node.replaceChildren());
  await page.getByRole('button', { name: 'Publish' }).click();
  await waitForText(page, '#publish-result', 'Published, id');
  return page.locator('#publish-result .published-id').textContent();
}

test('ui_debugger_subscribe_publish_and_see_event', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    const page = await openPage(hub);

    // A dev hub mints a token for the newcomer, and the page shows what it allows.
    await waitForText(page, '#token-summary', 'May publish to');
    assert.match(await page.locator('#token').inputValue(), /^[\w-]+\.[\w-]+\.[\w-]+$/);
    await waitForText(page, '#token-summary', /expires in (59 min|1 h)/);
    assert.equal(await page.getByLabel('Hub URL').inputValue(), hub.url, 'the hub URL is prefilled');

    await connect(page);
    const data = '{"title": "Dune", "year": 1965}';
    const id = await publishFromForm(page, { data });
    assert.match(id, /^urn:uuid:/);
    await waitForItem(page, '#events', id);
    const event = page.locator('#events > li').first();
    assert.equal(await event.locator('.event-id').textContent(), id);
    assert.equal(await event.locator('.badge').first().textContent(), 'message');
    // Pretty-printed JSON, and the topic this page published it on.
    assert.equal(await event.locator('pre').textContent(), JSON.stringify(JSON.parse(data), null, 2));
    await waitForText(page, '#events > li:first-child .event-topics', BOOK);

    // An update published by someone else (curl) arrives too, with its SSE type.
    await page.getByLabel('Also listen for event types').fill('book-added');
    await connect(page);
    const other = await publish(hub, {
      topic: 'https://example.com/books/2',
      data: '{"title": "Hyperion", "author": "Dan Simmons"}',
      type: 'book-added',
    });
    await waitForItem(page, '#events', other);
    assert.equal(await page.locator('#events > li').first().locator('.badge').first().textContent(), 'book-added');
    assert.equal(await page.locator('#event-count').textContent(), '2');
    assert.equal(await page.locator('#reconnections').textContent(), '0');

    await publishFromForm(page, {
      data: '{"title": "Foundation", "author": "Isaac Asimov", "tags": ["classic", "empire"]}',
      topics: 'https://example.com/books/3',
    });
    const note = await publishFromForm(page, {
      data: 'Plain text is shown as it is.\nEvery line of it.',
      topics: 'https://example.com/books/3\nhttps://example.com/shelves/scifi',
      isPrivate: true,
    });
    await waitForItem(page, '#events', note);
    await waitForText(page, '#events > li:first-child .event-topics', 'https://example.com/shelves/scifi');
    assert.equal(await page.locator('#events > li').count(), 4);

    await page.setViewportSize({ width: 1280, height: 1120 });
    await page.evaluate(() => {
      document.activeElement?.blur();
      window.scrollTo(0, 0);
    });
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(IMAGES, 'ui-debugger.png') });

    await page.getByRole('button', { name: 'Disconnect' }).click();
    await waitForText(page, '#state', 'Disconnected');
  }),
);

test('ui_debugger_private_update_visible_only_with_the_right_token', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    const page = await openPage(hub);
    const tokenField = page.getByLabel('Token (JWT)');

    // A token that may publish but not receive private updates, sent as the cookie.
    await tokenField.fill(token({ mercure: { publish: ['*'] }, exp: Math.floor(Date.now() / 1000) + 600 }));
    await waitForText(page, '#token-summary', /Private updates of\s*nothing/);
    await connect(page);
    const cookies = await page.context().cookies();
    const cookie = cookies.find((c) => c.name === 'mercureAuthorization');
    assert.ok(cookie, 'the page set the authorization cookie');
    assert.equal(cookie.path, '/.well-known/mercure');
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.value, await tokenField.inputValue());

    const secret = await publishFromForm(page, { data: 'private: not for you', isPrivate: true });
    const open = await publishFromForm(page, { data: 'public: for everyone' });
    // Updates arrive in publication order: once the public one is here, the private one would
    // have been too.
    await waitForItem(page, '#events', open);
    assert.deepEqual(await itemIds(page, '#events'), [open], 'the private update was not delivered');

    // The right token, now in the query string: the next private update arrives.
    await tokenField.fill(token({ mercure: { publish: ['*'], subscribe: ['https://example.com/books/{id}'] } }));
    await waitForText(page, '#token-summary', 'https://example.com/books/{id}');
    await page.getByLabel(/query parameter/).check();
    await connect(page);
    assert.equal(
      (await page.context().cookies()).find((c) => c.name === 'mercureAuthorization'),
      undefined,
      'choosing the query parameter removes the cookie',
    );
    await waitForText(page, '#request-line', 'authorization=…');
    const allowed = await publishFromForm(page, { data: 'private: for the right token', isPrivate: true });
    await waitForItem(page, '#events', allowed);
    assert.deepEqual(await itemIds(page, '#events'), [allowed, open]);
    await waitForText(page, '#events > li:first-child .event-topics', 'private');
    assert.ok(!(await itemIds(page, '#events')).includes(secret));
  }),
);

test('ui_debugger_shows_why_the_hub_refused', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    const page = await openPage(hub);
    const tokenField = page.getByLabel('Token (JWT)');

    // An expired token: the summary says so, the subscription fails with the hub's reason.
    await tokenField.fill(token({ mercure: { subscribe: ['*'] }, exp: Math.floor(Date.now() / 1000) - 120 }));
    await waitForText(page, '#token-summary', /expired 2 min ago/);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await waitForText(page, '#state', 'Failed');
    await waitForText(page, '#state-reason', /401 Unauthorized: invalid token: token expired/);

    // A token that may not publish: the status and the hub's reason are shown.
    await tokenField.fill(token({ mercure: { subscribe: ['*'] } }));
    await page.getByLabel('Data', { exact: true }).fill('x');
    await page.getByRole('button', { name: 'Publish' }).click();
    await waitForText(page, '#publish-result', /Refused: 403 Forbidden: the token's mercure.publish claim is missing or empty/);

    // Not a JWT at all.
    await tokenField.fill('not-a-token');
    await waitForText(page, '#token-summary', 'not a JWT');
  }),
);

test('ui_debugger_mints_tokens_in_dev_mode_only', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const dev = await startHub(['--dev']);
    const page = await openPage(dev);
    await page.getByRole('button', { name: 'Mint one…' }).click();
    await page.getByLabel('May publish to').fill('https://example.com/books/{id}');
    await page.getByLabel('May receive private updates of').fill('');
    await page.getByLabel('Payload (JSON, optional)').fill('{"user": "alice"}');
    await page.getByRole('button', { name: 'Mint and use' }).click();
    await waitForText(page, '#mint-result', 'Minted');
    await waitForText(page, '#token-summary', '{"user":"alice"}');
    await waitForText(page, '#token-summary', 'https://example.com/books/{id}');

    // A hub with --ui but not --dev: no minter, and the page says how to get a token.
    const plain = await startHub(['--ui', '--anonymous']);
    const production = await openPage(plain);
    assert.equal(await production.locator('#minter').isHidden(), true);
    assert.equal(await production.locator('#token').inputValue(), '');
    await waitForText(production, '#token-summary', 'No token: you subscribe anonymously');
    await production.getByRole('button', { name: 'Publish' }).click();
    await waitForText(production, '#publish-result', /401 Unauthorized: no token.*Paste a publisher token/);
  }),
);

test('ui_debugger_lists_active_subscriptions', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev', '--subscriptions']);
    const page = await openPage(hub);
    await connect(page);
    await page.getByRole('button', { name: 'Watch' }).click();
    // The debugger's own subscriptions: its events stream and the watch itself.
    await waitForText(page, '#subscriptions', 'https://example.com/books/{id}');
    await waitForText(page, '#subscriptions', '/.well-known/mercure/subscriptions{/topic}{/subscriber}');
    await waitForText(page, '#subscriptions-status', 'Live');

    // Another client subscribes, then leaves.
    const other = await openPage(hub, 'playground.html');
    await waitForText(page, '#subscriptions', 'robot');
    await other.context().close();
    await page.waitForFunction(() => !document.querySelector('#subscriptions').textContent.includes('robot'), null, {
      timeout: 10_000,
    });
    await page.getByRole('button', { name: 'Stop' }).click();

    // A hub without --subscriptions: the panel says so instead of waiting for nothing.
    const plain = await startHub(['--dev']);
    const without = await openPage(plain);
    await waitForText(without, '#subscriptions-status', 'The hub runs without --subscriptions');
    assert.equal(await without.locator('#watch-subscriptions').isHidden(), true);
  }),
);

test('ui_playground_routes_topics_and_private_updates', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    const page = await openPage(hub, 'playground.html');
    await waitForText(page, '#a-state', 'Connected');
    await waitForText(page, '#b-state', 'Connected');
    await waitForText(page, '#b-rights', 'private updates of robot');
    await waitForText(page, '#a-rights', 'anonymous');

    const { received, missed, sendPreset } = playground(page);

    // chatgpt: both users; robot: only B, who subscribed to it.
    const chatgpt = await sendPreset('chatgpt');
    await waitForItem(page, '#a-messages', chatgpt);
    await waitForItem(page, '#b-messages', chatgpt);
    const robot = await sendPreset('robot');
    await waitForItem(page, '#b-messages', robot);
    // A is told why it did not get it.
    await waitForItem(page, '#a-messages', robot);
    assert.deepEqual(await missed('a'), [robot]);
    await waitForText(page, '#a-messages > li:first-child', 'Not delivered: not subscribed to robot');

    // A private robot update: B's token allows robot.
    const secret = await sendPreset('robot, private');
    await waitForItem(page, '#b-messages', secret);
    // A private chatgpt update: nobody's token allows it, although both subscribed.
    const nobody = await sendPreset('chatgpt, private');
    await waitForItem(page, '#a-messages', nobody);
    await waitForItem(page, '#b-messages', nobody);
    await waitForText(page, '#b-messages > li:first-child', "the update is private and this user's token does not allow chatgpt");

    assert.deepEqual(await received('a'), [chatgpt]);
    assert.deepEqual(await received('b'), [secret, robot, chatgpt]);
    assert.deepEqual(await missed('b'), [nobody]);
    await page.evaluate(() => document.activeElement?.blur());
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(IMAGES, 'ui-playground.png'), fullPage: true });

    // A subscribes to robot too: public robot updates now reach it, private ones still do not.
    await page.getByLabel('Subscribed to').first().fill('chatgpt, robot');
    await page.getByRole('button', { name: 'Apply' }).first().click();
    await waitForText(page, '#a-state', 'Connected');
    const robotAgain = await sendPreset('robot');
    await waitForItem(page, '#a-messages', robotAgain);
    const secretAgain = await sendPreset('robot, private');
    await waitForItem(page, '#b-messages', secretAgain);
    await waitForItem(page, '#a-messages', secretAgain);
    assert.deepEqual(await received('a'), [robotAgain, chatgpt]);
    await waitForText(page, '#a-messages > li:first-child', 'the update is private and this user has no token');
  }),
);

test('ui_playground_user_without_token_stays_anonymous_despite_the_debugger_cookie', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    // The cookie the debugger sets (a token receiving everything) would authenticate user A,
    // who has no token of its own: the playground removes it and says so.
    const debuggerCookie = {
      name: 'mercureAuthorization',
      value: token({ mercure: { subscribe: ['*'] } }),
      domain: '127.0.0.1',
      path: '/.well-known/mercure',
      sameSite: 'Strict',
    };
    const page = await openPage(hub, 'playground.html', { cookies: [debuggerCookie] });
    await waitForText(page, '#cookie-note', 'removed');
    assert.deepEqual(await page.context().cookies(), [], 'the playground removed the cookie');
    await waitForText(page, '#a-state', 'Connected');
    const { received, missed, sendPreset } = playground(page);
    const secret = await sendPreset('chatgpt, private');
    const open = await sendPreset('chatgpt');
    await waitForItem(page, '#a-messages', open);
    await waitForItem(page, '#a-messages', secret);
    assert.deepEqual(await received('a'), [open]);
    assert.deepEqual(await missed('a'), [secret]);
  }),
);

test('ui_keyboard_tab_reaches_the_controls', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev', '--subscriptions']);
    const debuggerPage = await openPage(hub);
    const stops = await tabStops(debuggerPage);
    const ids = stops.map((s) => s.id);
    for (const id of ['hub-url', 'token', 'mint-open', 'connect', 'add-topic', 'last-event-id', 'publish-topics', 'publish-data', 'publish-private', 'publish', 'clear-events', 'watch-subscriptions']) {
      assert.ok(ids.includes(id), `Tab reaches #${id}: ${JSON.stringify(ids)}`);
    }
    assert.ok(stops.some((s) => s.name === 'Topic selector 1'), 'Tab reaches the topic selector');
    assert.equal(stops[0].name, 'Skip to the debugger', 'the first stop skips to the content');
    assert.deepEqual(stops.filter((s) => !s.outline).map((s) => s.id || s.name), [], 'every focused control shows a focus ring');

    // The keyboard alone subscribes and publishes.
    await debuggerPage.locator('#connect').focus();
    await debuggerPage.keyboard.press('Enter');
    await waitForText(debuggerPage, '#state', 'Connected');
    await debuggerPage.locator('#publish').focus();
    await debuggerPage.keyboard.press('Enter');
    await waitForText(debuggerPage, '#publish-result', 'Published, id');
    const id = await debuggerPage.locator('#publish-result .published-id').textContent();
    await waitForItem(debuggerPage, '#events', id);

    const playground = await openPage(hub, 'playground.html');
    const playgroundIds = (await tabStops(playground)).map((s) => s.id || s.name);
    for (const id of ['send-topic', 'send-message', 'send-private', 'send', 'a-topics', 'b-topics', 'robot, private']) {
      assert.ok(playgroundIds.includes(id), `Tab reaches ${id}: ${JSON.stringify(playgroundIds)}`);
    }
  }),
);

test('ui_pages_fit_a_phone_screen', { timeout: TEST_TIMEOUT_MS }, () =>
  scenario(async ({ hub: startHub, page: openPage }) => {
    const hub = await startHub(['--dev']);
    for (const path of ['', 'playground.html']) {
      const page = await openPage(hub, path, { viewport: PHONE });
      if (path === '') await connect(page);
      else await waitForText(page, '#b-state', 'Connected');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${path || 'debugger'}: ${overflow} px wider than a phone`);
      // Controls are large enough to tap.
      const small = await page.evaluate(() =>
        [...document.querySelectorAll('button, input:not([type=checkbox]):not([type=radio]), select, textarea')]
          .filter((n) => n.offsetParent !== null)
          .filter((n) => n.getBoundingClientRect().height < 32)
          .map((n) => n.id || n.textContent.trim()),
      );
      assert.deepEqual(small, [], `${path || 'debugger'}: controls smaller than 32 px`);
    }
  }),
);

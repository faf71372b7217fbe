// Helpers for the web UI tests: a hub serving the UI, its pages in headless Chromium with
// everything they log (a CSP violation or a script error fails the test), and waits on what the
// pages show.

import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { REPO_ROOT, startHub } from './hub.mjs';

export const WAIT_MS = 10_000;
export const UI_PATH = '/.well-known/mercure/ui/';
/**
 * Where the tests save their screenshots: a temporary directory, so that a test run leaves the
 * work tree clean. To refresh the ones the README shows, run
 * `HERALD_SCREENSHOTS_DIR=$PWD/../../docs/images npm test` in tests/browser.
 */
export const IMAGES = process.env.HERALD_SCREENSHOTS_DIR ?? join(tmpdir(), 'herald-ui-screenshots');

/** Desktop and phone viewports. */
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

/**
 * Runs `body` with hubs and pages that are all torn down afterwards. `env.hub(args)` starts a hub
 * (`--transport memory`, so no history file); `env.page(hub, path, options)` opens a UI page in
 * a fresh browser context (holding `cookies`) and waits until its script has started. When the body fails, the
 * error carries the pages' console and the hubs' logs; when it passes, the pages must have
 * logged no error (CSP violations included).
 */
export async function uiScenario(browser, body) {
  const hubs = [];
  const contexts = [];
  const pages = [];
  const env = {
    async hub(args = ['--dev']) {
      const hub = await startHub(['--transport', 'memory', ...args]);
      hubs.push(hub);
      return hub;
    },
    async page(hub, path = '', { viewport = DESKTOP, colorScheme = 'light', cookies = [] } = {}) {
      const context = await browser.newContext({ viewport, colorScheme, reducedMotion: 'reduce' });
      contexts.push(context);
      if (cookies.length) await context.addCookies(cookies);
      const page = await context.newPage();
      const record = { page, console: [] };
      page.on('console', (m) => record.console.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => record.console.push(`pageerror: ${e.message}`));
      pages.push(record);
      await page.goto(`${hub.origin}${UI_PATH}${path}`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      return page;
    },
  };
  try {
    await body(env);
    for (const { page, console } of pages) {
      const errors = console.filter((line) => /^(error|pageerror)|Content.Security.Policy/i.test(line));
      // Refusals the UI provokes on purpose and explains (a 401 or 403 from the hub) are logged
      // by the browser as network errors: those are expected, nothing else is.
      const expected = /Failed to load resource: the server responded with a status of 40[13]|EventSource's response has a status 40[13]/;
      const unexpected = errors.filter((line) => !expected.test(line));
      assert.deepEqual(unexpected, [], `page ${page.url()} logged errors`);
    }
  } catch (error) {
    const notes = [];
    for (const { page, console } of pages) notes.push(`--- page ${page.url()} ---\n${console.join('\n')}`);
    for (const hub of hubs) notes.push(`--- hub ${hub.url} ---\n${hub.log()}`);
    error.message += `\n${notes.join('\n')}`;
    throw error;
  } finally {
    await Promise.all(contexts.map((c) => c.close().catch(() => {})));
    await Promise.all(hubs.map((h) => h.stop()));
  }
}

/** Waits until the element `selector` shows `text` (a string it contains, or a RegExp). */
export async function waitForText(page, selector, text, timeout = WAIT_MS) {
  try {
    await page.waitForFunction(
      ([selector, source, flags]) => {
        const node = document.querySelector(selector);
        if (!node) return false;
        return flags === null ? node.textContent.includes(source) : new RegExp(source, flags).test(node.textContent);
      },
      text instanceof RegExp ? [selector, text.source, text.flags] : [selector, text, null],
      { timeout },
    );
  } catch (e) {
    const seen = await page.locator(selector).first().textContent().catch(() => '(absent)');
    throw new Error(`${selector}: waited ${timeout} ms for ${text}, it shows ${JSON.stringify(seen)}: ${e.message.split('\n')[0]}`);
  }
}

/** Waits until a list item with `data-id` = `id` is in the list `listSelector`. */
export async function waitForItem(page, listSelector, id, timeout = WAIT_MS) {
  try {
    await page.waitForFunction(
      ([listSelector, id]) => [...document.querySelectorAll(`${listSelector} > li`)].some((li) => li.dataset.id === id),
      [listSelector, id],
      { timeout },
    );
  } catch (e) {
    const ids = await itemIds(page, listSelector);
    throw new Error(`${listSelector}: waited ${timeout} ms for item ${id}, it has ${JSON.stringify(ids)}: ${e.message.split('\n')[0]}`);
  }
}

/** The `data-id` of each item of the list, with `selector` narrowing the items. */
export function itemIds(page, listSelector, itemSelector = 'li') {
  return page.evaluate(
    ([listSelector, itemSelector]) =>
      [...document.querySelectorAll(`${listSelector} > ${itemSelector}`)].map((li) => li.dataset.id),
    [listSelector, itemSelector],
  );
}

/** Presses Tab up to `max` times from the top of the page; returns a description of each stop. */
export async function tabStops(page, max = 80) {
  await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
  });
  const stops = [];
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    const stop = await page.evaluate(() => {
      const node = document.activeElement;
      if (!node || node === document.body) return null;
      const style = getComputedStyle(node);
      return {
        id: node.id,
        tag: node.tagName.toLowerCase(),
        name: node.getAttribute('aria-label') || node.labels?.[0]?.textContent.trim() || node.textContent.trim().slice(0, 40),
        outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
      };
    });
    if (!stop) break;
    if (stops.length && stops[0].id === stop.id && stops[0].name === stop.name && stop.id) break;
    stops.push(stop);
  }
  return stops;
}

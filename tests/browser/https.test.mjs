// EventSource over HTTPS with HTTP/2, in a real browser: the `herald` binary serves TLS with a
// certificate from a throwaway CA made with `openssl` here; headless Debian Chromium trusts that
// certificate by its public key (`--ignore-certificate-errors-spki-list`), opens a cross-origin
// EventSource from a plain-HTTP page, and receives an update published by `curl` over TLS.
// HTTP/2 is checked where the browser records it: the protocol of the stream's response, as the
// DevTools protocol reports it (`Network.responseReceived`, `response.protocol`).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launchBrowser, publish, publisherToken, startHub, startPageServer } from './hub.mjs';

const WAIT_MS = 10_000;
const TEST_TIMEOUT_MS = 30_000;
const TOPIC = 'https://example.com/tls/1';

let dir;
let certs;
let browser;
let pages;

/** Runs openssl in `dir`, with the fix in the error when it is missing. */
function openssl(args) {
  try {
    return execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const hint = e.code === 'ENOENT' ? ' (openssl is not installed: apt-get install openssl)' : '';
    throw new Error(`openssl ${args.join(' ')} failed${hint}: ${e.stderr || e.message}`);
  }
}

/** A CA and a leaf for 127.0.0.1 and localhost; the leaf's SPKI hash as Chromium wants it. */
function makeCertificates() {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=herald browser test CA']);
  openssl(['req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost']);
  writeFileSync(
    join(dir, 'leaf.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
  );
  openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'leaf.ext']);
  const leaf = new X509Certificate(readFileSync(join(dir, 'leaf.pem')));
  const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  return {
    ca: join(dir, 'ca.pem'),
    cert: join(dir, 'leaf.pem'),
    key: join(dir, 'leaf.key'),
    spkiHash: createHash('sha256').update(spki).digest('base64'),
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herald-https-test-'));
  certs = makeCertificates();
  pages = await startPageServer();
  browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${certs.spkiHash}`]);
});

after(async () => {
  await browser?.close();
  await pages?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('eventsource_over_https_negotiates_http2_and_receives_an_update', { timeout: TEST_TIMEOUT_MS }, async () => {
  const hub = await startHub([
    '--anonymous',
    '--cors-origin',
    pages.origin,
    '--tls-cert',
    certs.cert,
    '--tls-key',
    certs.key,
  ]);
  const context = await browser.newContext();
  try {
    assert.match(hub.url, /^https:\/\//, 'the hub says it serves https');
    const page = await context.newPage();
    const protocols = [];
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', ({ response }) => {
      if (response.url.startsWith(hub.url)) protocols.push(response.protocol);
    });
    await page.goto(pages.url());
    const url = `${hub.url}?topic=${encodeURIComponent(TOPIC)}`;
    await page.evaluate((url) => window.subscribe('tls', url), url);
    await page.waitForFunction(() => window.streams.tls.opens >= 1, null, { timeout: WAIT_MS });

    const data = 'over TLS and HTTP/2';
    const id = await publish(hub, { topic: TOPIC, data }, publisherToken(), ['--cacert', certs.ca]);
    await page.waitForFunction(() => window.streams.tls.events.length >= 1, null, { timeout: WAIT_MS });
    const events = await page.evaluate(() => window.streams.tls.events.map(({ data, lastEventId }) => ({ data, lastEventId })));
    assert.deepEqual(events, [{ data, lastEventId: id }]);
    assert.deepEqual(protocols, ['h2'], 'the stream was served over HTTP/2');
  } catch (error) {
    error.message += `\n--- hub ${hub.url} ---\n${hub.log()}`;
    throw error;
  } finally {
    await context.close().catch(() => {});
    await hub.stop();
  }
});

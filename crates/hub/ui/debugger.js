// The debugger: connect with a token, subscribe, publish, watch events and subscriptions arrive.

import {
  $,
  STATE_LABELS,
  Stream,
  clearTokenCookie,
  decodeToken,
  defaultHubUrl,
  describeExpiry,
  describeFailure,
  el,
  formatTime,
  loadConfig,
  mercureClaim,
  mintToken,
  prettyData,
  publishUpdate,
  setTokenCookie,
  splitList,
  subscribeUrl,
} from './common.js';

const MAX_EVENTS = 500;
const SUBSCRIPTIONS_SELECTOR = '/.well-known/mercure/subscriptions{/topic}{/subscriber}';
const QUIET_SUBSCRIPTIONS_MS = 4000;

let config;
let stream = null;
let watcher = null;
let watching = false;
/** Bumped when watching stops, so that a watch still starting gives up. */
let watchGeneration = 0;
let quietTimer = null;
let eventCount = 0;
/** What this page published: id -> {topics, isPrivate}, to show the topics of events. */
const published = new Map();
/** Event types to listen for besides `message`: typed by the user or published from here. */
const extraTypes = new Set();
/** Active subscriptions by their id. */
const subscriptions = new Map();

const token = () => $('token').value.trim();
const tokenMode = () => document.querySelector('input[name="token-mode"]:checked').value;
const hubUrl = () => $('hub-url').value.trim();
const hubPath = () => {
  try {
    return new URL(hubUrl(), location.href).pathname;
  } catch {
    return config.hub_path;
  }
};

// --- the token ----------------------------------------------------------------------------------

function renderToken() {
  const box = $('token-summary');
  box.replaceChildren();
  const value = token();
  if (!value) {
    box.append(
      el('p', {
        class: 'hint',
        text: config.anonymous
          ? 'No token: you subscribe anonymously (public updates only) and cannot publish.'
          : 'No token: this hub does not accept anonymous subscribers, and publishing needs one.',
      }),
    );
    return;
  }
  const decoded = decodeToken(value);
  if (decoded.error) {
    box.append(el('p', { class: 'result result-error', text: `This is ${decoded.error}.` }));
    return;
  }
  const { header, claims } = decoded;
  const expiry = describeExpiry(claims);
  const mercure = mercureClaim(claims);
  const list = (selectors) =>
    Array.isArray(selectors) && selectors.length ? selectors.join(', ') : 'nothing';
  const fact = (label, text, className = 'mono') =>
    el('div', {}, el('dt', { text: label }), el('dd', { class: className, text }));
  const facts = el(
    'dl',
    { class: 'facts' },
    fact('Expiry', expiry.text, `expiry expiry-${expiry.state}`),
    fact('Algorithm', String(header.alg ?? '?')),
    fact('May publish to', list(mercure.publish)),
    fact('Private updates of', list(mercure.subscribe)),
  );
  if (mercure.payload !== undefined) facts.append(fact('Payload', JSON.stringify(mercure.payload)));
  box.append(
    facts,
    el(
      'details',
      { class: 'claims' },
      el('summary', { text: 'All claims (decoded here, not verified: only the hub can verify)' }),
      el('pre', { class: 'code', text: JSON.stringify(claims, null, 2) }),
    ),
  );
}

function applyCookie() {
  const name = config.cookie_name;
  if (tokenMode() === 'cookie' && token()) setTokenCookie(name, token(), hubPath());
  else clearTokenCookie(name, hubPath());
}

async function mint(event) {
  event?.preventDefault();
  const result = $('mint-result');
  result.className = 'result';
  result.textContent = 'Minting…';
  let payload;
  const payloadText = $('mint-payload').value.trim();
  if (payloadText) {
    try {
      payload = JSON.parse(payloadText);
    } catch (e) {
      result.className = 'result result-error';
      result.textContent = `The payload is not JSON: ${e.message}`;
      return;
    }
  }
  try {
    const minted = await mintToken({
      publish: splitList($('mint-publish').value),
      subscribe: splitList($('mint-subscribe').value),
      payload,
      ttl_seconds: Number($('mint-ttl').value),
      ...(config.access_tokens && $('mint-format').value === 'at+jwt'
        ? { format: 'at+jwt', match_type: $('mint-match-type').value }
        : {}),
    });
    $('token').value = minted.token;
    renderToken();
    applyCookie();
    result.className = 'result result-ok';
    result.textContent = 'Minted and put in the token field. Connect again for the subscription to use it.';
  } catch (e) {
    result.className = 'result result-error';
    result.textContent = `Could not mint: ${e.message}`;
  }
}

// --- subscribing --------------------------------------------------------------------------------

function addTopicRow(value = '') {
  const list = $('topics');
  const input = el('input', {
    class: 'mono',
    value,
    spellcheck: 'false',
    autocomplete: 'off',
    placeholder: 'https://example.com/books/{id}',
  });
  const remove = el('button', { type: 'button', class: 'button button-ghost button-small button-icon', text: '✕' });
  const row = el('li', { class: 'topic-row' }, input, remove);
  remove.addEventListener('click', () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    if (!list.children.length) addTopicRow();
    renumberTopics();
    next?.querySelector('input')?.focus();
  });
  list.append(row);
  renumberTopics();
  return input;
}

function renumberTopics() {
  [...$('topics').children].forEach((row, i) => {
    row.querySelector('input').setAttribute('aria-label', `Topic selector ${i + 1}`);
    row.querySelector('button').setAttribute('aria-label', `Remove topic selector ${i + 1}`);
  });
}

const topicSelectors = () =>
  [...$('topics').querySelectorAll('input')].map((input) => input.value.trim()).filter(Boolean);

function redact(url) {
  const shown = new URL(url);
  if (shown.searchParams.has('authorization')) shown.searchParams.set('authorization', '…');
  return decodeURIComponent(`${shown.pathname}${shown.search}`);
}

function connect(event) {
  event?.preventDefault();
  const topics = topicSelectors();
  if (!topics.length) {
    showReason('Add at least one topic selector (or * for every topic).');
    return;
  }
  disconnect();
  applyCookie();
  for (const type of splitList($('event-types').value)) extraTypes.add(type);
  const url = subscribeUrl(hubUrl(), topics, {
    token: tokenMode() === 'query' ? token() : undefined,
    lastEventId: $('last-event-id').value.trim(),
  });
  $('request-line').textContent = `GET ${redact(url)}${tokenMode() === 'cookie' && token() ? '  (token in the cookie)' : ''}`;
  stream = new Stream(url, { types: [...extraTypes], onEvent: addEvent, onChange: renderState });
  renderState(stream);
}

function disconnect() {
  if (!stream) return;
  const old = stream;
  stream = null;
  old.close();
  renderState(null);
}

function showReason(text) {
  const reason = $('state-reason');
  reason.hidden = !text;
  reason.textContent = text;
}

function renderState(current) {
  if (current && current !== stream) return;
  const state = current ? current.state : 'idle';
  const pill = $('state');
  pill.className = `pill pill-${state}`;
  pill.textContent = STATE_LABELS[state];
  $('reconnections').textContent = String(current ? current.reconnections : 0);
  $('disconnect').disabled = !current || state === 'closed' || state === 'failed';
  $('connect').textContent = current && state !== 'failed' ? 'Reconnect' : 'Connect';
  showReason(current && state === 'failed' ? `The hub refused the subscription: ${current.reason}` : '');
}

function addEvent({ id, type, data, time }) {
  $('events-empty').hidden = true;
  eventCount += 1;
  $('event-count').textContent = String(eventCount);
  const pretty = prettyData(data);
  const item = el(
    'li',
    { class: 'event', 'data-id': id },
    el(
      'div',
      { class: 'event-meta' },
      el('time', { datetime: time.toISOString(), text: formatTime(time) }),
      el('span', { class: `badge ${type === 'message' ? '' : 'badge-accent'}`, text: type }),
      el('code', { class: 'event-id', title: 'id', text: id || '(no id)' }),
    ),
    el('div', { class: 'event-topics' }),
    el('pre', { class: `event-data${pretty.json ? ' event-json' : ''}`, text: pretty.text || '(empty)' }),
  );
  fillTopics(item);
  const list = $('events');
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

/** Shows the topics of an event when this page published it. */
function fillTopics(item) {
  const known = published.get(item.dataset.id);
  if (!known) return;
  const box = item.querySelector('.event-topics');
  box.replaceChildren(...known.topics.map((topic) => el('span', { class: 'topic-chip', text: topic })));
  if (known.isPrivate) box.append(el('span', { class: 'badge badge-private', text: 'private' }));
}

function clearEvents() {
  $('events').replaceChildren();
  eventCount = 0;
  $('event-count').textContent = '0';
  $('events-empty').hidden = false;
}

// --- publishing ---------------------------------------------------------------------------------

async function publish(event) {
  event.preventDefault();
  const result = $('publish-result');
  const topics = splitList($('publish-topics').value.replace(/,/g, '\n'));
  if (!topics.length) {
    result.className = 'result result-error';
    result.textContent = 'Give at least one topic.';
    return;
  }
  const type = $('publish-type').value.trim();
  if (type) {
    extraTypes.add(type);
    stream?.listen(type);
  }
  const isPrivate = $('publish-private').checked;
  $('publish').disabled = true;
  result.className = 'result';
  result.textContent = 'Publishing…';
  const outcome = await publishUpdate(hubUrl(), token(), {
    topics,
    data: $('publish-data').value,
    isPrivate,
    id: $('publish-id').value.trim(),
    type,
    retry: $('publish-retry').value.trim(),
  });
  $('publish').disabled = false;
  if (outcome.ok) {
    published.set(outcome.id, { topics, isPrivate });
    for (const item of $('events').children) if (item.dataset.id === outcome.id) fillTopics(item);
    result.className = 'result result-ok';
    result.replaceChildren('Published, id ', el('code', { class: 'published-id', text: outcome.id }));
  } else {
    result.className = 'result result-error';
    let hint = '';
    if (outcome.status === 401 && !token()) {
      hint = config.minter ? ' Mint a token above first.' : ' Paste a publisher token above first.';
    }
    result.textContent = `Refused: ${describeFailure(outcome)}${hint}`;
  }
}

// --- active subscriptions -----------------------------------------------------------------------

/** Sets the status line; `parts` are strings, or `['code', text]` for code. */
function subscriptionStatus(parts, kind = '') {
  const status = $('subscriptions-status');
  status.className = `result${kind ? ` result-${kind}` : ''}`;
  const list = typeof parts === 'string' ? [parts] : parts;
  status.replaceChildren(...list.map((part) => (Array.isArray(part) ? el('code', { text: part[1] }) : part)));
}

const WITHOUT_SUBSCRIPTIONS = ['The hub runs without ', ['code', '--subscriptions'], ': '];

function renderSubscriptions() {
  const rows = [...subscriptions.values()].map((s) =>
    el(
      'tr',
      {},
      el('td', { class: 'mono', text: s.topic ?? '' }),
      el('td', { class: 'mono', text: s.subscriber ?? '' }),
      el('td', { class: 'mono', text: s.payload === undefined ? '' : JSON.stringify(s.payload) }),
    ),
  );
  $('subscriptions').replaceChildren(...rows);
  $('subscriptions-wrap').hidden = rows.length === 0;
  const payloads = [...subscriptions.values()].some((s) => s.payload !== undefined);
  $('subscriptions-wrap').classList.toggle('no-payload', !payloads);
}

function recordSubscription(subscription) {
  if (!subscription || typeof subscription !== 'object') return;
  const key = subscription.id ?? `${subscription.topic} ${subscription.subscriber}`;
  if (subscription.active === false) subscriptions.delete(key);
  else subscriptions.set(key, subscription);
}

async function watchSubscriptions() {
  const button = $('watch-subscriptions');
  if (watching) {
    stopWatching();
    return;
  }
  watching = true;
  const generation = ++watchGeneration;
  button.textContent = 'Stop';
  button.setAttribute('aria-pressed', 'true');
  subscriptions.clear();
  renderSubscriptions();
  applyCookie();
  subscriptionStatus('Loading the current subscriptions…');
  let lastEventId;
  let apiMissing = false;
  let apiNote = '';
  try {
    const headers = token() ? { authorization: `Bearer ${token()}` } : {};
    const response = await fetch(`${hubUrl()}/subscriptions`, { headers, credentials: 'omit', cache: 'no-store' });
    if (response.ok) {
      const body = await response.json();
      for (const s of body.subscriptions ?? []) recordSubscription(s);
      lastEventId = body.lastEventID;
      renderSubscriptions();
    } else if (response.status === 404) {
      apiMissing = true;
    } else {
      apiNote = `The subscriptions API refused: ${response.status} ${(await response.text()).trim()}. `;
    }
  } catch (e) {
    apiNote = `The subscriptions API could not be read (${e.message}). `;
  }
  if (generation !== watchGeneration) return;
  const url = subscribeUrl(hubUrl(), [SUBSCRIPTIONS_SELECTOR], {
    token: tokenMode() === 'query' ? token() : undefined,
    lastEventId,
  });
  let seen = 0;
  watcher = new Stream(url, {
    onEvent: ({ data }) => {
      seen += 1;
      try {
        recordSubscription(JSON.parse(data));
      } catch {
        return;
      }
      renderSubscriptions();
      subscriptionStatus(`Live: ${subscriptions.size} active, ${seen} event${seen === 1 ? '' : 's'} received.`, 'ok');
    },
    onChange: (s) => {
      if (s !== watcher) return;
      if (s.state === 'failed') subscriptionStatus(`${apiNote}The hub refused the watch: ${s.reason}`, 'error');
      else if (s.state === 'open' && !seen) subscriptionStatus(`${apiNote}Watching for subscription events…`);
      else if (s.state === 'reconnecting') subscriptionStatus('Reconnecting…');
    },
  });
  clearTimeout(quietTimer);
  quietTimer = setTimeout(() => {
    if (!watcher || seen || watcher.state !== 'open') return;
    if (apiMissing) {
      subscriptionStatus(
        [...WITHOUT_SUBSCRIPTIONS, 'its subscriptions API answers 404 and no subscription event arrives.'],
        'warn',
      );
    } else if (!subscriptions.size) {
      subscriptionStatus(
        [
          apiNote,
          'No subscription event has arrived yet. Either the hub runs without ',
          ['code', '--subscriptions'],
          ', or the token does not allow receiving them (they are private updates).',
        ],
        'warn',
      );
    }
  }, QUIET_SUBSCRIPTIONS_MS);
}

function stopWatching() {
  watching = false;
  watchGeneration += 1;
  clearTimeout(quietTimer);
  watcher?.close();
  watcher = null;
  const button = $('watch-subscriptions');
  button.textContent = 'Watch';
  button.setAttribute('aria-pressed', 'false');
  subscriptionStatus('');
}

// --- start --------------------------------------------------------------------------------------

async function start() {
  config = await loadConfig();
  $('hub-url').value = defaultHubUrl();
  $('cookie-name').textContent = config.cookie_name;
  $('version').textContent = config.version ? `v${config.version}` : '';
  $('dev-badge').hidden = !config.dev_mode;
  addTopicRow('https://example.com/books/{id}');

  $('hub-url').addEventListener('input', () => {
    let sameOrigin = false;
    try {
      sameOrigin = new URL(hubUrl(), location.href).origin === location.origin;
    } catch {
      // An unfinished URL: say nothing yet.
      sameOrigin = true;
    }
    $('hub-url-note').hidden = sameOrigin;
  });
  $('token').addEventListener('input', renderToken);
  $('token').addEventListener('change', applyCookie);
  for (const radio of document.querySelectorAll('input[name="token-mode"]')) {
    radio.addEventListener('change', applyCookie);
  }
  $('add-topic').addEventListener('click', () => addTopicRow().focus());
  $('subscribe-form').addEventListener('submit', connect);
  $('disconnect').addEventListener('click', disconnect);
  $('publish-form').addEventListener('submit', publish);
  $('clear-events').addEventListener('click', clearEvents);
  $('watch-subscriptions').addEventListener('click', watchSubscriptions);
  if (!config.subscriptions) {
    $('watch-subscriptions').hidden = true;
    subscriptionStatus(
      [...WITHOUT_SUBSCRIPTIONS, 'start it with that flag to see here, live, who is subscribed to what.'],
      'warn',
    );
  }
  setInterval(renderToken, 30_000);

  if (config.minter) {
    $('minter').hidden = false;
    $('mint-v1').hidden = !config.access_tokens;
    $('mint-open').hidden = false;
    $('mint-open').addEventListener('click', () => {
      $('minter').open = true;
      $('mint-publish').focus();
    });
    $('mint-form').addEventListener('submit', mint);
    // A newcomer on a dev hub can publish and receive private updates at once.
    if (!token()) {
      await mint();
      $('mint-result').textContent =
        'A development token (publish and receive everything, 1 hour) was minted for you.';
    }
  }
  renderToken();
  document.body.dataset.ready = 'true';
}

start();

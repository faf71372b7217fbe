// The playground: two simulated users with their own subscriptions and tokens, one publish box,
// and each user's messages side by side, so that topic routing and private updates show.

import {
  $,
  STATE_LABELS,
  Stream,
  clearTokenCookie,
  decodeToken,
  defaultHubUrl,
  describeFailure,
  el,
  formatTime,
  loadConfig,
  mercureClaim,
  mintToken,
  publishUpdate,
  readCookie,
  splitList,
  subscribeUrl,
} from './common.js';

/** How long after a publish a user that did not receive it is shown as having missed it. */
const MISSED_AFTER_MS = 1500;
const TOKEN_TTL_SECONDS = 24 * 3600;

let config;
let publisherToken = '';
/** Updates sent from here: id -> {topic, message, isPrivate}. */
const sent = new Map();

const users = ['a', 'b'].map((key) => ({
  key,
  name: `User ${key.toUpperCase()}`,
  stream: null,
  received: new Set(),
}));

const topicsOf = (user) => splitList($(`${user.key}-topics`).value);
const tokenOf = (user) => $(`${user.key}-token`).value.trim();

// --- the users ----------------------------------------------------------------------------------

function connectUser(user) {
  user.stream?.close();
  const topics = topicsOf(user);
  if (!topics.length) {
    user.stream = null;
    renderState(user, null);
    showReason(user, 'Subscribe to at least one topic.');
    return;
  }
  const url = subscribeUrl(defaultHubUrl(), topics, { token: tokenOf(user) || undefined });
  const stream = new Stream(url, {
    onEvent: (event) => receive(user, event),
    onChange: (s) => renderState(user, s),
  });
  user.stream = stream;
  renderState(user, stream);
  renderRights(user);
}

function renderState(user, stream) {
  if (stream && stream !== user.stream) return;
  const state = stream ? stream.state : 'idle';
  const pill = $(`${user.key}-state`);
  pill.className = `pill pill-${state}`;
  pill.textContent = STATE_LABELS[state];
  showReason(user, stream && state === 'failed' ? `The hub refused ${user.name}: ${stream.reason}` : '');
}

function showReason(user, text) {
  const reason = $(`${user.key}-reason`);
  reason.hidden = !text;
  reason.textContent = text;
}

function renderRights(user) {
  const box = $(`${user.key}-rights`);
  const value = tokenOf(user);
  if (!value) {
    box.className = 'rights';
    box.replaceChildren(
      el('span', { class: 'badge', text: 'anonymous' }),
      config.anonymous
        ? ' No token: receives public updates only.'
        : ' No token, and this hub refuses anonymous subscribers: give this user a token.',
    );
    return;
  }
  const decoded = decodeToken(value);
  if (decoded.error) {
    box.className = 'rights rights-error';
    box.replaceChildren(`The token is ${decoded.error}.`);
    return;
  }
  const allowed = mercureClaim(decoded.claims).subscribe;
  box.className = 'rights';
  if (Array.isArray(allowed) && allowed.length) {
    box.replaceChildren(
      el('span', { class: 'badge badge-private', text: 'token' }),
      ' May also receive private updates of ',
      ...allowed.flatMap((topic, i) => [i ? ', ' : '', el('code', { text: topic })]),
      '.',
    );
  } else {
    box.replaceChildren(el('span', { class: 'badge', text: 'token' }), ' Allows no private update.');
  }
}

function receive(user, { id, data, time }) {
  user.received.add(id);
  const known = sent.get(id);
  // A "missed" note written before the update arrived is wrong: remove it.
  for (const item of $(`${user.key}-messages`).querySelectorAll('.message-missed')) {
    if (item.dataset.id === id) item.remove();
  }
  addMessage(user, {
    id,
    text: data,
    time,
    topic: known?.topic,
    isPrivate: known?.isPrivate,
  });
}

function addMessage(user, { id, text, time, topic, isPrivate, missed }) {
  $(`${user.key}-empty`).hidden = true;
  const item = el(
    'li',
    { class: `message${missed ? ' message-missed' : ''}`, 'data-id': id },
    el(
      'div',
      { class: 'message-meta' },
      topic ? el('span', { class: 'topic-chip', text: topic }) : null,
      isPrivate ? el('span', { class: 'badge badge-private', text: 'private' }) : null,
      el('time', { datetime: time.toISOString(), text: formatTime(time) }),
    ),
    missed ? el('p', { class: 'missed-reason', text: `Not delivered: ${missed}` }) : null,
    el('p', { class: 'message-text', text }),
  );
  $(`${user.key}-messages`).prepend(item);
}

/** Why `user` did not get an update, as far as this page can tell. */
function whyMissed(user, { topic, isPrivate }) {
  const selectors = topicsOf(user);
  const subscribed = selectors.includes(topic) || selectors.includes('*');
  const templated = selectors.some((s) => s.includes('{'));
  if (!user.stream || user.stream.state !== 'open') return 'this user is not connected';
  if (!subscribed && !templated) return `not subscribed to ${topic}`;
  if (isPrivate) {
    const token = tokenOf(user);
    if (!token) return 'the update is private and this user has no token';
    return `the update is private and this user's token does not allow ${topic}`;
  }
  return `no topic selector of this user matches ${topic}`;
}

// --- publishing ---------------------------------------------------------------------------------

async function send(event) {
  event?.preventDefault();
  const result = $('send-result');
  const topic = $('send-topic').value.trim();
  const message = $('send-message').value;
  const isPrivate = $('send-private').checked;
  if (!topic) {
    result.className = 'result result-error';
    result.textContent = 'Give a topic.';
    return;
  }
  const token = publisherToken || $('publisher-token').value.trim();
  $('send').disabled = true;
  const outcome = await publishUpdate(defaultHubUrl(), token, { topics: [topic], data: message, isPrivate });
  $('send').disabled = false;
  if (!outcome.ok) {
    result.className = 'result result-error';
    result.textContent = `Refused: ${describeFailure(outcome)}`;
    return;
  }
  const update = { topic, message, isPrivate };
  sent.set(outcome.id, update);
  result.className = 'result result-ok';
  result.replaceChildren(
    `Sent ${isPrivate ? 'a private' : 'a public'} message on `,
    el('code', { text: topic }),
    ', id ',
    el('code', { class: 'published-id', text: outcome.id }),
  );
  // The update may have arrived before the hub answered the publish: show its topic.
  for (const user of users) {
    for (const item of $(`${user.key}-messages`).children) {
      if (item.dataset.id === outcome.id && !item.querySelector('.topic-chip')) {
        item.querySelector('.message-meta').prepend(
          el('span', { class: 'topic-chip', text: topic }),
          isPrivate ? el('span', { class: 'badge badge-private', text: 'private' }) : '',
        );
      }
    }
  }
  const time = new Date();
  setTimeout(() => {
    for (const user of users) {
      if (user.received.has(outcome.id)) continue;
      addMessage(user, { id: outcome.id, text: message, time, topic, isPrivate, missed: whyMissed(user, update) });
    }
  }, MISSED_AFTER_MS);
}

function preset(button) {
  $('send-topic').value = button.dataset.topic;
  $('send-message').value = button.dataset.message;
  $('send-private').checked = button.dataset.private === 'true';
  send();
}

// --- start --------------------------------------------------------------------------------------

async function start() {
  config = await loadConfig();
  $('version').textContent = config.version ? `v${config.version}` : '';
  $('dev-badge').hidden = !config.dev_mode;
  $('cookie-name').textContent = config.cookie_name;

  const note = $('setup-note');
  if (config.minter) {
    try {
      const [publisher, robot] = await Promise.all([
        mintToken({ publish: ['*'], ttl_seconds: TOKEN_TTL_SECONDS }),
        mintToken({ subscribe: ['robot'], ttl_seconds: TOKEN_TTL_SECONDS }),
      ]);
      publisherToken = publisher.token;
      $('b-token').value = robot.token;
      note.textContent =
        'This development hub minted the tokens: one to publish, and one for user B that allows ' +
        'private updates of robot. User A is anonymous.';
    } catch (e) {
      note.textContent = `The hub could not mint tokens (${e.message}): paste them below.`;
    }
  } else {
    note.textContent =
      'This hub does not mint tokens (only herald serve --dev does): paste a publisher token below, ' +
      'and give user B a token allowing private updates of robot to see private routing.';
  }
  $('publisher-token-field').hidden = Boolean(publisherToken);

  // The debugger's cookie would authenticate a user without a token (the query parameter wins
  // over the cookie, its absence does not): an anonymous user must really be anonymous here.
  if (readCookie(config.cookie_name) !== null) {
    clearTokenCookie(config.cookie_name, config.hub_path);
    $('cookie-note').hidden = false;
  }

  for (const user of users) {
    $(`${user.key}-form`).addEventListener('submit', (e) => {
      e.preventDefault();
      connectUser(user);
    });
    $(`${user.key}-token`).addEventListener('change', () => connectUser(user));
    $(`${user.key}-token`).addEventListener('input', () => renderRights(user));
    renderRights(user);
    connectUser(user);
  }
  $('send-form').addEventListener('submit', send);
  for (const button of document.querySelectorAll('.presets button')) {
    button.addEventListener('click', () => preset(button));
  }
  document.body.dataset.ready = 'true';
}

start();

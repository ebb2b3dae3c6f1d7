// The operator's console (SPEC §15), in browser mode like the account page:
// the access token lives only in this script's memory, the refresh token in
// an HttpOnly cookie no script can read. The console signs in asking for the
// scope latchkey:admin, which only an admin's strong enough sign-in gets, and
// then works through the admin API. Every text from the server is shown with
// textContent; the charts are SVG drawn with DOM calls, nothing parsed.
'use strict';

(() => {
  const BROWSER = { 'X-Latchkey-Browser': '1' };
  const LOCK = 'latchkey-refresh';
  const ADMIN_SCOPE = 'latchkey:admin';
  const SVG = 'http://www.w3.org/2000/svg';

  /** The access token, its scope, and when (on this clock) to stop using it. */
  let access = null;
  let refreshing = null;
  let mfaToken = null;
  /** Where the next page of users or audit events starts. */
  let userCursor = null;
  let auditCursor = null;
  /** The user on the user page. */
  let shown = null;

  const $ = (id) => document.getElementById(id);

  class SignedOut extends Error {}

  function keep(body) {
    access = {
      token: body.access_token,
      scope: typeof body.scope === 'string' ? body.scope.split(' ') : [],
      until: Date.now() + Math.max(0, body.expires_in - 5) * 1000,
    };
  }

  const isAdmin = () => Boolean(access && access.scope.includes(ADMIN_SCOPE));

  // One refresh at a time across every tab of this browser (the account
  // page takes the same lock): each sends the cookie the one before it set.
  function refresh(stale) {
    if (!refreshing) {
      const run = async () => {
        if (access && access.token !== stale && access.until > Date.now()) return access.token;
        const response = await fetch('/auth/refresh', { method: 'POST', headers: BROWSER, credentials: 'same-origin' });
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          access = null;
          return null;
        }
        if (!response.ok) throw new Error(await describe(response));
        keep(await response.json());
        return access.token;
      };
      const queued = navigator.locks ? navigator.locks.request(LOCK, run) : run();
      refreshing = queued.finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  function call(method, path, token, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin',
    });
  }

  async function api(method, path, body) {
    let token = access && access.until > Date.now() ? access.token : await refresh(access?.token);
    if (!token) throw new SignedOut();
    let response = await call(method, path, token, body);
    if (response.status === 401) {
      token = await refresh(token);
      if (!token) throw new SignedOut();
      response = await call(method, path, token, body);
    }
    if (response.status === 401) throw new SignedOut();
    if (!response.ok) throw new Error(await describe(response));
    return response;
  }

  async function json(path) {
    return (await api('GET', path)).json();
  }

  async function describe(response) {
    if (response.status === 429) return 'Too many attempts. Wait a while, then try again.';
    try {
      const body = await response.json();
      if (typeof body.error_description === 'string') return body.error_description;
      if (typeof body.error === 'string') return body.error;
    } catch {
      // Not JSON.
    }
    return `The server answered ${response.status}.`;
  }

  const say = (text) => { $('status').textContent = text; };

  function when(seconds) {
    if (!seconds) return '';
    return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text ?? '';
    if (className) td.className = className;
    return td;
  }

  function row(...cells) {
    const tr = document.createElement('tr');
    tr.append(...cells.map((c) => (c instanceof Node ? c : cell(c))));
    return tr;
  }

  function element(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (className) e.className = className;
    return e;
  }

  // Runs an action: its button is disabled meanwhile; a failure is said.
  // Without a button (a view being shown) what the line says stays, so that
  // the outcome of the action that led there is still read.
  async function act(button, action, errorLine = 'status') {
    if (button) {
      button.disabled = true;
      $(errorLine).textContent = '';
    }
    try {
      await action();
    } catch (error) {
      if (error instanceof SignedOut) showSignedOut('Your session has ended. Log in again.');
      else $(errorLine).textContent = `Something went wrong: ${error.message}`;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- Signing in and out ----

  function showSignedOut(message) {
    access = null;
    mfaToken = null;
    for (const view of document.querySelectorAll('.view')) view.hidden = true;
    $('tabs').hidden = true;
    $('who').hidden = true;
    $('signed-out').hidden = false;
    $('login-form').hidden = false;
    $('second-step').hidden = true;
    $('not-allowed').hidden = true;
    $('passkey-sign-in').hidden = !window.latchkeyWebAuthn?.supported();
    say(message);
  }

  // A sign-in without the console's scope: not an admin, or not strongly
  // enough. Which of the two is not said; the way on is.
  function showNotAllowed() {
    for (const view of document.querySelectorAll('.view')) view.hidden = true;
    $('tabs').hidden = true;
    $('who').hidden = true;
    $('signed-out').hidden = false;
    $('login-form').hidden = true;
    $('second-step').hidden = true;
    $('passkey-sign-in').hidden = true;
    $('not-allowed').hidden = false;
    say('');
  }

  async function signedIn() {
    if (!isAdmin()) {
      showNotAllowed();
      return;
    }
    const me = await json('/api/me');
    $('whoami').textContent = `Signed in as ${me.username ?? me.sub}`;
    $('signed-out').hidden = true;
    $('tabs').hidden = false;
    $('who').hidden = false;
    say('');
    await route();
  }

  async function logIn(event) {
    event.preventDefault();
    const username = $('username').value;
    const password = $('password').value;
    const error = $('login-error');
    if (!username || !password) {
      error.textContent = 'Enter your username and password.';
      return;
    }
    const button = event.submitter ?? $('login-form').querySelector('button');
    button.disabled = true;
    error.textContent = '';
    try {
      const response = await fetch('/auth/login', {
        method: 'POST',
        headers: BROWSER,
        body: new URLSearchParams({ username, password, scope: ADMIN_SCOPE }),
        credentials: 'same-origin',
      });
      if (response.status === 401) {
        const body = await response.clone().json().catch(() => ({}));
        if (body.error === 'mfa_required') {
          $('password').value = '';
          askSecondStep(body.mfa_token);
          return;
        }
      }
      if (!response.ok) {
        error.textContent = await describe(response);
        return;
      }
      $('password').value = '';
      keep(await response.json());
      await signedIn();
    } catch (e) {
      error.textContent = `Something went wrong: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function askSecondStep(token, recovery = false) {
    mfaToken = token;
    $('login-form').hidden = true;
    $('passkey-sign-in').hidden = true;
    $('second-step').hidden = false;
    $('otp-field').hidden = recovery;
    $('recovery-field').hidden = !recovery;
    $('use-recovery').textContent = recovery ? 'Use a one-time code' : 'Use a recovery code';
    $('second-step-error').textContent = '';
    (recovery ? $('recovery-code') : $('otp')).focus();
  }

  async function verify(event) {
    event.preventDefault();
    const recovery = $('otp-field').hidden;
    const input = recovery ? $('recovery-code') : $('otp');
    const error = $('second-step-error');
    if (!input.value.trim()) {
      error.textContent = 'Enter the code.';
      return;
    }
    const buttons = $('second-step').querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch('/auth/login/mfa', {
        method: 'POST',
        headers: BROWSER,
        body: new URLSearchParams({ mfa_token: mfaToken, [recovery ? 'recovery_code' : 'otp']: input.value.trim() }),
        credentials: 'same-origin',
      });
      if (!response.ok) {
        const message = await describe(response);
        if (message === 'the code is wrong') {
          error.textContent = 'That code is not right. Try again.';
        } else if (response.status === 429) {
          error.textContent = message;
        } else {
          showSignedOut('');
          $('login-error').textContent = 'The sign-in expired or failed too often. Log in again.';
        }
        return;
      }
      input.value = '';
      mfaToken = null;
      keep(await response.json());
      await signedIn();
    } catch (e) {
      error.textContent = `Something went wrong: ${e.message}`;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function passkeyLogIn(event) {
    const button = event.currentTarget;
    const error = $('passkey-login-error');
    button.disabled = true;
    error.textContent = '';
    try {
      const options = await fetch('/auth/passkey/options', { method: 'POST', headers: BROWSER, credentials: 'same-origin' });
      if (!options.ok) throw new Error(await describe(options));
      const credential = await window.latchkeyWebAuthn.get(await options.json());
      const response = await fetch('/auth/passkey/login', {
        method: 'POST',
        headers: { ...BROWSER, 'Content-Type': 'application/json' },
        body: JSON.stringify({ credential, scope: ADMIN_SCOPE }),
        credentials: 'same-origin',
      });
      if (!response.ok) {
        error.textContent = response.status === 429 ? await describe(response) : 'That passkey was not accepted.';
        return;
      }
      keep(await response.json());
      await signedIn();
    } catch (e) {
      error.textContent = e.name === 'NotAllowedError' ? 'No passkey was used.' : `Something went wrong: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async function logOut() {
    const run = () => fetch('/auth/logout', { method: 'POST', headers: BROWSER, credentials: 'same-origin' });
    const response = await (navigator.locks ? navigator.locks.request(LOCK, run) : run());
    if (!response.ok) throw new Error(await describe(response));
    showSignedOut('You have logged out.');
  }

  // ---- Views ----

  const VIEWS = ['overview', 'users', 'user', 'audit', 'webhooks'];

  async function route() {
    if (!isAdmin()) return;
    const hash = location.hash.slice(1);
    const [name, arg] = hash.startsWith('user/') ? ['user', decodeURIComponent(hash.slice(5))] : [hash, null];
    const view = VIEWS.includes(name) ? name : 'overview';
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
    const tab = view === 'user' ? 'users' : view;
    for (const link of $('tabs').querySelectorAll('a')) {
      if (link.id === `tab-${tab}`) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    await act(null, async () => {
      if (view === 'overview') await loadOverview();
      else if (view === 'users') await searchUsers(false);
      else if (view === 'user') await loadUser(arg);
      else if (view === 'audit') await loadAudit(false);
      else if (view === 'webhooks') await loadWebhooks();
    });
    $(`view-${view}`).querySelector('h1')?.setAttribute('tabindex', '-1');
  }

  // Overview: small bar charts, one per series.
  const NAMES = {
    logins_succeeded: 'Logins succeeded',
    logins_failed: 'Logins failed',
    refreshes: 'Refreshes',
    reuse_detected: 'Reuse detections',
    throttled: 'Throttled attempts',
    sessions_started: 'Sessions started',
  };
  const ALARMS = new Set(['logins_failed', 'reuse_detected', 'throttled']);

  function seriesName(key) {
    if (key.startsWith('ended:')) return `Sessions ended: ${key.slice(6).replaceAll('_', ' ')}`;
    return NAMES[key] ?? key;
  }

  function drawChart(key, counts, start, step) {
    const total = counts.reduce((a, b) => a + b, 0);
    const figure = element('figure', undefined, ALARMS.has(key) || key === 'ended:reuse_detected' ? 'chart alarm' : 'chart');
    const caption = element('figcaption', seriesName(key));
    caption.append(element('span', String(total)));
    const max = Math.max(1, ...counts);
    const width = counts.length * 4;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${width} 40`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    const peak = counts.indexOf(Math.max(...counts));
    svg.setAttribute('aria-label', `${seriesName(key)}: ${total} in all` +
      (total > 0 ? `, at most ${counts[peak]} at ${when(start + peak * step)}` : ''));
    const base = document.createElementNS(SVG, 'line');
    for (const [k, v] of [['x1', 0], ['y1', 39.5], ['x2', width], ['y2', 39.5]]) base.setAttribute(k, v);
    svg.append(base);
    counts.forEach((n, i) => {
      if (n === 0) return;
      const h = Math.max(1, (n / max) * 38);
      const bar = document.createElementNS(SVG, 'rect');
      for (const [k, v] of [['x', i * 4 + 0.5], ['y', 39 - h], ['width', 3], ['height', h]]) bar.setAttribute(k, v);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${when(start + i * step)}: ${n}`;
      bar.append(title);
      svg.append(bar);
    });
    figure.append(caption, svg);
    return figure;
  }

  function drawCharts(container, chart) {
    const keys = Object.keys(chart.series);
    const base = keys.filter((k) => !k.startsWith('ended:'));
    const ended = keys.filter((k) => k.startsWith('ended:')).sort();
    base.sort((a, b) => Object.keys(NAMES).indexOf(a) - Object.keys(NAMES).indexOf(b));
    container.replaceChildren(...[...base, ...ended].map((k) => drawChart(k, chart.series[k], chart.start, chart.step)));
  }

  async function loadOverview() {
    const overview = await json('/admin/overview');
    $('total-users').textContent = String(overview.users);
    $('total-sessions').textContent = String(overview.live_sessions);
    drawCharts($('hour-charts'), overview.hour);
    drawCharts($('day-charts'), overview.day);
  }

  // Users.
  function userRow(user) {
    const link = element('a', user.username);
    link.href = `#user/${encodeURIComponent(user.id)}`;
    const name = document.createElement('td');
    name.append(link);
    const status = [user.disabled ? 'Disabled' : 'Active', user.admin ? 'admin' : null].filter(Boolean).join(', ');
    return row(name, user.email ?? '', status, when(user.created_at));
  }

  async function searchUsers(more) {
    const q = $('search').value.trim();
    const params = new URLSearchParams({ limit: '25' });
    if (q) params.set('q', q);
    if (more && userCursor) params.set('cursor', userCursor);
    const page = await json(`/admin/users?${params}`);
    const rows = page.users.map(userRow);
    if (more) $('user-rows').append(...rows);
    else $('user-rows').replaceChildren(...rows);
    userCursor = page.next_cursor;
    const none = $('user-rows').children.length === 0;
    $('user-table').hidden = none;
    $('no-users').hidden = !none;
    $('more-users').hidden = !userCursor;
  }

  const WHY = {
    logout: 'logged out', logout_everywhere: 'logged out everywhere', revoked: 'revoked by the user',
    revoked_by_admin: 'revoked by an administrator', reuse_detected: 'refresh token reused',
    idle_expired: 'idle too long', absolute_expired: 'reached its longest life', password_changed: 'password changed',
    password_reset: 'password reset', user_disabled: 'user disabled', user_deleted: 'user deleted',
    session_cap: 'too many sessions', ip_changed: 'address changed', code_replayed: 'code replayed',
    not_me: '"this wasn\'t me"', backchannel: 'logged out in an application',
  };

  async function loadUser(id) {
    const user = await json(`/admin/users/${encodeURIComponent(id)}`);
    shown = user;
    $('user-heading').textContent = user.username;
    const facts = [
      ['Id', user.id], ['E-mail', user.email ? `${user.email}${user.email_verified ? ' (verified)' : ' (not verified)'}` : 'none'],
      ['Status', user.disabled ? 'Disabled' : 'Active'], ['Administrator', user.admin ? 'yes' : 'no'],
      ['Created', when(user.created_at)],
    ];
    $('user-facts').replaceChildren(...facts.flatMap(([k, v]) => [element('dt', k), element('dd', v)]));
    $('disable-user').hidden = user.disabled;
    $('enable-user').hidden = !user.disabled;
    $('send-reset').hidden = !user.email;
    const { sessions } = await json(`/admin/users/${encodeURIComponent(id)}/sessions?include=ended`);
    $('user-session-rows').replaceChildren(...sessions.map((s) => row(
      cell(s.user_agent || 'Unknown device', 'agent'),
      s.ip,
      when(s.last_used_at),
      s.end_reason ? `${when(s.ended_at)}: ${WHY[s.end_reason] ?? s.end_reason}` : 'Live',
    )));
    const { factors } = await json(`/admin/users/${encodeURIComponent(id)}/factors`);
    $('user-factor-rows').replaceChildren(...factors.map((f) => row(
      f.name, f.kind === 'passkey' ? 'Passkey' : 'Authenticator app', when(f.created_at),
    )));
  }

  function userAction(button, action, done) {
    return act(button, async () => {
      const user = shown;
      if (!user) return;
      await action(user);
      say(done(user));
      await loadUser(user.id);
    }, 'user-error');
  }

  const path = (user) => `/admin/users/${encodeURIComponent(user.id)}`;

  // Audit.
  const KINDS = ['login', 'login_failed', 'session_revoked', 'reuse_detected', 'throttled', 'user_added',
    'user_disabled', 'user_enabled', 'user_deleted', 'password_changed', 'password_reset_sent', 'admin_granted',
    'admin_withdrawn', 'totp_added', 'totp_removed', 'passkey_added', 'passkey_removed'];

  function seconds(input) {
    return input.value ? String(Math.floor(new Date(input.value).getTime() / 1000)) : null;
  }

  async function loadAudit(more) {
    const params = new URLSearchParams({ limit: '50' });
    const kind = $('audit-kind').value.trim();
    const user = $('audit-user').value.trim();
    if (kind) params.set('kind', kind);
    if (user) params.set('user_id', user);
    const since = seconds($('audit-since'));
    const until = seconds($('audit-until'));
    if (since) params.set('since', since);
    if (until) params.set('until', until);
    if (more && auditCursor) params.set('cursor', auditCursor);
    const page = await json(`/admin/audit?${params}`);
    const rows = page.events.map((e) => row(
      when(e.at), e.kind, e.user_id ?? '', e.actor_id ?? e.client_id ?? '', e.ip ?? '', cell(e.detail, 'detail'),
    ));
    if (more) $('audit-rows').append(...rows);
    else $('audit-rows').replaceChildren(...rows);
    auditCursor = page.next_cursor;
    $('more-audit').hidden = !auditCursor;
  }

  // Webhooks, each with its failed deliveries.
  async function loadWebhooks() {
    const { webhooks } = await json('/admin/webhooks');
    $('no-webhooks').hidden = webhooks.length > 0;
    const blocks = await Promise.all(webhooks.map(async (hook) => {
      const block = element('section', undefined, 'webhook');
      const heading = element('h2', hook.url);
      heading.id = `webhook-${hook.id}`;
      block.setAttribute('aria-labelledby', heading.id);
      block.append(heading, element('p', `Events: ${hook.events.join(', ')}. Added ${when(hook.created_at)}.`));
      const { deliveries } = await json(`/admin/webhooks/${encodeURIComponent(hook.id)}/deliveries?status=failed&limit=20`);
      const { deliveries: pending } = await json(`/admin/webhooks/${encodeURIComponent(hook.id)}/deliveries?status=pending&limit=20`);
      const failing = [...deliveries, ...pending.filter((d) => d.last_error)];
      if (failing.length === 0) {
        block.append(element('p', 'No failures.'));
        return block;
      }
      const table = element('table');
      table.append(element('caption', `Failures (${failing.length})`));
      const head = element('thead');
      head.append(row(...['Event', 'Status', 'Attempts', 'Last attempt', 'Error'].map((h) => {
        const th = element('th', h);
        th.scope = 'col';
        return th;
      })));
      const body = element('tbody');
      body.append(...failing.map((d) => row(
        d.type, d.status === 'failed' ? 'Given up' : 'Retrying', String(d.attempts), when(d.last_attempt_at),
        cell(d.last_error ?? '', 'detail'),
      )));
      table.append(head, body);
      block.append(table);
      return block;
    }));
    $('webhook-list').replaceChildren(...blocks);
  }

  function listen() {
    $('login-form').addEventListener('submit', logIn);
    $('second-step').addEventListener('submit', verify);
    $('use-recovery').addEventListener('click', () => askSecondStep(mfaToken, !$('otp-field').hidden));
    $('passkey-login').addEventListener('click', passkeyLogIn);
    $('logout').addEventListener('click', (e) => act(e.currentTarget, logOut));
    $('not-allowed-logout').addEventListener('click', (e) => act(e.currentTarget, logOut));
    window.addEventListener('hashchange', route);
    $('reload-overview').addEventListener('click', (e) => act(e.currentTarget, loadOverview));
    $('search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      act(e.submitter, () => searchUsers(false));
    });
    $('more-users').addEventListener('click', (e) => act(e.currentTarget, () => searchUsers(true)));
    $('audit-form').addEventListener('submit', (e) => {
      e.preventDefault();
      act(e.submitter, () => loadAudit(false));
    });
    $('more-audit').addEventListener('click', (e) => act(e.currentTarget, () => loadAudit(true)));
    $('audit-kinds').replaceChildren(...KINDS.map((k) => {
      const option = document.createElement('option');
      option.value = k;
      return option;
    }));
    $('disable-user').addEventListener('click', (e) => userAction(e.currentTarget,
      (u) => api('PATCH', path(u), { disabled: true }), (u) => `${u.username} is disabled; their sessions ended.`));
    $('enable-user').addEventListener('click', (e) => userAction(e.currentTarget,
      (u) => api('PATCH', path(u), { disabled: false }), (u) => `${u.username} is enabled.`));
    $('revoke-user-sessions').addEventListener('click', (e) => userAction(e.currentTarget,
      (u) => api('DELETE', `${path(u)}/sessions`), (u) => `Every session of ${u.username} was revoked.`));
    $('send-reset').addEventListener('click', (e) => userAction(e.currentTarget,
      (u) => api('POST', `${path(u)}/password-reset`), (u) => `A password reset link is on its way to ${u.email}.`));
    $('delete-user').addEventListener('click', () => {
      if (!shown) return;
      $('confirm-text').textContent = `${shown.username} will be deleted and every session of theirs ended. This cannot be undone.`;
      $('confirm-delete').returnValue = '';
      $('confirm-delete').showModal();
    });
    $('confirm-delete').addEventListener('close', () => {
      if ($('confirm-delete').returnValue !== 'delete' || !shown) return;
      const user = shown;
      act($('delete-user'), async () => {
        await api('DELETE', path(user));
        shown = null;
        say(`${user.username} was deleted.`);
        location.hash = '#users';
      }, 'user-error');
    });
  }

  async function start() {
    listen();
    try {
      if (await refresh(null)) await signedIn();
      else showSignedOut('');
    } catch (error) {
      showSignedOut(error instanceof SignedOut ? '' : `Something went wrong: ${error.message}`);
    }
  }

  start();
})();

// The account page (SPEC §4), in browser mode: the access token lives only in
// this script's memory; the refresh token is an HttpOnly cookie on /auth that
// no script can read. Every text the server sends is shown with textContent,
// never parsed as HTML.
'use strict';

(() => {
  const BROWSER = { 'X-Latchkey-Browser': '1' };
  const LOCK = 'latchkey-refresh';
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('latchkey') : null;

  /** The access token and when (on this clock) to stop using it. */
  let access = null;
  /** This tab's refresh in flight, shared by every call that needs it. */
  let refreshing = null;
  /** A sign-in waiting for its second step. */
  let mfaToken = null;

  const $ = (id) => document.getElementById(id);

  class SignedOut extends Error {}

  function keep(body) {
    // Renewed a few seconds early; the server's clock has the last word (401).
    access = { token: body.access_token, until: Date.now() + Math.max(0, body.expires_in - 5) * 1000 };
  }

  // One refresh at a time across every tab of this browser: the Web Lock
  // queues them, so each sends the cookie the one before it set, and none
  // looks like the reuse of a rotated token. `stale` is the token that
  // failed; when another tab has already replaced it (its new token arrives
  // on the BroadcastChannel), that one is used without a refresh. The
  // server's grace window is only the last line.
  function refresh(stale) {
    if (!refreshing) {
      const run = async () => {
        if (access && access.token !== stale && access.until > Date.now()) return access.token;
        const response = await fetch('/auth/refresh', {
          method: 'POST',
          headers: BROWSER,
          credentials: 'same-origin',
        });
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          access = null;
          return null;
        }
        if (!response.ok) throw new Error(await describe(response));
        const body = await response.json();
        keep(body);
        channel?.postMessage({ type: 'token', body });
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
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  }

  // A call to a protected endpoint: refreshes first when the token is due,
  // and once more when the server answers 401 (expired by its clock, or the
  // session revoked, in which case the refresh fails and the page signs out).
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

  async function describe(response) {
    if (response.status === 429) return 'Too many attempts. Wait a while, then try again.';
    try {
      const body = await response.json();
      if (body.error === 'reauthentication_required') {
        return 'For your safety, log out and log in again before you change how you sign in.';
      }
      if (typeof body.error_description === 'string') return body.error_description;
      if (typeof body.error === 'string') return body.error;
    } catch {
      // Not JSON: fall through.
    }
    return `The server answered ${response.status}.`;
  }

  function say(text) {
    $('status').textContent = text;
  }

  function showSignedOut(message) {
    access = null;
    mfaToken = null;
    $('signed-in').hidden = true;
    $('signed-out').hidden = false;
    $('login-form').hidden = false;
    $('second-step').hidden = true;
    $('session-rows').replaceChildren();
    $('whoami').textContent = '';
    say(message);
  }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // "Chrome on Linux" rather than the whole User-Agent, when it is plain
  // which; the whole string otherwise.
  function deviceName(agent) {
    if (!agent) return 'Unknown device';
    const browsers = [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari']];
    const systems = [['Android', 'Android'], ['iPhone', 'iOS'], ['iPad', 'iPadOS'], ['Windows', 'Windows'],
      ['Mac OS X', 'macOS'], ['CrOS', 'ChromeOS'], ['Linux', 'Linux']];
    const browser = browsers.find(([mark]) => agent.includes(mark));
    const system = systems.find(([mark]) => agent.includes(mark));
    return browser && system ? `${browser[1]} on ${system[1]}` : agent;
  }

  function sessionRow(session, index) {
    const row = document.createElement('tr');
    const device = cell(deviceName(session.user_agent), 'device');
    device.title = session.user_agent;
    device.id = `device-${index}`;
    if (session.client_id) device.append(` (through ${session.client_id})`);
    row.append(device, cell(session.ip), cell(when(session.created_at)), cell(when(session.last_used_at)));
    const action = document.createElement('td');
    if (session.current) {
      row.className = 'current';
      action.textContent = 'This device';
    } else {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = 'Revoke';
      button.setAttribute('aria-describedby', device.id);
      button.addEventListener('click', () => act(button, async () => {
        await api('DELETE', `/sessions/${encodeURIComponent(session.id)}`);
        await loadSessions();
        say('The session was revoked.');
      }));
      action.append(button);
    }
    row.append(action);
    return row;
  }

  // Why a session ended (SPEC §14), in plain words.
  const WHY = {
    logout: 'You logged out.',
    logout_everywhere: 'You logged out everywhere.',
    revoked: 'You ended it from another device.',
    revoked_by_admin: 'An administrator ended it.',
    reuse_detected: 'Its sign-in was used from two places at once, which looks like theft, so it was ended.',
    idle_expired: 'It was not used for a long time.',
    absolute_expired: 'It reached the longest a sign-in may last.',
    password_changed: 'Your password was changed.',
    password_reset: 'Your password was reset.',
    user_disabled: 'Your account was disabled.',
    user_deleted: 'Your account was deleted.',
    session_cap: 'You signed in on too many devices; the oldest sign-in was ended.',
    ip_changed: 'It was used from another network address.',
    code_replayed: 'The code that signed it in was used twice, which looks like theft.',
    not_me: 'You said this sign-in was not you.',
    backchannel: 'You logged out in an application.',
  };

  function endedRow(session) {
    const row = document.createElement('tr');
    const device = cell(deviceName(session.user_agent), 'device');
    device.title = session.user_agent;
    if (session.client_id) device.append(` (through ${session.client_id})`);
    row.append(device, cell(when(session.ended_at)), cell(WHY[session.end_reason] ?? session.end_reason));
    return row;
  }

  async function loadSessions() {
    const { sessions: all } = await (await api('GET', '/sessions?include=ended')).json();
    const sessions = all.filter((s) => !s.end_reason);
    const ended = all.filter((s) => s.end_reason).slice(0, 20);
    sessions.sort((a, b) => (b.current - a.current) || (b.last_used_at - a.last_used_at));
    $('session-rows').replaceChildren(...sessions.map(sessionRow));
    $('ended-rows').replaceChildren(...ended.map(endedRow));
    $('ended').hidden = ended.length === 0;
  }

  const KINDS = { passkey: 'Passkey', totp: 'Authenticator app' };

  function factorRow(factor, index) {
    const row = document.createElement('tr');
    const name = cell(factor.name);
    name.id = `factor-${index}`;
    row.append(name, cell(KINDS[factor.kind] ?? factor.kind), cell(when(factor.created_at)));
    const action = document.createElement('td');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Remove';
    button.setAttribute('aria-describedby', name.id);
    if (factor.kind === 'passkey') {
      button.addEventListener('click', () => factorAction(button, async () => {
        await api('DELETE', `/auth/passkeys/${encodeURIComponent(factor.id)}`);
        await loadFactors();
        say(`The passkey ${factor.name} was removed.`);
      }));
      action.append(button);
    } else {
      // Removing the app takes a code of it, or a recovery code.
      const label = document.createElement('label');
      label.htmlFor = 'totp-remove-code';
      label.className = 'visually-hidden';
      label.textContent = 'Code to remove the authenticator app';
      const input = document.createElement('input');
      input.id = 'totp-remove-code';
      input.autocomplete = 'one-time-code';
      input.maxLength = 64;
      input.className = 'small';
      button.addEventListener('click', () => factorAction(button, async () => {
        if (!input.value.trim()) throw new Error('Enter a code from the app, or a recovery code, to remove it.');
        await api('DELETE', '/auth/totp', { code: input.value.trim() });
        await loadFactors();
        say('The authenticator app was removed.');
      }));
      action.append(label, input, button);
    }
    row.append(action);
    return row;
  }

  async function loadFactors() {
    const { factors } = await (await api('GET', '/auth/factors')).json();
    $('factor-rows').replaceChildren(...factors.map(factorRow));
    $('factors').hidden = factors.length === 0;
    $('no-factors').hidden = factors.length > 0;
    $('totp-start').hidden = factors.some((f) => f.kind === 'totp');
    $('add-passkey').hidden = !window.latchkeyWebAuthn?.supported();
  }

  // A factor's action: its failure is said beside the factors.
  function factorAction(button, action) {
    $('factor-error').textContent = '';
    return act(button, async () => {
      try {
        await action();
      } catch (error) {
        if (error instanceof SignedOut) throw error;
        $('factor-error').textContent = error.name === 'NotAllowedError'
          ? 'No passkey was made. Try again when you are ready.'
          : error.message;
      }
    });
  }

  async function addPasskey(event) {
    event.preventDefault();
    const button = event.submitter ?? $('add-passkey').querySelector('button');
    await factorAction(button, async () => {
      const name = $('passkey-name').value.trim();
      if (!name) throw new Error('Give the passkey a name first.');
      const options = await (await api('POST', '/auth/passkeys/options', {})).json();
      const credential = await window.latchkeyWebAuthn.create(options);
      await api('POST', '/auth/passkeys', { name, credential });
      $('passkey-name').value = '';
      await loadFactors();
      say(`The passkey ${name} was added.`);
    });
  }

  async function setUpApp(event) {
    await factorAction(event.currentTarget, async () => {
      const setup = await (await api('POST', '/auth/totp')).json();
      $('totp-secret').textContent = setup.secret;
      $('totp-qr').src = `data:image/svg+xml;base64,${btoa(setup.qr_svg)}`;
      $('totp-setup').hidden = false;
      $('recovery-codes').hidden = true;
      $('totp-code').focus();
    });
  }

  async function confirmApp(event) {
    event.preventDefault();
    const button = event.submitter ?? $('totp-confirm').querySelector('button');
    await factorAction(button, async () => {
      const code = $('totp-code').value.trim();
      if (!code) throw new Error('Enter the code the app shows.');
      const { recovery_codes: codes } = await (await api('POST', '/auth/totp/confirm', { code })).json();
      $('totp-code').value = '';
      $('totp-setup').hidden = true;
      $('recovery-list').replaceChildren(...codes.map((c) => {
        const item = document.createElement('li');
        item.textContent = c;
        return item;
      }));
      $('recovery-codes').hidden = false;
      await loadFactors();
      say('The authenticator app is set up. Save your recovery codes.');
    });
  }

  async function loadAccount() {
    const me = await (await api('GET', '/api/me')).json();
    $('whoami').textContent = me.username ?? me.sub;
    await loadSessions();
    await loadFactors();
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
  }

  // Changes the password: the other sessions end, this one stays.
  async function changePassword(event) {
    event.preventDefault();
    const button = event.submitter ?? $('change-password').querySelector('button');
    $('password-error').textContent = '';
    await act(button, async () => {
      const current = $('current-password').value;
      const next = $('new-password').value;
      try {
        if (!current || !next) throw new Error('Enter your current password and a new one.');
        await api('POST', '/auth/password', { current_password: current, new_password: next });
      } catch (error) {
        if (error instanceof SignedOut) throw error;
        $('password-error').textContent = error.message;
        return;
      }
      $('current-password').value = '';
      $('new-password').value = '';
      say('Your password is changed. Your other devices were signed out.');
      await loadSessions();
    });
  }

  // Runs a button's action: the button is disabled meanwhile, and a failure
  // is said in the status line (or signs the page out).
  async function act(button, action) {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      if (error instanceof SignedOut) {
        showSignedOut('Your session has ended. Log in again.');
      } else {
        say(`Something went wrong: ${error.message}`);
      }
    } finally {
      button.disabled = false;
    }
  }

  // Ends this browser's session: the server revokes it and clears the cookie.
  async function endSession() {
    const run = () => fetch('/auth/logout', { method: 'POST', headers: BROWSER, credentials: 'same-origin' });
    const response = await (navigator.locks ? navigator.locks.request(LOCK, run) : run());
    if (!response.ok) throw new Error(await describe(response));
    access = null;
    channel?.postMessage({ type: 'signed-out' });
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
    const path = event.submitter?.value === 'signup' ? '/auth/signup' : '/auth/login';
    const buttons = $('login-form').querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    error.textContent = '';
    try {
      const response = await fetch(path, {
        method: 'POST',
        headers: BROWSER,
        body: new URLSearchParams({ username, password }),
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
      await signedIn(await response.json());
    } catch (e) {
      error.textContent = e instanceof SignedOut ? 'Your session has ended. Log in again.' : `Something went wrong: ${e.message}`;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function signedIn(body) {
    keep(body);
    channel?.postMessage({ type: 'token', body });
    say('');
    await loadAccount();
  }

  function askSecondStep(token, recovery = false) {
    mfaToken = token;
    $('login-form').hidden = true;
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
      $('second-step').hidden = true;
      $('login-form').hidden = false;
      await signedIn(await response.json());
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
        body: JSON.stringify({ credential }),
        credentials: 'same-origin',
      });
      if (!response.ok) {
        error.textContent = response.status === 429
          ? await describe(response)
          : 'That passkey was not accepted. Try again, or log in with your password.';
        return;
      }
      await signedIn(await response.json());
    } catch (e) {
      error.textContent = e.name === 'NotAllowedError'
        ? 'No passkey was used. Try again, or log in with your password.'
        : `Something went wrong: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function listen() {
    $('login-form').addEventListener('submit', logIn);
    $('second-step').addEventListener('submit', verify);
    $('use-recovery').addEventListener('click', () => askSecondStep(mfaToken, !$('otp-field').hidden));
    $('passkey-login').addEventListener('click', passkeyLogIn);
    $('passkey-sign-in').hidden = !window.latchkeyWebAuthn?.supported();
    $('add-passkey').addEventListener('submit', addPasskey);
    $('setup-totp').addEventListener('click', setUpApp);
    $('totp-confirm').addEventListener('submit', confirmApp);
    $('change-password').addEventListener('submit', changePassword);
    $('reload').addEventListener('click', (e) => act(e.currentTarget, loadSessions));
    $('logout').addEventListener('click', (e) => act(e.currentTarget, async () => {
      await endSession();
      showSignedOut('You have logged out.');
    }));
    $('logout-everywhere').addEventListener('click', (e) => act(e.currentTarget, async () => {
      await api('DELETE', '/sessions');
      await endSession();
      showSignedOut('You have logged out on every device.');
    }));
    channel?.addEventListener('message', ({ data }) => {
      if (data?.type === 'token') {
        const signedOut = !access;
        keep(data.body);
        if (signedOut) loadAccount().catch(() => showSignedOut(''));
      } else if (data?.type === 'signed-out') {
        showSignedOut('You have logged out in another tab.');
      }
    });
  }

  async function start() {
    listen();
    try {
      if (await refresh(null)) {
        await loadAccount();
      } else {
        showSignedOut('');
      }
    } catch (error) {
      showSignedOut(error instanceof SignedOut ? '' : `Something went wrong: ${error.message}`);
    }
  }

  start();
})();

// Passkeys in the browser (SPEC §12). `latchkeyWebAuthn.get(options)` and
// `.create(options)` take the server's JSON options and give WebAuthn's
// answer as JSON (as Level 3's toJSON() writes it), for the account page.
// On the server's sign-in pages, the passkey button asks the browser for a
// passkey of this site, puts its answer in the form, and submits the form.
// Without WebAuthn the button stays hidden. The pages' policy allows this
// origin's scripts only, and no script may write HTML.
'use strict';

(() => {
  const toBase64url = (buffer) => {
    let text = '';
    for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const fromBase64url = (text) => {
    const plain = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(plain, (c) => c.charCodeAt(0));
  };

  // The server's options, in JSON, as WebAuthn takes them.
  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromBase64url(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: fromBase64url(c.id) })),
    };
  }

  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromBase64url(json.challenge),
      user: { ...json.user, id: fromBase64url(json.user.id) },
      excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: fromBase64url(c.id) })),
    };
  }

  // The answer, in JSON, as WebAuthn Level 3's toJSON() writes it.
  function answer(credential) {
    if (typeof credential.toJSON === 'function') return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
  }

  const supported = () => Boolean(window.PublicKeyCredential && navigator.credentials);

  window.latchkeyWebAuthn = Object.freeze({
    supported,
    async get(json) {
      return answer(await navigator.credentials.get({ publicKey: requestOptions(json.publicKey) }));
    },
    async create(json) {
      return answer(await navigator.credentials.create({ publicKey: creationOptions(json.publicKey) }));
    },
  });

  function start() {
    const form = document.getElementById('passkey-form');
    if (!form || !supported()) return;
    const button = document.getElementById('passkey-button');
    const alert = document.getElementById('passkey-error');
    form.hidden = false;
    button.addEventListener('click', async () => {
      button.disabled = true;
      alert.textContent = '';
      try {
        const response = await fetch('/auth/passkey/options', { method: 'POST', credentials: 'same-origin' });
        if (!response.ok) throw new Error('Signing in with a passkey is not possible right now.');
        const credential = await window.latchkeyWebAuthn.get(await response.json());
        form.elements.passkey_credential.value = JSON.stringify(credential);
        form.submit();
      } catch (error) {
        alert.textContent = error.name === 'NotAllowedError'
          ? 'No passkey was used. Try again, or log in with your password.'
          : error.message;
        button.disabled = false;
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();

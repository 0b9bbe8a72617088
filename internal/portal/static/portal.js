// Holdfast portal: the one script every page loads. Pages are rendered
// by the server; this script sends their forms to the /v1 API as JSON
// (the same requests the CLI makes), shows the API's problems next to the
// fields they name, and keeps statuses live from the event stream.
// No inline script anywhere: the Content-Security-Policy forbids it.
'use strict';

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  // A session that has ended sends the browser to sign in, and back.
  function toLogin() {
    location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
  }

  // fill replaces {name} in a path with the value of that field.
  function fill(template, values) {
    return template.replace(/\{([a-z_]+)\}/g, (_, k) => encodeURIComponent(values[k] == null ? '' : values[k]));
  }

  // fields reads a form as the API's JSON body. data-type says how to
  // read a field (int, bool, list); data-optional leaves an empty field
  // out; data-path fields only fill the path; data-local ones (the
  // typed confirmation) never leave the page.
  function fields(form) {
    const body = {};
    const path = {};
    let confirm = null;
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const t = el.dataset.type;
      if (el.hasAttribute('data-local')) {
        if (el.name === 'confirm') confirm = el.value;
        continue;
      }
      let v;
      if (el.type === 'checkbox') {
        if (t === 'list') {
          body[el.name] = body[el.name] || [];
          if (el.checked) body[el.name].push(el.value);
          continue;
        }
        v = el.checked;
      } else {
        v = el.value;
      }
      if (t === 'int') {
        if (v === '') continue;
        v = Number(v);
      } else if (t === 'bool') {
        v = v === true || v === 'true';
      } else if (v === '' && el.hasAttribute('data-optional')) {
        continue;
      }
      if (el.hasAttribute('data-path')) path[el.name] = v;
      else body[el.name] = v;
    }
    return { body, path, confirm };
  }

  function errorBox(form) {
    const id = form.id + '-error';
    let box = document.getElementById(id);
    if (!box) {
      box = document.createElement('p');
      box.id = id;
      box.className = 'form-error';
      box.setAttribute('role', 'alert');
      form.prepend(box);
    }
    return box;
  }

  function fieldOf(form, name) {
    let el = form.elements.namedItem(name);
    if (el && !(el instanceof Element)) el = el[0]; // a list of checkboxes
    return el;
  }

  function clearErrors(form) {
    for (const el of form.querySelectorAll('.field-error, .form-error, .form-done')) el.remove();
    for (const el of form.querySelectorAll('[aria-invalid]')) {
      el.removeAttribute('aria-invalid');
      const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter((x) => !x.endsWith('-error'));
      if (ids.length) el.setAttribute('aria-describedby', ids.join(' '));
      else el.removeAttribute('aria-describedby');
    }
  }

  function fieldError(form, el, message) {
    const id = form.id + '-' + el.name + '-error';
    const p = document.createElement('p');
    p.id = id;
    p.className = 'field-error';
    p.textContent = message;
    el.after(p);
    el.setAttribute('aria-invalid', 'true');
    el.setAttribute('aria-describedby', ((el.getAttribute('aria-describedby') || '') + ' ' + id).trim());
  }

  // showProblem puts an RFC 9457 problem next to the fields it names;
  // what names no field of the form goes at its top. What was typed stays.
  function showProblem(form, p) {
    clearErrors(form);
    const general = [];
    let first = null;
    const wrap = form.dataset.wrap ? form.dataset.wrap + '.' : '';
    for (const e of p.errors || []) {
      const name = wrap && e.field.startsWith(wrap) ? e.field.slice(wrap.length) : e.field;
      const el = fieldOf(form, name) || fieldOf(form, name.split(/[.[]/)[0]);
      if (el && el.type !== 'hidden') {
        fieldError(form, el, e.message);
        first = first || el;
      } else {
        general.push(e.field + ': ' + e.message);
      }
    }
    const box = errorBox(form);
    box.textContent = [p.detail || p.title || 'The request failed.'].concat(general).join(' ');
    if (first) {
      first.focus();
    } else {
      box.tabIndex = -1;
      box.focus();
    }
  }

  function show(form, data) {
    const box = document.querySelector(form.dataset.showIn || '[data-show]');
    if (!box) return;
    for (const el of box.querySelectorAll('[data-field]')) el.textContent = data[el.dataset.field] ?? '';
    for (const el of box.querySelectorAll('[data-href]')) el.href = data[el.dataset.href] ?? '#';
    box.hidden = false;
    box.tabIndex = -1;
    box.focus();
  }

  // send makes one API request as the page's forms do.
  async function send(method, url, body, headers) {
    const init = { method, headers: Object.assign({ Accept: 'application/json', 'X-CSRF-Token': csrf }, headers), credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(url, init);
    const json = (resp.headers.get('Content-Type') || '').includes('json') ? await resp.json().catch(() => ({})) : {};
    return { resp, json };
  }

  // Passkeys: the API hands out WebAuthn options as JSON and takes the
  // browser's credential as its toJSON() form (api/passkeys.go).
  class Refused extends Error {
    constructor(problem) {
      super(problem.detail || problem.title || 'refused');
      this.problem = problem;
    }
  }
  async function passkeyCreate() {
    const { resp, json } = await send('POST', '/v1/me/passkeys/registration');
    if (!resp.ok) throw new Refused(json);
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(json.options.publicKey);
    const cred = await navigator.credentials.create({ publicKey });
    return { ceremony: json.ceremony, credential: cred.toJSON() };
  }
  async function passkeyGet(user) {
    const { resp, json } = await send('POST', '/v1/auth/passkey/challenge', user ? { user } : {});
    if (!resp.ok) throw new Refused(json);
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json.options.publicKey);
    const cred = await navigator.credentials.get({ publicKey });
    return { ceremony: json.ceremony, credential: cred.toJSON() };
  }
  function passkeyProblem(err) {
    if (err instanceof Refused) return err.problem;
    // The browser's own refusals (NotAllowedError: cancelled or timed out).
    return { detail: 'The passkey was not used: ' + err.message };
  }
  const webauthn = 'PublicKeyCredential' in window;

  async function submit(form) {
    const [method, template] = form.dataset.api.split(' ');
    const { body, path, confirm } = fields(form);
    clearErrors(form);
    if (form.dataset.confirm !== undefined && confirm !== form.dataset.confirm) {
      const el = fieldOf(form, 'confirm');
      fieldError(form, el, 'Type ' + form.dataset.confirm + ' to confirm.');
      el.focus();
      return;
    }
    const url = fill(template, Object.assign({}, body, path));
    const headers = form.dataset.ifMatch ? { 'If-Match': form.dataset.ifMatch } : {};
    const button = form.querySelector('[type="submit"]');
    if (button) button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    let resp, json;
    try {
      if (form.dataset.webauthn === 'register') Object.assign(body, await passkeyCreate());
      const payload = Object.keys(body).length === 0 ? undefined : form.dataset.wrap ? { [form.dataset.wrap]: body } : body;
      ({ resp, json } = await send(method, url, payload, headers));
      // A password was right and the account has a passkey: answer
      // with it, and the same form signs in.
      if (form.id === 'login' && resp.status === 401 && webauthn && String(json.type).endsWith('/second-factor-required') && !body.totp) {
        try {
          body.passkey = await passkeyGet(body.user);
          ({ resp, json } = await send(method, url, body, headers));
        } catch (err) {
          // No passkey answer: the problem stands, and names TOTP if
          // the account has it.
        }
      }
    } catch (err) {
      showProblem(form, err instanceof TypeError ? { detail: 'The server could not be reached: ' + err.message } : passkeyProblem(err));
      return;
    } finally {
      if (button) button.disabled = false;
      form.removeAttribute('aria-busy');
    }
    if (!resp.ok) {
      if (resp.status === 401 && form.id !== 'login') return toLogin();
      showProblem(form, json);
      return;
    }
    const then = form.dataset.then || 'reload';
    if (then === 'reload') location.reload();
    else if (then === 'next') location.assign(form.dataset.next || '/');
    else if (then.startsWith('go:')) location.assign(fill(then.slice(3), json));
    else if (then === 'show') show(form, json);
    else if (then === 'done') {
      const p = document.createElement('p');
      p.className = 'form-done';
      p.setAttribute('role', 'status');
      p.textContent = form.dataset.done || 'Done.';
      form.append(p);
      form.reset();
    }
  }

  for (const form of document.querySelectorAll('form[data-api]')) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit(form);
    });
  }

  // Signing in with a passkey alone: the authenticator offers the
  // passkeys it holds for this site (or the named user's).
  const passkeyLogin = document.getElementById('passkey-login');
  if (passkeyLogin) {
    const form = document.getElementById('login');
    passkeyLogin.hidden = !webauthn;
    passkeyLogin.addEventListener('click', async () => {
      clearErrors(form);
      passkeyLogin.disabled = true;
      try {
        const answer = await passkeyGet(form.elements.namedItem('user').value.trim());
        const { resp, json } = await send('POST', '/v1/auth/passkey/login', Object.assign(answer, { cookie: true }));
        if (!resp.ok) return showProblem(form, json);
        location.assign(form.dataset.next || '/');
      } catch (err) {
        showProblem(form, err instanceof TypeError ? { detail: 'The server could not be reached: ' + err.message } : passkeyProblem(err));
      } finally {
        passkeyLogin.disabled = false;
      }
    });
  }

  // Dialogs open and close from buttons, so that a destructive action
  // first asks for the object's name.
  for (const b of document.querySelectorAll('[data-opens]')) {
    b.addEventListener('click', () => document.getElementById(b.dataset.opens).showModal());
  }
  for (const b of document.querySelectorAll('[data-closes]')) {
    b.addEventListener('click', () => document.getElementById(b.dataset.closes).close());
  }

  // Live status: the event stream of the page's tenant updates every
  // element showing the status of the object an event is about.
  function setStatus(attr, name, status, data) {
    for (const scope of document.querySelectorAll('[' + attr + '="' + CSS.escape(name) + '"]')) {
      for (const el of scope.querySelectorAll('[data-field="status"]')) {
        el.textContent = status;
        el.dataset.status = status;
      }
      if (data && data.ip) for (const el of scope.querySelectorAll('[data-field="ip"]')) el.textContent = data.ip;
    }
  }
  const stream = document.body.dataset.events;
  if (stream && window.EventSource) {
    const es = new EventSource(stream);
    const last = (object) => object.slice(object.lastIndexOf('/') + 1);
    for (const s of ['creating', 'running', 'stopped', 'deleting', 'deleted', 'failed']) {
      es.addEventListener('instance.' + s, (ev) => {
        const e = JSON.parse(ev.data);
        setStatus('data-instance', last(e.object), s, e.data);
      });
    }
    for (const s of ['creating', 'ready', 'deleting', 'deleted', 'failed']) {
      es.addEventListener('network.' + s, (ev) => setStatus('data-network', last(JSON.parse(ev.data).object), s));
    }
    for (const s of ['running', 'succeeded', 'failed']) {
      es.addEventListener('operation.' + s, (ev) => {
        const e = JSON.parse(ev.data);
        for (const row of document.querySelectorAll('[data-operation="' + CSS.escape(last(e.object)) + '"]')) {
          row.querySelector('[data-field="status"]').textContent = s;
          if (s !== 'running') row.querySelector('progress').value = 100;
        }
      });
    }
  }
})();

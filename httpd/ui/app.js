// flint's web dashboard: the admin API with the admin token as a bearer
// (kept in sessionStorage: this tab only), live through /api/v1/stream.
'use strict';

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('flint-admin-token') || '';
let selected = '';      // MAC shown in the detail pane
let refreshing = false; // a refresh runs
let again = false;      // a change arrived meanwhile
let streamAbort = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function setStatus(text, cls) {
  const s = $('status');
  s.textContent = text;
  s.className = 'status ' + (cls || '');
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path, opts);
  if (res.status === 401) { logout('flint refused the token'); throw new Error('unauthorized'); }
  if (!res.ok) throw new Error(path + ': ' + res.status + ' ' + (await res.text()));
  return res.json();
}

function ago(iso) {
  if (!iso || iso.startsWith('0001')) return 'never';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 172800) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

function stateOf(m) {
  let state = m.state || 'discovered';
  let cls = state;
  if (m.stuck && state === 'installing') { state = 'installing (stuck)'; cls = 'stuck'; }
  if (m.rebuilding) state += ' (etcd rebuild)';
  return { state, cls };
}

function renderMachines(ms) {
  ms.sort((a, b) => (b.known - a.known) || (a.hostname || '').localeCompare(b.hostname || '') || a.mac.localeCompare(b.mac));
  const counts = {};
  const body = $('machines').tBodies[0];
  body.replaceChildren(...ms.map((m) => {
    const st = stateOf(m);
    counts[st.cls] = (counts[st.cls] || 0) + 1;
    const ip = m.ip || (m.reserved_ip ? m.reserved_ip + ' (reserved)' : '-');
    const tr = el('tr', { 'data-mac': m.mac, 'data-state': m.state || 'discovered' },
      el('td', {}, m.known ? m.hostname : '-'), el('td', {}, m.mac), el('td', {}, m.known ? m.role : '-'),
      el('td', { class: 'state' }, el('span', { class: st.cls }, st.state)),
      el('td', {}, ip), el('td', {}, m.last_event || '-'), el('td', {}, ago(m.last_seen)));
    if (m.mac === selected) tr.classList.add('selected');
    tr.addEventListener('click', () => select(m));
    return tr;
  }));
  $('counts').textContent = ms.length + ' machines: ' + Object.entries(counts).map(([k, v]) => v + ' ' + k).join(', ');
}

async function showTimeline(mac) {
  const ev = await api('/api/v1/machines/' + mac.replaceAll(':', '-') + '/events');
  $('timeline').replaceChildren(...ev.slice().reverse().map((e) =>
    el('li', {}, el('time', { dateTime: e.at }, new Date(e.at).toLocaleTimeString()), e.event + (e.detail ? ': ' + e.detail : '') + (e.by ? ' (by ' + e.by + ')' : ''))));
}

function select(m) {
  selected = m.mac;
  for (const tr of $('machines').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.mac === m.mac);
  $('detail').hidden = false;
  $('detail-title').textContent = (m.known ? m.hostname + ' ' : '') + m.mac;
  const box = $('reprovision-box');
  box.replaceChildren();
  if (m.known) {
    const b = el('button', { id: 'reprovision' }, 'reprovision…');
    b.addEventListener('click', () => plan(m.hostname));
    box.append(b);
  }
  showTimeline(m.mac).catch((e) => box.append(el('p', { class: 'error' }, String(e.message))));
}

// plan shows what a reprovision would do (nothing is armed), then offers to arm.
async function plan(name) {
  const box = $('reprovision-box');
  try {
    const p = await api('/api/v1/machines/' + encodeURIComponent(name) + '/reprovision', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ confirm: false }) });
    const steps = el('ol', {}, ...(p.steps || []).map((s) => el('li', {}, s)));
    const div = el('div', { class: 'plan', id: 'plan' }, el('strong', {}, p.armed ? name + ' is armed' : 'Reprovisioning ' + name + ' (' + p.role + ') will:'), steps);
    if (!p.armed) {
      const arm = el('button', { id: 'arm' }, 'arm ' + name);
      arm.addEventListener('click', async () => {
        try {
          const r = await api('/api/v1/machines/' + encodeURIComponent(name) + '/reprovision', {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ confirm: true }) });
          div.replaceChildren(el('strong', {}, r.armed ? name + ' is armed: it reinstalls on its next PXE boot' : 'not armed'));
        } catch (e) { div.append(el('p', { class: 'error' }, String(e.message))); }
      });
      div.append(arm);
    }
    box.replaceChildren(div);
  } catch (e) { box.append(el('p', { class: 'error' }, String(e.message))); }
}

async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    do {
      again = false;
      const ms = await api('/api/v1/machines');
      renderMachines(ms);
      if (selected) await showTimeline(selected);
    } while (again);
  } finally { refreshing = false; }
}

// stream reads /api/v1/stream (fetch, so that it can send the token) and
// refreshes on every "changed"; it reconnects after a pause if it ends.
async function stream() {
  for (let pause = 1000; token; pause = Math.min(pause * 2, 15000)) {
    streamAbort = new AbortController();
    try {
      const res = await fetch('/api/v1/stream', { headers: { Authorization: 'Bearer ' + token }, signal: streamAbort.signal });
      if (res.status === 401) { logout('flint refused the token'); return; }
      if (!res.ok) throw new Error('stream: ' + res.status);
      setStatus('live', 'live');
      pause = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const msg = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (msg.split('\n').includes('event: changed')) refresh().catch(() => {});
        }
      }
    } catch (e) {
      if (!token) return;
    }
    setStatus('reconnecting', 'down');
    await new Promise((r) => setTimeout(r, pause));
  }
}

function logout(why) {
  token = '';
  sessionStorage.removeItem('flint-admin-token');
  if (streamAbort) streamAbort.abort();
  $('overview').hidden = true;
  $('detail').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = why || '';
  setStatus('not connected', '');
}

async function start() {
  $('login').hidden = true;
  $('overview').hidden = false;
  $('logout').hidden = false;
  try { await refresh(); } catch (e) { if (token) $('counts').textContent = String(e.message); return; }
  stream();
}

document.addEventListener('DOMContentLoaded', () => {
  $('connect').addEventListener('click', () => {
    token = $('token').value.trim();
    $('token').value = '';
    sessionStorage.setItem('flint-admin-token', token);
    start();
  });
  $('token').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('connect').click(); });
  $('logout').addEventListener('click', () => logout(''));
  if (token) start(); else logout('');
});

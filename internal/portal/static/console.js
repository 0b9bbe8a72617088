// The instance's console: xterm.js on a WebSocket to the API's console
// route. Binary frames carry the terminal's bytes both ways; a text frame
// {"resize":{"cols":C,"rows":R}} tells the server the terminal's size.
'use strict';

(function () {
  const el = document.getElementById('terminal');
  const state = document.getElementById('console-state');
  // xterm.js adds <style> elements; the page's policy admits only those
  // carrying this response's nonce (console.go says why). It must be set
  // when the element is created, before it is inserted.
  const nonce = el.dataset.styleNonce;
  const create = document.createElement.bind(document);
  document.createElement = function (tag, options) {
    const e = create(tag, options);
    if (String(tag).toLowerCase() === 'style') e.setAttribute('nonce', nonce);
    return e;
  };

  const term = new Terminal({ cursorBlink: true, fontFamily: 'monospace', fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();

  const setState = (s, text) => {
    el.dataset.state = s;
    state.textContent = text;
  };
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + el.dataset.socket);
  ws.binaryType = 'arraybuffer';
  const resize = () => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: { cols: term.cols, rows: term.rows } }));
  };
  ws.onopen = () => {
    setState('open', 'Connected');
    resize();
    term.focus();
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') term.write(new Uint8Array(ev.data));
  };
  ws.onclose = (ev) => {
    setState('closed', 'Closed' + (ev.reason ? ': ' + ev.reason : ''));
    term.write('\r\n[the console closed' + (ev.reason ? ': ' + ev.reason : '') + ']\r\n');
  };
  const enc = new TextEncoder();
  term.onData((d) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  term.onResize(resize);
  window.addEventListener('resize', () => fit.fit());
})();

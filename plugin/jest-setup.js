// Jest setup provided by Grafana scaffolding
import './.config/jest-setup';

// jsdom has no MessageChannel, which react-dom/server (imported by
// @grafana/ui 13 for TruncatedText) needs at load time. Nothing here
// renders on the server, so a minimal asynchronous stand-in suffices.
if (typeof global.MessageChannel === 'undefined') {
  global.MessageChannel = class MessageChannel {
    constructor() {
      const port1 = { onmessage: null, postMessage() {}, close() {} };
      const port2 = {
        postMessage(data) {
          setTimeout(() => port1.onmessage && port1.onmessage({ data }), 0);
        },
        close() {},
      };
      this.port1 = port1;
      this.port2 = port2;
    }
  };
}

// Nor IntersectionObserver and ResizeObserver, which @grafana/ui's select
// menus use for scroll indicators and sizing.
class NoopObserver {
  observe() {}
  unobserve() {}
  disconnect() {}
  takeRecords() {
    return [];
  }
}
for (const name of ['IntersectionObserver', 'ResizeObserver']) {
  if (typeof global[name] === 'undefined') {
    global[name] = NoopObserver;
  }
}

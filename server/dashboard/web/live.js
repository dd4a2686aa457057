// The live push: one EventSource on /api/v1/stream?token= (browsers cannot set headers on it).
// Events `incident` and `camera` carry JSON; the browser reconnects by itself after a drop.

import { withToken } from "./api.js";

export class LiveFeed {
  constructor() {
    this.source = null;
    this.listeners = { incident: new Set(), camera: new Set(), state: new Set() };
    this.state = "closed";
  }

  connect() {
    this.close();
    const source = new EventSource(withToken("./api/v1/stream"));
    this.source = source;
    this.setState("connecting");
    source.onopen = () => this.setState("open");
    source.onerror = () => {
      // CLOSED: the server refused (e.g. a revoked token); otherwise the browser retries.
      this.setState(source.readyState === EventSource.CLOSED ? "closed" : "connecting");
    };
    for (const kind of ["incident", "camera"]) {
      source.addEventListener(kind, (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        for (const listener of this.listeners[kind]) listener(data);
      });
    }
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
    this.setState("closed");
  }

  setState(state) {
    this.state = state;
    for (const listener of this.listeners.state) listener(state);
  }

  /** Subscribe to "incident", "camera" or "state"; returns the unsubscribe function. */
  on(kind, listener) {
    this.listeners[kind].add(listener);
    return () => this.listeners[kind].delete(listener);
  }
}

/**
 * The WebSockets of `serve()`: the upgrades handlers began and have not
 * answered yet, the open sockets of each server, and their close with
 * 1001 (going away) when it drains.
 *
 * @module
 */
import type { HttpUpgrade } from "./runtime/mod.ts";

/** Upgrades begun by `upgradeWebSocket`, by request, not yet answered. */
const begun = new WeakMap<Request, HttpUpgrade>();

/**
 * How many upgrades were begun and not answered yet. While none is, a
 * server looks up no answer: one comparison a request. (A request
 * upgraded outside its handler's run, which serve() never answers, keeps
 * it above 0: each request then costs a WeakMap lookup, no more.)
 */
export let pendingUpgrades = 0;

/** Notes an upgrade of `request` begun, to be taken when it is answered. */
export function noteUpgrade(request: Request, upgrade: HttpUpgrade): void {
  begun.set(request, upgrade);
  pendingUpgrades++;
}

/** Whether an upgrade of `request` was begun and is not answered yet. */
export function upgradeBegun(request: Request): boolean {
  return begun.has(request);
}

/** The upgrade begun for `request`, now answered; undefined if none. */
export function takeUpgrade(request: Request): HttpUpgrade | undefined {
  const upgrade = begun.get(request);
  if (upgrade !== undefined) {
    begun.delete(request);
    pendingUpgrades--;
  }
  return upgrade;
}

/** The close code a draining server's WebSockets get. */
export const GOING_AWAY = 1001;

/**
 * How long a stopping server waits for its WebSockets' closing handshakes
 * (the clients answering the close frame) before it stops anyway.
 */
const CLOSE_MS = 1000;

/** The WebSockets of one server that are not closed yet. */
export class ServerSockets {
  #sockets = new Set<WebSocket>();
  #goingAway = false;
  #empty: (() => void) | null = null;

  /** Takes `socket` in; closed with 1001 once open if the server drains. */
  add(socket: WebSocket): void {
    this.#sockets.add(socket);
    socket.addEventListener("close", () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size === 0) this.#empty?.();
    }, { once: true });
    if (this.#goingAway) goAway(socket);
  }

  /** Closes every socket with 1001, now and as later ones open. */
  goAway(): void {
    this.#goingAway = true;
    for (const socket of this.#sockets) goAway(socket);
  }

  /** Resolves once every socket is closed, or after `CLOSE_MS`. */
  closed(): Promise<void> {
    if (this.#sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, CLOSE_MS);
      this.#empty = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

function goAway(socket: WebSocket): void {
  if (socket.readyState === socket.OPEN) {
    socket.close(GOING_AWAY, "going away");
  } else if (socket.readyState === socket.CONNECTING) {
    socket.addEventListener(
      "open",
      () => socket.close(GOING_AWAY, "going away"),
      { once: true },
    );
  }
}

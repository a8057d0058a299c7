/**
 * systemd's notify socket for the Bun adapter: libc through `bun:ffi`, since
 * Bun has no Unix datagram API. Imported only when a socket is opened.
 *
 * @module
 */
import {
  notifyError,
  type NotifyLibc,
  notifySocket,
  openLibc,
  unixAddress,
} from "../_notify.ts";
import type { NotifySocket } from "../types.ts";
import { node } from "./globals.ts";

// The few parts of bun:ffi used here, declared structurally so that
// publishing needs no Bun type package.
interface LibcSymbols {
  socket(domain: number, type: number, protocol: number): number;
  sendto(
    fd: number,
    data: Uint8Array,
    length: number,
    flags: number,
    address: Uint8Array,
    addressLength: number,
  ): number | bigint;
  close(fd: number): number;
  clock_gettime(clock: number, timespec: BigInt64Array): number;
  /** A pointer, as bun:ffi gives one: a number. */
  __errno_location(): number;
}
interface BunFfi {
  dlopen(
    name: string,
    symbols: Record<
      keyof LibcSymbols,
      { args: readonly string[]; returns: string }
    >,
  ): { symbols: LibcSymbols; close(): void };
  read: { i32(pointer: number, offset: number): number };
}

const SYMBOLS = {
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  sendto: {
    args: ["i32", "ptr", "usize", "i32", "ptr", "u32"],
    returns: "isize",
  },
  close: { args: ["i32"], returns: "i32" },
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
} as const;

/** Opens a datagram socket to `path` (see `ServiceManager`). */
export function openNotifySocket(path: string): Promise<NotifySocket> {
  try {
    const address = unixAddress(path);
    if (node().platform !== "linux") {
      throw notifyError(`it exists on Linux only, not on ${node().platform}`);
    }
    return Promise.resolve(notifySocket(loadLibc(), address));
  } catch (error) {
    return Promise.reject(error);
  }
}

function loadLibc(): NotifyLibc {
  // Required, not imported: bun:ffi means nothing to Deno's tools.
  const ffi = (import.meta as unknown as { require(id: string): BunFfi })
    .require("bun:ffi");
  const library = openLibc((name) => ffi.dlopen(name, SYMBOLS));
  const calls = library.symbols;
  return {
    socket: calls.socket,
    sendto: (fd, data, length, flags, address, addressLength) =>
      Number(calls.sendto(fd, data, length, flags, address, addressLength)),
    close: calls.close,
    clockGettime: calls.clock_gettime,
    errno: () => ffi.read.i32(calls.__errno_location(), 0),
    release: () => library.close(),
  };
}

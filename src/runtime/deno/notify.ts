/**
 * systemd's notify socket for the Deno adapter: libc through `Deno.dlopen`
 * (stable, `--allow-ffi`), since `Deno.listenDatagram` needs
 * `--unstable-net`. Imported only when a socket is opened.
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
import { granted } from "./process.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  close: { parameters: ["i32"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Opens a datagram socket to `path` (see `ServiceManager`). */
export function openNotifySocket(path: string): Promise<NotifySocket> {
  try {
    const address = unixAddress(path);
    if (Deno.build.os !== "linux") {
      throw notifyError(`it exists on Linux only, not on ${Deno.build.os}`);
    }
    if (!granted({ name: "ffi" })) {
      throw notifyError(
        "Deno needs --allow-ffi (or -A) to reach it through libc",
      );
    }
    return Promise.resolve(notifySocket(loadLibc(), address));
  } catch (error) {
    return Promise.reject(error);
  }
}

function loadLibc(): NotifyLibc {
  const library = openLibc((name) => Deno.dlopen(name, SYMBOLS));
  const calls = library.symbols;
  return {
    socket: calls.socket,
    sendto: (fd, data, length, flags, address, addressLength) =>
      Number(
        calls.sendto(fd, data, BigInt(length), flags, address, addressLength),
      ),
    close: calls.close,
    clockGettime: calls.clock_gettime,
    errno() {
      const pointer = calls.__errno_location();
      return pointer === null
        ? 0
        : new Deno.UnsafePointerView(pointer).getInt32();
    },
    release: () => library.close(),
  };
}

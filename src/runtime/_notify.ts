// What both adapters' notify.ts share, with no Deno.* or Bun.* here: the
// Linux facts of sd_notify's transport (socket(2), unix(7), sendto(2),
// clock_gettime(2), errno(3)) and the socket built on them, so that the two
// FFI bindings differ only in how they reach libc.
import type { NotifySocket } from "./types.ts";

/** Where libc is, by the names dlopen(3) finds: glibc, then musl, then any. */
export const LIBC_NAMES = [
  "libc.so.6",
  "libc.musl-x86_64.so.1",
  "libc.musl-aarch64.so.1",
  "libc.so",
] as const;

/**
 * The first of {@linkcode LIBC_NAMES} that `open` loads; throws, naming why
 * each failed, when none does.
 */
export function openLibc<T>(open: (name: string) => T): T {
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      return open(name);
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  throw notifyError(`no libc found (${failures.join("; ")})`);
}

/** The libc calls a notify socket makes, as each adapter's FFI binds them. */
export interface NotifyLibc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(
    fd: number,
    data: Uint8Array,
    length: number,
    flags: number,
    address: Uint8Array,
    addressLength: number,
  ): number;
  close(fd: number): number;
  clockGettime(clock: number, timespec: BigInt64Array): number;
  /** errno, read right after a call failed (the calling thread's). */
  errno(): number;
  /** Releases the library handle; no call may follow. */
  release(): void;
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;
// Never wait for room in the receiver's queue, and never die of SIGPIPE.
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const CLOCK_MONOTONIC = 1;
/** offsetof(struct sockaddr_un, sun_path): after the 16-bit sa_family_t. */
const SUN_PATH_OFFSET = 2;
/** sizeof(sun_path) on Linux. */
const SUN_PATH_SIZE = 108;

/** Why the notify socket cannot be opened, as an Error. */
export function notifyError(reason: string, cause?: unknown): Error {
  return new Error(
    `Cannot open systemd's notify socket: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * A `struct sockaddr_un` for `path`, exactly as long as the address length
 * to pass with it: a filesystem path NUL-terminated; an abstract name ("@"
 * first) with a NUL byte in place of the "@" and no terminating NUL, since
 * every byte of an abstract name counts.
 */
export function unixAddress(path: string): Uint8Array {
  const name = new TextEncoder().encode(path);
  const abstract = path.startsWith("@");
  if (name.length === (abstract ? 1 : 0)) {
    throw new TypeError("Cannot use an empty Unix socket address");
  }
  if (!abstract && name.includes(0)) {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(path)
      } as a Unix socket path: it holds a NUL byte`,
    );
  }
  const room = abstract ? SUN_PATH_SIZE : SUN_PATH_SIZE - 1;
  if (name.length > room) {
    const shown = path.length > 48 ? `${path.slice(0, 48)}…` : path;
    throw new RangeError(
      `Cannot use ${
        JSON.stringify(shown)
      } as a Unix socket address: it is ${name.length} bytes long, longer than the ${room} Linux allows`,
    );
  }
  const address = new Uint8Array(
    SUN_PATH_OFFSET + name.length + (abstract ? 0 : 1),
  );
  // sa_family_t is in host byte order: a Uint16Array writes in it.
  new Uint16Array(address.buffer, 0, 1)[0] = AF_UNIX;
  address.set(name, SUN_PATH_OFFSET);
  if (abstract) address[SUN_PATH_OFFSET] = 0;
  return address;
}

/**
 * A datagram socket that sends to `address` (a {@linkcode unixAddress})
 * through `libc`, owning both; throws when socket() fails, the library
 * released then.
 */
export function notifySocket(
  libc: NotifyLibc,
  address: Uint8Array,
): NotifySocket {
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const reason = errnoReason(libc.errno());
    libc.release();
    throw notifyError(`socket() failed: ${reason}`);
  }
  const encoder = new TextEncoder();
  const timespec = new BigInt64Array(2); // tv_sec, tv_nsec: 64-bit Linux
  let open = true;
  return {
    send(message) {
      if (!open) return "the socket is closed";
      const data = encoder.encode(message);
      const flags = MSG_DONTWAIT | MSG_NOSIGNAL;
      const sent = libc.sendto(
        fd,
        data,
        data.length,
        flags,
        address,
        address.length,
      );
      // A datagram goes whole or not at all.
      return sent < 0 ? errnoReason(libc.errno()) : null;
    },
    monotonicUsec() {
      if (!open) {
        throw new Error(
          "Cannot read CLOCK_MONOTONIC: the notify socket is closed",
        );
      }
      if (libc.clockGettime(CLOCK_MONOTONIC, timespec) !== 0) {
        throw new Error(
          `Cannot read CLOCK_MONOTONIC: ${errnoReason(libc.errno())}`,
        );
      }
      return timespec[0]! * 1_000_000n + timespec[1]! / 1000n;
    },
    close() {
      if (!open) return;
      open = false;
      // close(2) releases the descriptor even when it reports an error.
      libc.close(fd);
      libc.release();
    },
  };
}

/** errno numbers of Linux (x86_64 and aarch64 share them) that sending meets. */
const ERRNO: Record<number, readonly [string, string]> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  4: ["EINTR", "interrupted system call"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "the receiver's queue is full"],
  12: ["ENOMEM", "out of memory"],
  13: ["EACCES", "permission denied"],
  20: ["ENOTDIR", "not a directory"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in the system"],
  24: ["EMFILE", "too many open files"],
  32: ["EPIPE", "broken pipe"],
  36: ["ENAMETOOLONG", "file name too long"],
  40: ["ELOOP", "too many levels of symbolic links"],
  90: ["EMSGSIZE", "message too long"],
  91: ["EPROTOTYPE", "the socket there is not a datagram socket"],
  93: ["EPROTONOSUPPORT", "protocol not supported"],
  97: ["EAFNOSUPPORT", "address family not supported"],
  105: ["ENOBUFS", "no buffer space available"],
  107: ["ENOTCONN", "not connected"],
  111: ["ECONNREFUSED", "connection refused: nobody listens there"],
};

/** "ENOENT (no such file or directory)", or "errno N" for the rest. */
export function errnoReason(errno: number): string {
  const known = ERRNO[errno];
  return known === undefined ? `errno ${errno}` : `${known[0]} (${known[1]})`;
}

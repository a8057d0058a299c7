// systemd's end of sd_notify, for the tests of both runtimes: run as
// `deno run -A tests/_notify_listener.ts <path, or @abstract-name>`, it binds
// a Unix datagram socket there with SO_PASSCRED (the kernel then attaches the
// sender's pid, uid and gid to every datagram, as systemd reads them) and
// prints one JSON line a datagram on stdout, {"pid", "uid", "message"}, after
// {"listening": <path>} once bound. On SIGTERM, SIGINT or the end of stdin it
// closes and unlinks the socket and exits 0.
//
// Through libc by FFI, as the library sends: Deno.listenDatagram would need
// --unstable-net, and has no credentials. recvmsg is a nonblocking symbol
// (run on another thread) so the event loop stays free for signals and stdin.
import {
  errnoReason,
  LIBC_NAMES,
  unixAddress,
} from "../src/runtime/_notify.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  recvmsg: {
    parameters: ["i32", "buffer", "i32"],
    result: "isize",
    nonblocking: true,
  },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_PASSCRED = 16;
const SCM_CREDENTIALS = 2;
const SHUT_RDWR = 2;
const MSG_TRUNC = 0x20;
/** More than a notify datagram ever holds (systemd reads at most 4 KiB). */
const DATA_SIZE = 64 * 1024;
/** CMSG_SPACE(sizeof(struct ucred)): a 16-byte header, 12 bytes padded to 16. */
const CONTROL_SIZE = 32;
/** Failed receives in a row (without errno: it is another thread's) before giving up. */
const MAX_FAILURES = 100;

const path = Deno.args[0];
if (path === undefined) fail("usage: _notify_listener.ts <socket path>");
const address = unixAddress(path);
const library = openLibc();
const libc = library.symbols;

const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
if (fd < 0) fail(`socket() failed: ${errno()}`);
if (libc.bind(fd, address, address.length) !== 0) {
  fail(`bind(${path}) failed: ${errno()}`);
}
const on = new Int32Array([1]);
if (libc.setsockopt(fd, SOL_SOCKET, SO_PASSCRED, on, on.byteLength) !== 0) {
  fail(`setsockopt(SO_PASSCRED) failed: ${errno()}`);
}

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // Wakes the recvmsg waiting on another thread: it returns 0.
  libc.shutdown(fd, SHUT_RDWR);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
(async () => {
  for await (const _ of Deno.stdin.readable) {
    // Nothing is read from stdin: its end is the signal to stop.
  }
  stop();
})();

print({ listening: path });
await receiveAll();
libc.close(fd);
if (!path.startsWith("@")) Deno.removeSync(path);
library.close();
// The stdin reader would hold the process open.
Deno.exit(0);

async function receiveAll(): Promise<void> {
  const data = new Uint8Array(DATA_SIZE);
  const control = new Uint8Array(CONTROL_SIZE);
  const iovec = new BigUint64Array([pointer(data), BigInt(data.length)]);
  // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
  const header = new Uint8Array(56);
  const fields = new DataView(header.buffer);
  fields.setBigUint64(16, pointer(iovec), true);
  fields.setBigUint64(24, 1n, true);
  fields.setBigUint64(32, pointer(control), true);
  const decoder = new TextDecoder();
  let failures = 0;
  for (;;) {
    // The kernel shrinks these to what it wrote: restore them each time.
    fields.setBigUint64(40, BigInt(control.length), true);
    fields.setInt32(48, 0, true);
    const received = Number(await libc.recvmsg(fd, header, 0));
    if (stopping) return;
    if (received < 0) {
      if (++failures > MAX_FAILURES) fail("recvmsg() keeps failing");
      continue;
    }
    failures = 0;
    const controlLength = Number(fields.getBigUint64(40, true));
    const flags = fields.getInt32(48, true);
    print({
      ...credentials(control, controlLength),
      message: decoder.decode(data.subarray(0, received)),
      ...(flags & MSG_TRUNC ? { truncated: true } : {}),
    });
  }
}

/** The pid and uid of an SCM_CREDENTIALS message among the control bytes. */
function credentials(
  control: Uint8Array,
  length: number,
): { pid: number | null; uid: number | null } {
  const view = new DataView(control.buffer, control.byteOffset, length);
  // struct cmsghdr: len (size_t), level (int), type (int), then the data.
  for (let at = 0; at + 16 <= length;) {
    const size = Number(view.getBigUint64(at, true));
    if (size < 16) break;
    const level = view.getInt32(at + 8, true);
    const type = view.getInt32(at + 12, true);
    if (level === SOL_SOCKET && type === SCM_CREDENTIALS && size >= 28) {
      // struct ucred: pid, uid, gid, 32 bits each.
      return {
        pid: view.getInt32(at + 16, true),
        uid: view.getUint32(at + 20, true),
      };
    }
    at += (size + 7) & ~7;
  }
  return { pid: null, uid: null };
}

function openLibc(): Deno.DynamicLibrary<typeof SYMBOLS> {
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      return Deno.dlopen(name, SYMBOLS);
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  return fail(`no libc found (${failures.join("; ")})`);
}

function pointer(buffer: BufferSource): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

function errno(): string {
  const at = libc.__errno_location();
  return at === null
    ? "errno unknown"
    : errnoReason(new Deno.UnsafePointerView(at).getInt32());
}

function print(value: unknown): void {
  console.log(JSON.stringify(value));
}

function fail(why: string): never {
  console.error(`_notify_listener: ${why}`);
  Deno.exit(1);
}

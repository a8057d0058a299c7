/**
 * Files for the Bun adapter: the temporary folder, pidfiles, output files
 * and the process's own stderr.
 *
 * @module
 */
import { PIPE_REFUSED } from "../_shared.ts";
import type { AppendFile, FileSystem } from "../types.ts";
import { bun, code, fs, node } from "./globals.ts";

/** The file operations, and stderr writes that never block the loop. */
export const files: FileSystem = {
  writeStderr: (data) => writeAll(2, data),
  writeStdout: (data) => writeAll(1, data),
  watch(paths, onChange) {
    const watchers = paths.map((path) => {
      const folder = fs().statSync(path).isDirectory();
      return fs().watch(
        path,
        { recursive: folder, persistent: true },
        (_event, name) => {
          if (!folder) return onChange(path);
          if (name !== null) onChange(`${path.replace(/\/$/, "")}/${name}`);
        },
      );
    });
    return {
      close: () => watchers.forEach((watcher) => watcher.close()),
    };
  },
  cwd: () => node().cwd(),
  tempDir,
  makeTempDir,
  // A pattern, not "*": Bun's glob keeps what it matched (measured: 2.2 MB
  // for "workerpool-*" in a /tmp of 110 entries, 3.4 MB for "*").
  readDir: (path, prefix) =>
    Array.from(
      new (bun().Glob)(`${prefix.replace(/[[\]{}()*?!\\]/g, "\\$&")}*`)
        .scanSync({ cwd: path, onlyFiles: false, dot: true }),
    ),
  remove: (path) => fs().rmSync(path, { recursive: true, force: true }),
  async readText(path) {
    const file = bun().file(path);
    return (await file.exists()) ? await file.text() : null;
  },
  readTextFile(path) {
    try {
      return fs().readFileSync(path, "utf8");
    } catch (error) {
      if (code(error) === "ENOENT") return null;
      throw error;
    }
  },
  readTail(path, bytes) {
    const { closeSync, fstatSync, openSync, readSync } = fs();
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (error) {
      if (code(error) === "ENOENT") return null;
      throw error;
    }
    try {
      const size = fstatSync(fd).size;
      const buffer = new Uint8Array(Math.min(size, bytes));
      const read = readSync(
        fd,
        buffer,
        0,
        buffer.length,
        size - buffer.length,
      );
      return new TextDecoder().decode(buffer.subarray(0, read));
    } finally {
      closeSync(fd);
    }
  },
  writeTextFile: (path, text) => fs().writeFileSync(path, text),
  link(existing, path) {
    try {
      fs().linkSync(existing, path);
      return true;
    } catch (error) {
      if (code(error) === "EEXIST") return false;
      throw error;
    }
  },
  openAppend: (path) => Promise.resolve(appendFile(path)),
};

function tempDir(): string {
  return (node().env["TMPDIR"] || "/tmp").replace(/\/$/, "");
}

/**
 * A private (0700) temporary directory, made by writing a file in it with
 * the umask at 077. Neither mktemp(1) (a process: 7 ms before the first
 * worker can be spawned) nor node:fs (6 ms and 4.5 MB on first use), both
 * measured on Bun 1.4.5. The name carries 128 random bits: nobody can have
 * made it first.
 */
async function makeTempDir(prefix: string): Promise<string> {
  const dir = `${tempDir()}/${prefix}${
    crypto.randomUUID().replaceAll("-", "")
  }`;
  const umask = node().umask(0o077);
  try {
    await bun().write(`${dir}/.made`, "");
  } finally {
    node().umask(umask);
  }
  return dir;
}

/** A named pipe or a socket, which open() would wait on for a reader. */
function isPipe(path: string): boolean {
  try {
    const info = fs().statSync(path);
    return info.isFIFO() || info.isSocket();
  } catch (error) {
    if (code(error) === "ENOENT") return false;
    throw error;
  }
}

function appendFile(path: string): AppendFile {
  if (isPipe(path)) throw new Error(PIPE_REFUSED);
  const fd = fs().openSync(path, "a");
  return {
    write: (data) => writeAll(fd, data),
    close: () =>
      new Promise((resolve, reject) =>
        fs().close(fd, (error) => error ? reject(error) : resolve())
      ),
  };
}

/**
 * Writes all of `data` to `fd` off the event loop (node:fs's callback
 * `write` runs on a thread): neither a slow disk nor a full pipe on stderr
 * holds the loop.
 */
async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await new Promise<number>((resolve, reject) =>
      fs().write(
        fd,
        data,
        offset,
        data.length - offset,
        null,
        (error, written) => error ? reject(error) : resolve(written),
      )
    );
  }
}

/**
 * Files for the Deno adapter: the temporary folder, pidfiles, output files
 * and the process's own stderr.
 *
 * @module
 */
import { PIPE_REFUSED } from "../_shared.ts";
import type { FileSystem } from "../types.ts";
import { tempDir } from "./process.ts";

/** The file operations, and stderr writes that never block the loop. */
export const files: FileSystem = {
  writeStderr: (data) => writeAll(Deno.stderr, data),
  writeStdout: (data) => writeAll(Deno.stdout, data),
  watch(paths, onChange) {
    const watcher = Deno.watchFs(paths, { recursive: true });
    let closed = false;
    void (async () => {
      try {
        for await (const event of watcher) {
          for (const path of event.paths) onChange(path);
        }
      } catch (error) {
        if (!closed) throw error;
      }
    })();
    return {
      close() {
        if (closed) return;
        closed = true;
        watcher.close();
      },
    };
  },
  cwd: () => Deno.cwd(),
  tempDir,
  makeTempDir: (prefix) => Promise.resolve(Deno.makeTempDirSync({ prefix })),
  readDir: (path, prefix) =>
    Array.from(Deno.readDirSync(path), (entry) => entry.name)
      .filter((name) => name.startsWith(prefix)),
  remove(path) {
    ignoreNotFound(() => Deno.removeSync(path, { recursive: true }));
  },
  async readText(path) {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  },
  readTextFile(path) {
    try {
      return Deno.readTextFileSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  },
  readTail(path, bytes) {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    try {
      const size = file.statSync().size;
      file.seekSync(Math.max(0, size - bytes), Deno.SeekMode.Start);
      const buffer = new Uint8Array(Math.min(size, bytes));
      let read = 0;
      while (read < buffer.length) {
        const n = file.readSync(buffer.subarray(read));
        if (n === null) break;
        read += n;
      }
      return new TextDecoder().decode(buffer.subarray(0, read));
    } finally {
      file.close();
    }
  },
  writeTextFile: (path, text) => Deno.writeTextFileSync(path, text),
  link(existing, path) {
    try {
      Deno.linkSync(existing, path);
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return false;
      throw error;
    }
  },
  async openAppend(path) {
    // file.write, not file.writable: the stream's writer holds bytes back
    // until 64 KiB have gathered (Deno 2.9), so a crashing worker's last
    // lines were not on disk when somebody looked.
    if (isPipe(path)) throw new Error(PIPE_REFUSED);
    const file = await Deno.open(path, { append: true, create: true });
    return {
      write: (data) => writeAll(file, data),
      close: () => Promise.resolve(file.close()),
    };
  },
};

/** A named pipe or a socket, which open() would wait on for a reader. */
function isPipe(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFifo === true || info.isSocket === true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await writer.write(data.subarray(offset));
  }
}

function ignoreNotFound(action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

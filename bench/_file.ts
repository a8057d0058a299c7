// A file written in 64 KiB batches, shared by the log benchmark and its
// baseline so both pay the same for the disk.
import { closeSync, openSync, writeSync } from "node:fs";

export class BatchedFile {
  #fd: number;
  #lines: string[] = [];
  #size = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(path: string) {
    this.#fd = openSync(path, "a");
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#size += line.length;
    if (this.#size >= 65536) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), 20);
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    writeSync(this.#fd, this.#lines.join(""));
    this.#lines = [];
    this.#size = 0;
  }

  close(): Promise<void> {
    this.flush();
    closeSync(this.#fd);
    return Promise.resolve();
  }
}

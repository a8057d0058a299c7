// The path operations the library needs, without node:path (which costs
// Deno its Node compatibility layer at start-up: ~15 ms and 8 MB per process).

/** `path` made absolute against `cwd`. */
export function absolute(cwd: string, path: string): string {
  return path.startsWith("/") ? path : `${cwd.replace(/\/$/, "")}/${path}`;
}

/** `dir/name`. */
export function join(dir: string, name: string): string {
  return `${dir.replace(/\/$/, "")}/${name}`;
}

/** `path` made absolute against `cwd`, without `.`, `..` or `//`. */
export function resolve(cwd: string, path: string): string {
  const parts: string[] = [];
  for (const part of absolute(cwd, path).split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

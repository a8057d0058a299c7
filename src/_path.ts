// The two path operations the library needs, without node:path (which costs
// Deno its Node compatibility layer at start-up: ~15 ms and 8 MB per process).

/** `path` made absolute against `cwd`. */
export function absolute(cwd: string, path: string): string {
  return path.startsWith("/") ? path : `${cwd.replace(/\/$/, "")}/${path}`;
}

/** `dir/name`. */
export function join(dir: string, name: string): string {
  return `${dir.replace(/\/$/, "")}/${name}`;
}

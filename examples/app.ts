/**
 * An app for the `workerpool` command: a module whose default export is
 * `{ fetch }` (the object `deno serve` and Bun run), served by N workers on
 * one port.
 *
 *     deno run -A cli.ts serve -w 4 examples/app.ts   # or: bun cli.ts serve …
 *     deno run -A examples/app.ts                     # the same, 2 workers
 *     bun examples/app.ts
 *     curl http://127.0.0.1:8080/                     # hello from worker 1 to 127.0.0.1
 */
import type { App } from "../cli.ts";

let worker = 0;

export default {
  onStart({ id }) {
    worker = id; // per worker: open a database pool here, say
  },
  fetch(request, info) {
    const { pathname } = new URL(request.url);
    if (pathname === "/slow") {
      return new Promise((resolve) =>
        setTimeout(() => resolve(new Response("slow\n")), 100)
      );
    }
    return new Response(
      `hello from worker ${worker} to ${info.remoteAddr.hostname}\n`,
    );
  },
} satisfies App;

// Run directly, it is served as `workerpool serve -w 2 examples/app.ts`.
if (import.meta.main) {
  const [{ main }, { env }] = await Promise.all([
    import("../cli.ts"),
    import("node:process"),
  ]);
  const port = env.PORT ?? "8080";
  await main(["serve", "-w", "2", "--port", port, import.meta.filename!]);
}

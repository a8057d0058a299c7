/**
 * `Launcher`: the processes of a pool and what they are wired to. It opens
 * the control socket and the outputs, spawns each worker process with its
 * token and environment, admits its token, pumps its output, and reports
 * its frames and its exit; it drains and closes it all at the end. What
 * to spawn, and when, is the pool's business.
 *
 * @module
 */
import { ChildHandle } from "./_child.ts";
import { ControlServer } from "./_control_server.ts";
import type { ResolvedOptions } from "./_options.ts";
import { Outputs } from "./_output.ts";
import {
  type ControlReply,
  type ControlRequest,
  encodeWorkerEnv,
  heartbeatInterval,
  type WorkerMessage,
} from "./_protocol.ts";
import { drawLimits } from "./_recycle.ts";
import type { Slot } from "./_slot.ts";
import { describe } from "./errors.ts";
import type { ExitStatus, Runtime, SignalName } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** What the processes tell the pool. */
export interface LauncherEvents {
  /** A frame from `child`, once it said hello. */
  message(child: ChildHandle, message: WorkerMessage): void;
  /** `child`'s connection ended without goodbye or broke the protocol. */
  lost(child: ChildHandle, cause: string): void;
  /** `child`, spawned for `slot`, exited and was reaped. */
  exited(slot: Slot, child: ChildHandle, status: ExitStatus): void;
  /** An operator's command on the control socket. */
  command(request: ControlRequest): Promise<ControlReply>;
}

/** The live processes of a pool, spawned and wired. */
export class Launcher {
  #runtime: Runtime;
  #options: ResolvedOptions;
  #log: Logger;
  #control: ControlServer;
  #outputs: Outputs;
  #events: LauncherEvents;
  #command: { command: string; args: string[] };
  #children = new Set<ChildHandle>();

  private constructor(
    runtime: Runtime,
    parts: {
      options: ResolvedOptions;
      log: Logger;
      control: ControlServer;
      outputs: Outputs;
      events: LauncherEvents;
    },
  ) {
    this.#runtime = runtime;
    this.#options = parts.options;
    this.#log = parts.log;
    this.#control = parts.control;
    this.#outputs = parts.outputs;
    this.#events = parts.events;
    this.#command = parts.options.script === null
      ? runtime.scriptCommand()
      : runtime.moduleCommand(
        parts.options.script.module,
        parts.options.script.flags,
        parts.options.script.args,
      );
  }

  /**
   * Opens the outputs and the control socket; throws, having closed what
   * it opened, when either cannot be opened.
   */
  static async open(
    runtime: Runtime,
    options: ResolvedOptions,
    logs: { log: Logger; childLog: Logger },
    events: LauncherEvents,
  ): Promise<Launcher> {
    const outputs = await Outputs.open(
      runtime,
      options.stdout,
      options.stderr,
      (error) => logs.log.error(`Worker output: ${describe(error)}`),
    );
    try {
      const control = await ControlServer.open(runtime, logs.log, {
        message: (child, message) => events.message(child, message),
        lost: (child, cause) => events.lost(child, cause),
        command: (request) => events.command(request),
      });
      return new Launcher(runtime, {
        options,
        log: logs.childLog,
        control,
        outputs,
        events,
      });
    } catch (error) {
      await outputs.close();
      throw error;
    }
  }

  /** The master's control socket. */
  get socketPath(): string {
    return this.#control.socketPath;
  }

  /** The live processes. */
  get children(): ReadonlySet<ChildHandle> {
    return this.#children;
  }

  /**
   * Spawns a process for `slot` in `generation`, with a fresh token and
   * its own recycling limits; returns it, or why it could not be spawned
   * (out of processes or file descriptors, say).
   */
  launch(slot: Slot, generation: number): ChildHandle | string {
    let child: ChildHandle;
    try {
      child = this.#spawn(slot.id, generation);
    } catch (error) {
      // The message only: formatting a stack needs file descriptors.
      return describe(error);
    }
    this.#children.add(child);
    this.#control.admit(child);
    this.#outputs.pump("stdout", child.stdout);
    this.#outputs.pump("stderr", child.stderr);
    this.#log.debug(`spawned ${child}`);
    child.status.then(
      (status) => {
        this.#control.forget(child);
        child.exited();
        this.#children.delete(child);
        this.#events.exited(slot, child, status);
      },
      (error) => this.#log.critical(`Cannot reap ${child}`, error),
    );
    return child;
  }

  /** Stops every live process with `signal`. */
  stopAll(signal: SignalName): void {
    for (const child of this.#children) void child.stop(signal);
  }

  /** Opens the output files again (see `Outputs.reopen`). */
  reopenOutputs(): Promise<void> {
    return this.#outputs.reopen();
  }

  /**
   * Waits, at most `ms`, for the output of exited processes to end; says
   * how many streams had to be cut (a grandchild holding them open).
   */
  drainOutputs(ms: number): Promise<number> {
    return this.#outputs.drain(ms);
  }

  /** Closes the control socket and the outputs. */
  async close(): Promise<void> {
    this.#control.close();
    await this.#outputs.close();
  }

  #spawn(id: number, generation: number): ChildHandle {
    const options = this.#options;
    const token = randomToken();
    const process = this.#runtime.spawn(this.#command.command, {
      args: this.#command.args,
      env: encodeWorkerEnv({
        id,
        socket: this.#control.socketPath,
        token,
        heartbeatInterval: heartbeatInterval(options.workerTimeout),
        gracefulTimeout: options.gracefulTimeout,
        masterPid: this.#runtime.pid,
        takeover: options.takeover,
      }),
      stdin: "null",
      stdout: this.#outputs.mode("stdout"),
      stderr: this.#outputs.mode("stderr"),
    });
    return new ChildHandle(id, token, process, {
      clock: this.#runtime,
      log: this.#log,
      deadlines: options,
      generation,
      limits: drawLimits(options),
    });
  }
}

/** A random secret, 32 hex digits. */
function randomToken(): string {
  // randomUUID is 122 random bits; hex digits by hand cost Bun 1 ms cold.
  return crypto.randomUUID().replaceAll("-", "");
}

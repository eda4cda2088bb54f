/**
 * A scripted backend for tests: `mockIPC` with per-command handlers; every call is recorded. A command without a
 * handler rejects like the shell would, so a screen calling something unexpected shows up as an error state.
 */
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";

export type Handler = (args: Record<string, unknown>) => unknown;

export interface Backend {
  calls: { cmd: string; args: Record<string, unknown> }[];
  /** The arguments of every call of `cmd`. */
  argsOf(cmd: string): Record<string, unknown>[];
  /** Replaces or adds a handler. */
  on(cmd: string, h: Handler): void;
  /** Pushes an event as the shell would. */
  emit(event: string, payload: unknown): Promise<void>;
}

export function mockBackend(handlers: Record<string, Handler> = {}): Backend {
  const table: Record<string, Handler> = { ...handlers };
  const calls: Backend["calls"] = [];
  mockIPC(
    async (cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      if (!cmd.startsWith("plugin:")) calls.push({ cmd, args });
      const h = table[cmd];
      if (!h) throw { code: "unknown", message: `no handler for ${cmd}` };
      return h(args);
    },
    { shouldMockEvents: true },
  );
  return {
    calls,
    argsOf: (cmd) => calls.filter((c) => c.cmd === cmd).map((c) => c.args),
    on: (cmd, h) => void (table[cmd] = h),
    emit: (event, payload) => emit(event, payload),
  };
}

/** Rejects like the shell: `{ code, message }`. */
export function fail(code: string, message = `${code} happened`): never {
  throw { code, message };
}

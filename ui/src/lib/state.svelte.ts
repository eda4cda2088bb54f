/**
 * App-wide state shared by the frame and the screens: the current screen, the jobs (kept current by
 * `job-progress` events, never polled) and the saved databases (for the top bar).
 */
import { toast } from "svelte-sonner";
import {
  databases as dbApi,
  events,
  jobs as jobsApi,
  toIpcError,
  type DatabaseList,
  type DatabaseTest,
  type IpcError,
  type JobCard,
} from "./api";

/** The six places of the sidebar. */
export type Screen = "plugins" | "releases" | "jobs" | "idcache" | "history" | "databases";

const SCREENS: readonly Screen[] = ["plugins", "releases", "jobs", "idcache", "history", "databases"];

function screenFromHash(): Screen {
  const h = typeof location === "undefined" ? "" : location.hash.replace(/^#\/?/, "");
  return (SCREENS as readonly string[]).includes(h) ? (h as Screen) : "plugins";
}

/** Which screen is shown; starts from the URL hash (`#/jobs`), so a screen can be opened directly. */
export const nav = $state<{ screen: Screen; focusJob: string | null }>({ screen: screenFromHash(), focusJob: null });

/** Shows a screen (optionally scrolling to one job's card). */
export function go(screen: Screen, focusJob: string | null = null): void {
  nav.screen = screen;
  nav.focusJob = focusJob;
  try {
    history.replaceState(null, "", `#/${screen}`);
  } catch {
    /* no history (tests) */
  }
}

/** States that a job can still move from (shown in the bottom strip and counted on the Jobs badge). */
export const ACTIVE: ReadonlySet<string> = new Set(["queued", "running", "paused"]);

/** The jobs, by key, in the order first seen. */
class JobsState {
  list = $state<JobCard[]>([]);
  loading = $state(true);
  error = $state<IpcError | null>(null);

  /** Running + paused + queued: the Jobs badge. */
  active = $derived(this.list.filter((j) => ACTIVE.has(j.state)));

  async load(): Promise<void> {
    this.loading = true;
    this.error = null;
    try {
      this.list = await jobsApi.list();
    } catch (e) {
      this.error = toIpcError(e);
    } finally {
      this.loading = false;
    }
  }

  /** Replaces (or adds) one card, e.g. from a `job-progress` event. */
  upsert(card: JobCard): void {
    const i = this.list.findIndex((j) => j.key === card.key);
    if (i === -1) this.list.push(card);
    else this.list[i] = card;
  }

  /** Sets a card's state at once after a command succeeded (the next event confirms it). */
  setState(key: string, state: JobCard["state"]): void {
    const j = this.list.find((x) => x.key === key);
    if (j) j.state = state;
  }
}

export const jobState = new JobsState();

/** The saved databases and whether the active one answers (the top bar's dot). */
class DatabasesState {
  data = $state<DatabaseList | null>(null);
  loading = $state(true);
  error = $state<IpcError | null>(null);
  /** The last `database_test` of the active database; `null` while unknown. */
  health = $state<DatabaseTest | null>(null);
  checking = $state(false);

  active = $derived(this.data?.databases.find((d) => d.name === this.data?.active) ?? null);

  async load(): Promise<void> {
    this.loading = true;
    this.error = null;
    try {
      this.data = await dbApi.list();
    } catch (e) {
      this.error = toIpcError(e);
    } finally {
      this.loading = false;
    }
  }

  /** Tests the active database (once at start, after switching, or on demand). */
  async check(): Promise<void> {
    const name = this.data?.active;
    if (!name) {
      this.health = null;
      return;
    }
    this.checking = true;
    try {
      this.health = await dbApi.test(name);
    } catch (e) {
      this.health = { ok: false, message: toIpcError(e).message };
    } finally {
      this.checking = false;
    }
  }

  async activate(name: string): Promise<void> {
    try {
      await dbApi.activate(name);
      await this.load();
      toast.success(`Active database: ${name}`);
      void this.check();
    } catch (e) {
      toast.error(`Could not switch to ${name}`, { description: toIpcError(e).message });
    }
  }
}

export const dbState = new DatabasesState();

/**
 * Loads jobs and databases and subscribes to job events (progress → cards, finished → toasts). Returns a function
 * that unsubscribes.
 */
export async function startApp(): Promise<() => void> {
  const offs = await Promise.all([
    events.jobProgress((card) => jobState.upsert(card)),
    events.jobFinished((f) => {
      const j = jobState.list.find((x) => x.key === f.key);
      if (j) j.state = f.state;
      const open = { label: "Open job", onClick: () => go("jobs", f.key) };
      if (f.state === "completed") {
        toast.success(`${f.key} completed`, { description: f.message ?? undefined, action: open });
      } else if (f.state === "failed") {
        toast.error(`${f.key} failed`, { description: f.message ?? j?.lastError ?? undefined, action: open, duration: 15000 });
      } else if (f.state === "paused") {
        toast.info(`${f.key} paused`, { description: f.message ?? "Resume it from Jobs.", action: open });
      } else if (f.state === "cancelled") {
        toast(`${f.key} cancelled`, { description: f.message ?? undefined });
      }
    }),
  ]);
  await Promise.all([jobState.load(), dbState.load()]);
  void dbState.check();
  return () => offs.forEach((off) => off());
}

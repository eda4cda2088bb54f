/**
 * Numbers and times written for people (UI.md "Numbers and words"). Locale: `en-US` grouping for counts so that
 * screens and tests read the same everywhere ("3,412"); timestamps are shown in the local time zone.
 */

const count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** `3412` → `"3,412"`; `null`/`undefined`/non-finite → `"—"`. */
export function formatCount(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return "—";
  return count.format(Math.round(n));
}

const UNITS = ["KB", "MB", "GB", "TB", "PB"];

/**
 * Bytes with one decimal in binary multiples (1 KB = 1024 B, as the CLI's MiB): `512` → `"512 B"`,
 * `1288490189` → `"1.2 GB"`.
 */
export function formatBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n) || n < 0) return "—";
  if (n < 1024) return `${Math.round(n)} B`;
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1023.95 && u < UNITS.length - 1);
  return `${oneDecimal.format(v)} ${UNITS[u]}`;
}

/** A rate: `3412.4, "rows"` → `"3,412 rows/s"`; below 10 per second one decimal: `"2.5 rows/s"`. */
export function formatRate(perSecond: number | null | undefined, unit = "rows"): string {
  if (perSecond == null || !Number.isFinite(perSecond) || perSecond < 0) return "—";
  const n = perSecond < 10 && perSecond > 0 ? oneDecimal.format(perSecond) : count.format(Math.round(perSecond));
  return `${n} ${unit}/s`;
}

/** Bytes per second: `"12.3 MB/s"`. */
export function formatByteRate(perSecond: number | null | undefined): string {
  if (perSecond == null || !Number.isFinite(perSecond) || perSecond < 0) return "—";
  return `${formatBytes(perSecond)}/s`;
}

/**
 * A duration in seconds: `"42 s"`, `"4 min"`, `"2 h 13 min"`, `"3 d 4 h"`. Minutes are rounded up below an hour
 * so that a few seconds past a minute never reads as less than what is left.
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.round((s % 3600) / 60);
    if (m === 60) return `${h + 1} h`;
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(s / 86400);
  const h = Math.round((s % 86400) / 3600);
  return h ? `${d} d ${h} h` : `${d} d`;
}

/** Time left: `240` → `"4 min left"`, `< 1 s` → `"almost done"`, unknown → `""`. */
export function formatTimeLeft(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 1) return "almost done";
  return `${formatDuration(seconds)} left`;
}

/** Milliseconds as a duration: `1500` → `"2 s"`, below a second `"340 ms"`. */
export function formatMillis(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return formatDuration(ms / 1000);
}

const rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/**
 * A timestamp relative to `now`: `"just now"`, `"3 min ago"`, `"2 h ago"`, `"yesterday"`, `"5 days ago"`; in the
 * future `"in 4 min"`. Invalid → `"—"`.
 */
export function formatRelative(when: string | number | Date | null | undefined, now: Date = new Date()): string {
  const t = toDate(when);
  if (!t) return "—";
  const diff = (t.getTime() - now.getTime()) / 1000;
  const abs = Math.abs(diff);
  if (abs < 45) return "just now";
  if (abs < 3600) {
    const m = Math.round(abs / 60);
    return diff < 0 ? `${m} min ago` : `in ${m} min`;
  }
  if (abs < 86400) {
    const h = Math.round(abs / 3600);
    return diff < 0 ? `${h} h ago` : `in ${h} h`;
  }
  if (abs < 86400 * 30) return rtf.format(Math.round(diff / 86400), "day");
  if (abs < 86400 * 365) return rtf.format(Math.round(diff / (86400 * 30)), "month");
  return rtf.format(Math.round(diff / (86400 * 365)), "year");
}

/** The exact local time for a tooltip: `"2025-03-14 09:26:53"` (local zone). Invalid → `""`. */
export function formatExact(when: string | number | Date | null | undefined): string {
  const t = toDate(when);
  if (!t) return "";
  const p = (n: number) => String(n).padStart(2, "0");
  return (
    `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ` +
    `${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`
  );
}

/** `0.4231` → `"42%"`; clamps to 0–100. */
export function formatPercent(fraction: number | null | undefined): string {
  if (fraction == null || !Number.isFinite(fraction)) return "—";
  return `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}

/** `"opentargets/target"` → `"opentargets__target"`: a job key as a `data-testid` suffix. */
export function jobTestId(key: string): string {
  return `job-${key.replaceAll("/", "__")}`;
}

function toDate(when: string | number | Date | null | undefined): Date | null {
  if (when == null || when === "") return null;
  const d = when instanceof Date ? when : new Date(when);
  return Number.isNaN(d.getTime()) ? null : d;
}

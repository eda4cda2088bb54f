import { describe, expect, it } from "vitest";
import {
  formatByteRate,
  formatBytes,
  formatCount,
  formatDuration,
  formatExact,
  formatMillis,
  formatPercent,
  formatRate,
  formatRelative,
  formatTimeLeft,
  jobTestId,
} from "./format";

describe("formatBytes", () => {
  it("writes sizes with one decimal in B/KB/MB/GB", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1024)).toBe("1.0 KB");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(5 * 1024 ** 2)).toBe("5.0 MB");
    expect(formatBytes(1.2 * 1024 ** 3)).toBe("1.2 GB");
    expect(formatBytes(3 * 1024 ** 4)).toBe("3.0 TB");
  });
  it("never shows 1024.0 of a unit", () => {
    expect(formatBytes(1024 ** 2 - 1)).toBe("1.0 MB");
  });
  it("shows a dash for unknown values", () => {
    expect(formatBytes(null)).toBe("—");
    expect(formatBytes(undefined)).toBe("—");
    expect(formatBytes(-1)).toBe("—");
    expect(formatBytes(NaN)).toBe("—");
  });
});

describe("counts and rates", () => {
  it("groups thousands", () => {
    expect(formatCount(3412)).toBe("3,412");
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(0)).toBe("0");
    expect(formatCount(null)).toBe("—");
  });
  it("writes rates per second", () => {
    expect(formatRate(3412.4)).toBe("3,412 rows/s");
    expect(formatRate(2.46)).toBe("2.5 rows/s");
    expect(formatRate(0)).toBe("0 rows/s");
    expect(formatRate(12, "pages")).toBe("12 pages/s");
    expect(formatRate(undefined)).toBe("—");
    expect(formatByteRate(1.5 * 1024 ** 2)).toBe("1.5 MB/s");
  });
  it("writes percentages, clamped", () => {
    expect(formatPercent(0.4231)).toBe("42%");
    expect(formatPercent(1.7)).toBe("100%");
    expect(formatPercent(-1)).toBe("0%");
  });
});

describe("durations", () => {
  it("writes seconds, minutes, hours and days", () => {
    expect(formatDuration(42)).toBe("42 s");
    expect(formatDuration(240)).toBe("4 min");
    expect(formatDuration(2 * 3600 + 13 * 60)).toBe("2 h 13 min");
    expect(formatDuration(3600)).toBe("1 h");
    expect(formatDuration(3 * 86400 + 4 * 3600)).toBe("3 d 4 h");
    expect(formatDuration(null)).toBe("—");
  });
  it("says what is left", () => {
    expect(formatTimeLeft(240)).toBe("4 min left");
    expect(formatTimeLeft(7980)).toBe("2 h 13 min left");
    expect(formatTimeLeft(0.2)).toBe("almost done");
    expect(formatTimeLeft(null)).toBe("");
  });
  it("writes milliseconds", () => {
    expect(formatMillis(340)).toBe("340 ms");
    expect(formatMillis(41_000)).toBe("41 s");
  });
});

describe("timestamps", () => {
  const now = new Date("2025-03-14T12:00:00Z");
  it("writes relative times", () => {
    expect(formatRelative("2025-03-14T11:59:50Z", now)).toBe("just now");
    expect(formatRelative("2025-03-14T11:57:00Z", now)).toBe("3 min ago");
    expect(formatRelative("2025-03-14T10:00:00Z", now)).toBe("2 h ago");
    expect(formatRelative("2025-03-13T10:00:00Z", now)).toBe("yesterday");
    expect(formatRelative("2025-03-09T12:00:00Z", now)).toBe("5 days ago");
    expect(formatRelative("2025-03-14T12:04:00Z", now)).toBe("in 4 min");
    expect(formatRelative("not a date", now)).toBe("—");
  });
  it("writes the exact local time for tooltips", () => {
    const d = new Date(2025, 2, 14, 9, 26, 53);
    expect(formatExact(d)).toBe("2025-03-14 09:26:53");
    expect(formatExact(null)).toBe("");
  });
});

describe("jobTestId", () => {
  it("replaces every slash", () => {
    expect(jobTestId("opentargets/target/25.03")).toBe("job-opentargets__target__25.03");
  });
});

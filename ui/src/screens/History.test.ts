import { describe, expect, it } from "vitest";
import { render, screen, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import History from "./History.svelte";
import { fail, mockBackend } from "../test/backend";

const run = {
  id: 7,
  job_key: "gho/life_expectancy",
  plugin: "gho",
  entry: "life_expectancy",
  state: "completed",
  mode: "upsert",
  table: { schema: "public", name: "life_expectancy" },
  started_at: new Date(Date.now() - 3 * 60_000).toISOString(),
  finished_at: new Date().toISOString(),
  pages: 12,
  rows: 11_832,
  bytes: 3 * 1024 ** 2,
  total_rows: null,
  duration_ms: 41_000,
  last_error: null,
};

describe("History screen", () => {
  it("shows the empty state", async () => {
    mockBackend({ runs_list: () => [] });
    render(History);
    expect(await screen.findByText("No loads yet")).toBeInTheDocument();
  });

  it("shows the error and retries", async () => {
    let n = 0;
    const b = mockBackend({ runs_list: () => (n++ === 0 ? fail("destination", "no ledger in this database") : [run]) });
    render(History);
    expect(await screen.findByText("no ledger in this database")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("run-7")).toBeInTheDocument();
    expect(b.argsOf("runs_list")).toHaveLength(2);
  });

  it("lists past loads and shows one load's run metrics", async () => {
    const b = mockBackend({
      runs_list: () => [run],
      run_detail: () => ({
        ...run,
        position: null,
        metrics: {
          rows_read: 11_900,
          rows_written: 11_832,
          rows_rejected: 68,
          bytes: 3 * 1024 ** 2,
          phase_ms: { download: 20_000, load: 15_000 },
          columns: { country_code: { nulls: 0, distinct: 194 } },
          updated_at: new Date().toISOString(),
        },
      }),
    });
    render(History);
    const row = await screen.findByTestId("run-7");
    expect(row).toHaveTextContent("11,832");
    expect(row).toHaveTextContent("3.0 MB");
    expect(row).toHaveTextContent("41 s");
    expect(row).toHaveTextContent("3 min ago");
    await userEvent.click(within(row).getByRole("button", { name: "gho/life_expectancy" }));
    const detail = await screen.findByTestId("run-detail");
    expect(await within(detail).findByText("11,900")).toBeInTheDocument();
    expect(detail).toHaveTextContent("country_code");
    expect(detail).toHaveTextContent("194");
    expect(b.argsOf("run_detail")).toEqual([{ id: 7 }]);
  });
});

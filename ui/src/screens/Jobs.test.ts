import { beforeEach, describe, expect, it } from "vitest";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import Jobs from "./Jobs.svelte";
import { fail, mockBackend } from "../test/backend";
import { job } from "../test/fixtures";
import { jobState, startApp } from "../lib/state.svelte";

beforeEach(() => {
  jobState.list = [];
  jobState.error = null;
  jobState.loading = true;
});

const base = { databases_list: () => ({ active: null, databases: [], local: null }) };

describe("Jobs screen", () => {
  it("shows the empty state pointing to Plugins", async () => {
    mockBackend({ ...base, jobs_list: () => [] });
    render(Jobs);
    await startApp();
    expect(await screen.findByText("No jobs yet")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: /open plugins/i })).toBeInTheDocument();
  });

  it("shows an error with a retry", async () => {
    let n = 0;
    mockBackend({ ...base, jobs_list: () => (n++ === 0 ? fail("status_file", "status.yaml: invalid") : [job()]) });
    render(Jobs);
    await startApp();
    expect(await screen.findByText("status.yaml: invalid")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("job-gho__life_expectancy")).toBeInTheDocument();
  });

  it("pauses a job and follows job-progress events", async () => {
    const b = mockBackend({
      ...base,
      jobs_list: () => [job({ key: "opentargets/target/25.03", units: 10, unitsDone: 4, lastError: null })],
      job_pause: () => null,
      job_resume: () => null,
    });
    render(Jobs);
    await startApp();
    const card = await screen.findByTestId("job-opentargets__target__25.03");
    const q = within(card);
    expect(q.getByTestId("job-state")).toHaveTextContent("running");
    expect(q.getByTestId("job-rows")).toHaveTextContent("1,200 rows");
    expect(card).toHaveTextContent("3,412 rows/s");
    expect(card).toHaveTextContent("4 min left");
    expect(q.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "40");

    await userEvent.click(q.getByTestId("job-pause"));
    expect(b.argsOf("job_pause")).toEqual([{ key: "opentargets/target/25.03" }]);
    expect(q.getByTestId("job-pause")).toHaveTextContent("Pausing");

    await b.emit("job-progress", job({ key: "opentargets/target/25.03", state: "paused", rows: 5_000, units: 10, unitsDone: 5 }));
    await waitFor(() => expect(q.getByTestId("job-state")).toHaveTextContent("paused"));
    expect(q.getByTestId("job-rows")).toHaveTextContent("5,000");
    expect(q.queryByTestId("job-pause")).toBeNull();

    await userEvent.click(q.getByTestId("job-resume"));
    expect(b.argsOf("job_resume")).toEqual([{ key: "opentargets/target/25.03" }]);
    await waitFor(() => expect(q.getByTestId("job-state")).toHaveTextContent("running"));
  });

  it("shows the last error and a command's failure on the card", async () => {
    mockBackend({
      ...base,
      jobs_list: () => [job({ state: "failed", lastError: "page 3: column age: 'n/a' is not an integer" })],
      job_resume: () => fail("job_busy", "another psystem process runs this job"),
    });
    render(Jobs);
    await startApp();
    const card = await screen.findByTestId("job-gho__life_expectancy");
    expect(within(card).getByTestId("job-error")).toHaveTextContent("'n/a' is not an integer");
    await userEvent.click(within(card).getByTestId("job-resume"));
    expect(await within(card).findByText("another psystem process runs this job")).toBeInTheDocument();
  });

  it("moves completed jobs to Finished and shows the log tail", async () => {
    mockBackend({ ...base, jobs_list: () => [job({ state: "completed" })], job_log: () => ["page 1 committed", "page 2 committed"] });
    render(Jobs);
    await startApp();
    const card = await screen.findByTestId("job-gho__life_expectancy");
    expect(screen.getByText("Finished")).toBeInTheDocument();
    expect(within(card).queryByTestId("job-pause")).toBeNull();
    await userEvent.click(within(card).getByRole("button", { name: /show log/i }));
    expect(await within(card).findByTestId("job-log")).toHaveTextContent("page 2 committed");
  });
});

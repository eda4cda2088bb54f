import { describe, expect, it } from "vitest";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import Releases from "./Releases.svelte";
import { fail, mockBackend } from "../test/backend";
import { plugin } from "../test/fixtures";

const ot = plugin({ name: "opentargets", source: "release", entries: ["target"], run: "target" });
const files = ["output/target/part-00000.parquet", "output/target/part-00001.parquet"];
const show = (a: Record<string, unknown>) => ({
  source: "opentargets",
  url: "file:///fixtures",
  release: a.release,
  layout: "output",
  manifest: "release_data_integrity",
  datasets: [
    {
      name: "target",
      entry: "target",
      files: 2,
      bytes: 3 * 1024 ** 2,
      partition_keys: [],
      file_list: files.map((p) => [p, 1.5 * 1024 ** 2]),
      columns: a.schema ? [["id", "Utf8", "text"], ["tss", "Int64", "bigint"]] : [],
      rows: a.schema ? 10 : null,
      keys: null,
    },
  ],
});

describe("Releases screen", () => {
  it("says what to do when no plugin has a release source", async () => {
    mockBackend({ plugins_list: () => ({ plugins: [plugin()], errors: [] }) });
    render(Releases);
    expect(await screen.findByText("No release sources")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: /open plugins/i })).toBeInTheDocument();
  });

  it("shows the real state of a source without releases", async () => {
    mockBackend({ plugins_list: () => ({ plugins: [ot], errors: [] }), releases_list: () => [] });
    render(Releases);
    expect(await screen.findByText("No releases for this source yet")).toBeInTheDocument();
    expect(screen.getByTestId("releases-plugin")).toHaveValue("opentargets");
  });

  it("offers Enable when the plugin is disabled", async () => {
    let enabled = false;
    const b = mockBackend({
      plugins_list: () => ({ plugins: [{ ...ot, enabled }], errors: [] }),
      releases_list: () => (enabled ? [{ name: "25.03", latest: true }] : fail("plugin_disabled", "opentargets is disabled")),
      plugin_set_enabled: (a) => ((enabled = a.enabled as boolean), { ...ot, enabled }),
      release_show: show,
      file_checks: () => [],
    });
    render(Releases);
    await userEvent.click(await screen.findByRole("button", { name: "Enable opentargets" }));
    expect(await screen.findByTestId("release-25.03")).toBeInTheDocument();
    expect(b.argsOf("plugin_set_enabled")).toEqual([{ name: "opentargets", enabled: true }]);
  });

  it("lists releases newest first, datasets with sizes, verifies with progress and reads the schema", async () => {
    const b = mockBackend({
      plugins_list: () => ({ plugins: [plugin(), ot], errors: [] }),
      releases_list: () => [
        { name: "25.03", latest: true },
        { name: "24.12", latest: false },
      ],
      release_show: show,
      file_checks: () => [{ path: files[1], status: "unverified", size: 1, expected: null, computed: null }],
      release_verify: async (a) => {
        await b.emit("verify-progress", { plugin: "opentargets", release: "25.03", path: files[0], done: 1, total: 2, status: "verified" });
        await new Promise((r) => setTimeout(r, 50));
        return {
          release: a.release,
          manifest: "release_data_integrity",
          recorded: false,
          files: [
            { path: files[0], size: 1, status: "verified", expected: "a", computed: "a" },
            { path: files[1], size: 1, status: "mismatch", expected: "a", computed: "b" },
          ],
        };
      },
    });
    render(Releases);
    const rows = await screen.findAllByTestId(/^release-\d/);
    expect(rows.map((r) => r.dataset.testid)).toEqual(["release-25.03", "release-24.12"]);
    const ds = await screen.findByTestId("dataset-target");
    expect(ds).toHaveTextContent("2 files · 3.0 MB");
    expect(b.argsOf("release_show")[0]).toMatchObject({ plugin: "opentargets", release: "25.03", files: true });

    await userEvent.click(within(ds).getByRole("button", { name: /show files of target/i }));
    expect(within(ds).getAllByTestId("file-badge").map((x) => x.textContent)).toEqual(["unchecked", "unchecked"]);
    expect(ds).toHaveTextContent("1.5 MB");

    await userEvent.click(screen.getByTestId("release-verify"));
    expect(await screen.findByTestId("verify-progress")).toHaveTextContent("1 of 2 files");
    await waitFor(() =>
      expect(within(ds).getAllByTestId("file-badge").map((x) => x.textContent)).toEqual(["verified", "mismatch"]),
    );
    expect(b.argsOf("release_verify")[0]).toMatchObject({ plugin: "opentargets", release: "25.03" });

    await userEvent.click(within(ds).getByRole("button", { name: /schema/i }));
    const table = await within(ds).findByTestId("schema-table");
    expect(table).toHaveTextContent("tss");
    expect(table).toHaveTextContent("bigint");
    expect(b.argsOf("release_show")[1]).toMatchObject({ datasets: ["target"], schema: true });
  });

  it("shows where a release could not be read", async () => {
    mockBackend({
      plugins_list: () => ({ plugins: [ot], errors: [] }),
      releases_list: () => [{ name: "25.03", latest: true }],
      release_show: () => fail("transport", "HTTP 503 from ftp.ebi.ac.uk"),
      file_checks: () => [],
    });
    render(Releases);
    expect(await screen.findByText("Could not read release 25.03 of opentargets")).toBeInTheDocument();
    expect(screen.getByText("HTTP 503 from ftp.ebi.ac.uk")).toBeInTheDocument();
  });
});

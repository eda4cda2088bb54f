import { describe, expect, it } from "vitest";
import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import Plugins from "./Plugins.svelte";
import { fail, mockBackend } from "../test/backend";
import { plugin } from "../test/fixtures";

describe("Plugins screen", () => {
  it("shows the empty state with a reload button", async () => {
    const b = mockBackend({ plugins_list: () => ({ plugins: [], errors: [] }) });
    render(Plugins);
    expect(await screen.findByText("No plugins yet")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: /reload plugins/i }));
    await waitFor(() => expect(b.argsOf("plugins_list")).toHaveLength(2));
  });

  it("shows the error with its code and retries", async () => {
    let n = 0;
    const b = mockBackend({
      plugins_list: () => (n++ === 0 ? fail("invalid_config", "settings.yaml: bad indent") : { plugins: [plugin()], errors: [] }),
    });
    render(Plugins);
    const alert = await screen.findByTestId("error-state");
    expect(alert).toHaveTextContent("settings.yaml: bad indent");
    expect(alert).toHaveAttribute("data-code", "invalid_config");
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("plugin-gho")).toBeInTheDocument();
    expect(b.argsOf("plugins_list")).toHaveLength(2);
  });

  it("lists plugins with source, entries and a toggle that calls plugin_set_enabled", async () => {
    const b = mockBackend({
      plugins_list: () => ({
        plugins: [plugin(), plugin({ name: "OpenTargets", source: "release", entries: ["target"], run: "target" })],
        errors: ["user/bad.yaml:3:1: unknown field"],
      }),
      plugin_set_enabled: (a) => plugin({ enabled: a.enabled as boolean }),
    });
    render(Plugins);
    const card = await screen.findByTestId("plugin-gho");
    expect(card).toHaveTextContent("WHO Global Health Observatory");
    expect(card).toHaveTextContent("GHO OData");
    expect(screen.getByTestId("plugin-opentargets")).toHaveTextContent("releases");
    expect(screen.getByText("user/bad.yaml:3:1: unknown field")).toBeInTheDocument();
    expect(screen.getByTestId("plugin-run-gho-mortality")).toBeInTheDocument();

    const toggle = screen.getByTestId("plugin-toggle-gho");
    expect(toggle).toHaveAttribute("aria-checked", "true");
    await userEvent.click(toggle);
    await waitFor(() => expect(b.argsOf("plugin_set_enabled")).toEqual([{ name: "gho", enabled: false }]));
    await waitFor(() => expect(toggle).toHaveAttribute("aria-checked", "false"));
  });

  it("puts the toggle back and shows the error when saving fails", async () => {
    mockBackend({
      plugins_list: () => ({ plugins: [plugin()], errors: [] }),
      plugin_set_enabled: () => fail("io", "settings.yaml is read-only"),
    });
    render(Plugins);
    const toggle = await screen.findByTestId("plugin-toggle-gho");
    await userEvent.click(toggle);
    expect(await screen.findByText("settings.yaml is read-only")).toBeInTheDocument();
    expect(toggle).toHaveAttribute("aria-checked", "true");
  });

  it("runs an entry and offers Enable when the plugin is disabled", async () => {
    let enabled = false;
    const b = mockBackend({
      plugins_list: () => ({ plugins: [plugin({ enabled })], errors: [] }),
      plugin_set_enabled: (a) => {
        enabled = a.enabled as boolean;
        return plugin({ enabled });
      },
      job_start: (a) => (enabled ? { key: `${a.plugin}/${a.entry}` } : fail("plugin_disabled", "plugin gho is disabled")),
      jobs_list: () => [],
    });
    render(Plugins);
    await userEvent.click(await screen.findByTestId("plugin-run-gho-mortality"));
    const err = await screen.findByTestId("error-state");
    expect(err).toHaveAttribute("data-code", "plugin_disabled");
    await userEvent.click(screen.getByRole("button", { name: "Enable and run" }));
    await waitFor(() => expect(b.argsOf("job_start")).toHaveLength(2));
    expect(b.argsOf("plugin_set_enabled")).toEqual([{ name: "gho", enabled: true }]);
    expect(b.argsOf("job_start")[1]).toEqual({ plugin: "gho", entry: "mortality" });
    await waitFor(() => expect(screen.queryByTestId("error-state")).toBeNull());
  });
});

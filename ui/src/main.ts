import "./app.css";
import { mount } from "svelte";
import App from "./App.svelte";
import { initTheme } from "./lib/theme.svelte";

async function start() {
  initTheme();
  // `npm run dev` in a plain browser: no Tauri backend, so install the small fake one (never in a build).
  if (import.meta.env.DEV && !("__TAURI_INTERNALS__" in window)) {
    const { installFakeBackend } = await import("./lib/fake-backend");
    installFakeBackend();
  }
  mount(App, { target: document.getElementById("app")! });
}

void start();

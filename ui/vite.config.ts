/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import tailwindcss from "@tailwindcss/vite";

// The Tauri shell loads `devUrl` (http://localhost:5173) in development and `ui/dist` (frontendDist) in a
// release build; `base: "./"` keeps asset URLs relative so the custom protocol finds them.
export default defineConfig({
  base: "./",
  plugins: [tailwindcss(), svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1200 },
  // Svelte 5 under Vitest needs the browser build, else `mount(...) is not available on the server`.
  resolve: process.env.VITEST ? { conditions: ["browser"] } : undefined,
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
    setupFiles: ["./src/test/setup.ts"],
    css: false,
    restoreMocks: true,
  },
});

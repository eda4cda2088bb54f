//! Tauri build step; the app's config is `tauri.conf.json` at the repository root.
fn main() {
    tauri_build::try_build(tauri_build::Attributes::new().config_path("../tauri.conf.json"))
        .expect("tauri build step (reads ../tauri.conf.json)");
}

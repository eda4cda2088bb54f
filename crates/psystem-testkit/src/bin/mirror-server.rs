//! `mirror-server --dir D --port P [--bucket B]`: serves folder D over HTTP (files with `Range`, Apache-style
//! index pages) and as the GCS JSON API for bucket B (default `open-targets`) on 127.0.0.1:P, in the
//! foreground, until Ctrl+C. See `psystem_testkit::mirror`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Serve a folder as a release mirror (HTTP with Range + index pages, GCS JSON API)"
)]
struct Args {
    /// Folder to serve.
    #[arg(long)]
    dir: PathBuf,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// GCS bucket name mapped to the folder.
    #[arg(long, default_value = psystem_testkit::mirror::DEFAULT_BUCKET)]
    bucket: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.dir.is_dir(), "{} is not a folder", args.dir.display());
    let server = psystem_testkit::mirror::MirrorServer::start_on(
        args.dir.clone(),
        SocketAddr::from(([127, 0, 0, 1], args.port)),
        &args.bucket,
    )
    .await?;
    println!("serving {} at {}", args.dir.display(), server.base_url());
    println!(
        "GCS endpoint {} bucket {}",
        server.gcs_endpoint(),
        server.bucket()
    );
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(())
}

//! `gho-server`: serves saved WHO GHO OData responses (`<INDICATOR>.json` files) on 127.0.0.1 until
//! killed, for demos and manual testing. See `psystem_testkit::gho_server` for what it understands.
//!
//! ```text
//! gho-server --dir shared/fixtures/who_gho --port 8089
//! GHO OData test server: http://127.0.0.1:8089/api (serving 3 indicators from shared/fixtures/who_gho)
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use psystem_testkit::gho_server::GhoServer;

/// Serve saved WHO GHO OData responses (`<INDICATOR>.json`) at `http://127.0.0.1:PORT/api/<INDICATOR>`.
#[derive(Parser, Debug)]
#[command(name = "gho-server", version)]
struct Args {
    /// Directory holding `<INDICATOR>.json` files (saved `{"@odata.context":…, "value":[…]}` responses).
    #[arg(long)]
    dir: PathBuf,
    /// Port on 127.0.0.1 to listen on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Wait this many milliseconds before every response (to watch progress, or to try pause and resume).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let server = match GhoServer::start_on(&args.dir, args.port) {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "gho-server: cannot serve {} on 127.0.0.1:{}: {e}",
                args.dir.display(),
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    server.set_delay(std::time::Duration::from_millis(args.delay_ms));
    let banner = format!(
        "GHO OData test server: {} (serving {} indicators from {})",
        server.api_url(),
        server.indicators().len(),
        args.dir.display()
    );
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{banner}")
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    loop {
        std::thread::park();
    }
}

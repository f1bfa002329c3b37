//! `hexagone-demo [OUT_DIR]`: the main job on a local simulated sovereign cluster (see the
//! library's documentation). Writes into OUT_DIR (default `demo-out`); stops everything it
//! started when it ends, also on Ctrl-C.

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("demo-out"), PathBuf::from);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hexagone-demo: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = hexagone_demo::run(&out) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    // Dropping the run stopped the control plane and every process it started.
    match result {
        Ok(Some(outcome)) => {
            print!("{}", hexagone_demo::summary(&outcome));
            if outcome.verify.0 == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Ok(None) => {
            eprintln!("hexagone-demo: interrupted; everything it started is stopped");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("hexagone-demo: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

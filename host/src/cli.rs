//! The command line for people: `wasm-ipam <subcommand>`. The runtime never
//! passes arguments, so none of this runs on the CNI path.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasm-ipam",
    version,
    about = "A CNI IPAM plugin that runs its allocation policy as a sandboxed WebAssembly component",
    long_about = "A CNI IPAM plugin that runs its allocation policy as a sandboxed WebAssembly component.\n\n\
                  Run with no arguments, it is the CNI plugin: the runtime passes CNI_* variables and the \
                  network config on stdin. The subcommands below are for people."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pod lifecycle through this binary as a runtime would, and show
    /// each CNI call and its answer.
    Demo {
        /// Keep the data directory here instead of a temporary one.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { data_dir } => crate::demo::run(data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-ipam: {e:#}");
            ExitCode::FAILURE
        }
    }
}

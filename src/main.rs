//! `keyfs`: mount an FTP directory (see `keyfs --help` and keyfs(1)).
mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(msg) = cli::run(args) {
        eprintln!("keyfs: {msg}");
        std::process::exit(1);
    }
}

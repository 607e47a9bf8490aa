//! `keyfs`: mount an FTP directory (see `keyfs --help` and keyfs(1)).
mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse_from(cli::helper_argv(std::env::args_os().collect()));
    if let Err(f) = cli::run(args) {
        eprintln!("keyfs: {}", f.msg);
        std::process::exit(f.code);
    }
}

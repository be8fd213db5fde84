//! `keyless`: IAM roles for S3-compatible object storage, self-hosted, in one binary.

mod cli;
mod policy_cmd;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Policy(cmd) => policy_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyless: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

//! `keyless`: IAM roles for S3-compatible object storage, self-hosted, in one binary.

mod cli;
mod config;
mod policy_cmd;
mod serve;
mod tls;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
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

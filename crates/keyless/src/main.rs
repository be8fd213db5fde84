//! `keyless`: IAM roles for S3-compatible object storage, self-hosted, in one binary.

mod agent;
mod backup;
mod cli;
mod client;
mod config;
mod container;
mod doctor;
mod gitlab_cmd;
mod iam_cmd;
mod oidc;
mod policy_cmd;
mod private;
mod query;
mod root;
mod serve;
mod tls;
mod whoami;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // doctor explains every failure of the SDK itself; its warnings would say it twice.
    let sdk_level = match cli.command {
        cli::Command::Doctor(_) => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(sdk_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Agent(args) => agent::run(args),
        cli::Command::Policy(cmd) => policy_cmd::run(cmd),
        cli::Command::Token(args) => token(&args),
        cli::Command::Iam(cli::IamCommand::CreateServiceAccount(args)) => {
            iam_cmd::create_service_account(&args)
        }
        cli::Command::Oidc(cli::OidcCommand::Rotate { data_dir }) => rotate(&data_dir),
        cli::Command::Whoami(args) => whoami::run(&args),
        cli::Command::Backup(cmd) => backup::run(cmd),
        cli::Command::Gitlab(cmd) => gitlab_cmd::run(cmd),
        cli::Command::Doctor(args) => doctor::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyless: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn token(args: &cli::TokenArgs) -> anyhow::Result<std::process::ExitCode> {
    use keyless_types::Clock as _;
    let token = oidc::mint(args, serve::SystemClock.unix_seconds())?;
    println!("{token}");
    Ok(std::process::ExitCode::SUCCESS)
}

fn rotate(data_dir: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    use keyless_types::Clock as _;
    let kid = oidc::rotate(data_dir, serve::SystemClock.unix_seconds())?;
    eprintln!(
        "keyless: the OIDC issuer now signs with key {kid}; the old key stays published for 48 hours"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `RUST_LOG`, `info` by default. s3s logs whole request URIs at debug level, and a presigned
/// URL in a log is a credential until it expires: s3s stays at `info`, and the AWS SDK at `warn`,
/// unless `RUST_LOG` names them.
fn log_filter(sdk_level: &str) -> tracing_subscriber::EnvFilter {
    #[allow(clippy::disallowed_methods)] // the binary reads its configuration
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| "info".into());
    // The AWS SDK of the client tools narrates every credential lookup at info level.
    for (target, level) in [
        ("s3s", "info"),
        ("aws_config", sdk_level),
        ("aws_smithy_runtime", sdk_level),
    ] {
        if !spec.contains(target)
            && let Ok(directive) = format!("{target}={level}").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

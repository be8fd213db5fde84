//! `keyless`: IAM roles for S3-compatible object storage, self-hosted, in one binary.

mod cli;
mod output;
mod tools;

use anyhow::Context as _;
use clap::Parser as _;

use output::outln;
use tools::{backup, doctor, gitlab, iam, policy, whoami};

/// mimalloc rather than glibc's malloc: request handling is many small short-lived allocations
/// (JSON values, headers), on which glibc's arenas spend a third of a review's CPU
/// (`scripts/bench/webhook`, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // doctor explains every failure of the SDK itself; its warnings would say it twice.
    let sdk_level = match cli.command {
        cli::Command::Doctor(_) => "error",
        _ => "warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(sdk_level))
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        cli::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    let result = match cli.command {
        cli::Command::Serve(options) => block_on(serve(*options)),
        cli::Command::Agent(options) => block_on(agent(options)),
        cli::Command::Webhook(args) => match args.command {
            Some(cli::WebhookCommand::Config(config)) => webhook_config(&config),
            None => block_on(webhook(args.serve)),
        },
        cli::Command::Policy(cmd) => policy::run(cmd),
        cli::Command::Token(args) => token(&args),
        cli::Command::Iam(cli::IamCommand::CreateServiceAccount(args)) => {
            iam::create_service_account(&args)
        }
        cli::Command::Iam(cli::IamCommand::RevokeSessions(args)) => iam::revoke_sessions(&args),
        cli::Command::Oidc(cli::OidcCommand::Rotate {
            data_dir,
            iam_store,
            session_key_file,
            account_id,
        }) => match (&iam_store.iam_store, session_key_file) {
            (Some(_), Some(session_key_file)) => block_on(async move {
                let kid = keyless_server::replicas::rotate_issuer_keys(
                    &iam_store,
                    &session_key_file,
                    &account_id,
                    now(),
                )
                .await?;
                eprintln!(
                    "keyless: the replicas' OIDC issuer now signs with key {kid}; the old key stays published for 48 hours"
                );
                Ok(())
            }),
            _ => rotate(&data_dir),
        },
        cli::Command::Encryption(cli::EncryptionCommand::Rotate {
            data_dir,
            encryption_key_file,
        }) => {
            keyless_server::encryption::rotate(&data_dir, encryption_key_file.as_deref()).map(
                |id| {
                    eprintln!(
                        "keyless: new objects are sealed under master key {id}; restart keyless serve to re-wrap the data keys of the others"
                    );
                    std::process::ExitCode::SUCCESS
                },
            )
        }
        cli::Command::Whoami(args) => whoami::run(&args),
        cli::Command::Backup(cmd) => backup::run(cmd),
        cli::Command::Gitlab(cmd) => gitlab::run(cmd),
        cli::Command::Doctor(args) => doctor::run(&args),
        cli::Command::Audit(args) => tools::audit::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyless: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs a long-lived command (`serve`, `agent`) on the multi-threaded runtime.
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(command)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `keyless serve`: opens the server, prints where it is, and serves until SIGTERM or SIGINT.
async fn serve(options: keyless_server::ServeOptions) -> anyhow::Result<()> {
    keyless_server::raise_open_file_limit();
    let (trigger, shutdown) = keyless_server::shutdown_channel();
    keyless_server::on_signals(trigger).context("cannot handle signals")?;
    let listeners = keyless_server::Listeners::bind(&options).await?;
    let server = keyless_server::Server::open(options, listeners).await?;
    print_banner(server.banner());
    server.run(shutdown).await
}

/// `keyless agent`: the same life as `serve`.
async fn agent(options: keyless_server::AgentOptions) -> anyhow::Result<()> {
    keyless_server::raise_open_file_limit();
    let (trigger, shutdown) = keyless_server::shutdown_channel();
    keyless_server::on_signals(trigger).context("cannot handle signals")?;
    let listeners = keyless_server::AgentListeners::bind(&options).await?;
    let agent = keyless_server::Agent::open(options, listeners).await?;
    print_banner(agent.banner());
    agent.run(shutdown).await
}

/// `keyless webhook`: the same life as `serve`.
async fn webhook(options: keyless_server::WebhookOptions) -> anyhow::Result<()> {
    keyless_server::raise_open_file_limit();
    let (trigger, shutdown) = keyless_server::shutdown_channel();
    keyless_server::on_signals(trigger).context("cannot handle signals")?;
    let listeners = keyless_server::WebhookListeners::bind(&options).await?;
    let webhook = keyless_server::Webhook::open(options, listeners).await?;
    print_banner(webhook.banner());
    webhook.run(shutdown).await
}

/// `keyless webhook config`: the MutatingWebhookConfiguration on stdout.
fn webhook_config(args: &cli::WebhookConfigArgs) -> anyhow::Result<std::process::ExitCode> {
    let ca_bundle = match &args.ca_bundle {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-bundle: cannot read `{}`", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("--ca-bundle: `{}` holds no PEM certificate", path.display());
            }
            Some(pem)
        }
        None => None,
    };
    let config = keyless_webhook::webhook_configuration(&keyless_webhook::ConfigOptions {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        service_name: args.service_name.clone(),
        port: args.port,
        ca_bundle,
        failure_policy: args.failure_policy.policy(),
        timeout_seconds: args.timeout_seconds,
    });
    println!("{}", serde_json::to_string_pretty(&config)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The banner is for whoever started the server; if they stopped reading (a closed pipe), the
/// server goes on serving.
fn print_banner(banner: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "cannot print the banner");
    }
}

fn token(args: &cli::TokenArgs) -> anyhow::Result<std::process::ExitCode> {
    let claims = keyless_oidc::ServiceAccountClaims {
        namespace: args.namespace.clone(),
        service_account: args.service_account.clone(),
        audiences: args.audiences.clone(),
        duration_seconds: args.duration,
        service_account_uid: None,
        pod: args
            .pod_name
            .clone()
            .zip(args.pod_uid.clone())
            .map(|(name, uid)| keyless_oidc::Pod { name, uid }),
    };
    let token = keyless_server::issuer::mint(&args.data_dir, &claims, now())?;
    outln!("{token}")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The time, for the tools.
pub(crate) fn now() -> i64 {
    use keyless_types::Clock as _;
    #[allow(clippy::disallowed_types)] // the binary builds the real clock
    keyless_types::SystemClock.unix_seconds()
}

fn rotate(data_dir: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let kid = keyless_server::issuer::rotate(data_dir, now())?;
    eprintln!(
        "keyless: the OIDC issuer now signs with key {kid}; the old key stays published for 48 hours"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `RUST_LOG`, `info` by default. s3s logs whole request URIs at debug level (a presigned URL in
/// a log is a credential until it expires) and every client mistake at error level (an
/// AccessDenied is no fault of the server): it is silenced, since the server logs each request
/// itself, and the AWS SDK stays at `warn`, unless `RUST_LOG` names them.
fn log_filter(sdk_level: &str) -> tracing_subscriber::EnvFilter {
    #[allow(clippy::disallowed_methods)] // the binary reads its configuration
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| "info".into());
    // The AWS SDK of the client tools narrates every credential lookup at info level.
    for (target, level) in [
        ("s3s", "off"),
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

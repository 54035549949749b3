//! `warren`: loads the configuration (files, environment, flags) and runs the server.

use clap::Parser;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::config::LogFormat;
use warren::{Config, Server};

/// Warren, an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged.
///
/// Configuration sources, later ones winning: defaults (and WARREN_DEFAULTS), RabbitMQ's
/// rabbitmq.conf and conf.d (RABBITMQ_CONFIG_FILE, RABBITMQ_CONFIG_FILES,
/// /etc/rabbitmq/rabbitmq.conf, /etc/rabbitmq/conf.d, if present), the TOML file (--config or WARREN_CONFIG), the RABBITMQ_DEFAULT_USER /
/// _PASS / _VHOST, RABBITMQ_NODE_IP_ADDRESS and RABBITMQ_NODE_PORT environment
/// variables, then these flags.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/warren.toml for every option).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on; may be given several times. 127.0.0.1:5672, [::1]:5672,
    /// or a bare port for every interface (both families). Default: both loopbacks.
    #[arg(long, value_parser = parse_listen)]
    listen: Vec<Vec<SocketAddr>>,
    /// Address of an amqps (AMQP over TLS) listener; may be given several times, forms
    /// as --listen (RabbitMQ's port: 5671). Needs tls.cert_file and tls.key_file in
    /// the configuration (or ssl_options.certfile/keyfile in rabbitmq.conf).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen_tls: Vec<Vec<SocketAddr>>,
    /// Directory for the broker's data files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long)]
    log_level: Option<String>,
    /// Log line format: text (coloured only on a terminal) or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Definitions file (RabbitMQ's JSON), or a directory of them, imported at boot
    /// without replacing what exists (RabbitMQ: load_definitions). On a new data
    /// directory no default user and vhost are created then.
    #[arg(long, value_name = "FILE")]
    definitions: Option<PathBuf>,
    /// Address of the management HTTP API, IP:PORT, or none to turn it off.
    /// Default: 127.0.0.1:15672.
    #[arg(long, value_name = "ADDR", value_parser = parse_optional_addr)]
    management_listen: Option<OptionalAddr>,
    /// Address of the management API over HTTPS, IP:PORT, or none (the default). Uses
    /// tls.management_cert_file/key_file, or else tls.cert_file/key_file.
    #[arg(long, value_name = "ADDR", value_parser = parse_optional_addr)]
    management_listen_tls: Option<OptionalAddr>,
    /// Address of the Prometheus endpoint (/metrics), IP:PORT, or none to turn it
    /// off. Default: 127.0.0.1:15692.
    #[arg(long, value_name = "ADDR", value_parser = parse_optional_addr)]
    prometheus_listen: Option<OptionalAddr>,
}

/// An address or none (clap gives `Option<Option<_>>` another meaning).
#[derive(Clone, Debug)]
struct OptionalAddr(Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    warren::config::listen::optional::parse(s).map(OptionalAddr)
}

fn parse_listen(s: &str) -> Result<Vec<SocketAddr>, String> {
    warren::config::listen::parse_listener(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut config, notices) = match Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    if !cli.listen.is_empty() {
        config.listen = cli.listen.into_iter().flatten().collect();
    }
    if !cli.listen_tls.is_empty() {
        config.tls.listen = cli.listen_tls.into_iter().flatten().collect();
    }
    if let Some(v) = cli.management_listen_tls {
        config.tls.management_listen = v.0;
    }
    if let Some(v) = cli.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = cli.log_level {
        config.log_level = v;
    }
    if let Some(v) = cli.log_format {
        config.log_format = v;
    }
    if let Some(v) = cli.definitions {
        config.load_definitions = Some(v);
    }
    if let Some(v) = cli.management_listen {
        config.management_listen = v.0;
    }
    if let Some(v) = cli.prometheus_listen {
        config.prometheus_listen = v.0;
    }
    if let Err(e) = config.validate() {
        eprintln!("warren: {e}");
        return ExitCode::from(2);
    }
    init_logging(&config);
    tracing::info!(
        version = warren::identity::WARREN_VERSION,
        rabbitmq_version = warren::identity::RABBITMQ_VERSION,
        "starting {}",
        warren::identity::warren_release()
    );
    notices.log();

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    builder.worker_threads(match config.worker_threads {
        // One core is left to the store thread (and to clients on the same machine):
        // on small machines a worker per core spends more time handing work between
        // workers than doing it.
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
        n => n,
    });
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("warren: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Logs to standard output: plain lines, coloured only when it is a terminal (a file or
/// a pipe gets no escape codes), or one JSON object per line.
fn init_logging(config: &Config) {
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "warren: log level '{}' is not valid ({e}); using info",
                config.log_level
            );
            tracing_subscriber::EnvFilter::new("info")
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

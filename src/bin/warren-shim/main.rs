//! `warren-shim`: RabbitMQ's command-line tools as far as Warren can answer them, so
//! compose healthchecks and testcontainers helpers run unchanged. One binary, called
//! through symlinks named `rabbitmq-diagnostics`, `rabbitmqctl` and `rabbitmq-plugins`
//! (the name it is called by picks the tool), or as `warren-shim TOOL COMMAND ...`.
//!
//! The checks talk AMQP to the listeners found in the broker's own configuration sources
//! (rabbitmq.conf, conf.d, `WARREN_CONFIG`, the `RABBITMQ_*` variables). Commands that
//! need the broker's internals wait for Warren's management API and say so.
//!
//! Exit codes are those of RabbitMQ's tools (sysexits): 0 success, 64 usage (unknown
//! command or option), 69 unavailable (the broker does not answer, a check failed), 70
//! (a RabbitMQ command Warren does not provide yet), 75 timeout, 78 configuration error.

mod probe;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use warren::Config;
use warren::config::listen::reachable;
use warren::identity;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

const TOOLS: [&str; 3] = ["rabbitmq-diagnostics", "rabbitmqctl", "rabbitmq-plugins"];

/// RabbitMQ commands Warren knows of but cannot answer without its management API.
const NOT_YET: &[&str] = &[
    "check_local_alarms",
    "check_alarms",
    "alarms",
    "check_virtual_hosts",
    "check_if_node_is_quorum_critical",
    "check_if_node_is_mirror_sync_critical",
    "check_certificate_expiration",
    "check_protocol_listener",
    "memory_breakdown",
    "environment",
    "report",
    "list_queues",
    "list_exchanges",
    "list_bindings",
    "list_connections",
    "list_channels",
    "list_consumers",
    "list_permissions",
    "list_user_permissions",
    "list_policies",
    "list_parameters",
    "add_user",
    "delete_user",
    "change_password",
    "authenticate_user",
    "set_user_tags",
    "add_vhost",
    "delete_vhost",
    "set_permissions",
    "clear_permissions",
    "set_policy",
    "clear_policy",
    "purge_queue",
    "delete_queue",
    "close_connection",
    "import_definitions",
    "export_definitions",
    "stop",
    "stop_app",
    "start_app",
    "reset",
    "force_reset",
    "enable_feature_flag",
    "list_feature_flags",
    "cluster_status",
];

struct Options {
    quiet: bool,
    timeout: Duration,
    args: Vec<String>,
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    let called = argv
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let tool = if TOOLS.contains(&called.as_str()) {
        argv.remove(0);
        called
    } else if argv.len() > 1 && TOOLS.contains(&argv[1].as_str()) {
        argv.remove(0);
        argv.remove(0)
    } else {
        eprintln!(
            "usage: warren-shim {{rabbitmq-diagnostics|rabbitmqctl|rabbitmq-plugins}} COMMAND ...\n\
             (or call it through a symlink of one of those names)"
        );
        return ExitCode::from(EX_USAGE);
    };
    let options = match parse_options(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    ExitCode::from(run(&tool, options))
}

/// Strips the global options RabbitMQ's tools take (node name, quiet, timeout, ...).
fn parse_options(argv: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        quiet: false,
        timeout: Duration::from_secs(10),
        args: Vec::new(),
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-q" | "--quiet" | "-s" | "--silent" => options.quiet = true,
            "-l" | "--longnames" | "--no-table-headers" | "--erlang-cookie" => {}
            "-n" | "--node" | "--formatter" | "-p" | "--vhost" => {
                it.next()
                    .ok_or_else(|| format!("option {arg} needs a value"))?;
            }
            "-t" | "--timeout" => {
                let value = it.next().ok_or("option --timeout needs a value")?;
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("--timeout {value} is not a number of seconds"))?;
                options.timeout = Duration::from_secs(secs.max(1));
            }
            _ if arg.starts_with("--node=")
                || arg.starts_with("--formatter=")
                || arg.starts_with("--vhost=") => {}
            _ if arg.starts_with("--timeout=") => {
                let value = &arg["--timeout=".len()..];
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("--timeout {value} is not a number of seconds"))?;
                options.timeout = Duration::from_secs(secs.max(1));
            }
            _ => options.args.push(arg),
        }
    }
    Ok(options)
}

fn run(tool: &str, options: Options) -> u8 {
    let Some(command) = options.args.first().cloned() else {
        eprintln!(
            "Usage: {tool} [-q] [-n NODE] [-t TIMEOUT] COMMAND [ARGS]\n{}",
            help(tool)
        );
        return EX_USAGE;
    };
    if matches!(command.as_str(), "help" | "--help" | "-h") {
        println!(
            "Usage: {tool} [-q] [-n NODE] [-t TIMEOUT] COMMAND [ARGS]\n{}",
            help(tool)
        );
        return 0;
    }
    if command == "version" || command == "--version" {
        println!("{}", identity::RABBITMQ_VERSION);
        return 0;
    }
    if tool == "rabbitmq-plugins" {
        return plugins(&options);
    }
    let config = match Config::load(None, |k| std::env::var(k).ok()) {
        Ok((config, _notices)) => config,
        Err(e) => {
            eprintln!("Error: {e}");
            return EX_CONFIG;
        }
    };
    let node = node_name();
    // On a host without IPv6 the broker skips its IPv6 listeners; so do the checks.
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let configured: Vec<SocketAddr> = config
        .listen
        .iter()
        .copied()
        .filter(|a| ipv6 || a.is_ipv4())
        .collect();
    let listeners: Vec<SocketAddr> = configured.iter().map(|a| reachable(*a)).collect();
    if listeners.is_empty() {
        eprintln!("Error: the configuration has only IPv6 listeners and this host has no IPv6.");
        return EX_UNAVAILABLE;
    }
    match command.as_str() {
        "ping" => {
            if !options.quiet {
                println!(
                    "Will ping {node}. This only checks that Warren's AMQP listener answers. Timeout: {} ms.",
                    options.timeout.as_millis()
                );
            }
            match first_answer(&listeners, options.timeout) {
                Ok(_) => {
                    println!("Ping succeeded");
                    0
                }
                Err(e) => unavailable(&node, &e),
            }
        }
        "check_running" | "is_running" => match first_answer(&listeners, options.timeout) {
            Ok(_) => {
                println!("RabbitMQ on node {node} is fully booted and running");
                0
            }
            Err(e) => unavailable(&node, &e),
        },
        "await_startup" => await_startup(&node, &listeners, &options),
        "check_port_connectivity" => {
            if !options.quiet {
                println!("Testing TCP connections to all active listeners on node {node} ...");
            }
            let mut failed = Vec::new();
            for addr in &listeners {
                if let Err(e) = probe::probe(*addr, options.timeout) {
                    failed.push(format!("{addr}: {e}"));
                }
            }
            if failed.is_empty() {
                let mut ports: Vec<u16> = listeners.iter().map(|a| a.port()).collect();
                ports.dedup();
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                println!(
                    "Successfully connected to ports {} on node {node}.",
                    ports.join(", ")
                );
                0
            } else {
                eprintln!(
                    "Error:\nConnection to ports of the following listeners on node {node} failed:\n{}",
                    failed.join("\n")
                );
                EX_UNAVAILABLE
            }
        }
        "listeners" => {
            if !options.quiet {
                println!("Asking node {node} to report its protocol listeners ...");
            }
            for addr in &configured {
                println!(
                    "Interface: {}, port: {}, protocol: amqp, purpose: AMQP 0-9-1",
                    addr.ip(),
                    addr.port()
                );
            }
            0
        }
        "server_version" => match first_answer(&listeners, options.timeout) {
            Ok(answer) => {
                println!(
                    "{}",
                    answer.get("version").unwrap_or(identity::RABBITMQ_VERSION)
                );
                0
            }
            Err(e) => unavailable(&node, &e),
        },
        "status" => status(&node, &config, &configured, &listeners, &options),
        "list_users" => {
            if !options.quiet {
                println!("Listing users ...");
            }
            println!("user\ttags\n{}\t[administrator]", config.default_user);
            0
        }
        "list_vhosts" => {
            if !options.quiet {
                println!("Listing vhosts ...");
            }
            println!("name\n{}", config.default_vhost);
            0
        }
        other if NOT_YET.contains(&other) => {
            eprintln!(
                "Error: '{tool} {other}' is not available in Warren yet: it needs the broker's \
                 management interface, which Warren does not have yet."
            );
            if other.contains("user") || other.contains("vhost") || other.contains("permissions") {
                eprintln!(
                    "Warren has one user and one virtual host, with every permission, set by \
                     default_user / default_pass / default_vhost or RABBITMQ_DEFAULT_USER / \
                     _PASS / _VHOST."
                );
            }
            EX_SOFTWARE
        }
        other => {
            eprintln!("Error: command '{other}' not found.\n{}", help(tool));
            EX_USAGE
        }
    }
}

fn help(tool: &str) -> String {
    match tool {
        "rabbitmq-plugins" => "Commands: enable PLUGIN..., disable PLUGIN..., set PLUGIN..., list \
                               (Warren has no plugins: these succeed and change nothing)"
            .into(),
        _ => "Commands Warren answers: ping, check_running, check_port_connectivity, \
              await_startup, status, listeners, server_version, list_users, list_vhosts, version. \
              Commands that need the management interface (check_local_alarms, list_queues, \
              add_user, ...) exit with 70."
            .into(),
    }
}

fn plugins(options: &Options) -> u8 {
    let command = options.args[0].as_str();
    let names = &options.args[1..];
    match command {
        "enable" | "disable" | "set" => {
            let names: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !n.starts_with("--"))
                .collect();
            println!(
                "Warren has no plugins: '{command} {}' changes nothing. Warren's management API \
                 and Prometheus endpoint are not available yet; everything else is built in.",
                names.join(" ")
            );
            0
        }
        "list" => {
            if !options.quiet {
                println!("Listing plugins ... Warren has no plugins.");
            }
            0
        }
        other => {
            eprintln!(
                "Error: command '{other}' not found.\n{}",
                help("rabbitmq-plugins")
            );
            EX_USAGE
        }
    }
}

fn node_name() -> String {
    warren::identity::node_name()
}

/// The answer of the first listener that answers.
fn first_answer(listeners: &[SocketAddr], timeout: Duration) -> Result<probe::Answer, String> {
    let mut errors = Vec::new();
    for addr in listeners {
        match probe::probe(*addr, timeout) {
            Ok(answer) => return Ok(answer),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

fn unavailable(node: &str, why: &str) -> u8 {
    eprintln!("Error:\nUnable to reach node {node}: no AMQP listener answered ({why}).");
    EX_UNAVAILABLE
}

fn await_startup(node: &str, listeners: &[SocketAddr], options: &Options) -> u8 {
    // rabbitmqctl await_startup waits up to its timeout (300 s unless given).
    let limit = if options.timeout == Duration::from_secs(10) {
        Duration::from_secs(300)
    } else {
        options.timeout
    };
    let start = Instant::now();
    loop {
        if first_answer(listeners, Duration::from_secs(2)).is_ok() {
            return 0;
        }
        if start.elapsed() >= limit {
            eprintln!(
                "Error:\nNode {node} did not start within {} s.",
                limit.as_secs()
            );
            return EX_TEMPFAIL;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(
    node: &str,
    config: &Config,
    configured: &[SocketAddr],
    listeners: &[SocketAddr],
    options: &Options,
) -> u8 {
    if !options.quiet {
        println!("Status of node {node} ...");
    }
    let answer = first_answer(listeners, options.timeout);
    println!("Runtime\n");
    println!(
        "Product: {} ({})",
        identity::PRODUCT,
        identity::warren_release()
    );
    println!("RabbitMQ version: {}", identity::RABBITMQ_VERSION);
    println!("Warren version of this tool: {}", identity::WARREN_VERSION);
    if let Ok(a) = &answer {
        for key in [
            "product",
            "version",
            "warren_version",
            "platform",
            "cluster_name",
        ] {
            if let Some(v) = a.get(key) {
                println!("Broker {key}: {v}");
            }
        }
    }
    println!("\nData directory\n\n{}", config.data_dir.display());
    println!("\nListeners\n");
    for (configured, addr) in configured.iter().zip(listeners) {
        let state = match probe::probe(*addr, options.timeout) {
            Ok(_) => "answering".to_string(),
            Err(e) => format!("not answering: {e}"),
        };
        println!(
            "Interface: {}, port: {}, protocol: amqp, purpose: AMQP 0-9-1 ({state})",
            configured.ip(),
            configured.port()
        );
    }
    println!(
        "\nAlarms, memory and file descriptor figures need Warren's management interface \
         (not available yet)."
    );
    match answer {
        Ok(_) => 0,
        Err(e) => unavailable(node, &e),
    }
}

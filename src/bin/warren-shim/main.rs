//! `warren-shim`: RabbitMQ's command-line tools as far as Warren can answer them, so
//! compose healthchecks, testcontainers helpers and operators' scripts run unchanged.
//! One binary, called through symlinks named `rabbitmq-diagnostics`, `rabbitmqctl`
//! (also `warrenctl`) and `rabbitmq-plugins` (the name it is called by picks the tool),
//! or as `warren-shim TOOL COMMAND ...`.
//!
//! The liveness checks (ping, check_running, ...) talk AMQP to the listeners found in
//! the broker's own configuration sources (rabbitmq.conf, conf.d, `WARREN_CONFIG`, the
//! `RABBITMQ_*` variables). The commands on the broker's objects (list_queues,
//! add_user, set_policy, ...) and the alarm checks go through the management HTTP API
//! (api.rs says how it is found), so they work against RabbitMQ as well.
//!
//! Exit codes are those of RabbitMQ's tools (sysexits): 0 success, 64 usage (unknown
//! command or option), 65 bad data, 67 no such user, 69 unavailable (the broker does
//! not answer, a check failed), 70 (a RabbitMQ command Warren does not provide), 75
//! timeout, 77 refused credentials, 78 configuration error.

mod admin;
mod api;
mod ctl;
mod diag;
mod list;
mod objects;
mod options;
mod probe;
mod table;

use options::Options;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use warren::Config;
use warren::config::listen::reachable;
use warren::identity;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOUSER: u8 = 67;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_NOPERM: u8 = 77;
const EX_CONFIG: u8 = 78;

const TOOLS: [&str; 4] = [
    "rabbitmq-diagnostics",
    "rabbitmqctl",
    "rabbitmq-plugins",
    "warrenctl",
];

/// RabbitMQ commands Warren knows of but does not answer (yet).
const NOT_YET: &[&str] = &[
    "check_if_node_is_quorum_critical",
    "check_if_node_is_mirror_sync_critical",
    "check_certificate_expiration",
    "check_protocol_listener",
    "memory_breakdown",
    "environment",
    "report",
    "list_parameters",
    "stop",
    "stop_app",
    "start_app",
    "reset",
    "force_reset",
    "enable_feature_flag",
    "list_feature_flags",
    "cluster_status",
];

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
            "usage: warren-shim {{rabbitmq-diagnostics|rabbitmqctl|warrenctl|rabbitmq-plugins}} \
             COMMAND ...\n(or call it through a symlink of one of those names)"
        );
        return ExitCode::from(EX_USAGE);
    };
    let options = match options::parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    ExitCode::from(run(&tool, options))
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
    if let Some(code) = ctl::run(tool, &options, &config) {
        return code;
    }
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
                    options.timeout().as_millis()
                );
            }
            match first_answer(&listeners, options.timeout()) {
                Ok(_) => {
                    println!("Ping succeeded");
                    0
                }
                Err(e) => unavailable(&node, &e),
            }
        }
        "check_running" | "is_running" => match first_answer(&listeners, options.timeout()) {
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
                if let Err(e) = probe::probe(*addr, options.timeout()) {
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
        "server_version" => match first_answer(&listeners, options.timeout()) {
            Ok(answer) => {
                println!(
                    "{}",
                    answer.get("version").unwrap_or(identity::RABBITMQ_VERSION)
                );
                0
            }
            Err(e) => unavailable(&node, &e),
        },
        "status" => diag::status(
            &config,
            &configured,
            &listeners,
            &options,
            ctl::locate(&options, &config),
        ),
        other if NOT_YET.contains(&other) => {
            eprintln!("Error: '{tool} {other}' is not available in Warren yet.");
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
        _ => format!(
            "Commands checked over AMQP: ping, check_running, check_port_connectivity, \
             await_startup, listeners, server_version, version, status.\n\
             Commands over the management API: {}.\n\
             Options: -p VHOST, -q, --formatter json, --no-table-headers, -t SECONDS; \
             --api http://HOST:PORT (or WARREN_API; default: the configuration's \
             management_listen / management.tcp.port), --username USER --password PASS \
             (default: the configuration's default_user / default_pass).",
            ctl::COMMANDS.join(", ")
        ),
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
                "Warren has no plugins: '{command} {}' changes nothing. The management API, \
                 its web UI and the Prometheus endpoint are built in.",
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
    let limit = options.timeout_or(Duration::from_secs(300));
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

//! Command-line flags.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// AMQP 0-9-1 load generator (PerfTest-like). Without a subcommand it runs a load test.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// AMQP client library to drive the broker with.
    #[arg(long, value_enum, default_value_t = ClientKind::Amqprs, global = true)]
    pub client: ClientKind,
    /// Worker threads of the async runtime (default: number of CPUs).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    Amqprs,
    Lapin,
    /// Consumers speak the protocol themselves (amq-protocol frames); producers and
    /// topology use amqprs.
    Raw,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Spawn a broker command (or wait for one started at --since-ns) and report the time
    /// until it completes an AMQP handshake.
    Startup(StartupArgs),
    /// Wait until a queue holds at least N messages and one is gettable; report the time.
    WaitQueue(WaitQueueArgs),
    /// Open N idle connections (raw client), print a JSON line, hold them until stdin ends.
    Connections(ConnectionsArgs),
    /// Declare N queues, each bound to one direct exchange (pipelined); print the time.
    Declare(DeclareArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ConnectionsArgs {
    /// Broker URI.
    #[arg(long)]
    pub uri: String,
    /// Number of connections.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 100)]
    pub parallel: usize,
    /// Accepted for symmetry with the other subcommands (the output is always JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DeclareArgs {
    /// Broker URI.
    #[arg(long)]
    pub uri: String,
    /// Number of queues.
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    /// Queue names are PREFIX-1 .. PREFIX-N, the exchange PREFIX-x.
    #[arg(long, default_value = "scale")]
    pub prefix: String,
    /// Queues (with their bindings) declared but not yet confirmed at once.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Durable queues and exchange.
    #[arg(long)]
    pub durable: bool,
    /// Accepted for symmetry with the other subcommands (the output is always JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Number of producers (one connection each).
    #[arg(long, short = 'x', default_value_t = 1)]
    pub producers: usize,
    /// Number of consumers (one connection each).
    #[arg(long, short = 'y', default_value_t = 1)]
    pub consumers: usize,
    /// Number of queues; producers and consumers are spread over them round-robin.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Message body size in bytes (the first 8 bytes carry the send timestamp).
    #[arg(long, short = 's', default_value_t = 12)]
    pub size: usize,
    /// Publish persistent messages (delivery mode 2) to durable queues.
    #[arg(long)]
    pub persistent: bool,
    /// Declare durable queues and exchange even without --persistent.
    #[arg(long)]
    pub durable: bool,
    /// Use publisher confirms with at most N unconfirmed messages per producer.
    #[arg(long, short = 'c', value_name = "N")]
    pub confirm: Option<usize>,
    /// Consumer prefetch (basic.qos); 0 means unlimited.
    #[arg(long, short = 'q', default_value_t = 0)]
    pub prefetch: u16,
    /// Consume with automatic acknowledgement (default: manual ack of every message).
    #[arg(long, short = 'a')]
    pub auto_ack: bool,
    /// Acknowledge with `multiple` every N messages instead of one by one (manual ack).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub multi_ack_every: u64,
    /// Publish through an exchange of this type (default: the default exchange, by queue name;
    /// --fanout implies fanout).
    #[arg(long, short = 't', value_enum)]
    pub exchange_type: Option<ExchangeType>,
    /// Bind N queues to one exchange (fanout unless --exchange-type says otherwise); every
    /// message reaches all N.
    #[arg(long, value_name = "N")]
    pub fanout: Option<usize>,
    /// Total publish rate in messages/s, shared by the producers (default: unlimited).
    #[arg(long, short = 'r', value_name = "MSG_PER_S")]
    pub rate: Option<f64>,
    /// Stop after this many seconds (0: run until Ctrl-C or --pmessages).
    #[arg(long, short = 'z', default_value_t = 0.0)]
    pub duration: f64,
    /// Each producer publishes this many messages, then stops.
    #[arg(long, short = 'C', value_name = "N")]
    pub pmessages: Option<u64>,
    /// Each consumer stops after this many messages.
    #[arg(long, short = 'D', value_name = "N")]
    pub cmessages: Option<u64>,
    /// Queue name prefix: queues are PREFIX-1 .. PREFIX-N (default: perf-PID).
    #[arg(long)]
    pub queue_prefix: Option<String>,
    /// Exchange name used with --exchange-type / --fanout (default: PREFIX-x).
    #[arg(long)]
    pub exchange: Option<String>,
    /// Declare the queues as streams (`x-queue-type: stream`, durable) and consume them from
    /// this `x-stream-offset`: `first`, `last`, `next` or a number. Every consumer of a stream
    /// reads every message (use --cmessages); consumers need --prefetch and manual acks.
    #[arg(long, value_name = "OFFSET")]
    pub stream: Option<String>,
    /// Keep queues and exchange at the end (default: delete them).
    #[arg(long)]
    pub keep: bool,
    /// Purge the queues before starting.
    #[arg(long)]
    pub purge: bool,
    /// Print JSON lines (one per second, then a summary) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print only the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Append the JSON summary line to this file too.
    #[arg(long)]
    pub summary_file: Option<PathBuf>,
    /// With --client raw: pin the producers' thread to CPU 0 and the consumers' to CPU 1.
    #[arg(long)]
    pub pin: bool,
    /// Measure this process and its descendants as the broker (CPU per message in the
    /// summary); repeatable.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Vec<u32>,
    /// Add N-1 bindings that match nothing to the exchange (topic routing cost: with
    /// `--exchange-type topic`, half `kI.*`, half `*.kI.#`, all to one extra queue).
    #[arg(long, value_name = "N")]
    pub extra_bindings: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct StartupArgs {
    /// URI the broker will accept connections on.
    #[arg(long)]
    pub uri: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Leave the broker running and print its process id instead of stopping it.
    #[arg(long)]
    pub keep_running: bool,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Send the broker's stdout and stderr to this file (default: discard them).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Do not spawn anything: wait for a broker that the caller started at this instant
    /// (Unix time in nanoseconds) and report the time since then.
    #[arg(long, conflicts_with_all = ["command", "keep_running"])]
    pub since_ns: Option<u128>,
    /// The broker command and its arguments (started in a new process group).
    #[arg(last = true, required_unless_present = "since_ns")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct WaitQueueArgs {
    /// Broker URI.
    #[arg(long)]
    pub uri: String,
    /// Queue name (checked with a passive declare).
    #[arg(long)]
    pub queue: String,
    /// Wait until the queue holds at least this many messages.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
    /// Report the time since this instant (Unix time in nanoseconds) instead of since start.
    #[arg(long)]
    pub since_ns: Option<u128>,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

//! `warren-perf`: an AMQP 0-9-1 load generator in the spirit of RabbitMQ PerfTest.
//!
//! It works against any AMQP 0-9-1 broker. Producers embed their send time in each message
//! body so consumers (in the same process) can measure end-to-end latency. It prints, every
//! second and at the end, the rates of published, confirmed and delivered messages, latency
//! percentiles and its own CPU use.
//!
//! Two extra subcommands serve the `bench/compare` script: `startup` (time from spawning a
//! broker until it completes an AMQP handshake) and `wait-queue` (time until a queue holds N
//! messages and one is gettable, e.g. after a restart).

mod amqprs_client;
mod cli;
mod client;
mod lapin_client;
mod raw_client;
mod roles;
mod run;
mod scale;
mod stats;
mod tools;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.unwrap_or_else(default_threads))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-perf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Startup(args)) => tools::startup(cli.client, args).await,
            Some(Command::WaitQueue(args)) => tools::wait_queue(cli.client, args).await,
            Some(Command::Connections(args)) => scale::connections(args).await,
            Some(Command::Declare(args)) => scale::declare(args).await,
            None => run::run(cli.client, cli.load).await,
        }
    });
    // Do not wait for client libraries' background tasks or threads.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren-perf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

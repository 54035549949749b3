//! Scale helpers for `bench/compare`: many idle connections, many queues.

use crate::cli::{ConnectionsArgs, DeclareArgs};
use crate::raw_client::Control;
use amq_protocol::protocol::{AMQPClass, exchange, queue};
use amq_protocol::types::{FieldTable, ShortString};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::Write;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

/// Opens `count` connections (channel 1 open on each, `parallel` handshakes at a time),
/// prints one JSON line, keeps them open until stdin closes, then exits without closing
/// them one by one.
pub async fn connections(args: ConnectionsArgs) -> Result<()> {
    let start = Instant::now();
    let mut open = Vec::with_capacity(args.count);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while open.len() < args.count {
        while started < args.count && pending.len() < args.parallel.max(1) {
            let uri = args.uri.clone();
            pending.spawn(async move { Control::open(&uri).await });
            started += 1;
        }
        match pending.join_next().await {
            Some(r) => open.push(r?.with_context(|| format!("connection {}", open.len() + 1))?),
            None => bail!("no connection attempts left"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"type": "connections", "count": open.len(), "connect_s": secs,
               "rate": open.len() as f64 / secs})
    );
    std::io::stdout().flush()?;
    // Hold them until stdin reaches its end.
    let mut sink = [0u8; 64];
    let mut stdin = tokio::io::stdin();
    while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
    std::process::exit(0);
}

/// Declares `count` queues on one connection, each bound to one direct exchange with its
/// name as key, with at most `window` declarations outstanding; prints the time.
pub async fn declare(args: DeclareArgs) -> Result<()> {
    let mut c = Control::open(&args.uri).await?;
    let x = format!("{}-x", args.prefix);
    c.push(AMQPClass::Exchange(exchange::AMQPMethod::Declare(
        exchange::Declare {
            exchange: ShortString::from(x.as_str()),
            kind: ShortString::from("direct"),
            passive: false,
            durable: args.durable,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        },
    )))?;
    c.flush().await?;
    c.expect("exchange.declare-ok").await?;
    let start = Instant::now();
    let (mut sent, mut done) = (0usize, 0usize);
    // Each queue is two requests (declare, bind), each with its own reply.
    let window = args.window.max(1);
    while done < args.count {
        while sent < args.count && sent - done < window {
            let name = format!("{}-{}", args.prefix, sent + 1);
            c.push(AMQPClass::Queue(queue::AMQPMethod::Declare(
                queue::Declare {
                    queue: ShortString::from(name.as_str()),
                    passive: false,
                    durable: args.durable,
                    exclusive: false,
                    auto_delete: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                },
            )))?;
            c.push(AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: ShortString::from(name.as_str()),
                exchange: ShortString::from(x.as_str()),
                routing_key: ShortString::from(name.as_str()),
                nowait: false,
                arguments: FieldTable::default(),
            })))?;
            sent += 1;
        }
        c.flush().await?;
        c.expect("queue.declare-ok").await?;
        c.expect("queue.bind-ok").await?;
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    c.close().await;
    println!(
        "{}",
        json!({"type": "declare", "queues": args.count, "declare_s": secs,
               "rate": args.count as f64 / secs})
    );
    Ok(())
}

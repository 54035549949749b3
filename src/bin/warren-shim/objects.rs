//! rabbitmqctl's commands on queues, connections and definitions, over the management
//! API: purge_queue, delete_queue, close_connection, export_definitions,
//! import_definitions.

use crate::api::seg;
use crate::ctl::Ctl;
use crate::{EX_DATAERR, EX_UNAVAILABLE, EX_USAGE};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

pub fn run(ctl: &Ctl, command: &str, args: &[String]) -> Option<u8> {
    let a = |i: usize| args.get(i).map(String::as_str);
    Some(match command {
        "purge_queue" => match a(0) {
            Some(queue) => purge_queue(ctl, queue),
            None => ctl.usage("purge_queue <queue>"),
        },
        "delete_queue" => match a(0) {
            Some(queue) => delete_queue(ctl, queue),
            None => ctl.usage("delete_queue <queue_name> [--if-empty|-e] [--if-unused|-u]"),
        },
        "close_connection" => match (a(0), a(1)) {
            (Some(name), Some(reason)) => close_connection(ctl, name, reason),
            _ => ctl.usage("close_connection <connection name> <explanation>"),
        },
        "export_definitions" => match a(0) {
            Some(path) => export_definitions(ctl, path),
            None => ctl.usage("export_definitions <file_path | \"-\">"),
        },
        "import_definitions" => import_definitions(ctl, a(0)),
        _ => return None,
    })
}

fn queue_path(ctl: &Ctl, queue: &str) -> String {
    format!("/api/queues/{}/{}", seg(ctl.o.vhost()), seg(queue))
}

fn purge_queue(ctl: &Ctl, queue: &str) -> u8 {
    ctl.banner(&format!(
        "Purging queue '{queue}' in vhost '{}' ...",
        ctl.o.vhost()
    ));
    match ctl
        .api
        .delete(&format!("{}/contents", queue_path(ctl, queue)), None)
    {
        Ok(_) => 0,
        Err(f) if f.status() == Some(404) => {
            eprintln!("Error:\nnot_found");
            EX_UNAVAILABLE
        }
        Err(f) => ctl.fail(&f),
    }
}

fn delete_queue(ctl: &Ctl, queue: &str) -> u8 {
    let mut conditions = Vec::new();
    if ctl.o.if_empty {
        conditions.push("if queue is empty ");
    }
    if ctl.o.if_unused {
        conditions.push("if queue is unused ");
    }
    ctl.banner(&format!(
        "Deleting queue '{queue}' on vhost '{}' {}...",
        ctl.o.vhost(),
        conditions.join("and ")
    ));
    let path = queue_path(ctl, queue);
    // The API's delete does not say how many messages went with the queue: ask first.
    let ready = match ctl.api.get(&path) {
        Ok(q) => q["messages_ready"]
            .as_u64()
            .or_else(|| q["messages"].as_u64())
            .unwrap_or(0),
        Err(f) if f.status() == Some(404) => {
            eprintln!("Error:\nQueue not found");
            return EX_USAGE;
        }
        Err(f) => return ctl.fail(&f),
    };
    let mut query = Vec::new();
    if ctl.o.if_empty {
        query.push("if-empty=true");
    }
    if ctl.o.if_unused {
        query.push("if-unused=true");
    }
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    match ctl.api.delete(&path, None) {
        Ok(_) => {
            if !ctl.o.json() {
                println!("Queue was successfully deleted with {ready} ready messages");
            }
            0
        }
        Err(f) if f.status() == Some(404) => {
            eprintln!("Error:\nQueue not found");
            EX_USAGE
        }
        Err(f) if f.status() == Some(400) && f.reason().contains("not empty") => {
            eprintln!("Error:\nQueue is not empty");
            EX_USAGE
        }
        Err(f) if f.status() == Some(400) && f.reason().contains("in use") => {
            eprintln!("Error:\nQueue is in use");
            EX_USAGE
        }
        Err(f) => ctl.fail(&f),
    }
}

fn close_connection(ctl: &Ctl, name: &str, reason: &str) -> u8 {
    ctl.banner(&format!("Closing connection {name}, reason: {reason}..."));
    match ctl
        .api
        .delete(&format!("/api/connections/{}", seg(name)), Some(reason))
    {
        Ok(_) => 0,
        // rabbitmqctl reports success for a connection that is already gone.
        Err(f) if f.status() == Some(404) => 0,
        Err(f) => ctl.fail(&f),
    }
}

/// `--format`: only JSON is served by the API.
fn json_format(ctl: &Ctl) -> Result<(), u8> {
    match ctl.o.value("--format") {
        None => Ok(()),
        Some(f) if f.eq_ignore_ascii_case("json") => Ok(()),
        Some("erlang") => {
            eprintln!("Error: the management API serves definitions in JSON only");
            Err(EX_USAGE)
        }
        Some(_) => {
            eprintln!(
                "Error (argument validation): Bad argument: Format should be either json or erlang"
            );
            Err(EX_USAGE)
        }
    }
}

fn export_definitions(ctl: &Ctl, path: &str) -> u8 {
    if let Err(code) = json_format(ctl) {
        return code;
    }
    if path != "-" {
        let dir = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            eprintln!(
                "Error (argument validation): Bad argument: Directory {} does not exist",
                dir.display()
            );
            return EX_DATAERR;
        }
        ctl.banner(&format!(
            "Exporting definitions in JSON to a file at \"{path}\" ..."
        ));
    }
    let definitions = match ctl.api.get("/api/definitions") {
        Ok(d) => d,
        Err(f) => return ctl.fail(&f),
    };
    if path == "-" {
        println!("{definitions}");
        return 0;
    }
    match std::fs::write(path, definitions.to_string()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error:\nCould not write to file {path}: {e}");
            EX_DATAERR
        }
    }
}

fn import_definitions(ctl: &Ctl, path: Option<&str>) -> u8 {
    if let Err(code) = json_format(ctl) {
        return code;
    }
    let path = path.filter(|p| *p != "-");
    if let Some(p) = path
        && !Path::new(p).is_file()
    {
        eprintln!("Error (argument validation): Bad argument: File {p} does not exist");
        return EX_DATAERR;
    }
    ctl.banner(&match path {
        Some(p) => format!("Importing definitions in JSON from a file at \"{p}\" ..."),
        None => "Importing definitions in JSON from standard input ...".into(),
    });
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| (p.to_string(), e)),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map(|_| s)
                .map_err(|e| ("standard input".to_string(), e))
        }
    };
    let text = match text {
        Ok(t) => t,
        Err((from, e)) => {
            eprintln!("Error:\nCould not read from {from}: {e}");
            return EX_DATAERR;
        }
    };
    let definitions: Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error:\nFailed to deserialise input (format: JSON) (error: {e})");
            return EX_DATAERR;
        }
    };
    match ctl.api.post("/api/definitions", &definitions) {
        Ok(_) => {}
        Err(f) if f.status() == Some(400) => {
            eprintln!("Error:\n{}", f.reason());
            return EX_DATAERR;
        }
        Err(f) => return ctl.fail(&f),
    }
    if ctl.o.json() {
        // rabbitmqctl ends this one without a newline.
        print!(
            "{}",
            serde_json::json!({"node": ctl.node(), "result": "ok"})
        );
    } else if !ctl.o.quiet {
        println!(
            "Successfully started definition import. This process is asynchronous and can \
             take some time."
        );
    }
    0
}

//! rabbitmqctl's commands that change users, virtual hosts, permissions and policies,
//! over the management API, with rabbitmqctl's banners, messages and exit codes.

use crate::api::seg;
use crate::ctl::Ctl;
use crate::{EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_UNAVAILABLE, objects};
use serde_json::{Value, json};

pub fn run(ctl: &Ctl, command: &str, args: &[String]) -> Option<u8> {
    let a = |i: usize| args.get(i).map(String::as_str);
    Some(match command {
        "add_user" => match a(0) {
            Some(user) => add_user(ctl, user, a(1)),
            None => ctl.usage("add_user <username> <password>"),
        },
        "delete_user" => match a(0) {
            Some(user) => delete_user(ctl, user),
            None => ctl.usage("delete_user <username>"),
        },
        "change_password" => match (a(0), a(1)) {
            (Some(user), Some(pass)) => change_password(ctl, user, pass),
            _ => ctl.usage("change_password <username> <password>"),
        },
        "authenticate_user" => match (a(0), a(1)) {
            (Some(user), Some(pass)) => authenticate_user(ctl, user, pass),
            _ => ctl.usage("authenticate_user <username> <password>"),
        },
        "set_user_tags" => match a(0) {
            Some(user) => set_user_tags(ctl, user, &args[1..]),
            None => ctl.usage("set_user_tags <username> <tag> [...]"),
        },
        "add_vhost" => match a(0) {
            Some(vhost) => add_vhost(ctl, vhost),
            None => ctl.usage("add_vhost <vhost> [--description <description> --tags \"<tag1>,<tag2>,<...>\" --default-queue-type <quorum|classic|stream>]"),
        },
        "delete_vhost" => match a(0) {
            Some(vhost) => delete_vhost(ctl, vhost),
            None => ctl.usage("delete_vhost <vhost>"),
        },
        "set_permissions" => match (a(0), a(1), a(2), a(3)) {
            (Some(user), Some(c), Some(w), Some(r)) => set_permissions(ctl, user, c, w, r),
            _ => ctl.usage("set_permissions [--vhost <vhost>] <username> <conf> <write> <read>"),
        },
        "clear_permissions" => match a(0) {
            Some(user) => clear_permissions(ctl, user),
            None => ctl.usage("clear_permissions [--vhost <vhost>] <username>"),
        },
        "set_policy" => match (a(0), a(1), a(2)) {
            (Some(name), Some(pattern), Some(definition)) => {
                set_policy(ctl, name, pattern, definition)
            }
            _ => ctl.usage(
                "set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] \
                 <name> <pattern> <definition>",
            ),
        },
        "clear_policy" => match a(0) {
            Some(name) => clear_policy(ctl, name),
            None => ctl.usage("clear_policy [--vhost <vhost>] <name>"),
        },
        _ => return objects::run(ctl, command, args),
    })
}

fn user_path(user: &str) -> String {
    format!("/api/users/{}", seg(user))
}

fn no_such_user(user: &str) -> u8 {
    eprintln!("Error:\nUser \"{user}\" does not exist");
    EX_NOUSER
}

fn add_user(ctl: &Ctl, user: &str, pass: Option<&str>) -> u8 {
    ctl.banner(&format!("Adding user \"{user}\" ..."));
    let pass = match pass {
        Some(p) => p.to_string(),
        None => {
            // rabbitmqctl reads the password from standard input when it is not given.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.is_empty() {
                eprintln!("Error:\nPassword is not provided via argument or stdin");
                return EX_DATAERR;
            }
            line
        }
    };
    match ctl.user_exists(user) {
        Ok(true) => {
            eprintln!("Error:\nUser \"{user}\" already exists");
            return EX_SOFTWARE;
        }
        Ok(false) => {}
        Err(code) => return code,
    }
    match ctl
        .api
        .put(&user_path(user), &json!({"password": pass, "tags": ""}))
    {
        Ok(_) => {
            ctl.banner(
                "Done. Don't forget to grant the user permissions to some virtual hosts! \
                 See 'rabbitmqctl help set_permissions' to learn more.",
            );
            0
        }
        Err(f) => ctl.fail(&f),
    }
}

fn delete_user(ctl: &Ctl, user: &str) -> u8 {
    ctl.banner(&format!("Deleting user \"{user}\" ..."));
    match ctl.api.delete(&user_path(user), None) {
        Ok(_) => 0,
        Err(f) if f.status() == Some(404) => no_such_user(user),
        Err(f) => ctl.fail(&f),
    }
}

/// A user's tags as the comma-separated text every version of the API accepts.
fn tags_text(tags: &Value) -> String {
    match tags {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn change_password(ctl: &Ctl, user: &str, pass: &str) -> u8 {
    ctl.banner(&format!("Changing password for user \"{user}\" ..."));
    let existing = match ctl.api.get(&user_path(user)) {
        Ok(u) => u,
        Err(f) if f.status() == Some(404) => return no_such_user(user),
        Err(f) => return ctl.fail(&f),
    };
    let body = json!({"password": pass, "tags": tags_text(&existing["tags"])});
    match ctl.api.put(&user_path(user), &body) {
        Ok(_) => 0,
        Err(f) => ctl.fail(&f),
    }
}

fn authenticate_user(ctl: &Ctl, user: &str, pass: &str) -> u8 {
    ctl.banner(&format!("Authenticating user \"{user}\" ..."));
    match ctl.api.as_user(user, pass).get("/api/whoami") {
        Ok(_) => {}
        // Right credentials of a user without a management tag.
        Err(f) if f.status() == Some(401) && f.reason().contains("Not management user") => {}
        Err(f) if f.status() == Some(401) => {
            eprintln!(
                "Error:\nError: failed to authenticate user \"{user}\"\n\
                 user '{user}' - invalid credentials"
            );
            return EX_DATAERR;
        }
        Err(f) => return ctl.fail(&f),
    }
    if !ctl.o.quiet {
        println!("Success");
    }
    0
}

fn set_user_tags(ctl: &Ctl, user: &str, tags: &[String]) -> u8 {
    ctl.banner(&format!(
        "Setting tags for user \"{user}\" to [{}] ...",
        tags.join(", ")
    ));
    let existing = match ctl.api.get(&user_path(user)) {
        Ok(u) => u,
        Err(f) if f.status() == Some(404) => return no_such_user(user),
        Err(f) => return ctl.fail(&f),
    };
    let body = json!({
        "password_hash": existing["password_hash"].as_str().unwrap_or(""),
        "hashing_algorithm": existing["hashing_algorithm"]
            .as_str()
            .unwrap_or("rabbit_password_hashing_sha256"),
        "tags": tags.join(","),
    });
    match ctl.api.put(&user_path(user), &body) {
        Ok(_) => 0,
        Err(f) => ctl.fail(&f),
    }
}

fn vhost_path(vhost: &str) -> String {
    format!("/api/vhosts/{}", seg(vhost))
}

fn add_vhost(ctl: &Ctl, vhost: &str) -> u8 {
    ctl.banner(&format!("Adding vhost \"{vhost}\" ..."));
    let mut body = serde_json::Map::new();
    if let Some(d) = ctl.o.value("--description") {
        body.insert("description".into(), d.into());
    }
    if let Some(t) = ctl.o.value("--tags") {
        body.insert("tags".into(), t.into());
    }
    if let Some(q) = ctl.o.value("--default-queue-type") {
        body.insert("default_queue_type".into(), q.into());
    }
    let existed = match ctl.vhost_exists(vhost) {
        Ok(e) => e,
        Err(code) => return code,
    };
    if let Err(f) = ctl.api.put(&vhost_path(vhost), &Value::Object(body)) {
        return ctl.fail(&f);
    }
    if !existed {
        // The API grants its caller every permission in a vhost it creates;
        // rabbitmqctl grants none.
        let path = format!("/api/permissions/{}/{}", seg(vhost), seg(ctl.api.user()));
        match ctl.api.delete(&path, None) {
            Ok(_) => {}
            Err(f) if f.status() == Some(404) => {}
            Err(f) => return ctl.fail(&f),
        }
    }
    0
}

fn delete_vhost(ctl: &Ctl, vhost: &str) -> u8 {
    ctl.banner(&format!("Deleting vhost \"{vhost}\" ..."));
    match ctl.api.delete(&vhost_path(vhost), None) {
        Ok(_) => 0,
        Err(f) if f.status() == Some(404) => {
            eprintln!("Virtual host '{vhost}' does not exist");
            EX_DATAERR
        }
        Err(f) => ctl.fail(&f),
    }
}

/// rabbitmqctl's checks before a permission change: the user, then the vhost.
fn permission_subjects(ctl: &Ctl, user: &str, vhost: &str) -> Result<(), u8> {
    if !ctl.user_exists(user)? {
        eprintln!("Error:\nUser {user} does not exist");
        return Err(EX_NOUSER);
    }
    if !ctl.vhost_exists(vhost)? {
        eprintln!("Error:\nVirtual host {vhost} does not exist");
        return Err(EX_UNAVAILABLE);
    }
    Ok(())
}

fn set_permissions(ctl: &Ctl, user: &str, configure: &str, write: &str, read: &str) -> u8 {
    let vhost = ctl.o.vhost();
    ctl.banner(&format!(
        "Setting permissions for user \"{user}\" in vhost \"{vhost}\" ..."
    ));
    if let Err(code) = permission_subjects(ctl, user, vhost) {
        return code;
    }
    let path = format!("/api/permissions/{}/{}", seg(vhost), seg(user));
    let body = json!({"configure": configure, "write": write, "read": read});
    match ctl.api.put(&path, &body) {
        Ok(_) => 0,
        Err(f) => ctl.fail(&f),
    }
}

fn clear_permissions(ctl: &Ctl, user: &str) -> u8 {
    let vhost = ctl.o.vhost();
    ctl.banner(&format!(
        "Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ..."
    ));
    if let Err(code) = permission_subjects(ctl, user, vhost) {
        return code;
    }
    let path = format!("/api/permissions/{}/{}", seg(vhost), seg(user));
    match ctl.api.delete(&path, None) {
        // Clearing permissions the user does not have succeeds.
        Ok(_) => 0,
        Err(f) if f.status() == Some(404) => 0,
        Err(f) => ctl.fail(&f),
    }
}

fn set_policy(ctl: &Ctl, name: &str, pattern: &str, definition: &str) -> u8 {
    let vhost = ctl.o.vhost();
    let priority = ctl.o.value("--priority").unwrap_or("0");
    ctl.banner(&format!(
        "Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with \
         priority \"{priority}\" for vhost \"{vhost}\" ..."
    ));
    let Ok(definition) = serde_json::from_str::<Value>(definition) else {
        eprintln!("Error:\nJSON decoding error. Reason: badarg");
        return EX_UNAVAILABLE;
    };
    let Ok(priority) = priority.parse::<i64>() else {
        eprintln!("Error:\nThe priority must be an integer, not \"{priority}\"");
        return EX_DATAERR;
    };
    match ctl.vhost_exists(vhost) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("Virtual host '{vhost}' does not exist");
            return EX_DATAERR;
        }
        Err(code) => return code,
    }
    let body = json!({
        "pattern": pattern,
        "definition": definition,
        "priority": priority,
        "apply-to": ctl.o.value("--apply-to").unwrap_or("all"),
    });
    let path = format!("/api/policies/{}/{}", seg(vhost), seg(name));
    match ctl.api.put(&path, &body) {
        Ok(_) => 0,
        Err(f) if f.status() == Some(400) => {
            eprintln!("Error:\n{}", f.reason());
            EX_UNAVAILABLE
        }
        Err(f) => ctl.fail(&f),
    }
}

fn clear_policy(ctl: &Ctl, name: &str) -> u8 {
    let vhost = ctl.o.vhost();
    ctl.banner(&format!(
        "Clearing policy \"{name}\" on vhost \"{vhost}\" ..."
    ));
    let path = format!("/api/policies/{}/{}", seg(vhost), seg(name));
    match ctl.api.delete(&path, None) {
        Ok(_) => 0,
        Err(f) if f.status() == Some(404) => {
            eprintln!("Error:\nParameter does not exist");
            EX_UNAVAILABLE
        }
        Err(f) => ctl.fail(&f),
    }
}

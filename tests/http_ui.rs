//! The management web UI, without a browser: the page at `/`, every file it loads (the
//! HTML's links and the JavaScript modules' imports, followed transitively) served with
//! its media type and security headers, nothing loaded from other hosts, and the JSON
//! API and its 404s unchanged beside it. interop/ui/test_ui.py drives it in Chromium.

mod common;

use common::TestBroker;
use common::http::{Api, Reply};
use std::collections::{BTreeSet, VecDeque};

fn anonymous(broker: &TestBroker) -> Api {
    let mut api = broker.api();
    api.auth = None;
    api
}

fn text(r: &Reply) -> String {
    String::from_utf8(r.body.clone()).expect("UTF-8 asset")
}

/// The values of `attr="..."` in an HTML page.
fn attributes(html: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// The module specifiers of `import ... from '...'` in a script.
fn imports(js: &str) -> Vec<String> {
    js.match_indices(" from '")
        .filter_map(|(i, m)| {
            let rest = &js[i + m.len()..];
            rest.find('\'').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// Resolves a relative module specifier against the importing file's URL path.
fn resolve(from: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for piece in spec.split('/') {
        match piece {
            "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Every URL with a scheme in a file, except the SVG namespace (a name, never fetched).
fn absolute_urls(body: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
        for (i, _) in body.match_indices(scheme) {
            let url: String = body[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"'\"`)<>".contains(*c))
                .collect();
            if url != "http://www.w3.org/2000/svg" {
                found.push(url);
            }
        }
    }
    found
}

fn assert_ui_headers(path: &str, r: &Reply, mime: &str) {
    assert_eq!(r.status, 200, "{path}");
    assert_eq!(r.header("content-type"), Some(mime), "{path}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
    assert!(
        !csp.contains("http"),
        "{path}: the policy allows a remote host: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
}

#[tokio::test]
async fn the_page_and_every_file_it_loads_are_served_from_the_binary() {
    let broker = TestBroker::start().await;
    let web = anonymous(&broker);
    let page = web.get("/").await;
    assert_ui_headers("/", &page, "text/html; charset=utf-8");
    let html = text(&page);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<main") && html.contains("<nav"));
    assert!(html.contains("aria-live"), "no live region for notices");
    assert!(
        absolute_urls(&html).is_empty(),
        "{:?}",
        absolute_urls(&html)
    );

    // The HTML's own links, then every module they import, transitively.
    let mut queue: VecDeque<String> = attributes(&html, "href")
        .into_iter()
        .chain(attributes(&html, "src"))
        .filter(|u| !u.starts_with('#'))
        .map(|u| format!("/{u}"))
        .collect();
    assert!(queue.iter().any(|u| u.ends_with(".css")), "{queue:?}");
    assert!(queue.iter().any(|u| u.ends_with(".js")), "{queue:?}");
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let r = web.get(&path).await;
        let mime = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?} in {path}"),
        };
        assert_ui_headers(&path, &r, mime);
        let body = text(&r);
        assert!(!body.is_empty(), "{path} is empty");
        let remote = absolute_urls(&body);
        assert!(
            remote.is_empty(),
            "{path} refers to other hosts: {remote:?}"
        );
        if path.ends_with(".js") {
            for spec in imports(&body) {
                assert!(spec.starts_with('.'), "{path} imports {spec}");
                queue.push_back(resolve(&path, &spec));
            }
        }
    }
    // The router and every page module were reached through the imports.
    for module in ["app.js", "api.js", "pages/overview.js", "pages/queue.js"] {
        assert!(
            seen.iter().any(|p| p.ends_with(module)),
            "{module} not reached: {seen:?}"
        );
    }
    assert!(seen.len() >= 15, "{seen:?}");
}

#[tokio::test]
async fn the_api_keeps_its_json_answers_and_unknown_files_are_404() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let web = anonymous(&broker);
    // The page needs no credentials; the API it calls does.
    assert_eq!(web.get("/").await.status, 200);
    assert_eq!(web.get("/api/overview").await.status, 401);
    let r = api.get("/api/overview").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["object_totals"].is_object());
    assert!(r.header("content-security-policy").is_none());
    let r = api.get("/api/no-such-endpoint").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    for path in [
        "/assets/no-such-file.js",
        "/assets/js/../../mod.rs",
        "/assets/",
        "/index.htm",
    ] {
        assert_eq!(web.get(path).await.status, 404, "{path}");
    }
    // Only GET serves the page.
    assert_eq!(web.request("POST", "/", Some(b"x")).await.status, 405);
}

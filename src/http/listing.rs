//! RabbitMQ's listing parameters, applied once to any list of JSON objects: `name`
//! (case-insensitive substring, or a regex with `use_regex=true`), `sort` (a dotted
//! path) and `sort_reverse`, `columns` (dotted paths to keep), and `page` /
//! `page_size` (with `page`, the reply is a page object instead of a bare array).

use super::{Api, ApiError, ApiResult, Caller};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 500;

/// The query parameters of a listing (each optional; unknown ones are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub name: Option<String>,
    pub use_regex: Option<String>,
    pub sort: Option<String>,
    pub sort_reverse: Option<String>,
    pub columns: Option<String>,
}

/// Lists a resource broker-wide (vhost None) or in one vhost.
pub type ListFn = fn(&Api, &Caller, Option<&str>, &ListParams) -> ApiResult<Response>;

/// The GET routes of a resource listed broker-wide at each of `all` and in one vhost at
/// `per_vhost` (a path ending in `{vhost}`).
pub fn routes(all: &[&str], per_vhost: &str, list: ListFn) -> Router<Api> {
    let mut router = Router::new();
    for path in all {
        router = router.route(
            path,
            get(
                move |State(api): State<Api>, caller: Caller, Query(p): Query<ListParams>| async move {
                    list(&api, &caller, None, &p)
                },
            ),
        );
    }
    router.route(
        per_vhost,
        get(
            move |State(api): State<Api>,
                  caller: Caller,
                  Path(vhost): Path<String>,
                  Query(p): Query<ListParams>| async move {
                list(&api, &caller, Some(&vhost), &p)
            },
        ),
    )
}

/// Applies the parameters to `items` (already in the default order).
pub fn apply(mut items: Vec<Value>, p: &ListParams) -> Result<Value, ApiError> {
    let pagination = pagination(p)?;
    let total = items.len();
    if let Some(filter) = p.name.as_deref().filter(|n| !n.is_empty()) {
        let matcher = matcher(filter, truthy(p.use_regex.as_deref()))?;
        items.retain(|item| {
            item.get("name")
                .and_then(Value::as_str)
                .is_some_and(&matcher)
        });
    }
    if let Some(sort) = p.sort.as_deref().filter(|s| !s.is_empty()) {
        let path: Vec<&str> = sort.split('.').collect();
        items.sort_by(|a, b| compare(lookup(a, &path), lookup(b, &path)));
    }
    if truthy(p.sort_reverse.as_deref()) {
        items.reverse();
    }
    let filtered = items.len();
    let items = match pagination {
        None => items,
        Some((page, size)) => {
            let page_count = filtered.div_ceil(size).max(1);
            if page > page_count {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "page_out_of_range",
                    format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
                ));
            }
            items
                .into_iter()
                .skip((page - 1) * size)
                .take(size)
                .collect()
        }
    };
    let items: Vec<Value> = match p.columns.as_deref().filter(|c| !c.is_empty()) {
        Some(columns) => {
            let paths: Vec<Vec<&str>> =
                columns.split(',').map(|c| c.split('.').collect()).collect();
            items.iter().map(|item| select(item, &paths)).collect()
        }
        None => items,
    };
    Ok(match pagination {
        None => Value::Array(items),
        Some((page, size)) => json!({
            "filtered_count": filtered,
            "item_count": items.len(),
            "items": items,
            "page": page,
            "page_count": filtered.div_ceil(size).max(1),
            "page_size": size,
            "total_count": total,
        }),
    })
}

/// `Some((page, page_size))` when `page` is given; RabbitMQ's errors otherwise.
fn pagination(p: &ListParams) -> Result<Option<(usize, usize)>, ApiError> {
    let Some(page) = p.page.as_deref() else {
        return Ok(None);
    };
    let invalid = || ApiError::bad_request("Pagination parameters are invalid");
    let page: i64 = page.trim().parse().map_err(|_| invalid())?;
    let size: i64 = match p.page_size.as_deref() {
        Some(s) => s.trim().parse().map_err(|_| invalid())?,
        None => DEFAULT_PAGE_SIZE as i64,
    };
    if page < 1 || size < 1 || size > MAX_PAGE_SIZE as i64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {size}"),
        ));
    }
    Ok(Some((page as usize, size as usize)))
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

type Matcher = Box<dyn Fn(&str) -> bool>;

fn matcher(filter: &str, regex: bool) -> Result<Matcher, ApiError> {
    if regex {
        let re = regex::RegexBuilder::new(filter)
            .case_insensitive(true)
            .build()
            .map_err(|e| ApiError::bad_request(format!("invalid regex '{filter}': {e}")))?;
        Ok(Box::new(move |name| re.is_match(name)))
    } else {
        let needle = filter.to_lowercase();
        Ok(Box::new(move |name| name.to_lowercase().contains(&needle)))
    }
}

fn lookup<'a>(item: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(item, |v, key| v.get(*key))
}

/// Missing values first, then numbers, then strings (case-insensitive), then others.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The parts of `item` the dotted `paths` name, nested as in `item`.
fn select(item: &Value, paths: &[Vec<&str>]) -> Value {
    let mut out = Map::new();
    for path in paths {
        if let Some(v) = lookup(item, path) {
            insert(&mut out, path, v.clone());
        }
    }
    Value::Object(out)
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        let items = v.get("items").unwrap_or(v);
        items
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn list() -> Vec<Value> {
        ["b", "A", "c", "ab"]
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"name": n, "n": i, "m": {"x": i, "y": 0}}))
            .collect()
    }

    #[test]
    fn filters_sorts_and_pages() {
        let p = ListParams {
            name: Some("a".into()),
            ..ListParams::default()
        };
        assert_eq!(names(&apply(list(), &p).expect("ok")), ["A", "ab"]);
        let p = ListParams {
            sort: Some("m.x".into()),
            sort_reverse: Some("true".into()),
            page: Some("1".into()),
            page_size: Some("3".into()),
            columns: Some("name,m.x".into()),
            ..ListParams::default()
        };
        let v = apply(list(), &p).expect("ok");
        assert_eq!(names(&v), ["ab", "c", "A"]);
        assert_eq!(v["page_count"], 2);
        assert_eq!(v["items"][0], json!({"name": "ab", "m": {"x": 3}}));
        let p = ListParams {
            page: Some("3".into()),
            page_size: Some("3".into()),
            ..ListParams::default()
        };
        assert_eq!(
            apply(list(), &p).expect_err("out of range").error,
            "page_out_of_range"
        );
        let p = ListParams {
            name: Some("^a".into()),
            use_regex: Some("true".into()),
            ..ListParams::default()
        };
        assert_eq!(names(&apply(list(), &p).expect("ok")), ["A", "ab"]);
    }
}

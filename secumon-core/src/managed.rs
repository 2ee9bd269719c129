//! Agent configuration managed centrally: the sections of `agent.yaml` an operator may set
//! from the server (`metrics`, `logs`, `probe_mode`), how layers of it merge, the version
//! that names a merged document, and how an agent lays it over its own file.
//!
//! A document is a JSON object holding some of those sections, each with some of its keys
//! (`{"metrics": {"interval": "10s"}}`). Layers merge key by key, the later one winning;
//! lists are replaced whole. On the agent the merged document is laid over `agent.yaml`
//! the same way, except for the keys the file pins (`agent.pinned: [metrics.interval]`):
//! those keep the file's value (or the default, if the file does not set them).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{AgentConfig, ConfigError, LogsSection, MetricsSection, ProbeModeSection};

/// The sections of `agent.yaml` an operator may set centrally; the others (identity,
/// server address, TLS, spool) only the host's own file sets.
pub const MANAGED_SECTIONS: [&str; 3] = ["metrics", "logs", "probe_mode"];

/// What names a document in errors: `origin` (`agent-config "env=prod"`).
fn invalid(origin: &str, key: Option<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Document { origin: origin.to_string(), key, message: message.into() }
}

/// Checks that `document` is an object of managed sections whose keys and values those
/// sections accept (unknown keys, bad durations and unknown families are refused). What
/// only the host can judge (log patterns, the collectors this agent version has) the agent
/// checks when it applies the document.
pub fn validate_document(document: &Value, origin: &str) -> Result<(), ConfigError> {
    let Value::Object(sections) = document else {
        return Err(invalid(origin, None, "expected an object of sections (metrics, logs, probe_mode)"));
    };
    for (name, section) in sections {
        if !MANAGED_SECTIONS.contains(&name.as_str()) {
            let message = format!(
                "`{name}` cannot be set centrally (only {}); the host's agent.yaml sets it",
                MANAGED_SECTIONS.join(", ")
            );
            return Err(invalid(origin, Some(name.clone()), message));
        }
        let checked = match name.as_str() {
            "metrics" => deserialize::<MetricsSection>(section, name, origin).map(drop),
            "logs" => deserialize::<LogsSection>(section, name, origin).map(drop),
            _ => deserialize::<ProbeModeSection>(section, name, origin).map(drop),
        };
        checked?;
    }
    Ok(())
}

fn deserialize<T: for<'de> Deserialize<'de>>(value: &Value, prefix: &str, origin: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = match (prefix, path.as_str()) {
            ("", ".") => None,
            ("", path) => Some(path.to_string()),
            (prefix, ".") => Some(prefix.to_string()),
            (prefix, path) => Some(format!("{prefix}.{path}")),
        };
        invalid(origin, key, error.into_inner().to_string())
    })
}

/// Lays `over` onto `base` key by key: objects merge, anything else (lists too) replaces.
pub fn merge_into(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => merge_into(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// The version naming a merged document: a hash of its canonical JSON (keys sorted), so
/// every server computes the same one and an unchanged document keeps its version. The
/// empty document (nothing set centrally) has the empty version.
pub fn version_of(document: &Value) -> String {
    if document.as_object().is_some_and(Map::is_empty) {
        return String::new();
    }
    let mut canonical = String::new();
    write_canonical(document, &mut canonical);
    // FNV-1a, 64 bits: a name for a document, not a secret.
    let hash = canonical
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Removes the dotted `path` (`metrics.interval`, or a whole section `logs`) from `document`.
fn remove_path(document: &mut Value, path: &str) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let Some(last) = keys.pop() else { return };
    let mut node = document;
    for key in keys {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// Checks the keys `agent.pinned` names: each a managed section or one of its keys.
pub fn validate_pins(pins: &[String], origin: &str) -> Result<(), ConfigError> {
    for pin in pins {
        let section = pin.split('.').next().unwrap_or_default();
        if !MANAGED_SECTIONS.contains(&section) || pin.split('.').count() > 2 || pin.ends_with('.') {
            let message =
                format!("cannot pin `{pin}`: pin a section ({}) or one of its keys", MANAGED_SECTIONS.join(", "));
            return Err(invalid(origin, Some("agent.pinned".to_string()), message));
        }
    }
    Ok(())
}

/// The configuration an agent runs: its own file (`local`, as parsed YAML turned JSON)
/// with the central `document` laid over it, except where the file pins keys. `origin`
/// names the document in errors.
pub fn apply(local: &Value, document: &Value, pins: &[String], origin: &str) -> Result<AgentConfig, ConfigError> {
    validate_document(document, origin)?;
    let mut central = document.clone();
    for pin in pins {
        remove_path(&mut central, pin);
    }
    let mut merged = local.clone();
    merge_into(&mut merged, &central);
    deserialize(&merged, "", origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn local() -> Value {
        json!({
            "agent": {"name": "web-1", "pinned": ["logs.sources"]},
            "collector": {"endpoint": "monitor:9090"},
            "metrics": {"interval": "30s", "enabled": ["cpu", "memory"]},
            "logs": {"enabled": true, "sources": ["/var/log/app.log"]}
        })
    }

    #[test]
    fn layers_merge_key_by_key_and_lists_are_replaced() {
        let mut merged = json!({"metrics": {"interval": "60s", "enabled": ["cpu"]}});
        merge_into(&mut merged, &json!({"metrics": {"enabled": ["disk", "network"]}, "logs": {"enabled": true}}));
        assert_eq!(
            merged,
            json!({"metrics": {"interval": "60s", "enabled": ["disk", "network"]}, "logs": {"enabled": true}})
        );
    }

    #[test]
    fn the_version_ignores_key_order_and_changes_with_any_value() {
        let a: Value = serde_json::from_str(r#"{"metrics":{"interval":"10s","top_processes":5}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"metrics":{"top_processes":5,"interval":"10s"}}"#).unwrap();
        let c = json!({"metrics": {"interval": "11s", "top_processes": 5}});
        assert_eq!(version_of(&a), version_of(&b));
        assert_ne!(version_of(&a), version_of(&c));
        assert_eq!(version_of(&a).len(), 16);
        assert_eq!(version_of(&json!({})), "");
    }

    #[test]
    fn central_keys_win_except_where_the_file_pins_them() {
        let document = json!({
            "metrics": {"interval": "5s"},
            "logs": {"sources": ["/var/log/other.log"], "journald": false}
        });
        let pins = vec!["logs.sources".to_string()];
        let config = apply(&local(), &document, &pins, "test").unwrap();
        assert_eq!(config.metrics.interval, std::time::Duration::from_secs(5));
        // Unset centrally: the file's value stays.
        assert_eq!(config.metrics.enabled.len(), 2);
        // Pinned: the file's value, although the document sets it.
        assert_eq!(config.logs.sources, vec!["/var/log/app.log".to_string()]);
        assert!(!config.logs.journald);
        assert_eq!(config.collector.endpoint.0, "monitor:9090");
    }

    #[test]
    fn a_pinned_section_keeps_the_file_and_defaults() {
        let document = json!({"metrics": {"interval": "5s", "top_processes": 3}});
        let config = apply(&local(), &document, &["metrics".to_string()], "test").unwrap();
        assert_eq!(config.metrics.interval, std::time::Duration::from_secs(30));
        assert_eq!(config.metrics.top_processes, 10);
    }

    #[test]
    fn bad_documents_are_refused_with_the_key() {
        let cases = [
            (json!({"collector": {"endpoint": "elsewhere:1"}}), "collector"),
            (json!({"metrics": {"intervall": "5s"}}), "metrics.intervall"),
            (json!({"metrics": {"interval": "0s"}}), "metrics.interval"),
            (json!({"metrics": {"enabled": ["cpu", "gpu"]}}), "metrics.enabled"),
            (json!({"probe_mode": {"targets": [{"type": "tcp", "host": "db"}]}}), "probe_mode.targets"),
        ];
        for (document, key) in cases {
            let error = validate_document(&document, "agent-config \"default\"").unwrap_err().to_string();
            assert!(error.contains(key), "{document}: {error}");
            assert!(error.starts_with("agent-config \"default\""), "{error}");
        }
        assert!(validate_document(&json!([1]), "x").is_err());
        assert!(validate_document(&json!({"metrics": {"interval": "15s"}}), "x").is_ok());
    }

    #[test]
    fn pins_name_managed_keys_only() {
        assert!(validate_pins(&["metrics.interval".into(), "logs".into()], "agent.yaml").is_ok());
        for bad in ["collector.endpoint", "metrics.", "metrics.a.b", "spool"] {
            let error = validate_pins(&[bad.to_string()], "agent.yaml").unwrap_err().to_string();
            assert!(error.contains("agent.pinned") && error.contains(bad), "{error}");
        }
    }
}

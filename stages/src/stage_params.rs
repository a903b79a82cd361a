//! Parsing a stage's params into its typed struct, with errors that name the
//! dotted field (`repos.1.url`) so the engine can point at the YAML line.

use dvx_engine::{ParamError, StageFailure};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserialize `params`; a failure names the field it is about.
pub fn parse<T: DeserializeOwned>(params: &Value) -> Result<T, ParamError> {
    serde_path_to_error::deserialize(params.clone()).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let msg = e.inner().to_string();
        // A missing field is reported at the enclosing object; the field
        // itself is what the user has to add.
        if let Some(name) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            path.push(name.to_string());
        }
        if path.is_empty() {
            ParamError::whole(msg)
        } else {
            ParamError::field(path.join("."), msg)
        }
    })
}

/// [`parse`] inside `execute`, where errors are stage failures.
pub fn parse_in_run<T: DeserializeOwned>(params: &Value) -> Result<T, StageFailure> {
    parse(params).map_err(|e| match e.field {
        Some(f) => StageFailure::new(format!("params.{f}: {}", e.message)),
        None => StageFailure::new(format!("params: {}", e.message)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        url: String,
        n: Option<u32>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        items: Vec<Item>,
    }

    #[test]
    fn errors_name_dotted_fields() {
        let e = parse::<P>(&json!({"items": [{"url": "a"}, {"n": 1}]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items.1.url"));
        let e = parse::<P>(&json!({"items": [{"url": "a", "n": "x"}]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items.0.n"));
        let e = parse::<P>(&json!({"items": [], "extra": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("extra"));
        assert!(parse_in_run::<P>(&json!({})).unwrap_err().message.starts_with("params.items: missing field"));
    }
}

//! Reading a stage's `metrics:` files after it ran. The format comes from
//! the extension: `.json`, `.yaml`/`.yml`, `.toml` (a table; nested tables
//! stay nested), `.csv`/`.tsv` in one of two shapes —
//!
//! - wide: a header row of names and one row of values
//!   (`loss,accuracy` / `0.31,0.92`; with two columns, the first value
//!   must be a number, else it is read as long form under a header);
//! - long: one `name,value` row per metric, with an optional header row
//!   whose second cell is not a number (`metric,value`).
//!
//! CSV cells that parse as numbers become numbers, the others strings.
//! Whatever the format, the top level must be a map: metrics are named.

use std::path::Path;

use serde_json::{Map, Value};

/// Read one metrics file; the error names the problem, the caller the file.
pub fn read(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let value: Value = match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?,
        "yaml" | "yml" => serde_saphyr::from_str(&text).map_err(|e| format!("not valid YAML: {e}"))?,
        "toml" => {
            let t: toml::Table = toml::from_str(&text).map_err(|e| format!("not valid TOML: {e}"))?;
            serde_json::to_value(t).map_err(|e| format!("TOML that has no JSON form: {e}"))?
        }
        "csv" => delimited(&text, b',')?,
        "tsv" => delimited(&text, b'\t')?,
        other => {
            return Err(format!("unknown metrics format `.{other}` (one of .json, .yaml, .yml, .toml, .csv, .tsv)"))
        }
    };
    match value {
        Value::Object(m) => Ok(m),
        other => Err(format!("the top level is {}, not a map of metric names to values", kind_of(&other))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A CSV/TSV cell as a metric value.
fn cell(s: &str) -> Value {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::from(f),
        _ => Value::String(s.to_string()),
    }
}

fn delimited(text: &str, sep: u8) -> Result<Value, String> {
    let mut reader =
        csv::ReaderBuilder::new().delimiter(sep).has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.map_err(|e| format!("row {}: {e}", i + 1))?;
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push(r.iter().map(str::to_string).collect::<Vec<_>>());
    }
    let numeric = |c: &String| cell(c).is_number();
    let mut out = Map::new();
    // Wide: a row of names over one row of values. Two columns whose
    // second row starts with a name are long form under a header instead.
    let wide =
        rows.len() == 2 && !rows[0].iter().any(numeric) && (rows[0].len() != 2 || rows[1].first().is_some_and(numeric));
    if wide {
        if rows[0].len() != rows[1].len() {
            return Err(format!("the header has {} columns but the values row {}", rows[0].len(), rows[1].len()));
        }
        for (k, v) in rows[0].iter().zip(&rows[1]) {
            out.insert(k.trim().to_string(), cell(v));
        }
        return Ok(Value::Object(out));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != 2 {
            return Err(format!(
                "row {} has {} columns; a metrics CSV is `name,value` rows, or a header row and one row of values",
                i + 1,
                r.len()
            ));
        }
        if i == 0 && !numeric(&r[1]) && rows.len() > 1 {
            continue; // a header such as `metric,value`
        }
        out.insert(r[0].trim().to_string(), cell(&r[1]));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_as(name: &str, text: &str) -> Result<Value, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        read(&p).map(Value::Object)
    }

    #[test]
    fn every_format() {
        assert_eq!(
            read_as("m.json", r#"{"loss": 0.5, "eval": {"acc": 0.9}}"#).unwrap(),
            json!({"loss": 0.5, "eval": {"acc": 0.9}})
        );
        assert_eq!(
            read_as("m.yaml", "loss: 0.5\neval:\n  acc: 0.9\n").unwrap(),
            json!({"loss": 0.5, "eval": {"acc": 0.9}})
        );
        assert_eq!(
            read_as("m.toml", "loss = 0.5\n[eval]\nacc = 0.9\n").unwrap(),
            json!({"loss": 0.5, "eval": {"acc": 0.9}})
        );
        assert_eq!(
            read_as("m.csv", "loss,accuracy,run\n0.5,0.9,a\n").unwrap(),
            json!({"loss": 0.5, "accuracy": 0.9, "run": "a"})
        );
        assert_eq!(read_as("m.csv", "metric,value\nloss,0.5\nacc,0.9\n").unwrap(), json!({"loss": 0.5, "acc": 0.9}));
        assert_eq!(read_as("m.csv", "loss,0.5\nacc,0.9\n").unwrap(), json!({"loss": 0.5, "acc": 0.9}));
        assert_eq!(read_as("m.tsv", "loss\t3\n").unwrap(), json!({"loss": 3}));
    }

    #[test]
    fn bad_files_say_why() {
        assert!(read_as("m.json", "{\"loss\": ").unwrap_err().starts_with("not valid JSON"));
        assert_eq!(
            read_as("m.json", "[1, 2]").unwrap_err(),
            "the top level is a list, not a map of metric names to values"
        );
        assert!(read_as("m.txt", "loss 1").unwrap_err().contains("unknown metrics format `.txt`"));
        assert!(read_as("m.csv", "a,b,c\n1,2\n3,4,5\n").unwrap_err().contains("columns"));
        assert!(read_as("m.toml", "loss = \n").unwrap_err().starts_with("not valid TOML"));
    }
}

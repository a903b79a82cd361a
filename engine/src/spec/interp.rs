//! `${params.NAME}`, `${deps[i]}`, `${outs[i]}` in `cmd`.

use serde_json::Value;

/// A `${…}` that names nothing.
pub(crate) struct UnknownName {
    /// The text inside `${…}`.
    pub name: String,
}

/// Fill every `${…}` in `cmd`. `$$` is not special; `${` without `}` is kept.
pub(crate) fn interpolate(cmd: &str, params: &Value, deps: &[String], outs: &[String]) -> Result<String, UnknownName> {
    let mut out = String::with_capacity(cmd.len());
    let mut rest = cmd;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match lookup(name.trim(), params, deps, outs) {
            Some(v) => out.push_str(&v),
            None => return Err(UnknownName { name: name.to_string() }),
        }
        let consumed = start + 2 + len + 1;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(name: &str, params: &Value, deps: &[String], outs: &[String]) -> Option<String> {
    if let Some(path) = name.strip_prefix("params.") {
        let mut cur = params;
        for part in path.split('.') {
            cur = match cur {
                Value::Object(m) => m.get(part)?,
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        return Some(match cur {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        });
    }
    let index = |prefix: &str, list: &[String]| -> Option<String> {
        let i = name.strip_prefix(prefix)?.strip_suffix(']')?.trim().parse::<usize>().ok()?;
        list.get(i).cloned()
    };
    index("deps[", deps).or_else(|| index("outs[", outs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_names() {
        let p = serde_json::json!({"suffix": "!", "n": 3, "nested": {"a": "x"}});
        let deps = vec!["in.txt".to_string()];
        let outs = vec!["out.txt".to_string()];
        let s = interpolate(
            "cat ${deps[0]} > ${outs[0]}; echo ${params.suffix}${params.n}${params.nested.a}",
            &p,
            &deps,
            &outs,
        )
        .ok()
        .unwrap();
        assert_eq!(s, "cat in.txt > out.txt; echo !3x");
        let e = interpolate("echo ${params.nope}", &p, &deps, &outs).err().unwrap();
        assert_eq!(e.name, "params.nope");
        assert!(interpolate("x ${outs[1]}", &p, &deps, &outs).is_err());
    }
}

//! `${params.NAME}`, `${deps[i]}`, `${outs[i]}` in `cmd`, quoted for `sh`.
//!
//! A value is spliced so that the shell sees it as the exact text, wherever
//! the `${…}` sits: the template is scanned with POSIX `sh` quoting state
//! (unquoted, inside `'…'`, inside `"…"`, backslash escapes, and the fresh
//! context that `$(…)` and backquotes open).
//!
//! - unquoted: bare when the value is non-empty and only has
//!   `[A-Za-z0-9_@%+=:,./-]` (so simple paths read as before), else
//!   single-quoted with `'` written `'\''`;
//! - inside `"…"`: `$`, backquote, `"` and `\` are backslash-escaped;
//! - inside `'…'`: `'` is written `'\''`.
//!
//! `${raw:NAME}` splices the value as is, for a value that is meant to be
//! shell code. A `$` escaped with a backslash outside single quotes is left
//! to the shell (`\${x}` is not interpolated).

use serde_json::Value;

/// A `${…}` that names nothing.
pub(crate) struct UnknownName {
    /// The text inside `${…}`.
    pub name: String,
}

/// Where the scanner is, as `sh` would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Unquoted,
    Single,
    Double,
}

/// A command substitution being scanned, with the state to return to.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// `$(…)`, with its depth of open parentheses.
    Paren { outer: Quote, depth: usize },
    /// `` `…` ``.
    Backquote { outer: Quote },
}

/// Fill every `${…}` in `cmd`, quoting each value for where it sits.
/// `$$` is not special; `${` without `}` is kept.
pub(crate) fn interpolate(cmd: &str, params: &Value, deps: &[String], outs: &[String]) -> Result<String, UnknownName> {
    let mut out = String::with_capacity(cmd.len());
    let mut state = Quote::Unquoted;
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = cmd.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let rest = &cmd[i..];
        if let Some(after) = rest.strip_prefix("${") {
            if let Some(len) = after.find('}') {
                let name = &after[..len];
                let trimmed = name.trim();
                let (raw, key) = match trimmed.strip_prefix("raw:") {
                    Some(k) => (true, k.trim()),
                    None => (false, trimmed),
                };
                let Some(value) = lookup(key, params, deps, outs) else {
                    return Err(UnknownName { name: name.to_string() });
                };
                if raw {
                    out.push_str(&value);
                } else {
                    splice(&value, state, &mut out);
                }
                // Skip past the closing brace.
                let end = i + 2 + len + 1;
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
        match (state, c) {
            (Quote::Single, '\'') => state = Quote::Unquoted,
            (Quote::Single, _) => {}
            (_, '\\') => {
                // The next character is taken literally (in "…" only some
                // are escapable, but none of the others changes state).
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            (Quote::Unquoted, '\'') => state = Quote::Single,
            (Quote::Unquoted, '"') => state = Quote::Double,
            (Quote::Double, '"') => state = Quote::Unquoted,
            (_, '$') if chars.peek().is_some_and(|&(_, n)| n == '(') => {
                let (_, n) = chars.next().expect("peeked");
                out.push(n);
                stack.push(Frame::Paren { outer: state, depth: 1 });
                state = Quote::Unquoted;
            }
            (_, '`') => match stack.last() {
                Some(&Frame::Backquote { outer }) if state == Quote::Unquoted => {
                    stack.pop();
                    state = outer;
                }
                _ => {
                    stack.push(Frame::Backquote { outer: state });
                    state = Quote::Unquoted;
                }
            },
            (Quote::Unquoted, '(') => {
                if let Some(Frame::Paren { depth, .. }) = stack.last_mut() {
                    *depth += 1;
                }
            }
            (Quote::Unquoted, ')') => {
                if let Some(Frame::Paren { outer, depth }) = stack.last_mut() {
                    *depth -= 1;
                    if *depth == 0 {
                        state = *outer;
                        stack.pop();
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Characters that never need quoting in an unquoted word.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// Append `value` so that `sh` reads it as exactly that text in `state`.
fn splice(value: &str, state: Quote, out: &mut String) {
    match state {
        Quote::Unquoted if !value.is_empty() && value.chars().all(is_safe) => out.push_str(value),
        Quote::Unquoted => {
            out.push('\'');
            out.push_str(&value.replace('\'', "'\\''"));
            out.push('\'');
        }
        Quote::Single => out.push_str(&value.replace('\'', "'\\''")),
        Quote::Double => {
            for c in value.chars() {
                if matches!(c, '$' | '`' | '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
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

    fn fill(cmd: &str, params: Value) -> String {
        let deps = vec!["in.txt".to_string(), "my data.jsonl".to_string()];
        let outs = vec!["out.txt".to_string()];
        interpolate(cmd, &params, &deps, &outs).ok().expect("known names")
    }

    /// What `sh` prints for `cmd` (a `printf` of its arguments).
    fn sh(cmd: &str) -> String {
        let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs");
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

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
        assert_eq!(s, "cat in.txt > out.txt; echo '!'3x");
        let e = interpolate("echo ${params.nope}", &p, &deps, &outs).err().unwrap();
        assert_eq!(e.name, "params.nope");
        assert!(interpolate("x ${outs[1]}", &p, &deps, &outs).is_err());
        assert_eq!(interpolate("x ${raw:nope}", &p, &deps, &outs).err().unwrap().name, "raw:nope");
    }

    #[test]
    fn unquoted_safe_values_are_bare() {
        let p = serde_json::json!({"n": 3, "f": 0.5, "neg": -1, "path": "a/b-c_d.e:f,g@h%i+j=k", "t": true});
        assert_eq!(fill("x ${params.n} ${params.f} ${params.neg} ${params.t}", p.clone()), "x 3 0.5 -1 true");
        assert_eq!(fill("cat ${params.path} ${deps[0]}", p), "cat a/b-c_d.e:f,g@h%i+j=k in.txt");
    }

    #[test]
    fn unquoted_values_are_single_quoted() {
        let p =
            serde_json::json!({"evil": "hi; touch ../x", "q": "it's", "empty": "", "none": null, "obj": {"a": [1]}});
        assert_eq!(fill("echo ${params.evil}", p.clone()), "echo 'hi; touch ../x'");
        assert_eq!(fill("echo ${params.q}", p.clone()), "echo 'it'\\''s'");
        assert_eq!(fill("echo ${params.empty}${params.none}", p.clone()), "echo ''''");
        assert_eq!(fill("cat ${deps[1]}", p.clone()), "cat 'my data.jsonl'");
        assert_eq!(
            sh(&fill("printf '<%s>' ${params.evil} ${params.q} ${deps[1]} ${params.empty}", p.clone())),
            "<hi; touch ../x><it's><my data.jsonl><>"
        );
        assert_eq!(sh(&fill("printf '<%s>' ${params.obj}", p)), "<{\"a\":[1]}>");
    }

    #[test]
    fn inside_double_quotes() {
        let p = serde_json::json!({"suffix": "!", "evil": "$(touch x) `id` \"q\" \\ $HOME"});
        assert_eq!(fill("echo \"${params.suffix}\"", p.clone()), "echo \"!\"");
        assert_eq!(
            fill("echo \"a ${params.evil} b\"", p.clone()),
            "echo \"a \\$(touch x) \\`id\\` \\\"q\\\" \\\\ \\$HOME b\""
        );
        assert_eq!(
            sh(&fill("printf '<%s>' \"a ${params.evil} b\"", p.clone())),
            "<a $(touch x) `id` \"q\" \\ $HOME b>"
        );
        // An escaped quote does not end the string.
        assert_eq!(sh(&fill("printf '<%s>' \"\\\" ${params.evil}\"", p)), "<\" $(touch x) `id` \"q\" \\ $HOME>");
    }

    #[test]
    fn inside_single_quotes() {
        let p = serde_json::json!({"q": "it's $HOME; x", "col": "1"});
        assert_eq!(fill("echo '${params.q}'", p.clone()), "echo 'it'\\''s $HOME; x'");
        assert_eq!(sh(&fill("printf '<%s>' 'a ${params.q} b'", p.clone())), "<a it's $HOME; x b>");
        assert_eq!(fill("awk '{print $${params.col}}'", p), "awk '{print $1}'");
    }

    #[test]
    fn backslashes_and_substitutions() {
        let p = serde_json::json!({"evil": "a b; touch x"});
        // `\'` outside quotes is a literal quote and opens nothing.
        assert_eq!(sh(&fill("printf '<%s>' \\'${params.evil}", p.clone())), "<'a b; touch x>");
        // An escaped `$` is the shell's, not dvx's.
        assert_eq!(fill("echo \\${params.nope}", p.clone()), "echo \\${params.nope}");
        // `$(…)` and backquotes open a fresh unquoted context, even in "…".
        assert_eq!(sh(&fill("printf '<%s>' \"$(printf '%s' ${params.evil})\"", p.clone())), "<a b; touch x>");
        assert_eq!(sh(&fill("printf '<%s>' \"$(echo \")\" ${params.evil})\"", p.clone())), "<) a b; touch x>");
        assert_eq!(sh(&fill("printf '<%s>' \"`printf '%s' ${params.evil}`\"", p.clone())), "<a b; touch x>");
        assert_eq!(sh(&fill("printf '<%s>' $( (echo ${params.evil}) )", p.clone())), "<a><b;><touch><x>");
        assert_eq!(sh(&fill("printf '<%s>' \"$((1 + 2))${params.evil}\"", p)), "<3a b; touch x>");
    }

    #[test]
    fn raw_splices_as_is() {
        let p = serde_json::json!({"flags": "-n -e"});
        assert_eq!(fill("echo ${raw:params.flags} ${raw: deps[1]}", p.clone()), "echo -n -e my data.jsonl");
        assert_eq!(fill("echo ${params.flags}", p), "echo '-n -e'");
    }
}

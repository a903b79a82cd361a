//! The rule language of `kind: filter`.
//!
//! A rule is a YAML mapping with exactly one operator key, plus optional
//! modifiers. A bare string is shorthand for `{contains: "<string>"}`.
//!
//! Leaves (look at the record's text, or at `field` when given):
//! - `contains: "s"` or `contains: [a, b]` — every string occurs;
//! - `contains_any: [a, b]` — at least one occurs;
//! - `regex: "pattern"` — the pattern matches somewhere (Rust `regex` syntax);
//! - `min_len: n` / `max_len: n` — length in characters (of an array: items).
//!
//! Field comparisons (need `field`):
//! - `eq: v` / `ne: v` — JSON equality (numbers compare by value);
//! - `gt`, `ge`, `lt`, `le: number` — the field is a number in that range;
//! - `exists: true|false`.
//!
//! Combinators:
//! - `all: [rules]`, `any: [rules]`, `not: rule`;
//! - `at_least: k` with `of: [rules]` — k or more of them pass.
//!
//! Modifiers, allowed on any rule:
//! - `field: path` — dotted path (`meta.category`, `messages.1.content`)
//!   whose text the leaf looks at instead of the record text;
//! - `case_insensitive: true` — for `contains`, `contains_any`, `regex`;
//! - `and_not: rule` — the rule passes only if this one does not;
//! - `name: "..."` — a label used in `_rejected_by` instead of the generated one.
//!
//! A failing record is reported by the rule that decided it: the first
//! failing child of an `all`, the `any` / `at_least` / `not` node itself, or
//! the `and_not` that matched, as `"<param path>: <label>"`, e.g.
//! `rules.CRUD.and_not: matched contains any of ["fake_db"]`.

use std::cell::OnceCell;
use std::fmt::Write as _;

use dvx_stage_api::ParamError;
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::records::{field, record_text, value_text, Record};

/// A parsed rule with where it came from.
#[derive(Debug)]
pub(crate) struct Rule {
    node: Node,
    field: Option<String>,
    and_not: Option<Box<Rule>>,
    /// Dotted param path of this rule (`rules.CRUD.of.1`).
    path: String,
    /// Human label of the operator alone (`contains "db.add"`), or `name`.
    label: String,
    /// The label with its `and_not`, as shown inside a parent's label.
    full: String,
}

#[derive(Debug)]
enum Node {
    Contains { needles: Vec<String>, any: bool, ci: bool },
    Regex(Regex),
    Len { min: bool, n: usize },
    Eq { value: Value, negate: bool },
    Cmp { op: Cmp, n: f64 },
    Exists(bool),
    All(Vec<Rule>),
    Any(Vec<Rule>),
    AtLeast(usize, Vec<Rule>),
    Not(Box<Rule>),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

const OPERATORS: &[&str] = &[
    "contains",
    "contains_any",
    "regex",
    "min_len",
    "max_len",
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "exists",
    "all",
    "any",
    "at_least",
    "not",
];
const MODIFIERS: &[&str] = &["field", "case_insensitive", "and_not", "name", "of"];

/// What a record is tested against: the record and its text, computed once.
pub(crate) struct Subject<'a> {
    record: &'a Record,
    text_fields: &'a [String],
    text: OnceCell<String>,
    lower: OnceCell<String>,
}

impl<'a> Subject<'a> {
    pub(crate) fn new(record: &'a Record, text_fields: &'a [String]) -> Self {
        Subject { record, text_fields, text: OnceCell::new(), lower: OnceCell::new() }
    }

    fn text(&self) -> &str {
        self.text.get_or_init(|| record_text(self.record, self.text_fields))
    }

    fn lower(&self) -> &str {
        self.lower.get_or_init(|| self.text().to_lowercase())
    }
}

/// Why a record failed: the deciding rule, and what was seen.
pub(crate) struct Miss<'r> {
    rule: &'r Rule,
    /// The deciding rule matched where it must not (`and_not`).
    matched: bool,
    /// For `any` / `at_least`: how many children passed.
    passed: Option<usize>,
    /// A comparison that could not be made: the field is missing or holds
    /// another type. Its own reason, not the rule's text.
    wrong: Option<WrongValue>,
}

/// Why a comparison could not be made.
struct WrongValue {
    /// `quality_score is missing`, `quality_score is not a number`.
    what: String,
    /// The value found, as JSON, when there was one.
    value: Option<String>,
}

impl Miss<'_> {
    /// The readable reason: `"<path>: <label>"`.
    pub(crate) fn describe(&self) -> String {
        if let Some(w) = &self.wrong {
            let value = w.value.as_ref().map(|v| format!(": {v}")).unwrap_or_default();
            return format!("{}: {}{value}", self.rule.path, w.what);
        }
        let mut s = format!("{}: ", self.rule.path);
        if self.matched {
            s.push_str("matched ");
        }
        s.push_str(if self.matched { &self.rule.full } else { &self.rule.label });
        if let Some(k) = self.passed {
            let _ = write!(s, " ({k} matched)");
        }
        s
    }

    /// What the reject is counted under: the deciding rule's param path,
    /// or for a comparison that could not be made, that path and why
    /// (`rules.CRUD: quality_score is not a number`), so wrong data is
    /// counted apart from records that fail the rule.
    pub(crate) fn counted_as(&self) -> String {
        match &self.wrong {
            Some(w) => format!("{}: {}", self.rule.path, w.what),
            None => self.rule.path.clone(),
        }
    }
}

impl Rule {
    /// Parse the rule at param path `path`.
    pub(crate) fn parse(v: &Value, path: &str) -> Result<Rule, ParamError> {
        let map = match v {
            Value::String(s) => {
                let label = format!("contains {}", quote(s));
                let node = Node::Contains { needles: vec![s.clone()], any: false, ci: false };
                return Ok(Rule { node, field: None, and_not: None, path: path.into(), full: label.clone(), label });
            }
            Value::Object(m) => m,
            _ => return Err(ParamError::field(path, "a rule is a mapping (or a string, meaning `contains`)")),
        };
        for k in map.keys() {
            if !OPERATORS.contains(&k.as_str()) && !MODIFIERS.contains(&k.as_str()) {
                return Err(ParamError::field(
                    join(path, k),
                    format!("unknown rule key `{k}`; expected one of {}", OPERATORS.join(", ")),
                ));
            }
        }
        let ops: Vec<&str> = OPERATORS.iter().copied().filter(|o| map.contains_key(*o)).collect();
        let op = match ops.as_slice() {
            [op] => *op,
            [] => return Err(ParamError::field(path, format!("a rule needs one of {}", OPERATORS.join(", ")))),
            many => {
                return Err(ParamError::field(path, format!("a rule has one operator, found {}", many.join(" and "))))
            }
        };
        if map.contains_key("of") && op != "at_least" {
            return Err(ParamError::field(join(path, "of"), "`of` goes with `at_least`"));
        }
        let field_path = match map.get("field") {
            None => None,
            Some(Value::String(f)) if !f.is_empty() => Some(f.clone()),
            Some(_) => return Err(ParamError::field(join(path, "field"), "expected a field path string")),
        };
        let ci = match map.get("case_insensitive") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ParamError::field(join(path, "case_insensitive"), "expected true or false")),
        };
        if ci && !matches!(op, "contains" | "contains_any" | "regex") {
            return Err(ParamError::field(
                join(path, "case_insensitive"),
                "`case_insensitive` applies to `contains`, `contains_any` and `regex`",
            ));
        }
        let needs_field = matches!(op, "eq" | "ne" | "gt" | "ge" | "lt" | "le" | "exists");
        if needs_field && field_path.is_none() {
            return Err(ParamError::field(path, format!("`{op}` needs a `field`")));
        }
        if field_path.is_some() && matches!(op, "all" | "any" | "at_least" | "not") {
            return Err(ParamError::field(join(path, "field"), format!("`field` does not apply to `{op}`")));
        }
        let arg = &map[op];
        let arg_path = join(path, op);
        let subject = field_path.clone().unwrap_or_else(|| "text".into());
        let ci_note = if ci { " (case-insensitive)" } else { "" };
        let (node, mut label) = match op {
            "contains" | "contains_any" => {
                let needles = strings(arg, &arg_path)?;
                let any = op == "contains_any";
                let shown = if needles.len() == 1 {
                    quote(&needles[0])
                } else {
                    format!(
                        "{} of [{}]",
                        if any { "any" } else { "all" },
                        needles.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
                    )
                };
                let needles = if ci { needles.iter().map(|n| n.to_lowercase()).collect() } else { needles };
                let label = format!("{}contains {shown}{ci_note}", prefix(&field_path));
                (Node::Contains { needles, any, ci }, label)
            }
            "regex" => {
                let pat = arg.as_str().ok_or_else(|| ParamError::field(&arg_path, "expected a pattern string"))?;
                let re = RegexBuilder::new(pat)
                    .case_insensitive(ci)
                    .build()
                    .map_err(|e| ParamError::field(&arg_path, format!("invalid regex: {e}")))?;
                (Node::Regex(re), format!("{}matches /{pat}/{ci_note}", prefix(&field_path)))
            }
            "min_len" | "max_len" => {
                let n = arg.as_u64().ok_or_else(|| ParamError::field(&arg_path, "expected a non-negative integer"))?
                    as usize;
                let min = op == "min_len";
                (Node::Len { min, n }, format!("len({subject}) {} {n}", if min { ">=" } else { "<=" }))
            }
            "eq" | "ne" => {
                let negate = op == "ne";
                (
                    Node::Eq { value: arg.clone(), negate },
                    format!("{subject} {} {arg}", if negate { "!=" } else { "==" }),
                )
            }
            "gt" | "ge" | "lt" | "le" => {
                let n = arg.as_f64().ok_or_else(|| ParamError::field(&arg_path, "expected a number"))?;
                let (cmp, sym) = match op {
                    "gt" => (Cmp::Gt, ">"),
                    "ge" => (Cmp::Ge, ">="),
                    "lt" => (Cmp::Lt, "<"),
                    _ => (Cmp::Le, "<="),
                };
                (Node::Cmp { op: cmp, n }, format!("{subject} {sym} {arg}"))
            }
            "exists" => {
                let b = arg.as_bool().ok_or_else(|| ParamError::field(&arg_path, "expected true or false"))?;
                (Node::Exists(b), format!("{}exists({subject})", if b { "" } else { "not " }))
            }
            "all" | "any" => {
                let kids = list(arg, &arg_path)?;
                let label = format!("{op} of [{}]", labels(&kids));
                (if op == "all" { Node::All(kids) } else { Node::Any(kids) }, label)
            }
            "at_least" => {
                let k = arg.as_u64().ok_or_else(|| ParamError::field(&arg_path, "expected a non-negative integer"))?
                    as usize;
                let of = map.get("of").ok_or_else(|| ParamError::field(path, "`at_least` needs `of: [rules]`"))?;
                let kids = list(of, &join(path, "of"))?;
                if k > kids.len() {
                    return Err(ParamError::field(
                        &arg_path,
                        format!("at_least {k} of {} rules can never pass", kids.len()),
                    ));
                }
                let label = format!("at least {k} of [{}]", labels(&kids));
                (Node::AtLeast(k, kids), label)
            }
            _ => {
                let inner = Rule::parse(arg, &arg_path)?;
                let label = format!("not ({})", inner.full);
                (Node::Not(Box::new(inner)), label)
            }
        };
        let and_not = match map.get("and_not") {
            None => None,
            Some(v) => Some(Box::new(Rule::parse(v, &join(path, "and_not"))?)),
        };
        if let Some(name) = map.get("name") {
            label =
                name.as_str().ok_or_else(|| ParamError::field(join(path, "name"), "expected a string"))?.to_string();
        }
        let mut full = label.clone();
        if let Some(an) = &and_not {
            let _ = write!(full, " and not ({})", an.full);
        }
        Ok(Rule { node, field: field_path, and_not, path: path.into(), label, full })
    }

    /// `f` on this rule and every rule below it (`and_not` included).
    fn walk<'r>(&'r self, f: &mut impl FnMut(&'r Rule)) {
        f(self);
        match &self.node {
            Node::All(kids) | Node::Any(kids) | Node::AtLeast(_, kids) => kids.iter().for_each(|k| k.walk(f)),
            Node::Not(inner) => inner.walk(f),
            _ => {}
        }
        if let Some(an) = &self.and_not {
            an.walk(f);
        }
    }

    /// The record fields this rule and those below it read, each with the
    /// param path naming it (`rules.CRUD.of.1.field`). `exists` rules are
    /// left out: a field absent from every record may be what they check.
    pub(crate) fn named_fields(&self, out: &mut Vec<(String, String)>) {
        self.walk(&mut |r| {
            if let (Some(f), false) = (&r.field, matches!(r.node, Node::Exists(_))) {
                out.push((join(&r.path, "field"), f.clone()));
            }
        });
    }

    /// Every field path this rule and those below it read (`exists`
    /// included) into `out`; true when one of them reads the record's text.
    pub(crate) fn reads(&self, out: &mut Vec<String>) -> bool {
        let mut text = false;
        self.walk(&mut |r| {
            out.extend(r.field.iter().cloned());
            text |= r.field.is_none() && matches!(r.node, Node::Contains { .. } | Node::Regex(_) | Node::Len { .. });
        });
        text
    }

    /// Does the record pass?
    pub(crate) fn test<'r>(&'r self, s: &Subject<'_>) -> Result<(), Miss<'r>> {
        self.test_node(s)?;
        if let Some(an) = &self.and_not {
            if an.test(s).is_ok() {
                return Err(Miss { rule: an, matched: true, passed: None, wrong: None });
            }
        }
        Ok(())
    }

    fn test_node<'r>(&'r self, s: &Subject<'_>) -> Result<(), Miss<'r>> {
        let miss = |passed| Err(Miss { rule: self, matched: false, passed, wrong: None });
        let wrong = |what: String, value: Option<&Value>| {
            Err(Miss {
                rule: self,
                matched: false,
                passed: None,
                wrong: Some(WrongValue { what, value: value.map(Value::to_string) }),
            })
        };
        let subject = self.field.as_deref().unwrap_or_default();
        let ok = match &self.node {
            Node::Contains { needles, any, ci } => {
                let owned;
                let hay: &str = match (&self.field, ci) {
                    (None, false) => s.text(),
                    (None, true) => s.lower(),
                    (Some(f), ci) => {
                        let t = field(s.record, f).map(value_text).unwrap_or_default();
                        owned = if *ci { t.to_lowercase() } else { t };
                        &owned
                    }
                };
                if *any {
                    needles.iter().any(|n| hay.contains(n.as_str()))
                } else {
                    needles.iter().all(|n| hay.contains(n.as_str()))
                }
            }
            Node::Regex(re) => match &self.field {
                None => re.is_match(s.text()),
                Some(f) => re.is_match(&field(s.record, f).map(value_text).unwrap_or_default()),
            },
            Node::Len { min, n } => {
                let len = match &self.field {
                    None => s.text().chars().count(),
                    Some(f) => match field(s.record, f) {
                        Some(Value::Array(a)) => a.len(),
                        Some(v) => value_text(v).chars().count(),
                        None => 0,
                    },
                };
                if *min {
                    len >= *n
                } else {
                    len <= *n
                }
            }
            Node::Eq { value, negate } => {
                let got = self.field.as_deref().and_then(|f| field(s.record, f));
                if got.is_none() && !*negate {
                    return wrong(format!("{subject} is missing"), None);
                }
                let same = match (got, value) {
                    (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
                    (Some(a), b) => a == b,
                    (None, _) => false,
                };
                same != *negate
            }
            Node::Cmp { op, n } => {
                let got = self.field.as_deref().and_then(|f| field(s.record, f));
                match got.map(|v| (v, v.as_f64())) {
                    None => return wrong(format!("{subject} is missing"), None),
                    Some((v, None)) => return wrong(format!("{subject} is not a number"), Some(v)),
                    Some((_, Some(x))) => match op {
                        Cmp::Gt => x > *n,
                        Cmp::Ge => x >= *n,
                        Cmp::Lt => x < *n,
                        Cmp::Le => x <= *n,
                    },
                }
            }
            Node::Exists(want) => {
                let has = self.field.as_deref().and_then(|f| field(s.record, f)).is_some_and(|v| !v.is_null());
                has == *want
            }
            Node::All(kids) => {
                for k in kids {
                    k.test(s)?;
                }
                true
            }
            Node::Any(kids) => {
                if kids.iter().any(|k| k.test(s).is_ok()) {
                    true
                } else {
                    return miss(Some(0));
                }
            }
            Node::AtLeast(need, kids) => {
                let got = kids.iter().filter(|k| k.test(s).is_ok()).count();
                if got >= *need {
                    true
                } else {
                    return miss(Some(got));
                }
            }
            Node::Not(inner) => inner.test(s).is_err(),
        };
        if ok {
            Ok(())
        } else {
            miss(None)
        }
    }
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f} ")).unwrap_or_default()
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn labels(kids: &[Rule]) -> String {
    kids.iter().map(|k| k.full.as_str()).collect::<Vec<_>>().join(", ")
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>, ParamError> {
    let out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ParamError::field(format!("{path}.{i}"), "expected a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ParamError::field(path, "expected a string or a list of strings")),
    };
    if out.is_empty() {
        return Err(ParamError::field(path, "expected at least one string"));
    }
    Ok(out)
}

fn list(v: &Value, path: &str) -> Result<Vec<Rule>, ParamError> {
    let items = v.as_array().ok_or_else(|| ParamError::field(path, "expected a list of rules"))?;
    if items.is_empty() {
        return Err(ParamError::field(path, "expected at least one rule"));
    }
    items.iter().enumerate().map(|(i, item)| Rule::parse(item, &format!("{path}.{i}"))).collect()
}

/// Parse every rule of a `rules:` mapping (category → rule).
pub(crate) fn parse_rules(rules: &Map<String, Value>) -> Result<Vec<(String, Rule)>, ParamError> {
    rules.iter().map(|(cat, v)| Ok((cat.clone(), Rule::parse(v, &format!("rules.{cat}"))?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn run(rule: &Value, record: &Value) -> Result<(), String> {
        let r = Rule::parse(rule, "rules.X").unwrap();
        let rec = rec(record.clone());
        let s = Subject::new(&rec, &[]);
        r.test(&s).map_err(|m| m.describe())
    }

    fn out(text: &str) -> Value {
        json!({"instruction": "q", "output": text})
    }

    #[test]
    fn crud_rule_from_seed() {
        let rule = json!({
            "at_least": 2, "of": ["db.add", "db.commit", "Session"],
            "and_not": {"contains_any": ["in-memory", "fake_db"], "case_insensitive": true}
        });
        assert_eq!(run(&rule, &out("db.add(x); db.commit()")), Ok(()));
        assert_eq!(
            run(&rule, &out("db.add(x)")),
            Err(r#"rules.X: at least 2 of [contains "db.add", contains "db.commit", contains "Session"] (1 matched)"#
                .into())
        );
        assert_eq!(
            run(&rule, &out("db.add(x); db.commit() # In-Memory store")),
            Err(r#"rules.X.and_not: matched contains any of ["in-memory", "fake_db"] (case-insensitive)"#.into())
        );
    }

    #[test]
    fn all_reports_first_failing_child() {
        let rule = json!({"all": [{"contains": ["AsyncSession", "async def"]}, {"regex": "await\\s"}]});
        assert_eq!(run(&rule, &out("AsyncSession async def await x")), Ok(()));
        assert_eq!(run(&rule, &out("AsyncSession async def")), Err("rules.X.all.1: matches /await\\s/".into()));
        assert_eq!(
            run(&rule, &out("await x")),
            Err(r#"rules.X.all.0: contains all of ["AsyncSession", "async def"]"#.into())
        );
    }

    #[test]
    fn field_comparisons() {
        let r = json!({"score": 3.5, "tags": ["a", "b"], "name": "Bob"});
        assert_eq!(run(&json!({"field": "score", "gt": 3}), &r), Ok(()));
        assert_eq!(run(&json!({"field": "score", "le": 3}), &r), Err("rules.X: score <= 3".into()));
        assert_eq!(run(&json!({"field": "score", "eq": 3.5}), &r), Ok(()));
        assert_eq!(run(&json!({"field": "name", "ne": "Bob"}), &r), Err(r#"rules.X: name != "Bob""#.into()));
        assert_eq!(run(&json!({"field": "tags", "min_len": 2}), &r), Ok(()));
        assert_eq!(run(&json!({"field": "name", "max_len": 2}), &r), Err("rules.X: len(name) <= 2".into()));
        assert_eq!(run(&json!({"field": "missing", "exists": false}), &r), Ok(()));
        // A comparison that cannot be made says why, not the rule's text.
        assert_eq!(run(&json!({"field": "missing", "gt": 0}), &r), Err("rules.X: missing is missing".into()));
        assert_eq!(run(&json!({"field": "name", "ge": 1}), &r), Err(r#"rules.X: name is not a number: "Bob""#.into()));
        assert_eq!(run(&json!({"field": "missing", "eq": 1}), &r), Err("rules.X: missing is missing".into()));
        assert_eq!(run(&json!({"field": "missing", "ne": 1}), &r), Ok(()));
        assert_eq!(run(&json!({"field": "name", "contains": "ob", "case_insensitive": true}), &r), Ok(()));
    }

    #[test]
    fn any_not_and_names() {
        let rule = json!({"any": ["joinedload", "selectinload"], "name": "eager loading"});
        assert_eq!(run(&rule, &out("options(selectinload(User.items))")), Ok(()));
        assert_eq!(run(&rule, &out("lazy")), Err("rules.X: eager loading (0 matched)".into()));
        let rule = json!({"not": {"regex": "(?i)todo"}});
        assert_eq!(run(&rule, &out("TODO: fix")), Err("rules.X: not (matches /(?i)todo/)".into()));
        assert_eq!(run(&rule, &out("done")), Ok(()));
    }

    #[test]
    fn bad_rules_point_at_the_field() {
        let err = |v: Value| Rule::parse(&v, "rules.CRUD").unwrap_err();
        let e = err(json!({"at_least": 1, "of": ["a", {"regex": "(unclosed"}]}));
        assert_eq!(e.field.as_deref(), Some("rules.CRUD.of.1.regex"));
        assert!(e.message.starts_with("invalid regex"), "{}", e.message);
        assert_eq!(err(json!({"contians": "x"})).field.as_deref(), Some("rules.CRUD.contians"));
        assert!(err(json!({"contains": "a", "regex": "b"})).message.contains("contains and regex"));
        assert_eq!(err(json!({"gt": 1})).message, "`gt` needs a `field`");
        assert_eq!(err(json!({"at_least": 3, "of": ["a"]})).field.as_deref(), Some("rules.CRUD.at_least"));
        assert_eq!(err(json!({"all": []})).field.as_deref(), Some("rules.CRUD.all"));
        assert_eq!(err(json!({"contains": [1]})).field.as_deref(), Some("rules.CRUD.contains.0"));
        assert_eq!(err(json!(3)).field.as_deref(), Some("rules.CRUD"));
        assert_eq!(err(json!({"any": ["a"], "of": ["b"]})).field.as_deref(), Some("rules.CRUD.of"));
    }
}

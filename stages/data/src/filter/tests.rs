use serde_json::{json, Value};

use super::Filter;
use crate::testkit::{jsonl, pipeline_params, run};

fn rec(cat: &str, output: &str) -> Value {
    json!({"instruction": format!("Write {cat} code"), "output": output, "category": cat})
}

/// Hand-made records for seed 000's eight categories: for each, the record
/// and whether the V5.2 rules should keep it.
fn seed_cases() -> Vec<(Value, bool)> {
    vec![
        (rec("CRUD", "def create(db: Session):\n    db.add(item)\n    db.commit()"), true),
        (rec("CRUD", "db.add(item)\ndb.commit()"), true),
        (rec("CRUD", "def create(db: Session):\n    db.add(item)"), true),
        (rec("CRUD", "items_db: dict = {}\ndef create(db: Session):\n    db.add(i); db.commit()"), false),
        (rec("CRUD", "# in-memory store\ndb.add(x)\ndb.commit()"), false),
        (rec("CRUD", "def create():\n    items.append(x)"), false),
        (rec("Async SQLAlchemy", "async def get(db: AsyncSession):\n    r = await db.execute(q)"), true),
        (rec("Async SQLAlchemy", "def get(db: Session):\n    return db.query(User).all()"), false),
        (rec("JWT Authentication", "import jwt\ntoken = jwt.encode(data, KEY, algorithm=ALG)"), true),
        (rec("JWT Authentication", "from jose import JWTError, jwt\npayload = jwt.decode(t, KEY)"), true),
        (rec("JWT Authentication", "token = create_token(user)  # uses jwt.encode( internally"), false),
        (rec("JWT Authentication", "import jwt\nprint('token')"), false),
        (rec("Query Optimization", "q.options(joinedload(User.posts))"), true),
        (rec("Query Optimization", "select(User).options(selectinload(User.items))"), true),
        (rec("Query Optimization", "db.query(User).all()"), false),
        (rec("Pagination", "def list(skip: int = 0, limit: int = 100):"), true),
        (rec("Pagination", "def list(page: int = 1, size: int = 20):"), false),
        (rec("Pagination", "def list(skip: int = 0):"), false),
        (rec("WebSockets", "async def ws(websocket: WebSocket):\n    await websocket.accept()"), true),
        (rec("WebSockets", "def ws(websocket: WebSocket):\n    websocket.accept()"), false),
        (
            rec(
                "Error Handling",
                "@app.exception_handler(E)\nasync def h(r, e):\n    return JSONResponse(status_code=418)",
            ),
            true,
        ),
        (rec("Error Handling", "raise HTTPException(status_code=404)"), false),
        (
            rec("Background Tasks", "def send(to):\n    ...\ndef ep(bg: BackgroundTasks):\n    bg.add_task(send, 'a')"),
            true,
        ),
        (rec("Background Tasks", "def ep(bg: BackgroundTasks):\n    bg.add_task(print, 'a')"), true),
        (rec("Background Tasks", "bg: BackgroundTasks = None\nbg.add_task(print)"), false),
        (rec("Other", "anything"), true),
    ]
}

#[test]
fn seed_000_rules_keep_and_reject() {
    let cases = seed_cases();
    let input: Vec<Value> = cases.iter().map(|(r, _)| r.clone()).collect();
    let params = pipeline_params("v5_8_curated.yaml", "filter");
    let r = run(Filter, &[&jsonl(&input)], &["kept.jsonl", "rejected.jsonl"], params, 2).unwrap();
    let want_kept: Vec<Value> = cases.iter().filter(|c| c.1).map(|c| c.0.clone()).collect();
    assert_eq!(r.records(0), want_kept);
    let rejected = r.records(1);
    assert_eq!(rejected.len(), cases.len() - want_kept.len());
    let reasons: Vec<&str> = rejected.iter().map(|r| r["_rejected_by"].as_str().unwrap()).collect();
    assert_eq!(reasons[0], "rules.CRUD.and_not: matched in-memory storage");
    assert_eq!(
        reasons[2],
        r#"rules.CRUD: at least 2 of [contains "db.add", contains "db.commit", contains "Session"] (0 matched)"#
    );
    assert_eq!(reasons[3], r#"rules.Async SQLAlchemy: contains all of ["AsyncSession", "async def", "await"]"#);
    assert_eq!(reasons[4], "rules.JWT Authentication.all.0: jwt import");
    assert_eq!(reasons[5], r"rules.JWT Authentication.all.1: matches /\bjwt\.(encode|decode)\(/");
    // The rejected record is the input plus the reason, last.
    let mut first = cases[3].0.clone();
    first["_rejected_by"] = json!("rules.CRUD.and_not: matched in-memory storage");
    assert_eq!(rejected[0], first);
}

#[test]
fn metrics_have_the_seed_000_table_shape() {
    let cases = seed_cases();
    let input: Vec<Value> = cases.iter().map(|(r, _)| r.clone()).collect();
    let params = pipeline_params("v5_8_curated.yaml", "filter");
    let r = run(Filter, &[&jsonl(&input)], &["kept.jsonl"], params, 1).unwrap();
    assert_eq!(r.metric("total"), &json!(26));
    assert_eq!(r.metric("passed"), &json!(14));
    assert_eq!(r.metric("failed"), &json!(12));
    assert_eq!(r.metric("rate"), &json!(0.5385));
    assert_eq!(r.metric("malformed"), &json!(0));
    assert_eq!(
        r.metric("categories"),
        &json!({
            "Async SQLAlchemy": {"total": 2, "passed": 1, "failed": 1, "rate": 0.5},
            "Background Tasks": {"total": 3, "passed": 2, "failed": 1, "rate": 0.6667},
            "CRUD": {"total": 6, "passed": 3, "failed": 3, "rate": 0.5},
            "Error Handling": {"total": 2, "passed": 1, "failed": 1, "rate": 0.5},
            "JWT Authentication": {"total": 4, "passed": 2, "failed": 2, "rate": 0.5},
            "Other": {"total": 1, "passed": 1, "failed": 0, "rate": 1.0},
            "Pagination": {"total": 3, "passed": 1, "failed": 2, "rate": 0.3333},
            "Query Optimization": {"total": 3, "passed": 2, "failed": 1, "rate": 0.6667},
            "WebSockets": {"total": 2, "passed": 1, "failed": 1, "rate": 0.5},
        })
    );
    assert_eq!(
        r.metric("rejected_by"),
        &json!({
            "rules.Async SQLAlchemy": 1,
            "rules.Background Tasks.all.1": 1,
            "rules.CRUD": 1,
            "rules.CRUD.and_not": 2,
            "rules.Error Handling": 1,
            "rules.JWT Authentication.all.0": 1,
            "rules.JWT Authentication.all.1": 1,
            "rules.Pagination.all.0": 1,
            "rules.Pagination.all.1": 1,
            "rules.Query Optimization": 1,
            "rules.WebSockets.all.0": 1,
        })
    );
    let table = "\
| Category | Total | Passed | Failed | Pass Rate | Status |
|----------|-------|--------|--------|-----------|--------|
| **Other** | 1 | 1 | 0 | 100.0% | perfect |
| **Background Tasks** | 3 | 2 | 1 | 66.7% | good |
| **Query Optimization** | 3 | 2 | 1 | 66.7% | good |
| **Async SQLAlchemy** | 2 | 1 | 1 | 50.0% | poor |
| **CRUD** | 6 | 3 | 3 | 50.0% | poor |
| **Error Handling** | 2 | 1 | 1 | 50.0% | poor |
| **JWT Authentication** | 4 | 2 | 2 | 50.0% | poor |
| **WebSockets** | 2 | 1 | 1 | 50.0% | poor |
| **Pagination** | 3 | 1 | 2 | 33.3% | poor |
| **TOTAL** | **26** | **14** | **12** | **53.8%** | |
";
    let text = "filter: text of 26 record(s) from their turns: alpaca: instruction + output (26)\n";
    assert_eq!(r.log, format!("{table}records processed: 26, reused from earlier runs: 0\n{text}"));
}

#[test]
fn default_rule_field_and_missing_category() {
    let input = [
        json!({"text": "short", "score": 9}),
        json!({"text": "long enough text", "score": 1}),
        json!({"text": "long enough text", "score": 7, "category": "x"}),
    ];
    let params = json!({
        "text_fields": ["text"],
        "rules": {"x": {"field": "score", "ge": 5}},
        "default": {"min_len": 10},
    });
    let r = run(Filter, &[&jsonl(&input)], &["k.jsonl", "r.jsonl"], params, 1).unwrap();
    assert_eq!(r.records(0), vec![input[1].clone(), input[2].clone()]);
    assert_eq!(r.column(1, "_rejected_by"), vec!["default: len(text) >= 10"]);
    assert_eq!(r.metric("categories")["(none)"], json!({"total": 2, "passed": 1, "failed": 1, "rate": 0.5}));
}

#[test]
fn malformed_lines_fail_or_skip() {
    let input = "{\"output\": \"a\"}\nnot json\n[1]\n{\"output\": \"b\"}\n";
    let err = run(Filter, &[input], &["k.jsonl"], json!({}), 1).unwrap_err();
    assert!(err.ends_with("in0.jsonl:2: malformed JSON: expected ident at line 1 column 2"), "{err}");
    let r = run(Filter, &[input], &["k.jsonl", "r.jsonl"], json!({"on_error": "skip"}), 1).unwrap();
    assert_eq!(r.records(0).len(), 2);
    assert_eq!(r.metric("malformed"), &json!(2));
    let rej = r.records(1);
    assert_eq!(rej[0]["_line"], json!(2));
    assert_eq!(rej[0]["_raw"], json!("not json"));
    assert_eq!(rej[1]["_rejected_by"], json!("not a JSON object"));
    assert!(r.log.contains("\nskipped 2 malformed line(s)\n"), "{}", r.log);
}

#[test]
fn a_rerun_replays_kept_verdicts_including_malformed_lines() {
    let input = "{\"output\": \"a\"}\nnot json\n{\"category\":\"CRUD\",\"output\":\"Session\"}\n{\"output\": \"b\"}\n";
    let params = json!({"on_error": "skip", "rules": {"CRUD": "db.add"}});
    let memo = dvx_stage_api::MemoryMemo::default();
    let run_once = || crate::testkit::run_with_memo(Filter, &[input], &["k.jsonl", "r.jsonl"], params.clone(), 2, &memo).unwrap();
    let (a, b) = (run_once(), run_once());
    assert!(a.log.contains("\nrecords processed: 4, reused from earlier runs: 0\n"), "{}", a.log);
    assert!(b.log.contains("\nrecords processed: 0, reused from earlier runs: 4\n"), "{}", b.log);
    assert_eq!((a.text(0), a.text(1), &a.metrics), (b.text(0), b.text(1), &b.metrics));
    assert_eq!(b.records(1)[0]["_line"], json!(2));
}

#[test]
fn bad_params_name_the_field() {
    let check = |params: Value| run(Filter, &["{}\n"], &["k.jsonl"], params, 1).unwrap_err();
    let e = check(json!({"rules": {"CRUD": {"at_least": 1, "of": ["a", {"regex": "("}]}}}));
    assert!(e.starts_with("rules.CRUD.of.1.regex: invalid regex"), "{e}");
    assert_eq!(check(json!({"rule": {}})).split(',').next().unwrap(), "rule: unknown field `rule`");
    assert!(check(json!({"on_error": "ignore"})).starts_with("on_error: unknown variant `ignore`"));
    assert!(check(json!({"default": {"all": "x"}})).starts_with("default.all: expected a list of rules"));
    let e = run(Filter, &["{}\n"], &["a", "b", "c"], json!({}), 1).unwrap_err();
    assert_eq!(e, ": a `filter` stage takes 1 to 2 outs (kept records, then optionally rejected records), got 3");
}

#[test]
fn same_bytes_whatever_the_thread_count() {
    // More than one chunk, so chunk boundaries are crossed.
    let input: Vec<Value> =
        (0..5000).map(|i| rec("Query Optimization", if i % 3 == 0 { "joinedload" } else { "plain" })).collect();
    let input = jsonl(&input);
    let params = pipeline_params("v5_8_curated.yaml", "filter");
    let a = run(Filter, &[&input], &["k", "r"], params.clone(), 1).unwrap();
    let b = run(Filter, &[&input], &["k", "r"], params, 4).unwrap();
    assert_eq!(a.text(0), b.text(0));
    assert_eq!(a.text(1), b.text(1));
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.metric("passed"), &json!(1667));
}

#[test]
fn a_rerun_tests_only_new_records_and_writes_what_a_full_run_does() {
    use crate::reuse::testing::{assert_incremental, incremental_line, lines};
    let params = json!({"rules": {"a": {"contains": "good"}, "b": {"field": "score", "ge": 0.5}}, "default": {"min_len": 20}});
    assert_incremental(|| Filter, lines(0, 5000), lines(5000, 5200), incremental_line(99_999), &["k.jsonl", "r.jsonl"], params);
}

/// A verdict that parses only the fields its rules read is the verdict of
/// a full parse, for kept, rejected and malformed lines alike.
#[test]
fn projected_verdicts_are_full_verdicts() {
    use crate::field_check::FieldsSeen;
    use crate::reuse::Batches;
    use dvx_stage_api::{Shape, TypedStage};

    let lines = [
        r#"{"instruction":"a \"quoted\" task","response":"an answer","quality_score":0.9,"category":"x","meta":{"n":1}}"#,
        r#"{"instruction":"low","response":"   ","quality_score":0.1,"category":"x"}"#,
        r#"{"instruction":"no score","response":"r","category":"y"}"#,
        r#"{"instruction":"text score","response":"r","quality_score":"high","category":"y","tags":["a",{"b":null}]}"#,
        r#"{"instruction":"lone \ud800","quality_score":0.9,"category":"x"}"#,
        r#"{"instruction":"huge","quality_score":0.9,"category":"x","n":1e999}"#,
        r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"quality_score":0.8}"#,
        r#"[1, 2]"#,
        r#"{"quality_score": 0.95, "category": "z", "response": "spaced \u00e9 line"}"#,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    for params in [
        json!({"default": {"field": "quality_score", "ge": 0.5}, "on_error": "skip"}),
        json!({"rules": {"x": {"field": "meta.n", "exists": true}}, "default": {"not": {"field": "quality_score", "lt": 0.5}}, "on_error": "skip"}),
        json!({"default": {"all": [{"field": "quality_score", "ge": 0.5}, {"contains": "answer"}]}, "on_error": "skip"}),
    ] {
        let projected = Filter.prepare(serde_json::from_value(params.clone()).unwrap(), Shape { deps: 1, outs: 1 }).unwrap();
        let mut full = Filter.prepare(serde_json::from_value(params.clone()).unwrap(), Shape { deps: 1, outs: 1 }).unwrap();
        full.projection = crate::projection::Projection::all();
        let batch = Batches::open(&path).unwrap().next_batch().unwrap().unwrap();
        let verdicts = |c: &super::Compiled, seen: &FieldsSeen| -> Vec<String> {
            (0..batch.items.len())
                .map(|i| {
                    let v = super::verdict(c, seen, &batch, i, true).unwrap();
                    let compacted = match &v {
                        super::Verdict::Record { compacted, .. } => compacted.clone(),
                        _ => None,
                    };
                    format!("{} {compacted:?}", serde_json::to_string(&v).unwrap())
                })
                .collect()
        };
        let (a, b) = (super::fields_read(&projected), super::fields_read(&full));
        assert_eq!(verdicts(&projected, &a), verdicts(&full, &b), "{params}");
        assert_eq!(a.text_report("filter"), b.text_report("filter"), "{params}");
        if params["default"].get("all").is_none() {
            assert!(!projected.projection.is_all(), "{params}");
        }
    }
}

use std::process::Command;

use serde_json::{json, Value};

use super::*;
use crate::records::read_all;
use crate::source_files::testing::run;

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head><title>Sign up</title></head>
<body>
  <nav aria-label="Main">
    <a href="/" aria-current="page">Home</a>
  </nav>
  <main>
    <form action="/signup" method="post">
      <label for="email">Email</label>
      <input id="email" type="email" required>
    </form>
  </main>
</body>
</html>
"#;

#[test]
fn elements_have_lines_and_attributes() {
    let els = elements(PAGE).unwrap();
    let summary: Vec<(&str, usize, usize)> = els.iter().map(|e| (e.name.as_str(), e.line, e.end_line)).collect();
    assert_eq!(
        summary,
        vec![
            ("html", 2, 15),
            ("head", 3, 3),
            ("title", 3, 3),
            ("body", 4, 14),
            ("nav", 5, 7),
            ("a", 6, 6),
            ("main", 8, 13),
            ("form", 9, 12),
            ("label", 10, 10),
            ("input", 11, 11),
        ]
    );
    let input = &els[9];
    assert_eq!(
        input.attrs,
        vec![("id".into(), "email".into()), ("type".into(), "email".into()), ("required".into(), String::new())]
    );
    assert_eq!(input.opening(), "<input id=\"email\" type=\"email\" required>");
    assert_eq!(els[4].text, "Home");
}

#[test]
fn stage_examples_are_real_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("signup.html"), PAGE).unwrap();
    std::fs::write(
        html.join("table.html"),
        "<table>\n<caption>Prices</caption>\n<tr><th scope=\"col\">Item</th></tr>\n</table>\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let (m, _) = run(
        HtmlExtract,
        dir.path(),
        std::slice::from_ref(&html),
        std::slice::from_ref(&out),
        json!({"counts": {"grep": 50, "read": 50, "direct": 50}}),
    );
    let m = m.unwrap();
    // grep: <nav <main <form <label <table <caption <th, aria-label="Main",
    // aria-current="page", id="email", type="email", scope="col".
    assert_eq!(m["patterns"]["grep"]["candidates"], json!(12));
    assert_eq!(m["patterns"]["grep"]["produced"], json!(12));
    // read: nav, main, form, table (multi-line only).
    assert_eq!(m["patterns"]["read"]["produced"], json!(4));
    // direct: signup: main nav a form label input aria-current lang
    // required (aria-label too) = 10; table: table caption th scope = 4.
    assert_eq!(m["patterns"]["direct"]["produced"], json!(14));
    let recs = read_all(&out).unwrap();
    for r in recs.iter().filter(|r| r["pattern"] == json!("grep")) {
        let answer = Value::Object(r.clone())["messages"][1]["content"].as_str().unwrap().to_string();
        let cmd = answer.split("```bash\n").nth(1).unwrap().lines().next().unwrap().to_string();
        let shown: Vec<&str> =
            answer.split("Result:\n```\n").nth(1).unwrap().split("\n```").next().unwrap().lines().collect();
        let real = Command::new("sh").arg("-c").arg(&cmd).current_dir(&html).output().unwrap();
        // Byte for byte, in the order shown: the command sorts its output.
        let real: Vec<String> = String::from_utf8(real.stdout).unwrap().lines().map(String::from).collect();
        assert_eq!(real, shown, "{cmd}");
    }
    let form = recs.iter().find(|r| r["pattern"] == json!("read") && r["source"] == json!("signup.html:9")).unwrap();
    let answer = form["messages"][1]["content"].as_str().unwrap();
    assert!(answer.contains("sed -n '9,12p' ./signup.html"), "{answer}");
    assert!(answer.contains("<form action=\"/signup\" method=\"post\">\n      <label"), "{answer}");
    let topics = &m["topics"];
    assert!(topics["forms"].as_u64().unwrap() > 0 && topics["tables"].as_u64().unwrap() > 0);
}

#[test]
fn defaults_and_determinism() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("a.html"), PAGE).unwrap();
    let go = |n: &str| {
        let out = dir.path().join(n);
        let m =
            run(HtmlExtract, dir.path(), std::slice::from_ref(&html), std::slice::from_ref(&out), json!({"seed": 2}))
                .0
                .unwrap();
        (m, std::fs::read(out).unwrap())
    };
    let (m, a) = go("a.jsonl");
    assert_eq!(m["patterns"]["grep"]["requested"], json!(9));
    assert_eq!(m["patterns"]["direct"]["requested"], json!(16));
    assert_eq!(go("b.jsonl").1, a);
}

/// The shipped pages give seed 004's 9 grep / 5 read / 16 direct examples.
#[test]
fn shipped_pages_give_the_phase7_counts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("html.jsonl");
    let (m, _) = run(HtmlExtract, root, &[root.join("examples/html")], std::slice::from_ref(&out), json!({"seed": 7}));
    let m = m.unwrap();
    assert_eq!(m["parse_failed"], json!(0));
    for (p, n) in [("grep", 9), ("read", 5), ("direct", 16)] {
        assert_eq!(m["patterns"][p]["produced"], json!(n), "{p}: {}", m["patterns"]);
    }
    if let Ok(keep) = std::env::var("DVX_KEEP_EXAMPLES") {
        std::fs::copy(&out, keep).unwrap();
    }
}

//! The params tables of `docs/stages.md` are generated from each kind's
//! `Params` type ([`dvx_stage_api::ParamsDoc`]). The test fails when the file
//! differs; `DVX_BLESS=1 cargo test -p dvx-stages params_tables` rewrites it.
//!
//! A table sits between `<!-- params: KIND -->` and `<!-- /params -->` in
//! the kind's section (the one headed `` ### `KIND` ``); blessing adds a
//! missing table at the end of its section.

use dvx_stage_api::ParamDoc;

use dvx_stages_data::{balance, dedup, filter, merge, multiply, score, split, validate};
use dvx_stages_extract::{ast_extract, html_extract};
use dvx_stages_ml::{benchmark, train};
use dvx_stages_net::{clone, fetch, llm};

use crate::builtin_registry;

const END: &str = "<!-- /params -->";

fn start(kind: &str) -> String {
    format!("<!-- params: {kind} -->")
}

/// A Markdown table cell: pipes escaped so they do not end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The table of one kind, markers included.
fn table(kind: &str, rows: &[ParamDoc]) -> String {
    let mut s = format!("{}\n| param | type | default | |\n|---|---|---|---|\n", start(kind));
    for r in rows {
        let default = match r.default {
            "required" => "required".to_string(),
            "-" => "none".to_string(),
            d => format!("`{}`", cell(d)),
        };
        s.push_str(&format!("| `{}` | {} | {default} | {} |\n", r.name, cell(r.ty), cell(r.help)));
    }
    s.push_str(END);
    s
}

/// `doc` with every kind's table brought up to date.
fn regenerate(doc: &str) -> Result<String, String> {
    let mut out = doc.to_string();
    for kind in builtin_registry().names() {
        let rows = builtin_registry().get(kind).expect("listed").params_doc();
        if rows.is_empty() {
            continue;
        }
        let fresh = table(kind, &rows);
        if let Some(a) = out.find(&start(kind)) {
            let b = out[a..].find(END).ok_or_else(|| format!("`{kind}`: no {END} after its table"))? + a + END.len();
            out.replace_range(a..b, &fresh);
            continue;
        }
        let heading = format!("### `{kind}`");
        let h = out.find(&heading).ok_or_else(|| format!("no `{heading}` section"))?;
        // The end of the section: the next heading, or the end of the file.
        let end = out[h + 1..].find("\n#").map(|i| h + 1 + i + 1).unwrap_or(out.len());
        let body = out[..end].trim_end_matches('\n').len();
        out.replace_range(body..end, &format!("\n\n{fresh}\n\n"));
    }
    Ok(out)
}

#[test]
fn params_tables() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/stages.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let fresh = regenerate(&doc).unwrap();
    if std::env::var_os("DVX_BLESS").is_some_and(|v| v == "1") {
        if fresh != doc {
            std::fs::write(&path, &fresh).unwrap();
        }
        return;
    }
    assert!(
        fresh == doc,
        "docs/stages.md's params tables are out of date; run `DVX_BLESS=1 cargo test -p dvx-stages params_tables`"
    );
}

#[test]
fn every_kind_with_params_documents_them() {
    let r = builtin_registry();
    let undocumented: Vec<&str> =
        r.names().filter(|k| *k != "cmd" && r.get(k).unwrap().params_doc().is_empty()).collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
}

/// Only the LLM kinds are non-deterministic (`cmd` included): `reproduce`
/// holds every other one to identical bytes.
#[test]
fn only_the_llm_kinds_are_non_deterministic() {
    let r = builtin_registry();
    let mut loose: Vec<&str> = r.names().filter(|k| !r.get(k).unwrap().deterministic()).collect();
    loose.sort();
    assert_eq!(loose, ["generate", "judge"]);
}

/// The top-level fields serde knows for `P` (from its "unknown field" message).
fn serde_fields<P: serde::de::DeserializeOwned>() -> Vec<String> {
    let e = dvx_stage_api::parse_params::<P>(&serde_json::json!({"__not_a_param": 0})).err().expect("unknown field");
    let list = e.message.split_once("expected ").map(|(_, l)| l).unwrap_or("");
    let mut names: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_string).collect();
    names.sort();
    names
}

/// The top-level rows of a kind's table.
fn documented<P: dvx_stage_api::ParamsDoc>() -> Vec<String> {
    let mut names: Vec<String> =
        P::doc().into_iter().filter(|r| !r.name.contains('.')).map(|r| r.name.into()).collect();
    names.sort();
    names
}

#[test]
fn tables_list_exactly_the_fields_serde_knows() {
    fn same<P: serde::de::DeserializeOwned + dvx_stage_api::ParamsDoc>(kind: &str) {
        assert_eq!(documented::<P>(), serde_fields::<P>(), "`{kind}`");
    }
    same::<filter::Params>("filter");
    same::<score::Params>("score");
    same::<balance::Params>("balance");
    same::<merge::Params>("merge");
    same::<split::Params>("split");
    same::<validate::Params>("validate");
    same::<dedup::params::DedupParams>("dedup");
    same::<dedup::params::IndexParams>("minhash-index");
    same::<clone::Params>("clone");
    same::<ast_extract::Params>("ast-extract");
    same::<html_extract::Params>("html-extract");
    same::<multiply::Params>("multiply");
    same::<fetch::Params>("fetch");
    same::<train::params::TrainParams>("train");
    same::<benchmark::params::BenchParams>("benchmark");
    same::<llm::GenerateParams>("generate");
    same::<llm::JudgeParams>("judge");
}

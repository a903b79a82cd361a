//! The human scoring sheet: one CSV row per (model, question) with the
//! answer, the automatic checks, an empty 0–10 column per criterion and a
//! notes column. `benchmark` writes it; a person fills the score columns;
//! `scores` reads the filled sheet back as a dep.

use std::path::Path;

/// Columns before the criteria, in order.
pub const LEAD: [&str; 7] = ["model", "id", "question", "answer", "truncated", "template_bleed", "agent_opening"];
/// The last column.
pub const NOTES: &str = "notes";
/// Scores run from 0 to this.
pub const SCALE: f64 = 10.0;

/// One answer in a sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetRow {
    /// The benchmark's name for the model.
    pub model: String,
    /// The question's id (its `id` field, else its line).
    pub id: String,
    /// The question as asked.
    pub question: String,
    /// The model's answer.
    pub answer: String,
    /// The automatic checks: truncated, template bleeding, agent-like opening.
    pub flags: [bool; 3],
    /// One score per criterion (empty when written, filled by a person).
    pub scores: Vec<Option<f64>>,
    /// Free text.
    pub notes: String,
}

/// A sheet: its criteria and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    /// Score column names, in order.
    pub criteria: Vec<String>,
    /// Rows in file order.
    pub rows: Vec<SheetRow>,
}

/// The CSV bytes of a sheet (`\n` line ends, fields quoted only when needed).
pub fn to_csv(sheet: &Sheet) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let header: Vec<&str> =
        LEAD.iter().copied().chain(sheet.criteria.iter().map(String::as_str)).chain([NOTES]).collect();
    w.write_record(&header).map_err(|e| e.to_string())?;
    let yes = |b: bool| if b { "yes" } else { "" }.to_string();
    for r in &sheet.rows {
        let mut rec = vec![r.model.clone(), r.id.clone(), r.question.clone(), r.answer.clone()];
        rec.extend(r.flags.iter().map(|&b| yes(b)));
        rec.extend(r.scores.iter().map(|s| s.map(|v| v.to_string()).unwrap_or_default()));
        rec.push(r.notes.clone());
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Read a filled sheet; every score must be a number from 0 to 10. Errors
/// name the file, line and column.
pub fn read(path: &Path) -> Result<Sheet, String> {
    let at = |line: u64| format!("{}:{line}", path.display());
    let mut r = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| format!("cannot read scoring sheet {}: {e}", path.display()))?;
    let header: Vec<String> = r.headers().map_err(|e| format!("{}: {e}", at(1)))?.iter().map(str::to_string).collect();
    for (i, want) in LEAD.iter().enumerate() {
        if header.get(i).map(String::as_str) != Some(*want) {
            return Err(format!(
                "{}: column {} should be `{want}`: a scoring sheet starts with {}",
                at(1),
                i + 1,
                LEAD.join(",")
            ));
        }
    }
    let notes = header.iter().position(|h| h == NOTES);
    let criteria: Vec<String> = header[LEAD.len()..notes.unwrap_or(header.len())].to_vec();
    if criteria.is_empty() {
        return Err(format!("{}: no score column between `agent_opening` and `notes`", at(1)));
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |i: usize| rec.get(i).unwrap_or("").to_string();
        let mut scores = Vec::new();
        for (j, c) in criteria.iter().enumerate() {
            let raw = get(LEAD.len() + j);
            let v: f64 = raw.trim().parse().map_err(|_| {
                let why = if raw.trim().is_empty() { "is empty".to_string() } else { format!("is `{raw}`") };
                format!(
                    "{}: score `{c}` of model `{}`, question `{}` {why}: fill in a number from 0 to {SCALE}",
                    at(line),
                    get(0),
                    get(1)
                )
            })?;
            if !(0.0..=SCALE).contains(&v) {
                return Err(format!("{}: score `{c}` is {v}, outside 0 to {SCALE}", at(line)));
            }
            scores.push(Some(v));
        }
        let flag = |i: usize| !get(i).trim().is_empty();
        rows.push(SheetRow {
            model: get(0),
            id: get(1),
            question: get(2),
            answer: get(3),
            flags: [flag(4), flag(5), flag(6)],
            scores,
            notes: notes.map(get).unwrap_or_default(),
        });
    }
    Ok(Sheet { criteria, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_sheet_reads_back_once_filled() {
        let sheet = Sheet {
            criteria: vec!["accuracy".into(), "style".into()],
            rows: vec![SheetRow {
                model: "v2.1".into(),
                id: "q1".into(),
                question: "Who are you?".into(),
                answer: "Cláudio, \"direct\",\nand technical".into(),
                flags: [true, false, false],
                scores: vec![None, None],
                notes: String::new(),
            }],
        };
        let bytes = to_csv(&sheet).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(
            "model,id,question,answer,truncated,template_bleed,agent_opening,accuracy,style,notes\n\
             v2.1,q1,Who are you?,\"Cláudio, \"\"direct\"\",\nand technical\",yes,,,,,\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, &text).unwrap();
        let e = read(&path).unwrap_err();
        assert!(
            e.ends_with(
                "s.csv:2: score `accuracy` of model `v2.1`, question `q1` is empty: fill in a number from 0 to 10"
            ),
            "{e}"
        );
        std::fs::write(&path, text.replace("yes,,,,,", "yes,,,8,7.5,ok")).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.criteria, sheet.criteria);
        assert_eq!(back.rows[0].scores, vec![Some(8.0), Some(7.5)]);
        assert_eq!(back.rows[0].answer, sheet.rows[0].answer);
        assert_eq!(back.rows[0].flags, [true, false, false]);
        assert_eq!(back.rows[0].notes, "ok");
        std::fs::write(&path, text.replace("yes,,,,,", "yes,,,11,7,")).unwrap();
        assert!(read(&path).unwrap_err().contains("score `accuracy` is 11, outside 0 to 10"));
        std::fs::write(&path, "model,id,answer\n").unwrap();
        assert!(read(&path).unwrap_err().contains(":1: column 3 should be `question`"));
    }
}

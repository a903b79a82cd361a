//! Which way a metric should move, by the common naming convention: the
//! engine compares numbers and leaves this to the caller. A name is split
//! into words (at `.`, `_`, `-`, spaces and lower→upper case steps); the
//! last dotted segment holding one of the words below decides, so
//! `categories.CRUD.rate` is a rate and `accuracy.CRUD` an accuracy. The
//! lower-is-better words win within a segment (`error_rate`, `fail_rate`).
//! `--higher NAME`/`--lower NAME` on the command line override it.

use dvx_engine::diff::Better;

/// Words that say lower is better.
pub const LOWER_IS_BETTER: &[&str] =
    &["loss", "losses", "perplexity", "ppl", "error", "errors", "err", "wer", "cer", "fail", "failure"];

/// Words that say higher is better.
pub const HIGHER_IS_BETTER: &[&str] =
    &["accuracy", "acc", "rate", "score", "f1", "precision", "recall", "auc", "bleu", "rouge", "exact"];

/// The direction of `name` by the convention.
pub fn by_name(name: &str) -> Option<Better> {
    for segment in name.rsplit('.') {
        let words = words(segment);
        if words.iter().any(|w| LOWER_IS_BETTER.contains(&w.as_str())) {
            return Some(Better::Lower);
        }
        if words.iter().any(|w| HIGHER_IS_BETTER.contains(&w.as_str())) {
            return Some(Better::Higher);
        }
    }
    None
}

fn words(segment: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in segment.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_from_names() {
        assert_eq!(by_name("accuracy"), Some(Better::Higher));
        assert_eq!(by_name("eval.acc"), Some(Better::Higher));
        assert_eq!(by_name("categories.CRUD.rate"), Some(Better::Higher));
        assert_eq!(by_name("accuracy.CRUD"), Some(Better::Higher));
        assert_eq!(by_name("passRate"), Some(Better::Higher));
        assert_eq!(by_name("error_rate"), Some(Better::Lower));
        assert_eq!(by_name("train.final_loss"), Some(Better::Lower));
        assert_eq!(by_name("eval.perplexity"), Some(Better::Lower));
        assert_eq!(by_name("loss_by_category.CRUD"), Some(Better::Lower));
        assert_eq!(by_name("examples"), None);
        assert_eq!(by_name("accurate_count"), None);
        assert_eq!(by_name("categories.CRUD.total"), None);
    }
}

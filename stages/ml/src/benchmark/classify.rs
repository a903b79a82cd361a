//! Which answer pattern a generated text shows (seed 004's tool choice):
//! `grep` (a search command), `read` (opens a file), else `direct`.

use std::sync::OnceLock;

use regex::Regex;

fn grep_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\b(grep|rg|ripgrep)\s+-").expect("valid regex"))
}

fn read_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)\bread(_file)?\b|\bcat\s+\S|[\w./-]+\.(py|pyi|rs|js|jsx|ts|tsx|html?|css|md|json|toml|ya?ml|txt|cfg|ini|go|java|c|h|cpp)\b",
        )
        .expect("valid regex")
    })
}

/// The pattern of `text`: grep first (a search names files too), then read.
pub fn classify(text: &str) -> &'static str {
    if grep_re().is_match(text) {
        "grep"
    } else if read_re().is_match(text) {
        "read"
    } else {
        "direct"
    }
}

/// The class of an answer that may have been cut: a cut answer that
/// already shows grep or read keeps that class, but one that shows neither
/// is `truncated`, not `direct` (the command may have come after the cut).
pub fn classify_answer(text: &str, truncated: bool) -> &'static str {
    match classify(text) {
        "direct" if truncated => "truncated",
        c => c,
    }
}

/// A label as written in the eval set, normalised for comparison.
pub fn normalise(label: &str) -> String {
    label.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(classify("grep -rn \"class APIRouter\" fastapi/"), "grep");
        assert_eq!(classify("Run `rg -n BaseModel` then read models.py"), "grep");
        assert_eq!(classify("Let me read fastapi/routing.py"), "read");
        assert_eq!(classify("cat setup.cfg"), "read");
        assert_eq!(classify("Look at src/app.tsx first"), "read");
        assert_eq!(classify("A decorator wraps a function."), "direct");
        assert_eq!(classify("Already grepped it"), "direct");
        assert_eq!(normalise(" Grep\n"), "grep");
        assert_eq!(classify_answer("To find the router, I would run", true), "truncated");
        assert_eq!(classify_answer("To find the router, run grep -rn", true), "grep");
        assert_eq!(classify_answer("A decorator wraps a function.", false), "direct");
    }
}

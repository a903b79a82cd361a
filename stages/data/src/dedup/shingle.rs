//! Text normalisation, the exact-match key and shingling.
//!
//! A shingle is a run of `size` consecutive words (whitespace-separated, as
//! they stand in the normalised text) or chars. A text with fewer units than
//! one shingle becomes a single shingle holding the whole normalised text, so
//! short and empty records are still compared (all empty texts are equal).

use super::hash::xxh64;
use super::params::{Normalize, Shingle, Unit};

/// The normalised form of `text`.
pub fn normalize(text: &str, opts: &Normalize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if opts.strip_punctuation && is_punctuation(c) {
            continue;
        }
        if opts.collapse_whitespace && c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if !opts.lowercase {
            out.push(c);
        } else if c.is_ascii() {
            // Most text is ASCII; skip the Unicode case tables for it.
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// ASCII punctuation plus the common Unicode punctuation blocks (general
/// punctuation, CJK and fullwidth punctuation, Latin-1 marks such as « » ¿).
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c,
            '\u{00A1}' | '\u{00A7}' | '\u{00AB}' | '\u{00B6}' | '\u{00B7}' | '\u{00BB}' | '\u{00BF}'
            | '\u{2010}'..='\u{2027}'
            | '\u{2030}'..='\u{205E}'
            | '\u{3001}'..='\u{3003}'
            | '\u{3008}'..='\u{3011}'
            | '\u{FF01}'..='\u{FF0F}'
            | '\u{FF1A}'..='\u{FF20}')
}

/// The exact-match key of a normalised text: two independent XXH64s, so a
/// false match needs a 128-bit collision.
pub fn exact_key(norm: &str) -> u128 {
    let bytes = norm.as_bytes();
    (u128::from(xxh64(bytes, 1)) << 64) | u128::from(xxh64(bytes, 0))
}

/// The sorted, distinct 64-bit hashes of the shingles of a normalised text.
/// Never empty.
pub fn shingles(norm: &str, opts: &Shingle) -> Vec<u64> {
    // Byte offsets where each unit starts and ends.
    let spans: Vec<(usize, usize)> = match opts.unit {
        Unit::Words => word_spans(norm),
        Unit::Chars => norm.char_indices().map(|(i, c)| (i, i + c.len_utf8())).collect(),
    };
    if spans.len() < opts.size {
        return vec![xxh64(norm.as_bytes(), 0)];
    }
    let mut out: Vec<u64> =
        spans.windows(opts.size).map(|w| xxh64(&norm.as_bytes()[w[0].0..w[opts.size - 1].1], 0)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Jaccard similarity of two sorted, distinct hash lists.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        1.0
    } else {
        common as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(size: usize) -> Shingle {
        Shingle { unit: Unit::Words, size }
    }

    #[test]
    fn normalize_options() {
        let all = Normalize { lowercase: true, collapse_whitespace: true, strip_punctuation: true };
        assert_eq!(normalize("  Hello,\t WORLD!  «Ça» va?\n", &all), "hello world ça va");
        assert_eq!(normalize("  A  b ", &Normalize::default()), "a b");
        let none = Normalize { lowercase: false, collapse_whitespace: false, strip_punctuation: false };
        assert_eq!(normalize(" A  b ", &none), " A  b ");
    }

    #[test]
    fn word_and_char_shingles() {
        let s = shingles("a b c d", &words(2));
        let mut want: Vec<u64> = ["a b", "b c", "c d"].iter().map(|w| xxh64(w.as_bytes(), 0)).collect();
        want.sort_unstable();
        assert_eq!(s, want);
        // Repeated shingles count once.
        assert_eq!(shingles("x y x y x y", &words(2)).len(), 2);
        let c = shingles("abcd", &Shingle { unit: Unit::Chars, size: 3 });
        assert_eq!(c.len(), 2);
        assert!(c.contains(&xxh64(b"bcd", 0)));
    }

    #[test]
    fn short_and_empty_texts_get_one_shingle() {
        assert_eq!(shingles("two words", &words(5)), vec![xxh64(b"two words", 0)]);
        assert_eq!(shingles("", &words(5)), vec![xxh64(b"", 0)]);
        assert_eq!(shingles("ab", &Shingle { unit: Unit::Chars, size: 3 }), vec![xxh64(b"ab", 0)]);
    }

    #[test]
    fn jaccard_of_sorted_sets() {
        assert_eq!(jaccard(&[1, 2, 3, 4], &[2, 3, 4, 5]), 0.6);
        assert_eq!(jaccard(&[1], &[1]), 1.0);
        assert_eq!(jaccard(&[1], &[2]), 0.0);
    }
}

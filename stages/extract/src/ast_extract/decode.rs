//! Python source bytes to text as Python reads them: UTF-8, or the
//! encoding a PEP 263 declaration names in the first two lines; a lone CR
//! ends a line as LF does.

use std::borrow::Cow;

/// The text of a Python file, or why it cannot be read.
pub fn python_text(bytes: &[u8]) -> Result<String, String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(e) => match declared_encoding(bytes) {
            None => return Err(format!("not UTF-8 and no coding declaration: {e}")),
            Some(label) => Cow::Owned(decode(bytes, &label)?),
        },
    };
    // A lone CR becomes LF (same length, so offsets and columns hold): the
    // parser and line counting then see the lines Python sees.
    Ok(if text.contains('\r') { lone_cr_to_lf(&text) } else { text.into_owned() })
}

/// The encoding named by `coding[:=]NAME` in a comment on line 1 or 2.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    for line in bytes.split(|&b| b == b'\n' || b == b'\r').filter(|l| !l.is_empty()).take(2) {
        let line = String::from_utf8_lossy(line);
        let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
        if !trimmed.starts_with('#') {
            continue;
        }
        let Some(at) = trimmed.find("coding") else { continue };
        let Some(rest) = trimmed[at + "coding".len()..].strip_prefix([':', '=']) else { continue };
        let rest = rest.trim_start_matches([' ', '\t']);
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
        if !name.is_empty() {
            return Some(name.to_ascii_lowercase());
        }
    }
    None
}

fn decode(bytes: &[u8], label: &str) -> Result<String, String> {
    // Python's latin-1 maps every byte to the code point of the same value;
    // the WHATWG label of that name means windows-1252, which differs in 0x80–0x9F.
    if matches!(label, "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" | "iso_8859_1") {
        return Ok(bytes.iter().map(|&b| b as char).collect());
    }
    let enc = encoding_rs::Encoding::for_label(label.as_bytes())
        .ok_or_else(|| format!("unknown encoding `{label}` in the coding declaration"))?;
    let (text, had_errors) = enc.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(format!("not valid {label} (as its coding declaration says)"));
    }
    Ok(text.into_owned())
}

fn lone_cr_to_lf(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        out.push(if c == b'\r' && b.get(i + 1) != Some(&b'\n') { b'\n' } else { c });
    }
    String::from_utf8(out).expect("one ASCII byte for another")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_latin1_decodes_and_undeclared_fails() {
        let src = b"# -*- coding: latin-1 -*-\ns = '\xe9t\xe9'\n";
        assert_eq!(python_text(src).unwrap(), "# -*- coding: latin-1 -*-\ns = '\u{e9}t\u{e9}'\n");
        let err = python_text(b"s = '\xe9'\n").unwrap_err();
        assert!(err.starts_with("not UTF-8 and no coding declaration"), "{err}");
        let src = b"#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nq = '\x93x\x94'\n";
        assert_eq!(python_text(src).unwrap(), "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nq = '\u{201c}x\u{201d}'\n");
    }

    #[test]
    fn lone_cr_ends_lines_and_crlf_stays() {
        assert_eq!(python_text(b"a = 1\rb = 2\r\nc = 3\r").unwrap(), "a = 1\nb = 2\r\nc = 3\n");
    }
}

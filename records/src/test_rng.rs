//! A small seeded generator for the randomised tests, and random JSON
//! texts made with it.

/// `next(n)`: a number below `n` (xorshift64 from `seed`).
pub fn below(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// A random JSON value as text, spaced and escaped in random ways: every
/// number form, escapes of every kind, nesting.
pub fn json_value(next: &mut impl FnMut(u64) -> u64, t: &mut String, depth: usize) {
    let ws = |next: &mut dyn FnMut(u64) -> u64, t: &mut String| {
        for _ in 0..next(3) {
            t.push([' ', '\n', '\t', '\r'][next(4) as usize]);
        }
    };
    ws(next, t);
    match next(if depth > 3 { 4 } else { 6 }) {
        0 => t.push_str(["true", "false", "null"][next(3) as usize]),
        1 => t.push_str(
            [
                "0",
                "7",
                "-7",
                "42",
                "1.5",
                "-0.25",
                "1e3",
                "2.5E-3",
                "1.0",
                "100.000",
                "-0",
                "0.1",
                "123456789012",
                "1e300",
                "3.14159265358979323846",
                "9007199254740993",
                "-1.0e-7",
                "1234567890123456789",
                "9223372036854775808",
            ][next(19) as usize],
        ),
        2 | 3 => json_string(next, t),
        4 => {
            t.push('[');
            for i in 0..next(4) {
                if i > 0 {
                    t.push(',');
                }
                json_value(next, t, depth + 1);
            }
            ws(next, t);
            t.push(']');
        }
        _ => {
            t.push('{');
            for i in 0..next(4) {
                if i > 0 {
                    t.push(',');
                }
                ws(next, t);
                t.push_str(["\"a\"", "\"b\"", "\"c\"", "\"é\"", "\"a\\u0062\""][next(5) as usize]);
                ws(next, t);
                t.push(':');
                json_value(next, t, depth + 1);
            }
            ws(next, t);
            t.push('}');
        }
    }
    ws(next, t);
}

pub fn json_string(next: &mut impl FnMut(u64) -> u64, t: &mut String) {
    t.push('"');
    for _ in 0..next(6) {
        t.push_str(
            [
                "a",
                "é",
                "✓",
                "😀",
                "\\n",
                "\\\"",
                "\\\\",
                "\\/",
                "\\u00e9",
                "\\u0000",
                "\\u001f",
                "\\u007F",
                "\\b",
                "\\t",
                "\\ud83d\\ude00",
                "\\u2028",
                " ",
                "\\f",
                "\\r",
            ][next(19) as usize],
        );
    }
    t.push('"');
}

/// A random flat record (every value a scalar) as text. Each of a few
/// keys mostly keeps one kind of value (`kinds`, a digit per key: string,
/// integer, fraction, boolean), as real files do; now and then it gets
/// null or another kind (one value in `noise`), is left out or repeated,
/// and one key is escaped.
pub fn flat_record(next: &mut impl FnMut(u64) -> u64, kinds: [u8; 4], noise: u64, t: &mut String) {
    const KEYS: [&str; 5] = ["\"instruction\"", "\"score\"", "\"n\"", "\"ok\"", "\"a\\u0062\""];
    const INTS: [&str; 8] = ["0", "7", "-7", "42", "123456789012", "-0", "1234567890123456789", "9223372036854775808"];
    const FLOATS: [&str; 10] = ["1.5", "-0.25", "1e3", "2.5E-3", "1.0", "0.1", "3.14159265358979323846", "-1.0e-7", "1e300", "-0.0"];
    t.push('{');
    let mut first = true;
    for (k, &kind) in kinds.iter().enumerate() {
        let key = if k == 0 && next(100) == 0 { KEYS[4] } else { KEYS[k] };
        let times = match next(30) {
            0 => 0,
            1 => 2,
            _ => 1,
        };
        for _ in 0..times {
            if !first {
                t.push(',');
            }
            first = false;
            t.push_str(key);
            t.push_str([":", ": ", " :"][next(3) as usize]);
            match if next(noise) == 0 { next(5) as u8 } else { kind } {
                0 => json_string(next, t),
                1 => t.push_str(INTS[next(8) as usize]),
                2 => t.push_str(FLOATS[next(10) as usize]),
                3 => t.push_str(["true", "false"][next(2) as usize]),
                _ => t.push_str("null"),
            }
        }
    }
    t.push('}');
}

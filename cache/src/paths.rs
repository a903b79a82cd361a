//! Checks on paths read from cache records. The cache is shared, so a path
//! in a run entry, folder manifest or version record is someone else's
//! input: it must name a place inside the folder it is restored into.

/// Whether `path` is a clean relative path: not empty, not absolute, `/`
/// separated, with no `.`, `..` or empty components and no NUL. Returns
/// what is wrong otherwise.
pub fn check_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("`{path}` is absolute"));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    for part in path.split('/') {
        match part {
            "" => return Err(format!("`{path}` has an empty component")),
            "." => return Err(format!("`{path}` has a `.` component")),
            ".." => return Err(format!("`{path}` leaves its folder (`..`)")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (relative to a folder root, `/` separated)
/// with target `target` points inside that root. `..` is allowed only at the
/// start of the target: the link's parents are real folders, so those steps
/// resolve as written; a `..` after a component that may itself be a link
/// would not, and is refused.
pub fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut depth = link.split('/').count() - 1; // folders above the link
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if descended => return false,
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => descended = true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for ok in ["a", "a/b.jsonl", ".hidden/x", "a..b", "..a"] {
            assert!(check_rel_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a/", "a\0b"] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_targets() {
        assert!(link_stays_inside("docs", "README.md"));
        assert!(link_stays_inside("a/b/link", "../c"));
        assert!(link_stays_inside("a/link", "./b/c"));
        assert!(!link_stays_inside("a/link", "b/../../../x"));
        assert!(!link_stays_inside("a/link", "l1/.."), "`..` after a possible link is refused");
        assert!(!link_stays_inside("link", "../x"));
        assert!(!link_stays_inside("a/link", "../../x"));
        assert!(!link_stays_inside("docs", "/etc"));
        assert!(!link_stays_inside("docs", ""));
    }
}

//! `kind: clone` — check out git repositories at exact commits.
//!
//! - params: `repos: [{name, url, rev}]` (`rev` defaults to `HEAD`). `url` is a
//!   local repository path, a `file://` URL, a git bundle file, or any URL the
//!   `git` CLI fetches (https). Local paths are relative to the stage's folder.
//! - outs[0]: a folder holding `<name>/` per repo: the files of the commit,
//!   without `.git`.
//! - fingerprint: every `rev` resolved to its commit id (`git rev-parse` for a
//!   local repository, `git ls-remote` otherwise; a full 40-hex id is taken as
//!   it is, with no git call), so a moved branch re-runs and a pinned commit
//!   never does.
//! - external inputs: the local repository folder, bundle file or `file://`
//!   path of each repo that exists (remote URLs are not files we can keep),
//!   so a version carries them as sources.
//! - metrics: `repos.<name>.{commit, files, python_files, html_files}`, `files`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dvx_stage_api::{
    Count, FingerprintContext, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One repository to check out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    /// Folder name under outs[0].
    pub name: String,
    /// Where to fetch from.
    pub url: String,
    /// Branch, tag, commit id (or, for a local repository, any rev).
    #[serde(default = "head")]
    pub rev: String,
}

fn head() -> String {
    "HEAD".into()
}

/// Params of `clone`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The repositories.
    pub repos: Vec<Repo>,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("repos", "list", "required", "The repositories to check out (at least one)."),
            ParamDoc::new("repos.N.name", "folder name", "required", "Folder under outs[0]."),
            ParamDoc::new(
                "repos.N.url",
                "path or URL",
                "required",
                "A local repository, a bundle file, a `file://` URL or any URL `git` fetches.",
            ),
            ParamDoc::new("repos.N.rev", "rev", "HEAD", "Branch, tag or commit id."),
        ]
    }
}

/// The `clone` kind.
pub struct CloneRepos;

fn is_full_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where `url` points, resolved against the stage folder.
enum Source {
    /// A local repository (work tree or bare).
    LocalRepo(PathBuf),
    /// A bundle file, or anything else git fetches by URL/path.
    Remote(String),
}

fn source(url: &str, cwd: &Path) -> Source {
    if url.contains("://") || url.starts_with("git@") {
        return Source::Remote(url.to_string());
    }
    let p = cwd.join(url);
    if p.is_dir() {
        Source::LocalRepo(p)
    } else {
        // A bundle (or a path that does not exist: git will say so).
        Source::Remote(p.to_string_lossy().into_owned())
    }
}

/// The local file or folder `url` reads, when it is one that exists: a
/// repository folder, a bundle file or a `file://` path, resolved against the
/// stage folder as [`source`] does. `None` for remote URLs.
fn local_input(url: &str, cwd: &Path) -> Option<PathBuf> {
    let p = if let Some(rest) = url.strip_prefix("file://") {
        cwd.join(rest)
    } else if url.contains("://") || url.starts_with("git@") {
        return None;
    } else {
        cwd.join(url)
    };
    p.exists().then_some(p)
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `git`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The commit id `repo.rev` names now, and the ref that names it (for
/// sources that cannot fetch by id).
fn resolve(repo: &Repo, cwd: &Path) -> Result<(String, Option<String>), StageFailure> {
    let fail = |msg: String| StageFailure::new(format!("repo `{}`: {msg}", repo.name));
    if is_full_id(&repo.rev) {
        return Ok((repo.rev.to_ascii_lowercase(), None));
    }
    match source(&repo.url, cwd) {
        Source::LocalRepo(dir) => {
            let spec = format!("{}^{{commit}}", repo.rev);
            let out = git(&["rev-parse", "--verify", "--quiet", &spec], Some(&dir))
                .map_err(|_| fail(format!("rev `{}` not found in {}", repo.rev, dir.display())))?;
            Ok((out.trim().to_string(), None))
        }
        Source::Remote(url) => {
            let listing = git(&["ls-remote", &url], None).map_err(fail)?;
            let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
            let candidates = [
                format!("refs/tags/{}^{{}}", repo.rev),
                format!("refs/tags/{}", repo.rev),
                format!("refs/heads/{}", repo.rev),
                repo.rev.clone(),
            ];
            for want in &candidates {
                if let Some((id, name)) = refs.iter().find(|(_, r)| r == want) {
                    return Ok((id.to_string(), Some(name.trim_end_matches("^{}").to_string())));
                }
            }
            Err(fail(format!("rev `{}` is not a branch or tag of {url}", repo.rev)))
        }
    }
}

fn fetch_into(
    repo: &Repo,
    commit: &str,
    refname: Option<&str>,
    dest: &Path,
    cwd: &Path,
    log: &mut dyn std::io::Write,
) -> Result<(), StageFailure> {
    let fail = |msg: String| StageFailure::new(format!("repo `{}`: {msg}", repo.name));
    let url = match source(&repo.url, cwd) {
        // `file://` makes git honour --depth for a local repository.
        Source::LocalRepo(p) => format!("file://{}", p.display()),
        Source::Remote(u) => u,
    };
    std::fs::create_dir_all(dest)?;
    git(&["init", "-q"], Some(dest)).map_err(fail)?;
    // Cheapest first: the exact commit, shallow; then the ref that named it;
    // then everything.
    let mut attempts: Vec<Vec<String>> =
        vec![vec!["fetch".into(), "-q".into(), "--depth".into(), "1".into(), url.clone(), commit.into()]];
    if let Some(r) = refname {
        attempts.push(vec!["fetch".into(), "-q".into(), url.clone(), r.into()]);
    }
    attempts.push(vec!["fetch".into(), "-q".into(), url.clone(), "+refs/*:refs/remotes/origin/*".into()]);
    let mut last_err = String::new();
    let mut fetched = false;
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match git(&args, Some(dest)) {
            Ok(_) if git(&["cat-file", "-e", &format!("{commit}^{{commit}}")], Some(dest)).is_ok() => {
                writeln!(log, "clone {}: {}", repo.name, args.join(" "))?;
                fetched = true;
                break;
            }
            Ok(_) => last_err = format!("`git {}` did not bring commit {commit}", args.join(" ")),
            Err(e) => {
                writeln!(log, "clone {}: {e}", repo.name)?;
                last_err = e;
            }
        }
    }
    if !fetched {
        return Err(fail(last_err));
    }
    git(&["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], Some(dest)).map_err(fail)?;
    std::fs::remove_dir_all(dest.join(".git"))?;
    Ok(())
}

fn count_files(dir: &Path) -> (usize, usize, usize) {
    let (mut all, mut py, mut html) = (0, 0, 0);
    for e in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
        if e.file_type().is_file() {
            all += 1;
            let n = e.file_name().to_string_lossy();
            py += n.ends_with(".py") as usize;
            html += n.ends_with(".html") as usize;
        }
    }
    (all, py, html)
}

fn check_params(p: &Params) -> Result<(), ParamError> {
    if p.repos.is_empty() {
        return Err(ParamError::field("repos", "give at least one repository"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in p.repos.iter().enumerate() {
        let bad_name = r.name.is_empty() || r.name == "." || r.name == ".." || r.name.contains(['/', '\\']);
        if bad_name {
            return Err(ParamError::field(
                format!("repos.{i}.name"),
                format!("`{}` is not a plain folder name", r.name),
            ));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(ParamError::field(format!("repos.{i}.name"), format!("`{}` is used twice", r.name)));
        }
        if r.url.trim().is_empty() {
            return Err(ParamError::field(format!("repos.{i}.url"), "empty url"));
        }
        if r.rev.trim().is_empty() || r.rev.starts_with('-') {
            return Err(ParamError::field(format!("repos.{i}.rev"), format!("`{}` is not a rev", r.rev)));
        }
    }
    Ok(())
}

impl TypedStage for CloneRepos {
    const KIND: &'static str = "clone";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(0);
    const OUTS: Count = Count::Exactly(1);
    const OUTS_ARE: &'static str = "the folder to check out into";
    type Params = Params;
    type Prepared = Params;

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Params, ParamError> {
        check_params(&p)?;
        Ok(p)
    }

    fn fingerprint(&self, p: &Params, ctx: &FingerprintContext<'_>) -> Result<Option<serde_json::Value>, StageFailure> {
        let mut commits = Vec::new();
        for r in &p.repos {
            let (commit, _) = resolve(r, ctx.cwd)?;
            commits.push(json!({"name": r.name, "commit": commit}));
        }
        Ok(Some(json!({ "commits": commits })))
    }

    fn external_inputs(&self, p: &Params, ctx: &FingerprintContext<'_>) -> Result<Vec<PathBuf>, StageFailure> {
        Ok(p.repos.iter().filter_map(|r| local_input(&r.url, ctx.cwd)).collect())
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let root = &ctx.outs[0];
        std::fs::create_dir_all(root)?;
        let mut per_repo = serde_json::Map::new();
        let mut total = 0;
        for r in &p.repos {
            ctx.cancel.check()?;
            let (commit, refname) = resolve(r, ctx.cwd)?;
            let dest = root.join(&r.name);
            fetch_into(r, &commit, refname.as_deref(), &dest, ctx.cwd, ctx.log)?;
            let (files, py, html) = count_files(&dest);
            total += files;
            writeln!(ctx.log, "clone {}: {commit}, {files} files", r.name)?;
            per_repo.insert(
                r.name.clone(),
                json!({"commit": commit, "files": files, "python_files": py, "html_files": html}),
            );
        }
        let mut m = Metrics::new();
        m.insert("repos".into(), serde_json::Value::Object(per_repo));
        m.insert("files".into(), json!(total));
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source_files::testing::run;
    use dvx_stage_api::{Stage, StageShape, Typed};
    use serde_json::Value;

    fn sh(dir: &Path, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn make_repo(dir: &Path) -> String {
        std::fs::create_dir_all(dir.join("src/pkg")).unwrap();
        sh(&dir.join("src"), "git init -q -b main && printf 'x = 1\\n' > pkg/a.py && printf '<p>hi</p>\\n' > index.html && git add -A && git commit -qm one && git rev-parse HEAD")
    }

    fn fp(params: Value, cwd: &Path) -> Value {
        let deps: Vec<PathBuf> = Vec::new();
        Typed::new(CloneRepos).fingerprint(&FingerprintContext { cwd, deps: &deps, params: &params }).unwrap().unwrap()
    }

    #[test]
    fn moving_a_branch_changes_the_fingerprint_a_pinned_commit_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let first = make_repo(dir.path());
        let branch = json!({"repos": [{"name": "r", "url": "src", "rev": "main"}]});
        let pinned = json!({"repos": [{"name": "r", "url": "src", "rev": first}]});
        assert_eq!(fp(branch.clone(), dir.path()), json!({"commits": [{"name": "r", "commit": first}]}));
        let before_pinned = fp(pinned.clone(), dir.path());
        let second = sh(
            &dir.path().join("src"),
            "printf 'y = 2\\n' > pkg/b.py && git add -A && git commit -qm two && git rev-parse HEAD",
        );
        assert_ne!(first, second);
        assert_eq!(fp(branch.clone(), dir.path()), json!({"commits": [{"name": "r", "commit": second}]}));
        assert_eq!(fp(pinned.clone(), dir.path()), before_pinned);
        // A pinned id needs no repository at all.
        let nowhere = json!({"repos": [{"name": "r", "url": "https://invalid.invalid/x.git", "rev": first}]});
        assert_eq!(fp(nowhere, dir.path()), before_pinned);

        // The pinned commit's checkout has the first commit's files, no .git.
        let out = dir.path().join("out");
        let (m, _) = run(CloneRepos, dir.path(), &[], std::slice::from_ref(&out), pinned);
        let m = m.unwrap();
        assert_eq!(m["repos"]["r"], json!({"commit": first, "files": 2, "python_files": 1, "html_files": 1}));
        assert!(out.join("r/pkg/a.py").is_file());
        assert!(!out.join("r/pkg/b.py").exists());
        assert!(!out.join("r/.git").exists());
    }

    #[test]
    fn bundle_and_file_url_with_tags() {
        let dir = tempfile::tempdir().unwrap();
        let first = make_repo(dir.path());
        sh(&dir.path().join("src"), "git tag v1.0 && printf 'z\\n' > c.py && git add -A && git commit -qm later && git bundle create ../r.bundle --all 2>/dev/null");
        let params = json!({"repos": [
            {"name": "b", "url": "r.bundle", "rev": "v1.0"},
            {"name": "f", "url": format!("file://{}", dir.path().join("src").display()), "rev": "v1.0"},
        ]});
        assert_eq!(
            fp(params.clone(), dir.path()),
            json!({"commits": [{"name": "b", "commit": first}, {"name": "f", "commit": first}]})
        );
        let out = dir.path().join("out");
        let (m, log) = run(CloneRepos, dir.path(), &[], std::slice::from_ref(&out), params);
        let m = m.unwrap_or_else(|e| panic!("{}\n{log}", e.message));
        assert_eq!(m["files"], json!(4));
        assert!(out.join("b/pkg/a.py").is_file() && !out.join("b/c.py").exists() && !out.join("b/.git").exists());
        assert!(out.join("f/index.html").is_file() && !out.join("f/.git").exists());
    }

    #[test]
    fn external_inputs_are_the_local_repos_bundles_and_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        make_repo(dir.path());
        sh(&dir.path().join("src"), "git tag v1.0 && git bundle create ../r.bundle --all 2>/dev/null");
        let src = dir.path().join("src");
        let params = json!({"repos": [
            {"name": "a", "url": "src", "rev": "main"},
            {"name": "b", "url": "r.bundle", "rev": "v1.0"},
            {"name": "c", "url": format!("file://{}", src.display()), "rev": "v1.0"},
            {"name": "d", "url": "https://invalid.invalid/x.git", "rev": "main"},
            {"name": "e", "url": "git@invalid.invalid:x.git", "rev": "main"},
            {"name": "f", "url": "missing.bundle", "rev": "main"},
        ]});
        let deps: Vec<PathBuf> = Vec::new();
        let got = Typed::new(CloneRepos)
            .external_inputs(&FingerprintContext { cwd: dir.path(), deps: &deps, params: &params })
            .unwrap();
        assert_eq!(got, vec![src.clone(), dir.path().join("r.bundle"), src]);
    }

    #[test]
    fn errors_name_the_repo_and_field() {
        let dir = tempfile::tempdir().unwrap();
        make_repo(dir.path());
        let params = json!({"repos": [{"name": "r", "url": "src", "rev": "nope"}]});
        let deps: Vec<PathBuf> = Vec::new();
        let e = Typed::new(CloneRepos)
            .fingerprint(&FingerprintContext { cwd: dir.path(), deps: &deps, params: &params })
            .unwrap_err();
        assert!(e.message.starts_with("repo `r`: rev `nope` not found in"), "{}", e.message);
        let check = |params: Value| {
            Typed::new(CloneRepos).check(&StageShape { params: &params, deps: 0, outs: 1, cmd: None }).unwrap_err()
        };
        let e = check(json!({"repos": [{"name": "a", "url": "x"}, {"name": "a", "url": "y"}]}));
        assert_eq!(e.field.as_deref(), Some("repos.1.name"));
        let e = check(json!({"repos": [{"name": "../up", "url": "x"}]}));
        assert_eq!(e.field.as_deref(), Some("repos.0.name"));
        let e = check(json!({}));
        assert_eq!(e.field.as_deref(), Some("repos"));
        let e = check(json!({"repos": [{"name": "a"}]}));
        assert_eq!(e.field.as_deref(), Some("repos.0.url"));
    }
}

//! The resolved pipeline kept in `.dvx/` for the next load: a no-op run
//! of 10,000 stages otherwise spends ~0.4 s of CPU parsing the YAML and
//! resolving it before its first stage is planned.
//!
//! An entry is used only when everything resolving read is as it was:
//! the bytes of every pipeline file (read again and hashed; their text is
//! kept for errors), their canonical paths and those of the imports as
//! written, each file's working folder canonical, the root wdir,
//! `dvx.toml` (where it is and its bytes), the current folder (error
//! messages name files relative to it) and the dvx build (version, the
//! executable's identity, and the registry's kinds). What resolving
//! checks on the filesystem beyond those is checked again on every load:
//! each out is resolved through its symlinks and must stay inside its
//! stage's folder and off the pipeline files and `dvx.toml`; and each
//! stage's kind checks it again (typed kinds keep what they prepare from
//! the params there, for planning). Anything that
//! differs, or a file that is damaged, cut, foreign or of another format,
//! is a miss: the pipeline is parsed again, and every error is the one a
//! parse reports. Only a pipeline that loaded without error is kept.
//!
//! File: `.dvx/pipeline-<hash of the root file's path>.bin`, written
//! atomically when `.dvx/` exists: a magic line, the blake3 of the rest,
//! then the rest in postcard (the header, then the body).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{ExecutorKind, Pipeline, StageDef};
use crate::error::SourceFile;
use crate::{Registry, StageShape};

const MAGIC: &[u8] = b"dvx-resolved-pipeline-v1\n";

/// What is compared before the body is decoded.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    build: String,
    root: PathBuf,
    cwd: Option<PathBuf>,
}

/// A pipeline file as loading read it.
#[derive(Serialize, Deserialize)]
pub(super) struct FileFact {
    /// Canonical.
    pub path: PathBuf,
    /// As shown in errors.
    pub name: String,
    /// blake3 of its bytes.
    pub hash: [u8; 32],
    /// Its working folder, as written (normalised).
    pub wdir: PathBuf,
    /// That folder with its symlinks resolved.
    pub wdir_canon: PathBuf,
}

/// What loading read beyond the pipeline it returned, for the next load
/// to check.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct Facts {
    /// In load order (the root first).
    pub files: Vec<FileFact>,
    /// Each import as written (normalised against its file's folder) and
    /// its canonical path.
    pub imports: Vec<(PathBuf, PathBuf)>,
    /// The `dvx.toml` that applies, and the blake3 of its bytes.
    pub config: Option<(PathBuf, [u8; 32])>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    facts: Facts,
    name: String,
    wdir: PathBuf,
    stages: Vec<StageDef>,
    cache: Option<PathBuf>,
    link: Option<String>,
    executor: Option<ExecutorKind>,
}

/// The entry for one root pipeline file.
pub(super) struct Entry {
    path: PathBuf,
    header: Header,
}

impl Entry {
    /// The entry of the canonical root `file`, when its `.dvx/` exists and
    /// the build can be told apart from others.
    pub fn of(file: &Path, registry: &Registry) -> Option<Entry> {
        let dir = file.parent()?.join(".dvx");
        if !dir.is_dir() {
            return None;
        }
        let tag = blake3::hash(file.as_os_str().as_encoded_bytes()).to_hex();
        let path = dir.join(format!("pipeline-{}.bin", &tag[..16]));
        let header = Header { build: build_id(registry)?, root: file.to_path_buf(), cwd: current_dir() };
        Some(Entry { path, header })
    }

    /// The pipeline kept, when everything it was resolved from is as it
    /// was; `None` for a miss of any kind.
    pub fn load(&self, registry: &Registry) -> Option<Pipeline> {
        let bytes = std::fs::read(&self.path).ok()?;
        let rest = bytes.strip_prefix(MAGIC)?;
        let (sum, rest) = rest.split_first_chunk::<32>()?;
        if blake3::hash(rest).as_bytes() != sum {
            return None;
        }
        let (header, rest) = postcard::take_from_bytes::<Header>(rest).ok()?;
        if header != self.header {
            return None;
        }
        let body: Body = postcard::from_bytes(rest).ok()?;
        let sources = check_files(&body.facts)?;
        let canon = super::load::Canon::default();
        if !super::load::still_holds(&body.facts, &body.wdir, &canon) {
            return None;
        }
        let protected = super::load::protected_paths(&body.facts);
        let ok = crate::par::map_in_order(&body.stages, |s| {
            let wdir = &body.facts.files.get(s.origin.file)?.wdir_canon;
            let outs_stay =
                s.outs.iter().all(|rel| super::load::out_stays_put(&canon, &body.wdir.join(rel), wdir, &protected));
            // The kind's check, as resolving makes it: typed kinds keep
            // what it prepared from the params and shape (the planner's
            // fingerprint asks for it).
            let shape =
                StageShape { params: &s.params, deps: s.deps.len(), outs: s.kind_outs().len(), cmd: s.cmd.as_deref() };
            (outs_stay && registry.get(&s.kind)?.check(&shape).is_ok()).then_some(())
        });
        if ok.iter().any(Option::is_none) {
            return None;
        }
        let mut files: Vec<PathBuf> = body.facts.files.iter().map(|f| f.path.clone()).collect();
        files.sort();
        Some(Pipeline {
            name: body.name,
            file: self.header.root.clone(),
            wdir: body.wdir,
            stages: body.stages,
            sources,
            files,
            cache: body.cache,
            link: body.link,
            executor: body.executor,
            stated_outs: canon.stated,
        })
    }

    /// Keep `pipeline` (just loaded, with `facts`) for the next load.
    /// Failing to write only costs the next load a parse.
    pub fn store(&self, pipeline: &Pipeline, facts: Facts) {
        #[derive(Serialize)]
        struct BodyRef<'a> {
            facts: &'a Facts,
            name: &'a str,
            wdir: &'a Path,
            stages: &'a [StageDef],
            cache: &'a Option<PathBuf>,
            link: &'a Option<String>,
            executor: &'a Option<ExecutorKind>,
        }
        let body = BodyRef {
            facts: &facts,
            name: &pipeline.name,
            wdir: &pipeline.wdir,
            stages: &pipeline.stages,
            cache: &pipeline.cache,
            link: &pipeline.link,
            executor: &pipeline.executor,
        };
        let (Ok(mut rest), Ok(body)) = (postcard::to_stdvec(&self.header), postcard::to_stdvec(&body)) else { return };
        rest.extend_from_slice(&body);
        let mut bytes = Vec::with_capacity(MAGIC.len() + 32 + rest.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(blake3::hash(&rest).as_bytes());
        bytes.extend_from_slice(&rest);
        // Beside it, then renamed over it (as the state file is written:
        // the umask's mode, not a temp file's 0600).
        let tmp = self.path.with_extension(format!("{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(path = %self.path.display(), error = %e, "resolved pipeline not kept");
        }
    }
}

/// Each pipeline file read again, as loading reads it: its bytes must
/// hash as they did.
fn check_files(facts: &Facts) -> Option<Vec<SourceFile>> {
    let mut sources = Vec::with_capacity(facts.files.len());
    for f in &facts.files {
        // Not a file (a FIFO could block the read): loading reports it.
        if !std::fs::metadata(&f.path).ok()?.is_file() {
            return None;
        }
        let text = std::fs::read_to_string(&f.path).ok()?;
        if blake3::hash(text.as_bytes()).as_bytes() != &f.hash {
            return None;
        }
        sources.push(SourceFile::new(f.name.clone(), text));
    }
    Some(sources)
}

/// The current folder, canonical, as error messages see it.
pub(super) fn current_dir() -> Option<PathBuf> {
    std::env::current_dir().ok().and_then(|d| d.canonicalize().ok())
}

/// This build of dvx: its version, the executable's identity (a rebuilt
/// binary is another file, or the same one with another ctime), and each kind's name, version and shape.
/// `None` when the executable cannot be stated: nothing is cached then.
fn build_id(registry: &Registry) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    static EXE: OnceLock<Option<String>> = OnceLock::new();
    let exe = EXE
        .get_or_init(|| {
            let m = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
            // ctime too: a binary overwritten in place with its size and
            // mtime put back still moves it.
            Some(format!(
                "{} {}:{} {} {}.{} {}.{}",
                env!("CARGO_PKG_VERSION"),
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            ))
        })
        .clone()?;
    let mut id = exe;
    for name in registry.names() {
        let stage = registry.get(name).expect("a listed kind");
        id.push_str(&format!(" {name}/{}/{}/{}", stage.version(), stage.takes_cmd(), registry.shards(name).is_some()));
    }
    Some(id)
}

/// `params` as a tree postcard can carry (it cannot decode
/// `serde_json::Value`, which needs a self-describing format); numbers
/// keep their exact form (integers as such, floats bit for bit).
pub(crate) mod json_tree {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Number, Value};

    #[derive(Serialize, Deserialize)]
    enum Tree {
        Null,
        Bool(bool),
        U64(u64),
        I64(i64),
        F64(f64),
        Str(String),
        Array(Vec<Tree>),
        Object(Vec<(String, Tree)>),
    }

    fn to_tree(v: &Value) -> Tree {
        match v {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Tree::U64(u),
                (None, Some(i)) => Tree::I64(i),
                _ => Tree::F64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Tree::Str(s.clone()),
            Value::Array(a) => Tree::Array(a.iter().map(to_tree).collect()),
            Value::Object(o) => Tree::Object(o.iter().map(|(k, v)| (k.clone(), to_tree(v))).collect()),
        }
    }

    fn from_tree(t: Tree) -> Value {
        match t {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(b),
            Tree::U64(u) => Value::Number(u.into()),
            Tree::I64(i) => Value::Number(i.into()),
            Tree::F64(f) => Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
            Tree::Str(s) => Value::String(s),
            Tree::Array(a) => Value::Array(a.into_iter().map(from_tree).collect()),
            Tree::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, from_tree(v))).collect::<Map<_, _>>()),
        }
    }

    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        to_tree(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Tree::deserialize(d).map(from_tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        struct Cmd;
        impl crate::Stage for Cmd {
            fn kind(&self) -> &'static str {
                "cmd"
            }
            fn version(&self) -> u32 {
                1
            }
            fn check(&self, _: &crate::StageShape<'_>) -> Result<(), crate::ParamError> {
                Ok(())
            }
            fn takes_cmd(&self) -> bool {
                true
            }
            fn execute(&self, _: &mut crate::StageContext<'_>) -> Result<crate::Metrics, crate::StageFailure> {
                Ok(Default::default())
            }
        }
        let mut r = Registry::new();
        r.register(std::sync::Arc::new(Cmd));
        r
    }

    #[test]
    fn a_kept_pipeline_is_the_one_parsed_and_any_cut_or_flip_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("dvx.yaml");
        let yaml = "stages:\n  s:\n    params: {f: 0.1, tiny: 2.5e-300, big: 18446744073709551615, neg: -3, \
                    deep: {a: [1, 2.5, \"x\", null, true]}}\n    deps: [in.txt]\n    outs: [out/s.txt]\n    \
                    env: {A: b}\n    cmd: echo ${params.f} > out/s.txt\n";
        std::fs::write(&file, yaml).unwrap();
        std::fs::create_dir(tmp.path().join(".dvx")).unwrap();
        std::fs::create_dir(tmp.path().join("out")).unwrap();
        std::fs::write(tmp.path().join("out/s.txt"), "").unwrap();
        let registry = registry();
        let parsed = crate::load_pipeline(&file, &registry).unwrap();
        let file = file.canonicalize().unwrap();
        let entry = Entry::of(&file, &registry).unwrap();
        let kept = entry.load(&registry).expect("kept by the first load");
        assert_eq!(format!("{:?}", kept.stages), format!("{:?}", parsed.stages));
        assert_eq!(kept.stages[0].params, parsed.stages[0].params);
        assert_eq!(kept.stages[0].params["f"].as_f64().unwrap().to_bits(), 0.1f64.to_bits());
        assert_eq!(
            (&kept.name, &kept.file, &kept.wdir, &kept.files),
            (&parsed.name, &parsed.file, &parsed.wdir, &parsed.files)
        );
        assert_eq!(kept.sources[0].text, parsed.sources[0].text);
        assert_eq!(kept.sources[0].name, parsed.sources[0].name);
        // Its out was looked at, as a parse does, for the planner.
        assert!(kept.stated_outs.take(&kept.wdir.join("out/s.txt")).is_some());

        let good = std::fs::read(&entry.path).unwrap();
        for cut in 0..good.len() {
            std::fs::write(&entry.path, &good[..cut]).unwrap();
            assert!(entry.load(&registry).is_none(), "cut at {cut}");
        }
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 1 << (at % 8);
            std::fs::write(&entry.path, &bad).unwrap();
            assert!(entry.load(&registry).is_none(), "flip at {at}");
        }
        std::fs::write(&entry.path, &good).unwrap();
        assert!(entry.load(&registry).is_some());

        // Another build (here: a kind more) does not read it.
        let mut more = self::registry();
        struct Other;
        impl crate::Stage for Other {
            fn kind(&self) -> &'static str {
                "other"
            }
            fn version(&self) -> u32 {
                1
            }
            fn check(&self, _: &crate::StageShape<'_>) -> Result<(), crate::ParamError> {
                Ok(())
            }
            fn execute(&self, _: &mut crate::StageContext<'_>) -> Result<crate::Metrics, crate::StageFailure> {
                Ok(Default::default())
            }
        }
        more.register(std::sync::Arc::new(Other));
        assert!(Entry::of(&file, &more).unwrap().load(&more).is_none());
    }
}

//! `executor:` and `resources:`: where a stage runs and what it asks the
//! cluster for. Neither is part of a stage's key: where a stage runs does not
//! change what it produces.

use serde_json::Value;

/// Where a stage executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExecutorKind {
    /// In the dvx process, on this machine.
    Local,
    /// As a Slurm job (`sbatch`) running `dvx exec-stage` on a compute node.
    Slurm,
}

impl ExecutorKind {
    /// Every executor, for help texts.
    pub const ALL: &'static [&'static str] = &["local", "slurm"];

    /// Parse `local` or `slurm`.
    pub fn parse(s: &str) -> Option<ExecutorKind> {
        match s {
            "local" => Some(ExecutorKind::Local),
            "slurm" => Some(ExecutorKind::Slurm),
            _ => None,
        }
    }

    /// Its name as written in pipelines.
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

impl std::fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stage asks Slurm for (`resources:` of a stage). Each field maps to
/// one `sbatch` option; `extra` is passed as written, after dvx's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem` (`512M`, `4G`; a bare number is megabytes).
    pub mem: Option<String>,
    /// `--gpus` (`2` or `a100:2`).
    pub gpus: Option<String>,
    /// `--time` (`30`, `1:30:00`, `2-00:00:00`; a bare number is minutes).
    pub time: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// More `sbatch` flags, e.g. `["--constraint=a100", "--exclusive"]`.
    pub extra: Vec<String>,
}

/// A `resources:` field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The field (`mem`), or none for the block itself.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The field is not one of [`RESOURCE_FIELDS`].
    pub unknown: bool,
}

/// Fields of `resources:`, for "did you mean".
pub const RESOURCE_FIELDS: &[&str] = &["cpus", "mem", "gpus", "time", "partition", "account", "qos", "extra"];

/// Flags dvx sets itself and `extra` may not.
const RESERVED: &[&str] =
    &["--output", "-o", "--error", "-e", "--wrap", "--chdir", "-D", "--parsable", "--job-name", "-J"];

impl Resources {
    /// Validate a `resources:` block as written.
    pub fn from_value(v: &Value) -> Result<Resources, ResourceError> {
        let err =
            |field: &str, message: String| ResourceError { field: Some(field.to_string()), message, unknown: false };
        let Value::Object(map) = v else {
            return Err(ResourceError {
                field: None,
                message: "must be a mapping (cpus, mem, gpus, time, partition, account, qos, extra)".into(),
                unknown: false,
            });
        };
        let mut r = Resources::default();
        for (k, val) in map {
            match k.as_str() {
                "cpus" => match val.as_u64() {
                    Some(n) if n >= 1 && n <= u32::MAX as u64 => r.cpus = Some(n as u32),
                    _ => {
                        return Err(err(
                            k,
                            format!("`{}` is not a number of CPUs (a whole number, at least 1)", show(val)),
                        ))
                    }
                },
                "mem" => {
                    let s = scalar(val).ok_or_else(|| err(k, "must be a size such as `512M` or `4G`".into()))?;
                    if !is_mem(&s) {
                        return Err(err(
                            k,
                            format!(
                                "`{s}` is not a memory size (a number with an optional K, M, G or T: `512M`, `4G`)"
                            ),
                        ));
                    }
                    r.mem = Some(s);
                }
                "gpus" => {
                    let s = scalar(val).ok_or_else(|| err(k, "must be a count or `type:count`".into()))?;
                    if !is_gpus(&s) {
                        return Err(err(k, format!("`{s}` is not a GPU request (`2` or `a100:2`)")));
                    }
                    r.gpus = Some(s);
                }
                "time" => {
                    let s =
                        scalar(val).ok_or_else(|| err(k, "must be a time limit such as `30` or `1:30:00`".into()))?;
                    if !is_time(&s) {
                        return Err(err(
                            k,
                            format!("`{s}` is not a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)"),
                        ));
                    }
                    r.time = Some(s);
                }
                "partition" | "account" | "qos" => {
                    let s = match val {
                        Value::String(s) if !s.is_empty() && !s.chars().any(char::is_whitespace) => s.clone(),
                        _ => return Err(err(k, format!("`{}` is not a {k} name", show(val)))),
                    };
                    match k.as_str() {
                        "partition" => r.partition = Some(s),
                        "account" => r.account = Some(s),
                        _ => r.qos = Some(s),
                    }
                }
                "extra" => {
                    let flags: Vec<String> = match val {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(a) if a.iter().all(Value::is_string) => {
                            a.iter().map(|x| x.as_str().expect("checked").to_string()).collect()
                        }
                        _ => return Err(err(k, "must be a list of sbatch flags, e.g. [\"--constraint=a100\"]".into())),
                    };
                    for f in &flags {
                        if !f.starts_with('-') {
                            return Err(err(k, format!("`{f}` is not an sbatch flag (flags start with `-`)")));
                        }
                        let name = f.split('=').next().unwrap_or(f);
                        if RESERVED.contains(&name) {
                            return Err(err(
                                k,
                                format!("`{name}` is set by dvx itself and cannot be passed in `extra`"),
                            ));
                        }
                    }
                    r.extra = flags;
                }
                other => {
                    let mut message = format!("unknown field `{other}`");
                    if let Some(best) = crate::spec::did_you_mean(other, RESOURCE_FIELDS.iter().copied()) {
                        message.push_str(&format!(" (did you mean `{best}`?)"));
                    } else {
                        message.push_str(&format!(" (known: {})", RESOURCE_FIELDS.join(", ")));
                    }
                    return Err(ResourceError { field: Some(other.to_string()), message, unknown: true });
                }
            }
        }
        Ok(r)
    }

    /// The `sbatch` flags these resources ask for.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = self.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            a.push(format!("--mem={m}"));
        }
        if let Some(g) = &self.gpus {
            a.push(format!("--gpus={g}"));
        }
        if let Some(t) = &self.time {
            a.push(format!("--time={t}"));
        }
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(x) = &self.account {
            a.push(format!("--account={x}"));
        }
        if let Some(q) = &self.qos {
            a.push(format!("--qos={q}"));
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string or a number, as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_mem(s: &str) -> bool {
    let num = s.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(s);
    digits(num) && num.bytes().any(|b| b != b'0')
}

fn is_gpus(s: &str) -> bool {
    let count = match s.rsplit_once(':') {
        Some((ty, n)) => {
            if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
                return false;
            }
            n
        }
        None => s,
    };
    digits(count)
}

fn is_time(s: &str) -> bool {
    // Without days: M, M:S, H:M:S. With days: D-H, D-H:M, D-H:M:S.
    let rest = match s.split_once('-') {
        Some((d, r)) if digits(d) => r,
        Some(_) => return false,
        None => s,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    (1..=3).contains(&parts.len()) && parts.iter().all(|p| digits(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_resources_become_sbatch_flags() {
        let r = Resources::from_value(&json!({
            "cpus": 4, "mem": "16G", "gpus": "a100:2", "time": "1-02:00:00",
            "partition": "gpu", "account": "team", "extra": ["--constraint=fast"]
        }))
        .unwrap();
        assert_eq!(
            r.sbatch_args(),
            [
                "--cpus-per-task=4",
                "--mem=16G",
                "--gpus=a100:2",
                "--time=1-02:00:00",
                "--partition=gpu",
                "--account=team",
                "--constraint=fast"
            ]
        );
        let r = Resources::from_value(&json!({"mem": 2048, "time": 30, "gpus": 1})).unwrap();
        assert_eq!(r.sbatch_args(), ["--mem=2048", "--gpus=1", "--time=30"]);
    }

    #[test]
    fn wrong_resources_name_the_field() {
        let e = Resources::from_value(&json!({"mem": "4 GB"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mem"));
        assert!(e.message.contains("`4 GB` is not a memory size"), "{}", e.message);
        let e = Resources::from_value(&json!({"cpu": 2})).unwrap_err();
        assert_eq!(e.message, "unknown field `cpu` (did you mean `cpus`?)");
        let e = Resources::from_value(&json!({"cpus": 0})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cpus"));
        let e = Resources::from_value(&json!({"time": "1h"})).unwrap_err();
        assert!(e.message.contains("not a Slurm time limit"));
        let e = Resources::from_value(&json!({"extra": ["--output=x"]})).unwrap_err();
        assert!(e.message.contains("`--output` is set by dvx"));
        assert!(Resources::from_value(&json!(["cpus"])).unwrap_err().field.is_none());
    }
}

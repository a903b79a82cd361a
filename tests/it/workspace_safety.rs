//! The workspace is safe from the pipeline's mistakes: stages stay in the
//! project, never overwrite the files that define it, never read their own
//! output, never hang on a FIFO or device, and never run a param as code.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

/// `dvx args…` in `cwd`, killed if it runs past a deadline: a test that
/// reads a FIFO or a device must fail, not hang. Returns (code, stderr).
fn dvx_with_deadline(cwd: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DVX_CACHE_DIR")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dvx starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            child.kill().expect("kill");
            child.wait().expect("reap");
            panic!("dvx {args:?} still running after 20s (it is reading something that never ends)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// `dvx run PIPELINE` fails with a dvx error (exit 2); its stderr.
#[track_caller]
fn refused(p: &Project, pipeline: &str) -> String {
    let r = p.dvx(&["run", pipeline]);
    assert_eq!(r.code(), 2, "stdout:\n{}\nstderr:\n{}", r.stdout(), r.stderr());
    assert!(!r.stderr().contains("panicked"), "{}", r.stderr());
    r.stderr()
}

// 1. wdir

#[test]
fn wdir_may_be_the_folder_inside_it_or_above_it() {
    let p = Project::new();
    p.write("in.txt", "x\n");
    // Above: the shipped pipelines use `wdir: ..` from pipelines/.
    p.write(
        "pipelines/up.yaml",
        "wdir: ..\nstages:\n  a:\n    deps: [in.txt]\n    outs: [a.txt]\n    cmd: cp in.txt a.txt\n",
    );
    p.dvx(&["run", "pipelines/up.yaml"]).ok();
    assert_eq!(p.read("a.txt"), "x\n");
    // Inside.
    p.write("sub/in.txt", "y\n");
    p.write("down.yaml", "wdir: sub\nstages:\n  b:\n    deps: [in.txt]\n    outs: [b.txt]\n    cmd: cp in.txt b.txt\n");
    p.dvx(&["run", "down.yaml"]).ok();
    assert_eq!(p.read("sub/b.txt"), "y\n");
}

#[test]
fn wdir_outside_the_pipeline_folder_is_refused() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("outside")).unwrap();
    let stage = "stages:\n  a:\n    outs: [x.txt]\n    cmd: touch x.txt\n";

    p.write("proj/dvx.yaml", &format!("wdir: ../outside\n{stage}"));
    let e = refused(&p, "proj/dvx.yaml");
    assert!(e.contains("wdir `../outside` leads outside the pipeline's folder"), "{e}");
    assert!(e.contains("[proj/dvx.yaml:1:7]"), "{e}");

    let elsewhere = tempfile::tempdir().unwrap();
    let abs = elsewhere.path().display().to_string();
    p.write("proj/dvx.yaml", &format!("name: x\nwdir: {abs}\n{stage}"));
    let e = refused(&p, "proj/dvx.yaml");
    assert!(e.contains(&format!("wdir `{abs}` leads outside the pipeline's folder")), "{e}");
    assert!(e.contains("[proj/dvx.yaml:2:7]"), "{e}");

    std::os::unix::fs::symlink(elsewhere.path(), p.path("proj/link")).unwrap();
    p.write("proj/dvx.yaml", &format!("wdir: link\n{stage}"));
    let e = refused(&p, "proj/dvx.yaml");
    assert!(e.contains("wdir `link` leads outside the pipeline's folder through a symlink"), "{e}");
    assert!(e.contains("[proj/dvx.yaml:1:7]"), "{e}");

    // An imported file is held to the same rule, at its own `wdir:`.
    p.write("proj/main.yaml", "imports: [other.yaml]\nstages: {}\n");
    p.write("proj/other.yaml", &format!("wdir: ../outside\n{stage}"));
    let e = refused(&p, "proj/main.yaml");
    assert!(e.contains("[proj/other.yaml:1:7]"), "{e}");
    assert!(!p.path("outside/x.txt").exists() && !elsewhere.path().join("x.txt").exists());
}

// 2. deps that hold the stage's own outs

#[test]
fn a_dep_holding_its_own_out_is_refused() {
    let p = Project::new();
    p.write("dvx.yaml", "stages:\n  a:\n    deps: [.]\n    outs: [out.txt]\n    cmd: ls > out.txt\n");
    let e = refused(&p, "dvx.yaml");
    assert!(e.contains("dep `.` of stage `a` contains its own out `out.txt`"), "{e}");
    assert!(e.contains("[dvx.yaml:3:12]"), "{e}");

    p.write("data/keep.txt", "k\n");
    p.write(
        "dvx.yaml",
        "stages:\n  a:\n    deps: [in.txt, data]\n    outs: [data/x.txt]\n    cmd: ls data > data/x.txt\n",
    );
    p.write("in.txt", "i\n");
    let e = refused(&p, "dvx.yaml");
    assert!(e.contains("dep `data` of stage `a` contains its own out `data/x.txt`"), "{e}");
    assert!(e.contains("[dvx.yaml:3:20]"), "{e}");

    p.write("dvx.yaml", "stages:\n  a:\n    deps: [./o.txt]\n    outs: [o.txt]\n    cmd: touch o.txt\n");
    let e = refused(&p, "dvx.yaml");
    assert!(e.contains("dep `./o.txt` of stage `a` is its own out `o.txt`"), "{e}");
}

// 3. outs that would overwrite the files defining the project

#[test]
fn an_out_over_a_pipeline_file_or_the_config_is_refused() {
    let p = Project::new();
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [dvx.yaml]\n    cmd: echo gone > dvx.yaml\n");
    let e = refused(&p, "dvx.yaml");
    assert!(e.contains("out `dvx.yaml` is a pipeline file `dvx.yaml`"), "{e}");
    assert!(e.contains("[dvx.yaml:3:12]"), "{e}");

    // A folder holding the pipeline, reached through `wdir: ..`.
    p.write("pipelines/p.yaml", "wdir: ..\nstages:\n  a:\n    outs: [pipelines]\n    cmd: mkdir -p pipelines\n");
    let e = refused(&p, "pipelines/p.yaml");
    assert!(e.contains("out `pipelines` contains a pipeline file `pipelines/p.yaml`"), "{e}");
    assert!(e.contains("[pipelines/p.yaml:4:12]"), "{e}");

    // An imported file.
    p.write("lib.yaml", "stages:\n  b:\n    outs: [b.txt]\n    cmd: touch b.txt\n");
    p.write("dvx.yaml", "imports: [lib.yaml]\nstages:\n  a:\n    outs: [lib.yaml]\n    cmd: touch lib.yaml\n");
    let e = refused(&p, "dvx.yaml");
    assert!(e.contains("out `lib.yaml` is a pipeline file `lib.yaml`"), "{e}");
    assert!(e.contains("[dvx.yaml:4:12]"), "{e}");

    // The project's config, found upward.
    p.write("dvx.toml", "");
    p.write("sub/dvx.yaml", "wdir: ..\nstages:\n  a:\n    outs: [dvx.toml]\n    cmd: echo x > dvx.toml\n");
    let e = refused(&p, "sub/dvx.yaml");
    assert!(e.contains("out `dvx.toml` is the project's config `dvx.toml`"), "{e}");
    assert!(e.contains("[sub/dvx.yaml:4:12]"), "{e}");
    assert_eq!(p.read("dvx.toml"), "");
}

// 4. FIFOs, devices and sockets

#[test]
fn a_fifo_device_or_socket_as_the_pipeline_is_refused() {
    let p = Project::new();
    mkfifo(&p.path("fifo.yaml"));
    let (code, e) = dvx_with_deadline(p.dir.path(), &["run", "fifo.yaml"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("cannot read pipeline fifo.yaml: it is a FIFO, not a file"), "{e}");

    let (code, e) = dvx_with_deadline(p.dir.path(), &["run", "/dev/zero"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("cannot read pipeline /dev/zero: it is a character device, not a file"), "{e}");

    let _sock = std::os::unix::net::UnixListener::bind(p.path("sock.yaml")).unwrap();
    let (code, e) = dvx_with_deadline(p.dir.path(), &["dag", "sock.yaml"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("it is a socket, not a file"), "{e}");

    // An import too, pointing at the import.
    p.write("dvx.yaml", "imports: [fifo.yaml]\nstages: {}\n");
    let (code, e) = dvx_with_deadline(p.dir.path(), &["run"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("it is a FIFO, not a file") && e.contains("[dvx.yaml:1:11]"), "{e}");
}

#[test]
fn a_fifo_or_device_as_a_source_dep_is_refused() {
    let p = Project::new();
    mkfifo(&p.path("fifo"));
    p.write("dvx.yaml", "stages:\n  a:\n    deps: [fifo]\n    outs: [o.txt]\n    cmd: cat fifo > o.txt\n");
    let (code, e) = dvx_with_deadline(p.dir.path(), &["run"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("dep `fifo` of stage `a` is a FIFO, not a file or folder"), "{e}");
    assert!(e.contains("[dvx.yaml:3:12]"), "{e}");
    let (code, e) = dvx_with_deadline(p.dir.path(), &["status"]);
    assert_eq!(code, 2, "{e}");

    p.write(
        "dvx.yaml",
        "stages:\n  a:\n    deps: [/dev/zero]\n    outs: [o.txt]\n    cmd: head -c 1 /dev/zero > o.txt\n",
    );
    let (code, e) = dvx_with_deadline(p.dir.path(), &["run"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("dep `/dev/zero` of stage `a` is a character device, not a file or folder"), "{e}");
    assert!(e.contains("[dvx.yaml:3:12]"), "{e}");
}

// 5. quoting of interpolated values

#[test]
fn interpolated_values_are_quoted_for_the_shell() {
    let p = Project::new();
    p.write("my data.jsonl", "{\"a\": 1}\n");
    p.write(
        "dvx.yaml",
        r#"stages:
  a:
    deps: ["my data.jsonl"]
    outs: ["out file.txt"]
    params: {x: "hi; touch pwned", suffix: "!", q: "it's $HOME"}
    cmd: cat ${deps[0]} > ${outs[0]}; echo ${params.x} >> ${outs[0]}; echo "${params.suffix} ${params.q}" >> ${outs[0]}; echo '${params.q}' >> ${outs[0]}
"#,
    );
    p.dvx(&["run"]).ok();
    assert!(!p.path("pwned").exists(), "a param ran as a command");
    assert_eq!(p.read("out file.txt"), "{\"a\": 1}\nhi; touch pwned\n! it's $HOME\nit's $HOME\n");
}

#[test]
fn raw_interpolation_splices_shell_code() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "stages:\n  a:\n    outs: [o.txt]\n    params: {redirect: '> o.txt'}\n    cmd: echo hi ${raw:params.redirect}\n",
    );
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("o.txt"), "hi\n");
}

/// A full workspace disk: the run still prints its stage table, names the
/// stage that failed and why, instead of only "cannot save workspace state".
/// Needs a small filesystem of its own (a tmpfs mount, as root).
#[test]
fn a_full_workspace_disk_names_the_failing_stage() {
    let base = tempfile::tempdir().unwrap();
    let ws = base.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs", ws.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&ws);
    std::fs::write(ws.join("in.txt"), "x\n").unwrap();
    std::fs::write(
        ws.join("dvx.yaml"),
        "stages:\n  small:\n    deps: [in.txt]\n    outs: [small.txt]\n    cmd: cp in.txt small.txt\n  big:\n    deps: [small.txt]\n    outs: [big.bin]\n    cmd: head -c 4000000 /dev/zero > big.bin\n",
    )
    .unwrap();
    let cache = base.path().join("cache");
    let out = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(["--cache", cache.to_str().unwrap(), "run"])
        .current_dir(&ws)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a stage failed, so exit 1:\n{stdout}\n{stderr}");
    let big_row = stdout.lines().find(|l| l.trim_start().starts_with("big")).unwrap_or_default();
    assert!(big_row.contains("FAILED"), "no table row for the failed stage:\n{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("small")), "{stdout}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("stage `big` failed") && all.contains("No space left on device"), "{all}");
}

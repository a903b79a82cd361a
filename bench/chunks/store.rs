//! Hashing+storing throughput of the cache on one large JSONL file, and the
//! cache's growth when 1,000 records are appended to it. Built as an example
//! of `dvx-cache` (see run.sh, which builds it against this tree and against
//! a base commit, side by side).
//!
//! Usage: store_bench gen FILE MEGABYTES | store FILE CACHE_DIR | append FILE CACHE_DIR

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dvx_cache::{Cache, CacheOptions, EscapingLinks, StatCache};

/// Records of about 1 KB, words from a small vocabulary, numbered from `first`.
fn write_records(out: &mut impl Write, first: u64, n: u64) -> std::io::Result<u64> {
    const WORDS: [&str; 16] = [
        "cache", "chunk", "record", "stage", "version", "append", "split", "filter", "model", "token", "window",
        "shard", "hash", "bytes", "train", "valid",
    ];
    let mut x = first.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = 0;
    let mut line = String::new();
    for i in first..first + n {
        line.clear();
        line.push_str(&format!("{{\"id\":{i},\"category\":\"c{}\",\"text\":\"", i % 7));
        for w in 0..150 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if w > 0 {
                line.push(' ');
            }
            line.push_str(WORDS[(x % 16) as usize]);
        }
        line.push_str("\"}\n");
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    Ok(bytes)
}

/// CPU seconds (user + system, all threads) this process has used.
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Store `file` into `cache`: (wall seconds, CPU seconds).
fn store(cache: &Cache, file: &Path) -> (f64, f64) {
    let (t, cpu) = (Instant::now(), cpu_seconds());
    cache.put_paths(&[file], &mut StatCache::in_memory(), EscapingLinks::Refuse).expect("store");
    (t.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: store_bench gen FILE MEGABYTES | store FILE CACHE_DIR | append FILE CACHE_DIR";
    let (cmd, file, arg) = match &args[1..] {
        [c, f, a] => (c.as_str(), Path::new(f), a.as_str()),
        _ => panic!("{usage}"),
    };
    match cmd {
        // Records of about 1 KB until MEGABYTES; prints the record count.
        "gen" => {
            let megabytes: u64 = arg.parse().expect("megabytes");
            let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
            let (mut bytes, mut records) = (0, 0);
            while bytes < megabytes << 20 {
                bytes += write_records(&mut out, records, 10_000).unwrap();
                records += 10_000;
            }
            println!("{records}");
        }
        // A fresh cache, one store: "wall_s cpu_s bytes".
        "store" => {
            let _ = std::fs::remove_dir_all(arg);
            let cache = Cache::open(Path::new(arg), CacheOptions::default()).unwrap();
            let (wall, cpu) = store(&cache, file);
            println!("{wall:.3} {cpu:.3} {}", std::fs::metadata(file).unwrap().len());
        }
        // Append 1,000 records to FILE (numbered after its lines), store
        // into the existing cache: "wall_s appended_bytes cache_growth_bytes".
        "append" => {
            let cache = Cache::open(Path::new(arg), CacheOptions::default()).unwrap();
            let (_, before) = cache.object_stats().unwrap();
            let lines = std::fs::read(file).unwrap().iter().filter(|b| **b == b'\n').count() as u64;
            let appended = {
                let mut out = std::fs::OpenOptions::new().append(true).open(file).unwrap();
                write_records(&mut out, lines, 1_000).unwrap()
            };
            let (wall, _) = store(&cache, file);
            let (_, after) = cache.object_stats().unwrap();
            println!("{wall:.3} {appended} {}", after - before);
        }
        _ => panic!("{usage}"),
    }
}

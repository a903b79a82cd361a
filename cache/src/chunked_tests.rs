//! Chunked objects through the cache's public API: sharing between
//! versions, damage found by reads and verify, gc of chunks.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use super::kept_pieces;
use super::*;
use crate::chunking::tests::noise;
use crate::chunking::MAX_CHUNK;
use crate::resume::ResumeRecord;
use crate::{CacheOptions, EscapingLinks, GcOptions, OutputKind, OutputRef, StatCache};

fn setup() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache"), CacheOptions::default()).unwrap();
    (dir, cache)
}

/// Store `bytes` as the file `name` through `put_paths`; returns its hash.
fn put(cache: &Cache, dir: &Path, name: &str, bytes: &[u8]) -> Hash {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = cache.put_paths(&[&path], &mut StatCache::in_memory(), EscapingLinks::Refuse).unwrap();
    assert_eq!(out[0].0, OutputKind::File);
    assert_eq!(out[0].1, Hash::of_bytes(bytes), "the name is the hash of the whole content");
    out[0].1.clone()
}

fn chunks_of(cache: &Cache, h: &Hash) -> Vec<Hash> {
    cache.read_chunk_list(h).unwrap().expect("stored as chunks").chunks.into_iter().map(|(c, _)| c).collect()
}

fn read_all(cache: &Cache, h: &Hash) -> Result<Vec<u8>> {
    let mut r = cache.open_object(h)?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(|e| r.error(e))?;
    Ok(bytes)
}

fn new_chunks(old: &[Hash], new: &[Hash]) -> usize {
    let old: BTreeSet<&Hash> = old.iter().collect();
    new.iter().filter(|c| !old.contains(c)).count()
}

fn file_output(h: &Hash) -> OutputRef {
    OutputRef { path: "data.jsonl".into(), kind: OutputKind::File, hash: h.clone() }
}

#[test]
fn small_files_stay_whole_and_large_ones_read_back() {
    let (dir, cache) = setup();
    let small = put(&cache, dir.path(), "small", &noise(1, (CHUNKED_FROM - 1) as usize));
    assert!(cache.object_path(&small).exists());
    assert!(cache.read_chunk_list(&small).unwrap().is_none());

    let bytes = noise(2, 8 << 20);
    let big = put(&cache, dir.path(), "big", &bytes);
    assert!(!cache.object_path(&big).exists(), "a large object is not also stored whole");
    assert!(cache.has_object(&big));
    assert_eq!(read_all(&cache, &big).unwrap(), bytes);
    assert!(chunks_of(&cache, &big).len() >= 8);

    // Restoring reassembles, by copy whatever the link mode asks.
    let dest = dir.path().join("restored");
    cache.restore(&file_output(&big), &dest, crate::LinkMode::Hardlink).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(!dir.path().join(".restored.dvx-tmp").exists());

    // Storing it again writes nothing new.
    let (objects, bytes_before) = cache.object_stats().unwrap();
    put(&cache, dir.path(), "big-again", &bytes);
    assert_eq!(cache.object_stats().unwrap(), (objects, bytes_before));
    assert!(cache.verify(false).unwrap().is_clean());
}

#[test]
fn an_append_shares_all_but_the_last_chunks() {
    let (dir, cache) = setup();
    let a = noise(3, 8 << 20);
    let mut b = a.clone();
    b.extend(noise(4, 100_000));
    let ha = put(&cache, dir.path(), "a", &a);
    let (_, before) = cache.object_stats().unwrap();
    let hb = put(&cache, dir.path(), "b", &b);
    let (_, after) = cache.object_stats().unwrap();
    let (ca, cb) = (chunks_of(&cache, &ha), chunks_of(&cache, &hb));
    let fresh = new_chunks(&ca, &cb);
    assert!((1..=2).contains(&fresh), "{fresh} of {} chunks are new", cb.len());
    assert_eq!(cb[..ca.len() - 1], ca[..ca.len() - 1], "every chunk before the old last one is shared");
    // Growth: the appended bytes, the old last chunk again, and a list.
    let grew = after - before;
    assert!(grew <= 100_000 + u64::from(MAX_CHUNK) + 8192, "grew by {grew}");
    assert_eq!(read_all(&cache, &hb).unwrap(), b);
}

#[test]
fn an_insertion_in_the_middle_shares_most_chunks() {
    let (dir, cache) = setup();
    let a = noise(5, 8 << 20);
    let mut b = a[..4 << 20].to_vec();
    b.extend(noise(6, 1000));
    b.extend(&a[4 << 20..]);
    let ha = put(&cache, dir.path(), "a", &a);
    let hb = put(&cache, dir.path(), "b", &b);
    let (ca, cb) = (chunks_of(&cache, &ha), chunks_of(&cache, &hb));
    let fresh = new_chunks(&ca, &cb);
    assert!(fresh <= 3, "{fresh} of {} chunks are new", cb.len());
    assert_eq!(read_all(&cache, &hb).unwrap(), b);
}

#[test]
fn a_corrupt_chunk_is_found_by_reads_and_verify() {
    let (dir, cache) = setup();
    let bytes = noise(7, 6 << 20);
    let h = put(&cache, dir.path(), "f", &bytes);
    let victim = chunks_of(&cache, &h)[2].clone();
    let path = cache.chunk_path(&victim);
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[100] ^= 1;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &damaged).unwrap();

    // Still "present" (reading finds the damage, as for whole objects).
    assert!(cache.has_object(&h));
    let report = cache.verify(false).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].0, h, "verify names the object");
    assert!(report.damaged[0].1.contains(victim.short()), "{}", report.damaged[0].1);

    match read_all(&cache, &h) {
        Err(CacheError::CorruptChunk { hash, chunk, .. }) => {
            assert_eq!(hash, h.to_string());
            assert_eq!(chunk, victim.to_string());
        }
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    // A restore refuses, leaving nothing under the real name, and moves the chunk aside.
    let dest = dir.path().join("out");
    let e = cache.restore(&file_output(&h), &dest, crate::LinkMode::Auto).unwrap_err();
    assert!(e.to_string().contains("is corrupt"), "{e}");
    assert!(!dest.exists());
    assert!(!path.exists(), "the corrupt chunk was quarantined");
    assert_eq!(cache.missing(&[file_output(&h)]).unwrap(), vec![0], "a missing chunk makes the object missing");

    // Storing the bytes again mends it.
    put(&cache, dir.path(), "f2", &bytes);
    assert_eq!(read_all(&cache, &h).unwrap(), bytes);
    assert!(cache.verify(false).unwrap().is_clean());
}

#[test]
fn a_missing_chunk_makes_the_object_missing() {
    let (dir, cache) = setup();
    let h = put(&cache, dir.path(), "f", &noise(8, 5 << 20));
    let victim = chunks_of(&cache, &h).pop().unwrap();
    std::fs::remove_file(cache.chunk_path(&victim)).unwrap();
    assert!(!cache.has_object(&h));
    assert_eq!(cache.missing(&[file_output(&h)]).unwrap(), vec![0]);
    assert!(matches!(read_all(&cache, &h), Err(CacheError::MissingChunk { .. })));
    let report = cache.verify(true).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert!(report.damaged[0].1.contains("missing"), "{}", report.damaged[0].1);
    assert!(!cache.chunk_list_path(&h).exists(), "repair quarantines the list");
    assert!(cache.verify(false).unwrap().is_clean());
}

#[test]
fn a_list_whose_chunks_reassemble_wrong_is_corrupt() {
    let (dir, cache) = setup();
    let a = put(&cache, dir.path(), "a", &noise(9, 5 << 20));
    let b = put(&cache, dir.path(), "b", &noise(10, 5 << 20));
    // b's name over a's list: every chunk is intact, the whole is not b.
    std::fs::copy(cache.chunk_list_path(&a), cache.chunk_list_path(&b)).unwrap();
    assert!(matches!(read_all(&cache, &b), Err(CacheError::Corrupt { .. })));
    let report = cache.verify(false).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert!(report.damaged[0].1.contains("reassemble"), "{}", report.damaged[0].1);
}

#[test]
fn untrusted_lists_are_refused() {
    let (dir, cache) = setup();
    let h = put(&cache, dir.path(), "f", &noise(11, 5 << 20));
    let list = cache.chunk_list_path(&h);
    std::fs::remove_file(&list).unwrap();
    std::fs::write(&list, br#"{"dvx_chunks":1,"size":1,"chunks":[["../../../etc/passwd",1]]}"#).unwrap();
    let e = read_all(&cache, &h).unwrap_err();
    assert!(matches!(e, CacheError::BadRecord { .. }), "{e}");
    assert!(!cache.has_object(&h));
    let report = cache.verify(false).unwrap();
    assert!(report.bad_records.iter().any(|(p, m)| p == &list && m.contains("blake3")), "{report:?}");

    // A symlink where a list belongs is not followed.
    std::fs::remove_file(&list).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &list).unwrap();
    assert!(matches!(read_all(&cache, &h), Err(CacheError::BadRecord { .. })));
}

#[test]
fn gc_keeps_the_chunks_of_kept_objects_only() {
    let (dir, cache) = setup();
    let base = noise(12, 6 << 20);
    let mut longer = base.clone();
    longer.extend(noise(13, 300_000));
    let kept = put(&cache, dir.path(), "kept", &base);
    let dropped = put(&cache, dir.path(), "dropped", &longer);
    let body = serde_json::json!({"sources": [file_output(&kept)]});
    let version = cache.put_version(body, Default::default()).unwrap();
    // Everything written so far is old, so only the version keeps it.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for bucket in [Bucket::ChunkLists, Bucket::Chunks, Bucket::Versions] {
        for entry in walkdir::WalkDir::new(cache.dir(bucket)).into_iter().flatten().filter(|e| e.file_type().is_file())
        {
            File::open(entry.path()).unwrap().set_modified(hour_ago).unwrap();
        }
    }
    let only_dropped = new_chunks(&chunks_of(&cache, &kept), &chunks_of(&cache, &dropped));
    assert!(only_dropped >= 1);

    let report = cache.gc(&GcOptions { keep: [version].into(), dry_run: false }).unwrap();
    assert_eq!(report.objects, 1, "the dropped object's list");
    assert_eq!(report.chunks, only_dropped, "exactly the chunks no kept object uses");
    assert!(!cache.has_object(&dropped));
    assert_eq!(read_all(&cache, &kept).unwrap(), base);
    assert!(cache.verify(false).unwrap().is_clean());
}

#[test]
fn a_killed_store_leaves_only_unnamed_chunks() {
    // Chunks are renamed into place before their list: chunks without a
    // list are what a kill between the two leaves. They are not an object,
    // verify is clean, gc removes them.
    let (dir, cache) = setup();
    let h = put(&cache, dir.path(), "f", &noise(14, 5 << 20));
    std::fs::remove_file(cache.chunk_list_path(&h)).unwrap();
    assert!(!cache.has_object(&h));
    assert!(cache.verify(false).unwrap().is_clean());
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (_, p) in cache.sharded_files(Bucket::Chunks).unwrap() {
        File::open(&p).unwrap().set_modified(hour_ago).unwrap();
    }
    let report = cache.gc(&GcOptions::default()).unwrap();
    assert!(report.chunks >= 5);
    assert!(cache.sharded_files(Bucket::Chunks).unwrap().is_empty());
}

#[test]
fn shared_mode_applies_to_chunks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("c"), CacheOptions { shared_group: true }).unwrap();
    let h = put(&cache, dir.path(), "f", &noise(15, 5 << 20));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let list = cache.chunk_list_path(&h);
    let chunk = cache.chunk_path(&chunks_of(&cache, &h)[0]);
    for p in [&list, &chunk] {
        assert_eq!(mode(p), 0o444, "{}", p.display());
        assert_eq!(mode(p.parent().unwrap()), 0o2775);
        assert_eq!(mode(p.parent().unwrap().parent().unwrap()), 0o2775);
    }
}

/// Store `bytes` as the file at `path` with a saved stat cache (so resume
/// records are kept); returns its hash.
fn put_kept(cache: &Cache, path: &Path, stat: &mut StatCache, bytes: &[u8]) -> Hash {
    std::fs::write(path, bytes).unwrap();
    cache.put_paths(&[path], stat, EscapingLinks::Refuse).unwrap()[0].1.clone()
}

#[test]
fn a_store_resumed_from_the_files_earlier_version_gives_a_full_stores_object() {
    let (dir, cache) = setup();
    let (fresh_dir, fresh) = setup();
    let mut stat = StatCache::load(&dir.path().join(".dvx/stat"));
    let path = dir.path().join("data.jsonl");
    let v1 = noise(20, 10 << 20);
    put_kept(&cache, &path, &mut stat, &v1);
    let record = ResumeRecord::path_for(&dir.path().join(".dvx/resume"), &path);

    let mut appended = v1.clone();
    appended.extend(noise(21, 3 << 20));
    let mut edited = appended.clone();
    edited[5 << 20] ^= 1;
    let mut a_line_more = edited.clone();
    a_line_more.extend(b"{\"one\": \"more\"}\n");
    let cut = a_line_more[..(7 << 20) + 99].to_vec();
    for (name, bytes) in [("appended", &appended), ("edited", &edited), ("a line more", &a_line_more), ("cut", &cut)] {
        let h = put_kept(&cache, &path, &mut stat, bytes);
        assert_eq!(h, Hash::of_bytes(bytes), "{name}");
        assert_eq!(read_all(&cache, &h).unwrap(), *bytes, "{name}");
        let full = put(&fresh, fresh_dir.path(), "full", bytes);
        assert_eq!(chunks_of(&cache, &h), chunks_of(&fresh, &full), "{name}: the chunks of a full store");
        assert_eq!(ResumeRecord::load(&record).unwrap().hash, h, "{name}: the record follows the file");
    }
    assert!(cache.verify(false).unwrap().is_clean());
}

#[test]
fn a_resumed_store_takes_only_proven_and_stored_chunks() {
    let (dir, cache) = setup();
    let mut stat = StatCache::load(&dir.path().join(".dvx/stat"));
    let path = dir.path().join("data.jsonl");
    let v1 = noise(22, 10 << 20);
    let h1 = put_kept(&cache, &path, &mut stat, &v1);
    let earlier = ResumeRecord::load(&ResumeRecord::path_for(&dir.path().join(".dvx/resume"), &path)).unwrap();
    let prefix = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let (chunks, _, from) = cache.reusable_prefix(&earlier, None, &mut file, &path, &Batch::default()).unwrap();
        (chunks.len(), from)
    };
    // An append: every chunk but those near the old end.
    let mut appended = v1.clone();
    appended.extend(noise(23, 1 << 20));
    let (n, from) = prefix(&appended);
    assert!(
        n + 4 >= earlier.chunks.len() && from + u64::from(MAX_CHUNK) * 2 >= v1.len() as u64,
        "{n} chunks to {from}"
    );
    // An edit: only chunks before it.
    let mut edited = v1.clone();
    edited[3 << 20] ^= 1;
    let (_, from) = prefix(&edited);
    assert!(from > 0 && from <= 3 << 20, "{from}");
    // Other bytes: nothing.
    assert_eq!(prefix(&noise(24, 10 << 20)), (0, 0));
    // A chunk gone from the store (gc, another machine): start over.
    std::fs::remove_file(cache.chunk_path(&chunks_of(&cache, &h1)[1])).unwrap();
    assert_eq!(prefix(&appended), (0, 0));
    let h = put_kept(&cache, &path, &mut stat, &appended);
    assert_eq!(read_all(&cache, &h).unwrap(), appended);
}

#[test]
fn a_writers_kept_prefix_spares_hashing_it_and_names_the_same_object() {
    let (dir, cache) = setup();
    let (fresh_dir, fresh) = setup();
    let mut stat = StatCache::load(&dir.path().join(".dvx/stat"));
    let path = dir.path().join("out.jsonl");
    let v1 = noise(30, 9 << 20);
    let h1 = put_kept(&cache, &path, &mut stat, &v1);
    let mut v2 = v1.clone();
    v2.extend(noise(31, 2 << 20));
    std::fs::write(&path, &v2).unwrap();
    let record = ResumeRecord::load(&ResumeRecord::path_for(&dir.path().join(".dvx/resume"), &path)).unwrap();
    // What the store would take: the earlier pieces of the kept bytes.
    let mut file = std::fs::File::open(&path).unwrap();
    let pieces = kept_pieces(&record, Some((h1.clone(), v1.len() as u64)), &mut file, &path).unwrap().unwrap();
    assert_eq!(pieces, crate::pieces::piece_cvs(0, &v2));
    // A claim about another object is not taken.
    let other = Some((Hash::of_bytes(b"other"), v1.len() as u64));
    assert_eq!(kept_pieces(&record, other, &mut file, &path).unwrap(), None);
    // Through the store: the object of a full store.
    stat.note_kept_prefix(&path, h1, v1.len() as u64);
    let h2 = cache.put_paths(&[&path], &mut stat, EscapingLinks::Refuse).unwrap()[0].1.clone();
    assert_eq!(h2, Hash::of_bytes(&v2));
    assert_eq!(chunks_of(&cache, &h2), chunks_of(&fresh, &put(&fresh, fresh_dir.path(), "full", &v2)));
    assert_eq!(read_all(&cache, &h2).unwrap(), v2);
}

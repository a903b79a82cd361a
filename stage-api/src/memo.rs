//! The record memo: a per-request answer store a stage reaches through its
//! context, so a re-run pays only for the requests it has not made before.
//!
//! Keys are blake3 over a canonical form the stage chooses (an LLM stage:
//! model, base URL and the full request body). The engine backs it with the
//! active cache (written atomically as each answer arrives, verified on
//! read); the test kit with memory. A stage never sees where it lives.

use std::collections::HashMap;
use std::sync::Mutex;

/// A memo key: blake3 of the stage's canonical form of one request.
pub type MemoKey = [u8; 32];

/// Answers kept across runs, by key.
pub trait Memo: Send + Sync {
    /// The bytes kept under `key`, if any (a damaged entry reads as none).
    fn get(&self, key: &MemoKey) -> Option<Vec<u8>>;
    /// Keep `value` under `key`, durably, before returning. A memo that
    /// cannot write says why; the stage decides whether that is fatal.
    fn put(&self, key: &MemoKey, value: &[u8]) -> Result<(), String>;
    /// Keep `value` under `key` as a hint: as `put`, but without waiting
    /// for it to be durable, so a crash may lose it (a torn entry reads as
    /// none, never as other bytes). For results cheaper to compute again
    /// than to wait for the disk for, such as per-record reuse; what was
    /// paid for (an LLM's answer) goes through `put`.
    fn put_hint(&self, key: &MemoKey, value: &[u8]) -> Result<(), String> {
        self.put(key, value)
    }
    /// Whether `put` keeps anything. A stage may skip working out what it
    /// would keep (per-record ids, say) when it does not.
    fn keeps(&self) -> bool {
        true
    }
}

/// A memo that never remembers: every `get` misses, `put` drops the value.
/// For `dvx reproduce --fresh` and callers with no cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemo;

impl Memo for NoMemo {
    fn get(&self, _key: &MemoKey) -> Option<Vec<u8>> {
        None
    }
    fn put(&self, _key: &MemoKey, _value: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn keeps(&self) -> bool {
        false
    }
}

/// A memo held in memory (the stage test kit's), counting its hits.
#[derive(Debug, Default)]
pub struct MemoryMemo {
    entries: Mutex<HashMap<MemoKey, Vec<u8>>>,
}

impl MemoryMemo {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("memo lock").len()
    }
    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Memo for MemoryMemo {
    fn get(&self, key: &MemoKey) -> Option<Vec<u8>> {
        self.entries.lock().expect("memo lock").get(key).cloned()
    }
    fn put(&self, key: &MemoKey, value: &[u8]) -> Result<(), String> {
        self.entries.lock().expect("memo lock").insert(*key, value.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_memo_keeps_and_no_memo_forgets() {
        let m = MemoryMemo::default();
        assert_eq!(m.get(&[1; 32]), None);
        m.put(&[1; 32], b"answer").unwrap();
        assert_eq!(m.get(&[1; 32]).as_deref(), Some(&b"answer"[..]));
        assert_eq!(m.len(), 1);
        NoMemo.put(&[1; 32], b"x").unwrap();
        assert_eq!(NoMemo.get(&[1; 32]), None);
        assert!(!NoMemo.keeps() && MemoryMemo::default().keeps());
    }
}

//! The memo a stage gets through its context, backed by the active cache
//! under the stage kind's namespace (`memo-v1/<kind>/…`). It notes every
//! key the stage read (a hit) or wrote, so the run entry can name them and
//! gc keep the entries kept versions used.

use std::collections::BTreeSet;
use std::sync::Mutex;

use dvx_cache::Cache;

use crate::{Memo, MemoKey};

/// [`Memo`] over a cache. A cache error on read is a miss (with a
/// warning): the stage asks again rather than failing.
pub struct CacheMemo<'a> {
    cache: &'a Cache,
    ns: &'a str,
    used: Mutex<BTreeSet<MemoKey>>,
}

impl<'a> CacheMemo<'a> {
    /// The memo of kind `kind` in `cache`.
    pub fn new(cache: &'a Cache, kind: &'a str) -> Self {
        CacheMemo { cache, ns: kind, used: Mutex::default() }
    }

    /// The keys read (hits) or written so far, sorted.
    pub fn used(&self) -> BTreeSet<MemoKey> {
        self.used.lock().expect("memo keys lock").clone()
    }
}

impl Memo for CacheMemo<'_> {
    fn get(&self, key: &MemoKey) -> Option<Vec<u8>> {
        let got = self.cache.memo_get(self.ns, key).unwrap_or_else(|e| {
            tracing::warn!("memo read failed, treated as a miss: {e}");
            None
        });
        if got.is_some() {
            self.used.lock().expect("memo keys lock").insert(*key);
        }
        got
    }
    fn put(&self, key: &MemoKey, value: &[u8]) -> Result<(), String> {
        self.cache.memo_put(self.ns, key, value).map_err(|e| e.to_string())?;
        self.used.lock().expect("memo keys lock").insert(*key);
        Ok(())
    }
    fn put_hint(&self, key: &MemoKey, value: &[u8]) -> Result<(), String> {
        self.cache.memo_put_hint(self.ns, key, value).map_err(|e| e.to_string())?;
        self.used.lock().expect("memo keys lock").insert(*key);
        Ok(())
    }
}

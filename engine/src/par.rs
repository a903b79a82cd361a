//! Independent per-stage work spread over the machine's cores.

/// `f` of each item, in order, on the machine's cores when there are enough
/// items to be worth the threads (pipelines of thousands of stages), else
/// on this thread.
pub(crate) fn map_in_order<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const PER_THREAD: usize = 512;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.min(items.len() / PER_THREAD);
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> =
            items.chunks(chunk).map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a worker panicked")).collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_the_order_of_the_items() {
        for n in [0, 1, 511, 512, 1024, 5000] {
            let items: Vec<usize> = (0..n).collect();
            let out = super::map_in_order(&items, |&i| i * 3);
            assert_eq!(out, items.iter().map(|i| i * 3).collect::<Vec<_>>(), "{n}");
        }
    }
}

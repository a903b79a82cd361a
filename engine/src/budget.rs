//! The run's thread budget (`-j N`, default: the cores): the stages in
//! flight use at most N compute threads together, so two `train` stages on
//! two cores get one thread each instead of two each.
//!
//! A stage with `threads: T` costs T (a T above the budget, asked for
//! explicitly, runs alone with its T threads). A stage without it costs at
//! least one thread and gets a share of what is free when it starts: the
//! ready stages that start together split the free threads evenly. Stages
//! start in the order they became ready; one that does not fit waits, and
//! so do those behind it, so a wide stage is never starved by narrow ones.

use std::collections::VecDeque;

/// A stage let start: the threads it may use, and what it costs the budget
/// until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub stage: usize,
    pub threads: usize,
    pub charge: usize,
}

/// Take from the front of `ready` the stages that fit in `free` threads of
/// `budget` (`declared`: a stage's `threads:`), lowering `free` by what they
/// cost. Only the stages looked at are asked: `ready` can hold thousands.
pub(crate) fn grant(
    ready: &mut VecDeque<usize>,
    declared: impl Fn(usize) -> Option<usize>,
    free: &mut usize,
    budget: usize,
) -> Vec<Grant> {
    let mut out = Vec::new();
    let mut shares = Vec::new();
    while let Some(&stage) = ready.front() {
        match declared(stage) {
            Some(t) => {
                let charge = t.min(budget);
                if charge > *free {
                    break;
                }
                *free -= charge;
                out.push(Grant { stage, threads: t, charge });
            }
            None => {
                if *free == 0 {
                    break;
                }
                *free -= 1;
                shares.push(out.len());
                out.push(Grant { stage, threads: 1, charge: 1 });
            }
        }
        ready.pop_front();
    }
    // What is left goes to the stages without `threads:`, evenly, the first ones taking the remainder.
    let n = shares.len();
    if let Some(each) = free.checked_div(n) {
        let extra = *free % n;
        for (i, &g) in shares.iter().enumerate() {
            let more = each + usize::from(i < extra);
            out[g].threads += more;
            out[g].charge += more;
        }
        *free = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ready: &[usize], declared: &[Option<usize>], free: usize, budget: usize) -> (Vec<(usize, usize)>, usize) {
        let mut q: VecDeque<usize> = ready.iter().copied().collect();
        let mut free = free;
        // The stages are 0, 1, …: each one's `threads:` is at its index.
        let g = grant(&mut q, |s| declared[s], &mut free, budget);
        (g.iter().map(|g| (g.stage, g.threads)).collect(), free)
    }

    #[test]
    fn undeclared_stages_split_what_is_free() {
        assert_eq!(run(&[0, 1], &[None, None], 2, 2), (vec![(0, 1), (1, 1)], 0));
        assert_eq!(run(&[0], &[None], 4, 4), (vec![(0, 4)], 0));
        assert_eq!(run(&[0, 1, 2], &[None, None, None], 2, 2), (vec![(0, 1), (1, 1)], 0));
        assert_eq!(run(&[0, 1], &[None, None], 5, 5), (vec![(0, 3), (1, 2)], 0));
    }

    #[test]
    fn declared_stages_wait_for_their_threads_in_order() {
        // Two `threads: 2` stages on a budget of 2: one at a time.
        assert_eq!(run(&[0, 1], &[Some(2), Some(2)], 2, 2), (vec![(0, 2)], 0));
        // A wide stage that does not fit holds back the narrow one behind it.
        assert_eq!(run(&[0, 1], &[Some(3), None], 2, 4), (vec![], 2));
        // Asked for more than the budget: runs alone, with what it asked.
        assert_eq!(run(&[0], &[Some(8)], 2, 2), (vec![(0, 8)], 0));
        assert_eq!(run(&[0], &[Some(8)], 1, 2), (vec![], 1));
        // Declared and undeclared together: the undeclared one takes the rest.
        assert_eq!(run(&[0, 1], &[Some(1), None], 4, 4), (vec![(0, 1), (1, 3)], 0));
    }
}

//! The stage graph: an edge wherever a dep names (or lies inside) another
//! stage's out, as in DVC. Duplicate outs and cycles are spec errors.

use std::collections::BTreeMap;

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Result, SpecError};
use crate::spec::Pipeline;

/// Who produces a dep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    /// Index of the producing stage.
    pub stage: usize,
    /// Index of the out in that stage.
    pub out: usize,
    /// The dep is the out itself (not a path inside an out folder).
    pub exact: bool,
}

/// The resolved DAG.
#[derive(Debug)]
pub struct Graph {
    /// For each stage, for each dep: its producer, if any.
    pub producers: Vec<Vec<Option<Producer>>>,
    /// For each stage, the stages it depends on (sorted, unique).
    pub upstream: Vec<Vec<usize>>,
    /// For each stage, the stages that depend on it.
    pub downstream: Vec<Vec<usize>>,
    /// A topological order (stable: ties keep definition order).
    pub order: Vec<usize>,
}

impl Graph {
    /// Build the graph of `p`, rejecting duplicate/overlapping outs and cycles.
    pub fn build(p: &Pipeline) -> Result<Graph> {
        let mut outs: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (si, s) in p.stages.iter().enumerate() {
            for (oi, o) in s.outs.iter().enumerate() {
                if let Some(&(os, oo)) = outs.get(o.as_str()) {
                    let first = &p.stages[os];
                    let mut err = p.error_at(
                        &s.origin,
                        s.origin.outs[oi],
                        format!("`{o}` is an out of both `{}` and `{}`", first.name, s.name),
                        "second writer",
                    );
                    if first.origin.file == s.origin.file {
                        err = err.with_other(first.origin.outs[oo], "first writer");
                    }
                    return Err(err.with_help("every path may be written by one stage only").into());
                }
                outs.insert(o, (si, oi));
            }
        }
        // Nested outs (one inside another) would make restores fight. Each
        // out's parent folders are looked up (sorted neighbours miss `a/b`
        // holding `a/b/c` when `a/b-x` sorts between them).
        for (&o, &(si, oi)) in &outs {
            let mut cur = o;
            while let Some(i) = cur.rfind('/') {
                cur = &cur[..i];
                let Some(&(os, _)) = outs.get(cur) else { continue };
                let s = &p.stages[si];
                return Err(p
                    .error_at(
                        &s.origin,
                        s.origin.outs[oi],
                        format!("`{o}` lies inside `{cur}`, an out of `{}`", p.stages[os].name),
                        "nested out",
                    )
                    .into());
            }
        }
        let mut producers = Vec::with_capacity(p.stages.len());
        let mut upstream = vec![Vec::new(); p.stages.len()];
        let mut downstream = vec![Vec::new(); p.stages.len()];
        for (si, s) in p.stages.iter().enumerate() {
            let mut row = Vec::with_capacity(s.deps.len());
            for d in &s.deps {
                let found =
                    outs.get(d.as_str()).map(|&(stage, out)| Producer { stage, out, exact: true }).or_else(|| {
                        // The nearest out folder that contains the dep.
                        let mut cur = d.as_str();
                        while let Some(i) = cur.rfind('/') {
                            cur = &cur[..i];
                            if let Some(&(stage, out)) = outs.get(cur) {
                                return Some(Producer { stage, out, exact: false });
                            }
                        }
                        None
                    });
                if let Some(pr) = found {
                    if !upstream[si].contains(&pr.stage) {
                        upstream[si].push(pr.stage);
                        downstream[pr.stage].push(si);
                    }
                }
                row.push(found);
            }
            upstream[si].sort_unstable();
            producers.push(row);
        }
        let order = topo_order(p, &upstream)?;
        Ok(Graph { producers, upstream, downstream, order })
    }

    /// `targets` and everything they depend on, in topological order.
    pub fn closure(&self, targets: &[usize]) -> Vec<usize> {
        let mut keep = vec![false; self.order.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(s) = stack.pop() {
            if !keep[s] {
                keep[s] = true;
                stack.extend(&self.upstream[s]);
            }
        }
        self.order.iter().copied().filter(|&s| keep[s]).collect()
    }
}

fn topo_order(p: &Pipeline, upstream: &[Vec<usize>]) -> Result<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..p.stages.len()).map(|i| g.add_node(i)).collect();
    for (si, ups) in upstream.iter().enumerate() {
        for &u in ups {
            g.add_edge(nodes[u], nodes[si], ());
        }
    }
    match toposort(&g, None) {
        Ok(order) => {
            // petgraph's order is valid but not stable; re-derive a stable one
            // (Kahn's algorithm picking the lowest definition index first).
            let _ = order;
            let mut indeg: Vec<usize> = upstream.iter().map(Vec::len).collect();
            let mut ready: std::collections::BTreeSet<usize> = (0..indeg.len()).filter(|&i| indeg[i] == 0).collect();
            let mut down = vec![Vec::new(); indeg.len()];
            for (si, ups) in upstream.iter().enumerate() {
                for &u in ups {
                    down[u].push(si);
                }
            }
            let mut out = Vec::with_capacity(indeg.len());
            while let Some(&s) = ready.iter().next() {
                ready.remove(&s);
                out.push(s);
                for &d in &down[s] {
                    indeg[d] -= 1;
                    if indeg[d] == 0 {
                        ready.insert(d);
                    }
                }
            }
            Ok(out)
        }
        Err(cycle) => Err(cycle_error(p, &g, cycle.node_id()).into()),
    }
}

fn cycle_error(p: &Pipeline, g: &DiGraph<usize, ()>, start: NodeIndex) -> SpecError {
    let scc = kosaraju_scc(g).into_iter().find(|c| c.contains(&start)).unwrap_or_else(|| vec![start]);
    // Walk inside the component from the first-defined stage until we return to it.
    let first = *scc.iter().min_by_key(|n| g[**n]).expect("non-empty scc");
    let mut path = vec![first];
    let mut seen = std::collections::BTreeSet::new();
    let mut cur = first;
    loop {
        let mut nexts: Vec<NodeIndex> = g.neighbors(cur).filter(|n| scc.contains(n)).collect();
        nexts.sort_by_key(|n| g[*n]);
        if nexts.contains(&first) {
            break;
        }
        let Some(&next) = nexts.iter().find(|n| !seen.contains(*n)) else { break };
        seen.insert(next);
        path.push(next);
        cur = next;
    }
    let names: Vec<&str> = path.iter().map(|n| p.stages[g[*n]].name.as_str()).collect();
    let text = format!("{} → {}", names.join(" → "), names[0]);
    let s = &p.stages[g[first]];
    p.error_at(&s.origin, s.origin.name, format!("the stages form a cycle: {text}"), "part of the cycle")
        .with_help("a stage cannot depend, directly or not, on its own outs")
}

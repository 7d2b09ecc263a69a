//! Dependency graph of modules: spawn order, shutdown tiers, cycles (petgraph).
//!
//! An edge `a → b` means module `a` lists in `requires` a service that `b` provides. Only
//! `requires` counts: `optionalRequires` never orders, blocks or forms a cycle.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use petgraph::graphmap::DiGraphMap;

use crate::desired::Desired;
use crate::manifest::Manifest;

/// What the graph needs to know about one module.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub priority: f64,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
}

impl Node {
    pub fn from_manifest(m: &Manifest) -> Node {
        Node {
            id: m.id.clone(),
            priority: m.priority(),
            provides: m.provides.clone(),
            requires: m.requires.clone(),
        }
    }
}

/// Dependencies of each node: the ids of the providers of its required services (the first
/// provider by `(priority, id)` when several provide one). Every node has an entry.
pub fn dependencies(nodes: &[Node]) -> BTreeMap<String, BTreeSet<String>> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.priority.total_cmp(&b.priority).then(a.id.cmp(&b.id)));
    let mut provider: BTreeMap<&str, &str> = BTreeMap::new();
    for n in &sorted {
        for s in &n.provides {
            provider.entry(s.as_str()).or_insert(n.id.as_str());
        }
    }
    nodes
        .iter()
        .map(|n| {
            let deps = n
                .requires
                .iter()
                .filter_map(|s| provider.get(s.as_str()).map(|p| p.to_string()))
                .collect();
            (n.id.clone(), deps)
        })
        .collect()
}

#[derive(PartialEq)]
struct Ready<'a>(f64, &'a str);
impl Eq for Ready<'_> {}
impl PartialOrd for Ready<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ready<'_> {
    // Reversed: BinaryHeap pops the greatest, we want the lowest (priority, id).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then_with(|| other.1.cmp(self.1))
    }
}

/// Spawn order: providers before the modules that require them; among the modules whose
/// providers are all placed, lowest `priority` first, then id. Modules on a cycle (which a
/// [`Desired`] never contains) come last, by priority then id.
pub fn order(nodes: &[Node]) -> Vec<String> {
    let deps = dependencies(nodes);
    let prio: BTreeMap<&str, f64> = nodes.iter().map(|n| (n.id.as_str(), n.priority)).collect();
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, ds) in &deps {
        let ds: Vec<&String> = ds.iter().filter(|d| *d != id).collect();
        waiting.insert(id.as_str(), ds.len());
        for d in ds {
            dependents.entry(d.as_str()).or_default().push(id.as_str());
        }
    }
    let mut heap: BinaryHeap<Ready> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| Ready(prio[id], id))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    let mut placed = BTreeSet::new();
    while let Some(Ready(_, id)) = heap.pop() {
        out.push(id.to_string());
        placed.insert(id);
        for dep in dependents.get(id).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(dep) {
                *n -= 1;
                if *n == 0 {
                    heap.push(Ready(prio[dep], dep));
                }
            }
        }
    }
    let mut rest: Vec<&Node> = nodes
        .iter()
        .filter(|n| !placed.contains(n.id.as_str()))
        .collect();
    rest.sort_by(|a, b| a.priority.total_cmp(&b.priority).then(a.id.cmp(&b.id)));
    out.extend(rest.into_iter().map(|n| n.id.clone()));
    out
}

/// Every dependency cycle (strongly connected component with more than one module, or a module
/// requiring a service it provides itself), each as the ids of all its members (sorted) and a
/// path through its smallest id, e.g. `["a", "b", "a"]`. Sorted by the first member.
pub fn cycles(nodes: &[Node]) -> Vec<(Vec<String>, Vec<String>)> {
    let deps = dependencies(nodes);
    let ids: Vec<&str> = deps.keys().map(String::as_str).collect();
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut g: DiGraphMap<usize, (), std::hash::RandomState> =
        DiGraphMap::with_capacity_and_hasher(ids.len(), 0, std::hash::RandomState::new());
    for i in 0..ids.len() {
        g.add_node(i);
    }
    for (id, ds) in &deps {
        for d in ds {
            if let (Some(a), Some(b)) = (index.get(id.as_str()), index.get(d.as_str())) {
                g.add_edge(*a, *b, ());
            }
        }
    }
    let mut out = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&g) {
        let is_cycle = scc.len() > 1 || scc.first().is_some_and(|n| g.contains_edge(*n, *n));
        if !is_cycle {
            continue;
        }
        let mut members: Vec<String> = scc.iter().map(|i| ids[*i].to_string()).collect();
        members.sort();
        let set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let path = cycle_path(&members[0], &deps, &set);
        out.push((members, path));
    }
    out.sort();
    out
}

/// Shortest path from `start` back to itself inside the component (BFS, sorted neighbours).
fn cycle_path(
    start: &str,
    deps: &BTreeMap<String, BTreeSet<String>>,
    set: &BTreeSet<&str>,
) -> Vec<String> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    queue.push_back(start);
    while let Some(cur) = queue.pop_front() {
        for next in deps.get(cur).into_iter().flatten() {
            let next = next.as_str();
            if !set.contains(next) {
                continue;
            }
            if next == start {
                let mut chain = Vec::new();
                let mut at = cur;
                while at != start {
                    chain.push(at.to_string());
                    at = parent.get(at).copied().unwrap_or(start);
                }
                chain.reverse();
                let mut path = vec![start.to_string()];
                path.extend(chain);
                path.push(start.to_string());
                return path;
            }
            if !parent.contains_key(next) && next != start {
                parent.insert(next, cur);
                queue.push_back(next);
            }
        }
    }
    vec![start.to_string(), start.to_string()]
}

/// Shutdown tiers from a dependency map (`id → ids it depends on`): tier 0 holds the modules no
/// other module depends on, and each later tier the providers of the tiers before it, so
/// stopping tier by tier stops dependents before their providers. Ids sorted within a tier.
pub fn tiers(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, ds) in deps {
        for d in ds {
            if d != id {
                dependents.entry(d.as_str()).or_default().push(id.as_str());
            }
        }
    }
    let mut tier: BTreeMap<&str, usize> = BTreeMap::new();
    fn depth<'a>(
        id: &'a str,
        dependents: &BTreeMap<&'a str, Vec<&'a str>>,
        tier: &mut BTreeMap<&'a str, usize>,
        visiting: &mut BTreeSet<&'a str>,
    ) -> usize {
        if let Some(t) = tier.get(id) {
            return *t;
        }
        if !visiting.insert(id) {
            return 0; // a cycle: break it here
        }
        let t = dependents
            .get(id)
            .into_iter()
            .flatten()
            .map(|d| depth(d, dependents, tier, visiting) + 1)
            .max()
            .unwrap_or(0);
        visiting.remove(id);
        tier.insert(id, t);
        t
    }
    for id in deps.keys() {
        let mut visiting = BTreeSet::new();
        depth(id, &dependents, &mut tier, &mut visiting);
    }
    let n = tier.values().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); n];
    for (id, t) in tier {
        if deps.contains_key(id) {
            out[t].push(id.to_string());
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

/// Shutdown tiers of the runnable modules of a desired state.
pub fn desired_tiers(desired: &Desired) -> Vec<Vec<String>> {
    let nodes: Vec<Node> = desired
        .modules
        .values()
        .map(|m| Node::from_manifest(&m.manifest))
        .collect();
    tiers(&dependencies(&nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str, prio: f64, provides: &[&str], requires: &[&str]) -> Node {
        Node {
            id: id.into(),
            priority: prio,
            provides: provides.iter().map(|s| s.to_string()).collect(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn order_providers_first_then_priority_then_id() {
        let nodes = vec![
            n("consumer", 1.0, &[], &["db"]),
            n("db", 50.0, &["db"], &[]),
            n("b", 100.0, &[], &[]),
            n("a", 100.0, &[], &[]),
            n("early", 0.0, &[], &[]),
        ];
        assert_eq!(order(&nodes), vec!["early", "db", "consumer", "a", "b"]);
    }

    #[test]
    fn cycles_named() {
        let nodes = vec![
            n("a", 100.0, &["sa"], &["sb"]),
            n("b", 100.0, &["sb"], &["sc"]),
            n("c", 100.0, &["sc"], &["sa"]),
            n("self", 100.0, &["x"], &["x"]),
            n("ok", 100.0, &[], &["sa"]),
        ];
        let c = cycles(&nodes);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, vec!["a", "b", "c"]);
        assert_eq!(c[0].1, vec!["a", "b", "c", "a"]);
        assert_eq!(c[1].1, vec!["self", "self"]);
    }

    #[test]
    fn shutdown_tiers() {
        let nodes = vec![
            n("app", 100.0, &[], &["api", "db"]),
            n("api", 100.0, &["api"], &["db"]),
            n("db", 100.0, &["db"], &[]),
            n("lone", 100.0, &[], &[]),
        ];
        assert_eq!(
            tiers(&dependencies(&nodes)),
            vec![vec!["app", "lone"], vec!["api"], vec!["db"]]
        );
    }
}

//! The step DAG of a run, and its DOT and Mermaid renderings.

use super::task::Task;
use crate::check::{Plan, Stages};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a node of the graph stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// The plan's pre-validation.
    PlanValidate,
    /// The pre-plan script (present even when the plan has none: a no-op).
    PrePlan,
    /// One step of one task: (task id, step index).
    Step(u32, usize),
    /// A lockstep barrier: every step of this phase has finished.
    Barrier(u8),
    /// The post-plan script.
    PostPlan,
}

/// A node: its stable id and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable id: `plan.validate`, `a1/QA1:backup`, `barrier.2`, ...
    pub id: String,
    /// What it is.
    pub kind: NodeKind,
}

/// The compiled run: nodes, edges (by stable id in the serialized form), and the petgraph.
#[derive(Debug, Clone)]
pub struct PlanGraph {
    /// The DAG.
    pub dag: DiGraph<Node, ()>,
    /// Node index by stable id.
    pub index: HashMap<String, NodeIndex>,
}

/// The first stored form (state files of schema 1): edges by node id.
#[derive(Serialize, Deserialize)]
struct Stored {
    nodes: Vec<Node>,
    edges: Vec<(String, String)>,
}

/// The graph as stored with a run (schema 2): nodes in index order, edges by node index.
#[derive(Debug, Serialize)]
pub struct GraphData<'g> {
    nodes: Vec<&'g Node>,
    edges: Vec<(u32, u32)>,
}

/// [`GraphData`] as read back.
#[derive(Debug, Deserialize)]
pub struct OwnedGraphData {
    nodes: Vec<Node>,
    edges: Vec<(u32, u32)>,
}

impl PlanGraph {
    fn add(&mut self, id: String, kind: NodeKind) -> NodeIndex {
        let ix = self.dag.add_node(Node {
            id: id.clone(),
            kind,
        });
        self.index.insert(id, ix);
        ix
    }

    /// The graph in its stored form, borrowing the nodes.
    pub fn data(&self) -> GraphData<'_> {
        GraphData {
            nodes: self.dag.node_weights().collect(),
            edges: self
                .dag
                .edge_indices()
                .filter_map(|e| self.dag.edge_endpoints(e))
                .filter_map(|(a, b)| {
                    Some((
                        u32::try_from(a.index()).ok()?,
                        u32::try_from(b.index()).ok()?,
                    ))
                })
                .collect(),
        }
    }

    /// Rebuilds a graph from its stored form; an edge naming no node is an error.
    pub fn from_data(data: OwnedGraphData) -> Result<PlanGraph, String> {
        let mut g = PlanGraph {
            dag: DiGraph::with_capacity(data.nodes.len(), data.edges.len()),
            index: HashMap::with_capacity(data.nodes.len()),
        };
        for n in data.nodes {
            g.add(n.id, n.kind);
        }
        let n = g.dag.node_count();
        for (a, b) in data.edges {
            let (a, b) = (a as usize, b as usize);
            if a >= n || b >= n {
                return Err(format!("edge {a} -> {b} names an unknown node"));
            }
            g.dag.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
        Ok(g)
    }

    /// Reads a graph in its first stored form (schema 1: JSON, edges by node id).
    pub fn from_json(text: &str) -> Result<PlanGraph, String> {
        let stored: Stored = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut g = PlanGraph {
            dag: DiGraph::new(),
            index: HashMap::new(),
        };
        for n in stored.nodes {
            g.add(n.id, n.kind);
        }
        for (a, b) in stored.edges {
            let (Some(&x), Some(&y)) = (g.index.get(&a), g.index.get(&b)) else {
                return Err(format!("edge {a} -> {b} names an unknown node"));
            };
            g.dag.add_edge(x, y, ());
        }
        Ok(g)
    }

    /// The predecessors of node `id`, by id.
    pub fn preds(&self, id: &str) -> Vec<&str> {
        let Some(&ix) = self.index.get(id) else {
            return Vec::new();
        };
        self.dag
            .neighbors_directed(ix, petgraph::Direction::Incoming)
            .map(|p| self.dag[p].id.as_str())
            .collect()
    }

    /// Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in self.dag.node_weights() {
            out.push_str(&format!("  {:?};\n", n.id));
        }
        for e in self.dag.edge_indices() {
            if let Some((a, b)) = self.dag.edge_endpoints(e) {
                out.push_str(&format!(
                    "  {:?} -> {:?};\n",
                    self.dag[a].id, self.dag[b].id
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, n) in self.dag.node_weights().enumerate() {
            out.push_str(&format!("  n{i}[\"{}\"]\n", n.id.replace('"', "'")));
        }
        for e in self.dag.edge_indices() {
            if let Some((a, b)) = self.dag.edge_endpoints(e) {
                out.push_str(&format!("  n{} --> n{}\n", a.index(), b.index()));
            }
        }
        out
    }
}

/// Compiles the tasks of `plan` into one DAG.
pub fn graph(plan: &Plan, tasks: &[Task]) -> PlanGraph {
    let mut g = PlanGraph {
        dag: DiGraph::new(),
        index: HashMap::new(),
    };
    let validate = g.add("plan.validate".into(), NodeKind::PlanValidate);
    let pre = g.add("plan.pre_plan".into(), NodeKind::PrePlan);
    g.dag.add_edge(validate, pre, ());
    let post = g.add("plan.post_plan".into(), NodeKind::PostPlan);
    let running: Vec<&Task> = tasks.iter().filter(|t| t.runs()).collect();
    if running.is_empty() {
        g.dag.add_edge(pre, post, ());
        return g;
    }
    // Steps of each task, with their in-task edges.
    let mut ids: HashMap<(u32, usize), NodeIndex> = HashMap::new();
    for t in &running {
        for (i, s) in t.steps.iter().enumerate() {
            let ix = g.add(t.step_id(&s.name), NodeKind::Step(t.id, i));
            ids.insert((t.id, i), ix);
        }
        for (i, s) in t.steps.iter().enumerate() {
            for &p in &s.after {
                g.dag.add_edge(ids[&(t.id, p)], ids[&(t.id, i)], ());
            }
        }
    }
    let sources = |t: &Task| -> Vec<usize> {
        (0..t.steps.len())
            .filter(|i| t.steps[*i].after.is_empty())
            .collect()
    };
    let sinks = |t: &Task| -> Vec<usize> {
        (0..t.steps.len())
            .filter(|i| !t.steps.iter().any(|s| s.after.contains(i)))
            .collect()
    };
    match plan.stages {
        Stages::Pipelined => {
            // Tasks on one device run one at a time, in creation order.
            let mut last_on_device: HashMap<&str, &Task> = HashMap::new();
            for t in &running {
                if let Some(prev) = last_on_device.get(t.device.as_str()) {
                    for a in sinks(prev) {
                        for b in sources(t) {
                            g.dag.add_edge(ids[&(prev.id, a)], ids[&(t.id, b)], ());
                        }
                    }
                } else {
                    for b in sources(t) {
                        g.dag.add_edge(pre, ids[&(t.id, b)], ());
                    }
                }
                last_on_device.insert(&t.device, t);
            }
            for t in &running {
                for a in sinks(t) {
                    g.dag.add_edge(ids[&(t.id, a)], post, ());
                }
            }
        }
        Stages::Lockstep => {
            // Every task's phase-k steps finish before any phase-k+1 step starts; on one
            // device, the tasks' steps of each phase run in creation order.
            let mut prev_barrier = pre;
            for phase in 0..=4u8 {
                let in_phase: Vec<(u32, usize)> = running
                    .iter()
                    .flat_map(|t| {
                        t.steps
                            .iter()
                            .enumerate()
                            .filter(move |(_, s)| s.phase == phase)
                            .map(move |(i, _)| (t.id, i))
                    })
                    .collect();
                if in_phase.is_empty() {
                    continue;
                }
                let barrier = prev_barrier;
                let mut last_on_device: HashMap<&str, NodeIndex> = HashMap::new();
                for &(tid, i) in &in_phase {
                    let t = running.iter().find(|t| t.id == tid).copied();
                    let Some(t) = t else { continue };
                    let ix = ids[&(tid, i)];
                    match last_on_device.get(t.device.as_str()) {
                        Some(&p) => {
                            g.dag.add_edge(p, ix, ());
                        }
                        None => {
                            g.dag.add_edge(barrier, ix, ());
                        }
                    }
                    last_on_device.insert(&t.device, ix);
                }
                let next = g.add(format!("barrier.{phase}"), NodeKind::Barrier(phase));
                for &(tid, i) in &in_phase {
                    g.dag.add_edge(ids[&(tid, i)], next, ());
                }
                prev_barrier = next;
            }
            g.dag.add_edge(prev_barrier, post, ());
        }
    }
    g
}

//! Dependencies point one way: checks the workspace's crate graph, as `cargo metadata` reports it,
//! against the layering invariants of docs/ARCHITECTURE.md.
//!
//! Only edges between workspace crates matter here, and only a workspace crate can depend on one
//! by path, so the manifests of the workspace members (`--no-deps`) hold the whole graph: no
//! registry access, and optional and platform-specific dependencies count as well.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The crates that make up the product, as opposed to tooling, benches and examples.
const PRODUCT: [&str; 7] = [
    "polyloop-wire",
    "polyloop-socket",
    "polyloop-shm",
    "polyloop-child",
    "polyloop-pool",
    "polyloop-macros",
    "polyloop",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

/// Workspace crate name to its dependencies on other workspace crates.
type Graph = BTreeMap<String, Vec<(String, Kind)>>;

fn workspace_graph() -> Graph {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("a list of packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut graph = Graph::new();
    for package in packages {
        let name = package["name"].as_str().expect("a package name");
        let deps = package["dependencies"].as_array().expect("a list of dependencies");
        let edges = deps
            .iter()
            .filter(|dep| dep["path"].is_string())
            .filter_map(|dep| {
                let dep_name = dep["name"].as_str()?;
                members.contains(dep_name).then_some(dep_name)?;
                let kind = match dep["kind"].as_str() {
                    None => Kind::Normal,
                    Some("build") => Kind::Build,
                    Some("dev") => Kind::Dev,
                    Some(other) => panic!("{name}: unknown dependency kind {other}"),
                };
                Some((dep_name.to_owned(), kind))
            })
            .collect();
        graph.insert(name.to_owned(), edges);
    }
    for name in PRODUCT.iter().chain(&["xtask"]) {
        assert!(graph.contains_key(*name), "{name} is not a workspace member any more");
    }
    graph
}

/// The direct workspace dependencies of `name` of the given kinds.
fn direct(graph: &Graph, name: &str, kinds: &[Kind]) -> BTreeSet<String> {
    graph[name]
        .iter()
        .filter(|(_, kind)| kinds.contains(kind))
        .map(|(dep, _)| dep.clone())
        .collect()
}

/// Every workspace crate linked into `name`'s build: normal and build dependencies, transitively
/// (plus, with `dev`, the dev-dependencies of `name` itself and what they link).
fn linked(graph: &Graph, name: &str, dev: bool) -> BTreeSet<String> {
    let root_kinds: &[Kind] =
        if dev { &[Kind::Normal, Kind::Build, Kind::Dev] } else { &[Kind::Normal, Kind::Build] };
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = direct(graph, name, root_kinds).into_iter().collect();
    while let Some(dep) = todo.pop() {
        if seen.insert(dep.clone()) {
            todo.extend(direct(graph, &dep, &[Kind::Normal, Kind::Build]));
        }
    }
    seen
}

#[test]
fn wire_socket_and_shm_depend_on_no_workspace_crate() {
    let graph = workspace_graph();
    for name in ["polyloop-wire", "polyloop-socket", "polyloop-shm"] {
        let deps = direct(&graph, name, &[Kind::Normal, Kind::Build, Kind::Dev]);
        assert!(deps.is_empty(), "{name} depends on {deps:?}");
    }
}

#[test]
fn child_depends_only_on_wire_and_socket_and_pool_on_those_and_shm() {
    let graph = workspace_graph();
    let lower = ["polyloop-wire", "polyloop-socket"];
    let pools = ["polyloop-wire", "polyloop-socket", "polyloop-shm"];
    for (name, lower) in [("polyloop-child", &lower[..]), ("polyloop-pool", &pools[..])] {
        let deps = direct(&graph, name, &[Kind::Normal, Kind::Build]);
        // Guards against reading the graph wrong, which would pass every check vacuously.
        assert!(deps.contains("polyloop-wire"), "{name} does not depend on polyloop-wire");
        let others: Vec<_> = deps.iter().filter(|dep| !lower.contains(&dep.as_str())).collect();
        assert!(others.is_empty(), "{name} depends on {others:?}, beyond {lower:?}");
    }
}

#[test]
fn pool_never_links_the_child_runtime() {
    let graph = workspace_graph();
    let linked = linked(&graph, "polyloop-pool", false);
    assert!(
        !linked.contains("polyloop-child"),
        "polyloop-pool links polyloop-child through {linked:?}"
    );
}

#[test]
fn xtask_depends_on_no_product_crate() {
    let graph = workspace_graph();
    let linked = linked(&graph, "xtask", true);
    let product: Vec<_> = linked.iter().filter(|dep| PRODUCT.contains(&dep.as_str())).collect();
    assert!(product.is_empty(), "xtask depends on product crates {product:?}");
}

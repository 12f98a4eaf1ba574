//! The top-level modules of the library and of the test kit import each other without a
//! circle (STYLE: "no import cycles"): the edges are the `crate::<module>` paths in each
//! module's files (`src/X.rs` and `src/X/**`), comments left out, unit tests included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the other top-level modules its files name as `crate::<module>`.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
        if path.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main" {
            let mut own = vec![path.clone()];
            let dir = src.join(&stem);
            if dir.is_dir() {
                rust_files(&dir, &mut own);
            }
            files.insert(stem, own);
        }
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut graph = BTreeMap::new();
    for (module, paths) in &files {
        let mut targets = BTreeSet::new();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (at, _) in code.match_indices("crate::") {
                    let rest = &code[at + "crate::".len()..];
                    // `crate::{a, b::c}` names several modules.
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group.split([',', '}']).map(|n| n.trim()).collect(),
                        None => vec![rest],
                    };
                    for name in names {
                        let name: String = name.chars().take_while(|&c| ident(c)).collect();
                        if &name != module && files.contains_key(&name) {
                            targets.insert(name);
                        }
                    }
                }
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Every module from which `start` is reached again, by depth-first search.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in &graph[&node] {
            if next == start {
                return Some([path.clone(), vec![start.to_owned()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    graph.keys().filter_map(|m| circle_through(graph, m)).collect()
}

#[test]
fn the_librarys_modules_import_each_other_without_a_circle() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 20 && graph["gc"].contains("store"), "the graph was not read: {graph:?}");
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new(), "import circles");
}

#[test]
fn the_kits_modules_import_each_other_without_a_circle() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kit/src"));
    assert!(graph.len() > 8 && graph["synth"].contains("ageing"), "the graph was not read: {graph:?}");
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new(), "import circles");
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(circles(&graph).len(), 3, "{:?}", circles(&graph));
}

#[test]
fn the_store_knows_no_manifest_format() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(!graph["store"].contains("manifest"), "{:?}", graph["store"]);
}

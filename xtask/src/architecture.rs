//! Keeps `docs/architecture.md` true: its crate graph is compared with
//! `cargo metadata`, and every file and function its free-space-chapter
//! table names must exist. Test-only (`cargo test -p xtask architecture`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::json::Json;
use crate::root;

/// The page, relative to the workspace root.
const PAGE: &str = "docs/architecture.md";

/// Crate → the workspace crates it depends on.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn page() -> String {
    std::fs::read_to_string(root().join(PAGE)).expect("docs/architecture.md is readable")
}

/// The rows of the markdown table between `<!-- {name}: begin -->` and
/// `<!-- {name}: end -->`, header and separator dropped, each split into
/// trimmed cells.
fn table(text: &str, name: &str) -> Vec<Vec<String>> {
    let begin = format!("<!-- {name}: begin -->");
    let end = format!("<!-- {name}: end -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{PAGE} has no `{begin}`"));
    let stop = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("{PAGE} has no `{end}`"))
        + start;
    text[start + begin.len()..stop]
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `code spans` of a cell: `` `a`, `b` `` → `["a", "b"]`.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The graph as the page writes it.
fn graph_on_page(text: &str) -> Graph {
    let mut graph = Graph::new();
    for row in table(text, "crate-graph") {
        let name = spans(&row[0]).pop().expect("a crate name in code");
        let deps = spans(&row[1]).into_iter().collect();
        assert!(
            graph.insert(name.clone(), deps).is_none(),
            "{name} is listed twice"
        );
    }
    graph
}

/// `cargo metadata --no-deps`: the workspace's packages.
fn metadata() -> Json {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Json::parse(&String::from_utf8_lossy(&out.stdout)).expect("cargo metadata prints JSON")
}

/// The graph as cargo sees it (normal and build dependencies on workspace
/// members), and the members with `publish = false`.
fn graph_from_cargo(doc: &Json) -> (Graph, BTreeSet<String>) {
    let packages = doc.get("packages").items();
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p.get("name").as_str().map(String::from))
        .collect();
    let mut graph = Graph::new();
    let mut unpublished = BTreeSet::new();
    for p in packages {
        let name = p.get("name").as_str().unwrap_or_default().to_string();
        if p.get("publish") != &Json::Null && p.get("publish").items().is_empty() {
            unpublished.insert(name.clone());
        }
        let deps = p
            .get("dependencies")
            .items()
            .iter()
            .filter(|d| d.get("kind").as_str() != Some("dev"))
            .filter_map(|d| d.get("name").as_str())
            .filter(|d| members.contains(*d))
            .map(String::from)
            .collect();
        graph.insert(name, deps);
    }
    (graph, unpublished)
}

#[test]
fn architecture_crate_graph_matches_cargo_metadata() {
    let on_page = graph_on_page(&page());
    let (from_cargo, _) = graph_from_cargo(&metadata());
    let mut problems = Vec::new();
    for (name, deps) in &from_cargo {
        match on_page.get(name) {
            None => problems.push(format!("{name} is not on the page")),
            Some(written) if written != deps => problems.push(format!(
                "{name}: the page says {written:?}, cargo says {deps:?}"
            )),
            Some(_) => {}
        }
    }
    for name in on_page.keys().filter(|n| !from_cargo.contains_key(*n)) {
        problems.push(format!("{name} is on the page but not in the workspace"));
    }
    assert!(
        problems.is_empty(),
        "{PAGE}'s crate graph is stale:\n{}",
        problems.join("\n")
    );
}

#[test]
fn architecture_publishable_crates_do_not_depend_on_unpublished_ones() {
    let (graph, unpublished) = graph_from_cargo(&metadata());
    assert!(
        unpublished.contains("freespace-testkit"),
        "testkit is publish = false"
    );
    for (name, deps) in graph.iter().filter(|(n, _)| !unpublished.contains(*n)) {
        let bad: Vec<_> = deps.intersection(&unpublished).collect();
        assert!(
            bad.is_empty(),
            "{name} (publishable) depends on {bad:?} (publish = false)"
        );
    }
}

#[test]
fn architecture_chapter_table_names_real_files_and_functions() {
    let rows = table(&page(), "ostep-map");
    assert!(rows.len() >= 20, "the chapter table lost rows");
    for row in rows {
        let (idea, file, item) = (&row[0], spans(&row[2]), spans(&row[3]));
        let (file, item) = (&file[0], &item[0]);
        let text = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("{idea}: {file}: {e}"));
        let declared = [
            format!("fn {item}("),
            format!("fn {item}<"),
            format!("const fn {item}("),
        ]
        .iter()
        .any(|d| text.contains(d.as_str()));
        assert!(declared, "{idea}: {file} declares no `fn {item}`");
    }
}

#[test]
fn architecture_table_parser_reads_rows_and_spans() {
    let text = "x\n<!-- t: begin -->\n| a | b |\n|---|---|\n| `p` | `q`, `r` |\n<!-- t: end -->\n";
    let rows = table(text, "t");
    assert_eq!(rows, vec![vec!["`p`".to_string(), "`q`, `r`".to_string()]]);
    assert_eq!(spans(&rows[0][1]), ["q", "r"]);
}

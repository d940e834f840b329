//! The import rules of `src/`, read from the source itself: data flows one way, so a change that
//! makes a low module reach up, lets a transport call another, names the AWS SDK outside the wiring
//! or closes an import circle fails here, naming the file and the path it took.
//!
//! What is read: every `crate::…` path outside comments and outside the `#[cfg(test)]` module at a
//! file's end (tests may use anything), resolved to the deepest module a file holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that decide and hold state: none of them may name configuration, a transport, the
/// wiring, a command, the AWS SDK, development mode or test support.
const LOW: [&str; 11] = [
    "verify",
    "keys",
    "authz",
    "mfa",
    "revocation",
    "telemetry",
    "cognito",
    "clock",
    "loopback",
    "secret",
    "private_fs",
];
const ABOVE_LOW: [&str; 8] = ["config", "http", "envoy", "server", "cmd", "aws", "dev", "testkit"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each module of `src/` (`verify::claims`, `authz`) and its source without comments and tests.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        modules.insert(parts.join("::"), code);
    }
    modules
}

/// Which modules each module names through `crate::` paths.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (module, code) in modules {
        let mut named = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let path: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
                .collect();
            if let Some(target) = resolve(path.trim_end_matches(':')).filter(|t| t != module) {
                named.insert(target);
            }
        }
        edges.insert(module.clone(), named);
    }
    edges
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn the_rules_are_read_from_the_source() {
    // Positive control: the reader sees what the code plainly names.
    let edges = imports(&modules());
    assert!(edges["server"].contains("aws"), "the wiring builds the AWS client: {:?}", edges["server"]);
    assert!(edges["authz"].contains("verify"), "the decision verifies tokens: {:?}", edges["authz"]);
    assert!(edges["envoy::ext_authz"].contains("authz"), "the Envoy adapter calls the decision");
    assert!(edges.len() > 40, "every file is read: {}", edges.len());
}

#[test]
fn nothing_low_imports_configuration_a_transport_the_wiring_or_the_aws_sdk() {
    let edges = imports(&modules());
    let broken: Vec<String> = edges
        .iter()
        .filter(|(module, _)| LOW.contains(&top(module)))
        .flat_map(|(module, named)| {
            named.iter().filter(|t| ABOVE_LOW.contains(&top(t))).map(move |t| format!("{module} -> {t}"))
        })
        .collect();
    assert!(broken.is_empty(), "low modules reach up: {broken:#?}");
}

#[test]
fn only_the_wiring_names_the_aws_sdk_and_the_transports_never_call_each_other() {
    let edges = imports(&modules());
    let mut broken = Vec::new();
    for (module, named) in &edges {
        for target in named {
            if top(target) == "aws" && !["server", "aws"].contains(&top(module)) {
                broken.push(format!("{module} -> {target}: only server/ builds the AWS client"));
            }
            let pair = [top(module), top(target)];
            if pair == ["envoy", "http"] || pair == ["http", "envoy"] {
                broken.push(format!("{module} -> {target}: the transports are independent"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn no_module_imports_itself_back_through_another() {
    let edges = imports(&modules());
    // Depth-first search for a path back to the start, reported as the circle it closes.
    fn back(edges: &BTreeMap<String, BTreeSet<String>>, start: &str, at: &str, path: &mut Vec<String>) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if !path.contains(next) {
                path.push(next.clone());
                if back(edges, start, next, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for module in edges.keys() {
        let mut path = vec![module.clone()];
        assert!(!back(&edges, module, module, &mut path), "an import circle: {}", path.join(" -> "));
    }
}

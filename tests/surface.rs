//! The library's surface stays small (issue 24, docs/api.md): at most 25
//! items at the crate root, at most 20 methods on `Encapsulator`. Counted on
//! the sources (pure: no root, no rustdoc run), the way `cargo doc
//! --all-features` lists them: every `pub mod`, every name a root `pub use`
//! brings in, every root `pub` fn, struct, enum, const; feature-gated items
//! count, `#[cfg(doctest)]` ones (never documented) do not.

const ROOT_LIMIT: usize = 25;
const METHOD_LIMIT: usize = 20;

fn source(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

/// The names a `pub use` statement brings in: `a::{B, c::D}` is two.
fn use_names(statement: &str) -> Vec<String> {
    let body = statement.trim_start_matches("pub use ").trim_end_matches(';');
    match (body.find('{'), body.rfind('}')) {
        (Some(open), Some(close)) => body[open + 1..close]
            .split(',')
            .map(|s| s.trim().rsplit("::").next().unwrap_or("").to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => vec![body.rsplit("::").next().unwrap_or(body).to_owned()],
    }
}

fn root_items(lib: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut lines = lib.lines().peekable();
    let mut doctest_only = false;
    while let Some(line) = lines.next() {
        if line.starts_with("#[cfg(doctest)]") {
            doctest_only = true;
            continue;
        }
        if line.starts_with("#[") || line.starts_with("///") {
            continue;
        }
        let skip = std::mem::take(&mut doctest_only);
        if skip {
            continue;
        }
        if line.starts_with("pub use ") {
            let mut statement = line.to_owned();
            while !statement.trim_end().ends_with(';') {
                statement.push_str(lines.next().expect("an unterminated pub use"));
            }
            items.extend(use_names(&statement));
        } else if let Some(rest) = ["pub mod ", "pub fn ", "pub struct ", "pub enum ", "pub const ", "pub static "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            items.push(name);
        }
    }
    items
}

fn encapsulator_methods(text: &str) -> Vec<String> {
    let mut methods = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("impl Encapsulator {") {
            inside = true;
        } else if inside && line.starts_with('}') {
            inside = false;
        } else if inside {
            if let Some(rest) = line.strip_prefix("    pub fn ") {
                methods.push(rest.split(['(', '<']).next().unwrap_or(rest).to_owned());
            }
        }
    }
    methods
}

#[test]
fn the_crate_root_lists_at_most_25_items() {
    let items = root_items(&source("src/lib.rs"));
    assert!(items.len() <= ROOT_LIMIT, "{} root items (limit {ROOT_LIMIT}): {items:?}", items.len());
    for must in ["Encapsulator", "Route", "Policy", "Label", "LabelStack", "Error", "XdpMode", "labels", "errors"] {
        assert!(items.iter().any(|i| i == must), "{must} is missing from the root: {items:?}");
    }
    let mut unique = items.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), items.len(), "a root item listed twice: {items:?}");
}

#[test]
fn encapsulator_has_at_most_20_methods() {
    let mut methods = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                methods.extend(encapsulator_methods(&std::fs::read_to_string(&path).expect("source")));
            }
        }
    }
    assert!(methods.len() <= METHOD_LIMIT, "{} methods (limit {METHOD_LIMIT}): {methods:?}", methods.len());
    for must in ["builder", "open", "attach", "set_route", "remove", "routes", "apply", "stats", "explain"] {
        assert!(methods.iter().any(|m| m == must), "Encapsulator::{must} is missing: {methods:?}");
    }
}

#[test]
fn the_counters_read_what_they_should() {
    // The counting itself, on a sample: so a limit that holds is not a
    // parser that sees nothing.
    let lib = "mod a;\npub mod b;\n#[cfg(feature = \"x\")]\npub mod c;\npub use b::{D, e::F};\npub use g::H;\n\
               #[cfg(doctest)]\npub struct Readme;\npub fn f() {}\n";
    assert_eq!(root_items(lib), ["b", "c", "D", "F", "H", "f"]);
    let enc = "impl Encapsulator {\n    pub fn a(&self) {}\n    fn b() {}\n    pub fn c<'a>(&self) {}\n}\n\
               impl Other {\n    pub fn d() {}\n}\n";
    assert_eq!(encapsulator_methods(enc), ["a", "c"]);
}

//! The test suite's own rules, checked on its sources (pure: no root): every
//! test that starts with `privileged(...)` is `#[ignore]`d with the shared
//! reason (so a plain `cargo test` reports it as ignored, not passed), and
//! every ignored test is one of those (so `--include-ignored` without root
//! fails with a message, never with an obscure error).

mod common;

#[test]
fn privileged_tests_and_ignored_tests_are_the_same_tests() {
    let ignore = format!("#[ignore = \"{}\"]", common::NEEDS_ROOT);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let (mut privileged, mut problems) = (0, Vec::new());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("test source");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        // Each `#[test]` item: its attributes, then `fn name() {`, then its first line.
        for item in text.split("#[test]\n").skip(1) {
            let mut lines = item.lines();
            let mut attrs = Vec::new();
            let mut sig = lines.next().unwrap_or("");
            while sig.starts_with("#[") {
                attrs.push(sig);
                sig = lines.next().unwrap_or("");
            }
            let name = sig.trim_start_matches("fn ").split('(').next().unwrap_or(sig).to_owned();
            let first = lines.next().unwrap_or("").trim();
            let guarded = first.starts_with(&format!("privileged(\"{name}\")"));
            let ignored: Vec<&&str> = attrs.iter().filter(|a| a.starts_with("#[ignore")).collect();
            privileged += usize::from(guarded);
            match (guarded, ignored.as_slice()) {
                (true, [a]) if **a == ignore => {}
                (true, _) => problems.push(format!("{file}: {name} calls privileged() but lacks {ignore}")),
                (false, []) => {}
                (false, _) => {
                    problems.push(format!("{file}: {name} is ignored but does not start with privileged(\"{name}\")"))
                }
            }
        }
    }
    assert!(privileged >= 20, "only {privileged} privileged tests found: is the scan still reading the sources?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

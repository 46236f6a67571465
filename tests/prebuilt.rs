//! The checked-in dataplane (src/bpf/prebuilt/, what a dependent builds with by
//! default) is byte for byte what src/bpf/*.bpf.c builds to here. The crate's
//! tests build with `build-bpf`, so OUT_DIR holds the fresh build; when this
//! fails, run scripts/prebuild-bpf.sh and commit src/bpf/prebuilt/.
#![cfg(all(feature = "build-bpf", feature = "testing"))]

/// (file, what the C built to now, the checked-in copy)
macro_rules! built_and_checked_in {
    ($($file:literal),*) => {
        [$(($file, include_bytes!(concat!(env!("OUT_DIR"), "/", $file)), include_bytes!(concat!("../src/bpf/prebuilt/", $file)))),*]
    };
}

const FILES: [(&str, &[u8], &[u8]); 8] = built_and_checked_in!(
    "encap.bpf.o",
    "encap.skel.rs",
    "decap.bpf.o",
    "decap.skel.rs",
    "sbfd.bpf.o",
    "sbfd.skel.rs",
    "testing.bpf.o",
    "testing.skel.rs"
);

#[test]
fn prebuilt_dataplane_is_what_the_c_builds_to() {
    let stale: Vec<String> = FILES
        .iter()
        .filter(|(_, built, checked_in)| built != checked_in)
        .map(|(file, built, checked_in)| {
            let first = built
                .iter()
                .zip(checked_in.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(built.len().min(checked_in.len()));
            format!(
                "{file} ({} bytes built, {} checked in, first difference at byte {first})",
                built.len(),
                checked_in.len()
            )
        })
        .collect();
    assert!(
        stale.is_empty(),
        "src/bpf/prebuilt/ is not what src/bpf/*.bpf.c builds to: {}. Run scripts/prebuild-bpf.sh and commit the result; \
         if only the toolchain differs, compare src/bpf/prebuilt/BUILT_WITH with `clang --version`.",
        stale.join("; ")
    );
}

/// The skeletons name no path of the machine that built them: the object is
/// found in OUT_DIR, wherever the crate is built.
#[test]
fn prebuilt_skeletons_include_their_object_from_out_dir() {
    for (file, _, checked_in) in FILES.iter().filter(|(file, _, _)| file.ends_with(".skel.rs")) {
        let text = std::str::from_utf8(checked_in).expect("a skeleton is UTF-8");
        let object = file.replace(".skel.rs", ".bpf.o");
        let include = format!("include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{object}\"))");
        assert_eq!(text.matches("include_bytes!(").count(), 1, "{file}: one include_bytes!");
        assert!(text.contains(&include), "{file} includes its object as `{include}`");
    }
}

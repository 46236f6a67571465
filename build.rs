//! Puts the dataplane's libbpf skeletons (src/bpf/*.bpf.c) into OUT_DIR, and,
//! for the `agent` feature, compiles the protocols in proto/ into gRPC code.
//!
//! By default the skeletons come prebuilt from src/bpf/prebuilt/ (a dependent
//! needs no clang and no libbpf-cargo); the `build-bpf` feature compiles them
//! from the C instead, the way scripts/prebuild-bpf.sh refreshes the prebuilt
//! copies and checks they have not drifted (docs/building.md).

use std::env;
use std::path::PathBuf;

/// The BPF objects, each becoming `<name>.bpf.o` and `<name>.skel.rs` in
/// OUT_DIR, and the cargo feature that asks for it (`None`: always built).
const PROGRAMS: [(&str, Option<&str>); 4] =
    [("encap", None), ("decap", None), ("sbfd", None), ("testing", Some("TESTING"))];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let programs: Vec<&str> = PROGRAMS
        .iter()
        .filter(|(_, feature)| feature.is_none_or(|f| env::var_os(format!("CARGO_FEATURE_{f}")).is_some()))
        .map(|(name, _)| *name)
        .collect();

    #[cfg(feature = "build-bpf")]
    bpf::compile(&programs, &out_dir);
    #[cfg(not(feature = "build-bpf"))]
    prebuilt(&programs, &out_dir);

    #[cfg(feature = "agent")]
    protocols();
}

/// Where the checked-in objects and skeletons live.
const PREBUILT: &str = "src/bpf/prebuilt";

/// Copies the checked-in object and skeleton of each program into OUT_DIR,
/// where the skeleton's `include_bytes!` finds the object.
#[cfg(not(feature = "build-bpf"))]
fn prebuilt(programs: &[&str], out_dir: &std::path::Path) {
    // The kernel refuses a BPF object of the other byte order at load time;
    // say it at build time instead.
    if env::var("CARGO_CFG_TARGET_ENDIAN").is_ok_and(|e| e == "big") {
        panic!(
            "the prebuilt eBPF objects in {PREBUILT} are little-endian; on a big-endian target build \
             lnetd-host-encap with `features = [\"build-bpf\"]` (needs clang)"
        );
    }
    for name in programs {
        for file in [format!("{name}.bpf.o"), format!("{name}.skel.rs")] {
            let from = std::path::Path::new(PREBUILT).join(&file);
            println!("cargo:rerun-if-changed={}", from.display());
            std::fs::copy(&from, out_dir.join(&file)).unwrap_or_else(|e| {
                panic!(
                    "copying the prebuilt {}: {e}. A checkout refreshes it with scripts/prebuild-bpf.sh \
                     (needs clang), or builds from the C with `--features build-bpf`.",
                    from.display()
                )
            });
        }
    }
}

/// The `build-bpf` path: clang through libbpf-cargo.
#[cfg(feature = "build-bpf")]
mod bpf {
    use std::env;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use libbpf_cargo::SkeletonBuilder;

    /// Compiles each program into `<name>.bpf.o` and generates its skeleton
    /// `<name>.skel.rs`, which includes the object from OUT_DIR (so the
    /// skeleton's text is the same wherever it is built, and can be checked in).
    pub(crate) fn compile(programs: &[&str], out_dir: &Path) {
        let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
        if Command::new(&clang).arg("--version").output().is_err() {
            panic!(
                "the `build-bpf` feature compiles the eBPF dataplane with clang, and `{}` was not found. \
                 Install it (Debian/Ubuntu: `apt-get install clang`), point the CLANG environment \
                 variable at a clang binary, or build without `build-bpf` (the prebuilt objects in {}).",
                PathBuf::from(&clang).display(),
                super::PREBUILT,
            );
        }
        for dir in ["src/bpf", "src/bpf/include"] {
            for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir}: {e}")) {
                let path = entry.unwrap_or_else(|e| panic!("reading {dir}: {e}")).path();
                if path.is_file() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        println!("cargo:rerun-if-env-changed=CLANG");
        // The BTF line info names the source files; relative names keep the
        // object the same in every checkout (the prebuilt copies depend on it).
        let here = env::current_dir().unwrap_or_else(|e| panic!("the build script's directory: {e}"));
        let prefix_map = format!("-fdebug-prefix-map={}=.", here.display());

        for name in programs {
            let source = format!("src/bpf/{name}.bpf.c");
            let skel = out_dir.join(format!("{name}.skel.rs"));
            SkeletonBuilder::new()
                .source(&source)
                .obj(out_dir.join(format!("{name}.bpf.o")))
                // The object stays a file (not inlined as a 300 kB array
                // literal): smaller, diffable skeletons that compile faster.
                .reference_obj(true)
                .clang(&clang)
                // v3: atomic compare-and-swap (the route cache's seqlock); kernels since 5.12 run it.
                .clang_args(["-Wall", "-Werror", "-O2", "-g", "-mcpu=v3", "-Isrc/bpf/include", &prefix_map])
                .build_and_generate(&skel)
                .unwrap_or_else(|e| panic!("building {source}: {e:#}"));
            relocatable(&skel, name);
        }
    }

    /// Replaces the absolute path libbpf-cargo gives `include_bytes!` with one
    /// relative to OUT_DIR, so the skeleton does not depend on where it was built.
    fn relocatable(skel: &Path, name: &str) {
        let text = std::fs::read_to_string(skel).unwrap_or_else(|e| panic!("reading {}: {e}", skel.display()));
        let statement = text
            .find("static DATA: [u8; ")
            .and_then(|start| text[start..].find(");").map(|len| start..start + len + 2))
            .filter(|range| {
                text[range.clone()].contains("include_bytes!(") && text.matches("include_bytes!(").count() == 1
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: libbpf-cargo's skeleton no longer has one `static DATA: [u8; N] = *include_bytes!(..);` \
                     (a new libbpf-cargo?): build.rs must learn its new shape",
                    skel.display()
                )
            });
        let declared = &text[statement.clone()];
        let size: &str = declared["static DATA: [u8; ".len()..].split(']').next().unwrap_or_default();
        let fixed =
            format!("static DATA: [u8; {size}] = *include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.bpf.o\"));");
        let text = format!("{}{fixed}{}", &text[..statement.start], &text[statement.end..]);
        std::fs::write(skel, text).unwrap_or_else(|e| panic!("writing {}: {e}", skel.display()));
    }
}

/// The agent's protocols: the proof of concept's (package `counters`) and
/// ours (package `lnetd.encap.v1`), servers and clients.
#[cfg(feature = "agent")]
fn protocols() {
    const PROTOS: [&str; 2] = ["proto/counters.proto", "proto/lnetd/encap/v1/encap.proto"];
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"]).unwrap_or_else(|e| panic!("parsing proto/: {e}"));
    tonic_prost_build::configure()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating gRPC code from proto/: {e}"));
    #[cfg(feature = "bgp")]
    gobgp();
}

/// The subset of GoBGP's API the `bgp` feature uses (package `apipb`): a
/// client only.
#[cfg(feature = "bgp")]
fn gobgp() {
    const PROTO: &str = "proto/gobgp/gobgp.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"]).unwrap_or_else(|e| panic!("parsing {PROTO}: {e}"));
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating gRPC code from {PROTO}: {e}"));
}

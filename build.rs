//! Compiles the dataplane (src/bpf/*.bpf.c) into libbpf skeletons in OUT_DIR,
//! and, for the `agent` feature, the protocols in proto/ into gRPC code.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

/// The BPF objects, each becoming `<name>.skel.rs` in OUT_DIR, and the cargo
/// feature that asks for it (`None`: always built).
const PROGRAMS: [(&str, Option<&str>); 3] = [("encap", None), ("decap", None), ("testing", Some("TESTING"))];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());

    if Command::new(&clang).arg("--version").output().is_err() {
        panic!(
            "lnetd-host-encap compiles its eBPF dataplane with clang, and `{}` was not found. \
             Install it (Debian/Ubuntu: `apt-get install clang`) or point the CLANG \
             environment variable at a clang binary.",
            PathBuf::from(&clang).display()
        );
    }

    for dir in ["src/bpf", "src/bpf/include"] {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("reading {dir}: {e}")).path();
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    for (name, feature) in PROGRAMS {
        if feature.is_some_and(|f| env::var_os(format!("CARGO_FEATURE_{f}")).is_none()) {
            continue;
        }
        let source = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&source)
            .clang(&clang)
            // v3: atomic compare-and-swap (the route cache's seqlock); kernels since 5.12 run it.
            .clang_args(["-Wall", "-Werror", "-O2", "-g", "-mcpu=v3", "-Isrc/bpf/include"])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {source}: {e:#}"));
    }

    #[cfg(feature = "agent")]
    protocols();
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

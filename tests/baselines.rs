//! The benchmarks' baseline programs do what the benchmarks say they do:
//! the floor swaps the MACs and sends the frame back untouched otherwise;
//! the minimal push adds exactly one label (16, S=1, the IP TTL). A ratio
//! against a baseline that did less (or more) would mean nothing.

mod common;

use common::{entries, frame, in_test_run_netns, labelled, privileged};
use lnetd_host_encap::diagnostics::XdpAction;
use lnetd_host_encap::testing::BaselineProgram;

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn floor_and_minimal_push_emit_what_the_benchmarks_assume() {
    privileged("floor_and_minimal_push_emit_what_the_benchmarks_assume");
    in_test_run_netns("baselines", || {
        let floor = BaselineProgram::floor().expect("floor");
        let min_push = BaselineProgram::min_push().expect("minimal push");
        for (dst, ttl) in [("198.51.100.7", 64), ("2001:db8::9", 7)] {
            let input = frame(dst).ttl(ttl).payload(64).build();

            let out = floor.test_run(&input.bytes).expect("floor run");
            assert_eq!(out.action, XdpAction::Tx, "{dst}: the floor sends back");
            let mut reflected = input.bytes.clone();
            reflected[..6].copy_from_slice(&input.bytes[6..12]);
            reflected[6..12].copy_from_slice(&input.bytes[..6]);
            assert_eq!(out.frame, reflected, "{dst}: the floor only swaps the MACs");

            let out = min_push.test_run(&input.bytes).expect("minimal push run");
            assert_eq!(out.action, XdpAction::Tx, "{dst}: the minimal push sends back");
            assert_eq!(out.frame, labelled(&input, &entries(&[16], 0, ttl)), "{dst}: one label, S=1, the IP TTL");
        }
        // A VLAN-tagged frame is not the minimal push's business: passed untouched.
        let tagged = frame("198.51.100.7").vlan(0x8100, 10).build();
        let out = min_push.test_run(&tagged.bytes).expect("minimal push run");
        assert_eq!((out.action, out.frame), (XdpAction::Pass, tagged.bytes.clone()));
    });
}
